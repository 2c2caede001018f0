//! The built-in `host` image: the host's `/usr`, read-only, under a small
//! skeleton root.
//!
//! The skeleton is one lower layer holding what a shell and Python need
//! outside `/usr`: the top-level merged-`/usr` symlinks (`bin -> usr/bin`,
//! ...), the standard directories, and copies of a few `/etc` files (users,
//! name service, dynamic linker, time zone, profile, alternatives,
//! certificates, ...). Nothing else of the host is visible: not `/tmp`,
//! `/root`, `/home`, `/work`, the data directory, nor secrets such as
//! `/etc/shadow` or `/etc/ssl/private`. `/usr` is an overlay of a small extra
//! layer on the host's `/usr`; the extra layer adds `python` when the host
//! only has `python3`.
//!
//! The skeleton is built once per state of the host files it copies: it
//! lives in `dir/<fingerprint>`, so a changed host gets a fresh skeleton while
//! running sandboxes keep the one they were started on.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use crate::spec::MountSpec;

/// Bump when the skeleton's layout changes.
const FORMAT: &str = "host-image-v1";
/// Marks a complete skeleton.
const COMPLETE: &str = ".complete";

/// `/etc` entries copied from the host (when present). Entries starting with
/// `python` are copied too.
const ETC: &[&str] = &[
    "passwd",
    "group",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "networks",
    "protocols",
    "services",
    "rpc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "profile",
    "profile.d",
    "bash.bashrc",
    "environment",
    "shells",
    "login.defs",
    "inputrc",
    "skel",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "magic",
    "magic.mime",
    "locale.alias",
    "os-release",
    "debian_version",
    "issue",
    "lsb-release",
    "gitconfig",
    "pip.conf",
];

/// Never copied, wherever they appear below a copied entry.
const SECRETS: &[&str] = &["private"];

/// Top-level names that are symlinks into `/usr` on merged-`/usr` hosts.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Directories of the skeleton, with their modes.
const DIRS: &[(&str, u32)] = &[
    ("etc", 0o755),
    ("usr", 0o755),
    ("home", 0o755),
    ("home/user", 0o755),
    ("root", 0o700),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("var/tmp", 0o1777),
    ("var/lib", 0o755),
    ("var/cache", 0o755),
    ("var/log", 0o755),
    ("run", 0o755),
    ("run/lock", 0o1777),
    ("opt", 0o755),
    ("mnt", 0o755),
    ("srv", 0o755),
    ("media", 0o755),
    ("proc", 0o555),
    ("dev", 0o755),
    ("sys", 0o555),
    (".sandpit", 0o755),
];

const SYMLINKS: &[(&str, &str)] = &[
    ("var/run", "/run"),
    ("var/lock", "/run/lock"),
    ("etc/mtab", "/proc/self/mounts"),
];

/// Mount points the runtime binds files onto, created up front so they do
/// not have to be created in each sandbox's writable layer.
const MOUNT_POINTS: &[&str] = &[
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    ".sandpit/sandpit",
];

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Error)]
pub enum HostImageError {
    #[error("failed to build the host image skeleton at {path:?}")]
    Build {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The host image as a sandbox spec consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostImage {
    /// Lower layers of the root, topmost first.
    pub layers: Vec<PathBuf>,
    /// Extra mounts: `/usr` (and, on hosts without merged `/usr`, `/bin`,
    /// `/lib`, ...) read-only.
    pub mounts: Vec<MountSpec>,
    /// Suggested environment.
    pub env: Vec<(String, String)>,
    /// Suggested working directory.
    pub workdir: String,
}

/// Builds (once) the host image under `dir` from this host.
pub fn prepare(dir: &Path) -> Result<HostImage, HostImageError> {
    prepare_from(Path::new("/"), dir)
}

/// Builds the host image under `dir` from the host tree at `host`.
pub fn prepare_from(host: &Path, dir: &Path) -> Result<HostImage, HostImageError> {
    let version = dir.join(fingerprint(host));
    if !version.join(COMPLETE).exists() {
        build(host, dir, &version)?;
    }
    Ok(image(host, &version))
}

fn image(host: &Path, version: &Path) -> HostImage {
    let usr = MountSpec::ReadOnlyOverlay {
        layers: vec![version.join("usr"), host.join("usr")],
        destination: "/usr".into(),
    };
    let split_usr = USR_LINKS
        .iter()
        .filter(|name| is_real_dir(&host.join(name)));
    let binds = split_usr.map(|name| MountSpec::Bind {
        source: host.join(name),
        destination: format!("/{name}"),
        readonly: true,
    });
    HostImage {
        layers: vec![version.join("root")],
        mounts: std::iter::once(usr).chain(binds).collect(),
        env: vec![
            ("PATH".into(), DEFAULT_PATH.into()),
            ("HOME".into(), "/root".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ],
        workdir: "/home/user".into(),
    }
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Builds into a temporary directory, then renames it into place, so a
/// half-built skeleton is never used.
fn build(host: &Path, dir: &Path, version: &Path) -> Result<(), HostImageError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HostImageError::Build { path, source }
    };
    fs::create_dir_all(dir).map_err(err(dir))?;
    // Unique per call: several threads or processes may build at once.
    static BUILDS: AtomicU64 = AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".build-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = build_root(host, &tmp.join("root"))
        .and_then(|()| build_usr(host, &tmp.join("usr")))
        .and_then(|()| fs::write(tmp.join(COMPLETE), FORMAT));
    if let Err(source) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(HostImageError::Build { path: tmp, source });
    }
    match fs::rename(&tmp, version) {
        Ok(()) => Ok(()),
        // Someone else finished first.
        Err(_) if version.join(COMPLETE).exists() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(source) => Err(err(version)(source)),
    }
}

fn build_root(host: &Path, root: &Path) -> io::Result<()> {
    fs::create_dir_all(root)?;
    fs::set_permissions(root, Permissions::from_mode(0o755))?;
    for (path, mode) in DIRS {
        fs::create_dir_all(root.join(path))?;
        fs::set_permissions(root.join(path), Permissions::from_mode(*mode))?;
    }
    for name in USR_LINKS {
        if let Ok(target) = fs::read_link(host.join(name)) {
            if target
                .strip_prefix("/")
                .unwrap_or(&target)
                .starts_with("usr")
            {
                symlink(&target, root.join(name))?;
            }
        }
    }
    for (link, target) in SYMLINKS {
        symlink(target, root.join(link))?;
    }
    for name in etc_entries(host)? {
        copy_tree(&host.join("etc").join(&name), &root.join("etc").join(&name))?;
    }
    for path in MOUNT_POINTS {
        if fs::symlink_metadata(root.join(path)).is_err() {
            fs::write(root.join(path), "")?;
        }
    }
    Ok(())
}

/// Names under the host's `/etc` to copy.
fn etc_entries(host: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = ETC.iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = fs::read_dir(host.join("etc")) {
        let python = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned());
        names.extend(python.filter(|n| n.starts_with("python")));
    }
    names.retain(|n| fs::symlink_metadata(host.join("etc").join(n)).is_ok());
    Ok(names)
}

/// Copies files, directories and symlinks (as symlinks), skipping secrets
/// and special files. Ownership becomes root's.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        symlink(fs::read_link(src)?, dst)
    } else if kind.is_dir() {
        fs::create_dir(dst)?;
        for entry in fs::read_dir(src)?.flatten() {
            let name = entry.file_name();
            if !SECRETS.iter().any(|s| name == *s) {
                copy_tree(&entry.path(), &dst.join(&name))?;
            }
        }
        fs::set_permissions(dst, Permissions::from_mode(meta.mode() & 0o7777))
    } else if kind.is_file() {
        fs::copy(src, dst).map(|_| ())
    } else {
        Ok(())
    }
}

/// The extra `/usr` layer: `python` when the host only has `python3`.
fn build_usr(host: &Path, usr: &Path) -> io::Result<()> {
    fs::create_dir_all(usr)?;
    fs::set_permissions(usr, Permissions::from_mode(0o755))?;
    if needs_python_alias(host) {
        let bin = usr.join("local/bin");
        fs::create_dir_all(&bin)?;
        for dir in [usr.join("local"), bin.clone()] {
            fs::set_permissions(dir, Permissions::from_mode(0o755))?;
        }
        symlink("/usr/bin/python3", bin.join("python"))?;
    }
    Ok(())
}

fn needs_python_alias(host: &Path) -> bool {
    let exists = |p: &str| fs::symlink_metadata(host.join(p)).is_ok();
    exists("usr/bin/python3") && !exists("usr/bin/python") && !exists("usr/local/bin/python")
}

/// Names the state of every host file the skeleton depends on (type, size,
/// mtime, link target), so a change on the host yields a new skeleton.
fn fingerprint(host: &Path) -> String {
    let mut hash = Fnv::new();
    hash.add(FORMAT.as_bytes());
    let etc = ETC.iter().map(|n| format!("etc/{n}"));
    let top = USR_LINKS.iter().map(|n| n.to_string());
    let python = ["usr/bin/python", "usr/bin/python3", "usr/local/bin/python"].map(String::from);
    // `/etc/python*` entries by name (the mtime of `/etc` itself changes too
    // often to be part of the fingerprint).
    let etc_python = etc_entries(host).unwrap_or_default().into_iter();
    let etc_python = etc_python
        .filter(|n| n.starts_with("python"))
        .map(|n| format!("etc/{n}"));
    for rel in etc.chain(top).chain(python).chain(etc_python) {
        hash.add(rel.as_bytes());
        let path = host.join(&rel);
        if let Ok(meta) = fs::symlink_metadata(&path) {
            hash.add(&meta.mode().to_le_bytes());
            hash.add(&meta.size().to_le_bytes());
            hash.add(&meta.mtime().to_le_bytes());
            hash.add(&meta.mtime_nsec().to_le_bytes());
        }
        if let Ok(target) = fs::read_link(&path) {
            hash.add(target.as_os_str().as_encoded_bytes());
        }
    }
    format!("{:016x}", hash.0)
}

/// FNV-1a, 64 bit: stable across Rust releases, unlike `DefaultHasher`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator, so ("ab", "c") and ("a", "bc") differ.
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3) ^ 0xff;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake merged-/usr host.
    fn fake_host() -> tempfile::TempDir {
        let host = tempfile::tempdir().unwrap();
        let h = host.path();
        for dir in [
            "usr/bin",
            "usr/lib",
            "etc/ssl/certs",
            "etc/ssl/private",
            "etc/alternatives",
            "etc/python3.11",
            "tmp",
            "root",
            "work",
        ] {
            fs::create_dir_all(h.join(dir)).unwrap();
        }
        symlink("usr/bin", h.join("bin")).unwrap();
        symlink("usr/lib", h.join("lib")).unwrap();
        fs::write(h.join("usr/bin/python3"), "").unwrap();
        fs::write(h.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        fs::write(h.join("etc/shadow"), "root:secret:::::::\n").unwrap();
        fs::write(h.join("etc/ssl/private/key.pem"), "KEY").unwrap();
        fs::write(h.join("etc/ssl/certs/ca.pem"), "CERT").unwrap();
        fs::write(h.join("etc/python3.11/sitecustomize.py"), "").unwrap();
        symlink("/usr/bin/vim.basic", h.join("etc/alternatives/vi")).unwrap();
        fs::write(h.join("tmp/marker"), "").unwrap();
        host
    }

    #[test]
    fn skeleton_mirrors_what_a_shell_needs_and_nothing_else() {
        let host = fake_host();
        let dir = tempfile::tempdir().unwrap();
        let image = prepare_from(host.path(), dir.path()).unwrap();
        let root = &image.layers[0];
        assert_eq!(
            fs::read_link(root.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert!(
            fs::symlink_metadata(root.join("sbin")).is_err(),
            "absent on the host"
        );
        assert!(root.join("etc/passwd").is_file());
        assert!(root.join("etc/ssl/certs/ca.pem").is_file());
        assert!(root.join("etc/python3.11/sitecustomize.py").is_file());
        assert_eq!(
            fs::read_link(root.join("etc/alternatives/vi")).unwrap(),
            Path::new("/usr/bin/vim.basic")
        );
        assert!(!root.join("etc/shadow").exists());
        assert!(!root.join("etc/ssl/private").exists());
        assert!(!root.join("tmp/marker").exists());
        assert!(!root.join("work").exists());
        let tmp_mode = fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(tmp_mode, 0o1777);
        assert!(root.join("etc/hosts").is_file());
    }

    #[test]
    fn usr_is_a_read_only_overlay_with_a_python_alias() {
        let host = fake_host();
        let dir = tempfile::tempdir().unwrap();
        let image = prepare_from(host.path(), dir.path()).unwrap();
        let MountSpec::ReadOnlyOverlay {
            layers,
            destination,
        } = &image.mounts[0]
        else {
            panic!("expected an overlay, got {:?}", image.mounts[0]);
        };
        assert_eq!(destination, "/usr");
        assert_eq!(layers[1], host.path().join("usr"));
        let alias = layers[0].join("local/bin/python");
        assert_eq!(fs::read_link(alias).unwrap(), Path::new("/usr/bin/python3"));
        assert_eq!(image.mounts.len(), 1, "merged /usr needs no other binds");
    }

    #[test]
    fn is_built_once_and_rebuilt_when_the_host_changes() {
        let host = fake_host();
        let dir = tempfile::tempdir().unwrap();
        let first = prepare_from(host.path(), dir.path()).unwrap();
        assert_eq!(prepare_from(host.path(), dir.path()).unwrap(), first);
        fs::write(host.path().join("usr/bin/python"), "").unwrap();
        let second = prepare_from(host.path(), dir.path()).unwrap();
        assert_ne!(second.layers, first.layers);
        assert!(
            first.layers[0].exists(),
            "old skeleton kept for running sandboxes"
        );
    }

    #[test]
    fn concurrent_builds_agree_and_are_complete() {
        let host = fake_host();
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<HostImage> = std::thread::scope(|s| {
            let builds: Vec<_> = (0..4)
                .map(|_| s.spawn(|| prepare_from(host.path(), dir.path())))
                .collect();
            builds
                .into_iter()
                .map(|b| b.join().unwrap().unwrap())
                .collect()
        });
        assert!(images.windows(2).all(|w| w[0] == w[1]));
        let root = &images[0].layers[0];
        assert!(fs::read_link(root.join("etc/alternatives/vi")).is_ok());
        let leftovers = fs::read_dir(dir.path()).unwrap().flatten();
        let names: Vec<_> = leftovers.map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1, "temporary builds left: {names:?}");
    }

    #[test]
    fn split_usr_hosts_get_read_only_binds() {
        let host = fake_host();
        fs::create_dir(host.path().join("sbin")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let image = prepare_from(host.path(), dir.path()).unwrap();
        let expected = MountSpec::Bind {
            source: host.path().join("sbin"),
            destination: "/sbin".into(),
            readonly: true,
        };
        assert!(image.mounts.contains(&expected));
    }
}
