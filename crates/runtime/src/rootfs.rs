//! What every sandbox root needs besides its image: the directories the
//! runtime and the agent rely on, and per-sandbox `/etc` files.
//!
//! Image layers are untrusted (an image may make `/tmp` a symlink to `/etc`),
//! so paths inside the mounted root are resolved with `pathrs`, which keeps
//! every lookup, symlinks included, inside the root.

use std::fs::{self, Permissions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{fstat, SFlag};
use pathrs::flags::OpenFlags;
use pathrs::Root;
use thiserror::Error;

use crate::network::NetPlan;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("failed to create {path} in the sandbox root")]
    Create {
        path: &'static str,
        #[source]
        source: pathrs::error::Error,
    },
    #[error("failed to set the mode of {path} in the sandbox root")]
    Mode {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A directory the root must have.
struct Dir {
    path: &'static str,
    mode: u32,
    /// Fix the mode of an existing directory too.
    enforce: bool,
}

/// `/tmp` is a plain directory of the root (not a tmpfs), so its files live
/// in the writable layer and survive a stop.
const DIRS: &[Dir] = &[
    Dir {
        path: "tmp",
        mode: 0o1777,
        enforce: true,
    },
    Dir {
        path: "home/user",
        mode: 0o755,
        enforce: false,
    },
    Dir {
        path: "root",
        mode: 0o700,
        enforce: false,
    },
    Dir {
        path: "etc",
        mode: 0o755,
        enforce: false,
    },
    Dir {
        path: "proc",
        mode: 0o555,
        enforce: false,
    },
    Dir {
        path: "dev",
        mode: 0o755,
        enforce: false,
    },
    Dir {
        path: "sys",
        mode: 0o555,
        enforce: false,
    },
    Dir {
        path: ".sandpit",
        mode: 0o755,
        enforce: false,
    },
];

/// Creates the directories every sandbox root needs, and `workdir` (the
/// init's working directory) if the image lacks it.
pub fn prepare(root: &Path, workdir: &str) -> Result<(), RootfsError> {
    let root = Root::open(root).map_err(|source| RootfsError::Create { path: "/", source })?;
    DIRS.iter().try_for_each(|dir| ensure_dir(&root, dir))?;
    let workdir = workdir.trim_start_matches('/');
    if !workdir.is_empty() && root.resolve(workdir).is_err() {
        root.mkdir_all(workdir, &Permissions::from_mode(0o755))
            .map_err(|source| RootfsError::Create {
                path: "workdir",
                source,
            })?;
    }
    Ok(())
}

fn ensure_dir(root: &Root, dir: &Dir) -> Result<(), RootfsError> {
    let existing = root.resolve_nofollow(dir.path).ok();
    let created = existing.is_none();
    let handle = match existing {
        Some(handle) => handle,
        None => root
            .mkdir_all(dir.path, &Permissions::from_mode(0o755))
            .map_err(|source| RootfsError::Create {
                path: dir.path,
                source,
            })?,
    };
    let mode_error = |source| RootfsError::Mode {
        path: dir.path,
        source,
    };
    let stat = fstat(handle.as_fd().as_raw_fd()).map_err(|e| mode_error(e.into()))?;
    let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    let wrong_mode = stat.st_mode & 0o7777 != dir.mode;
    if is_dir && wrong_mode && (created || dir.enforce) {
        let flags = OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY;
        let file = handle
            .reopen(flags)
            .map_err(|e| mode_error(io::Error::other(e)))?;
        file.set_permissions(Permissions::from_mode(dir.mode))
            .map_err(mode_error)?;
    }
    Ok(())
}

/// Per-sandbox files bind-mounted over the image's `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

impl EtcFiles {
    /// Pairs of host file and path inside the sandbox.
    pub fn mounts(&self) -> [(&Path, &'static str); 3] {
        [
            (&self.hosts, "/etc/hosts"),
            (&self.hostname, "/etc/hostname"),
            (&self.resolv_conf, "/etc/resolv.conf"),
        ]
    }
}

/// Writes `hosts`, `hostname` and `resolv.conf` into `dir`.
pub fn write_etc(dir: &Path, hostname: &str, plan: &NetPlan) -> Result<EtcFiles, RootfsError> {
    let files = EtcFiles {
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
        resolv_conf: dir.join("resolv.conf"),
    };
    let write = |path: &Path, text: String| {
        fs::write(path, text).map_err(|source| RootfsError::Write {
            path: path.into(),
            source,
        })
    };
    fs::create_dir_all(dir).map_err(|source| RootfsError::Write {
        path: dir.into(),
        source,
    })?;
    write(&files.hosts, hosts(hostname))?;
    write(&files.hostname, format!("{hostname}\n"))?;
    write(&files.resolv_conf, resolv_conf(plan))?;
    Ok(files)
}

/// IPv4 only: the sandbox has no IPv6.
pub fn hosts(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n")
}

/// Points at the host end of the veth. Nothing answers there yet (the
/// firewall rejects it, so lookups fail at once rather than time out); a DNS
/// forwarder for the egress proxy will.
pub fn resolv_conf(plan: &NetPlan) -> String {
    format!("nameserver {}\noptions attempts:1\n", plan.host_ip)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_the_skeleton_with_exact_modes() {
        let root = tempfile::tempdir().unwrap();
        prepare(root.path(), "/srv/app").unwrap();
        assert_eq!(mode(&root.path().join("tmp")), 0o1777);
        assert_eq!(mode(&root.path().join("root")), 0o700);
        assert!(root.path().join("srv/app").is_dir());
        assert!(root.path().join("home/user").is_dir());
        assert!(root.path().join(".sandpit").is_dir());
    }

    #[test]
    fn fixes_tmp_but_respects_other_existing_dirs() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("tmp")).unwrap();
        fs::create_dir(root.path().join("root")).unwrap();
        fs::set_permissions(root.path().join("root"), Permissions::from_mode(0o750)).unwrap();
        prepare(root.path(), "/").unwrap();
        assert_eq!(mode(&root.path().join("tmp")), 0o1777);
        assert_eq!(mode(&root.path().join("root")), 0o750);
    }

    #[test]
    fn symlinks_in_the_image_do_not_reach_the_host() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::set_permissions(outside.path(), Permissions::from_mode(0o700)).unwrap();
        symlink(outside.path(), root.path().join("tmp")).unwrap();
        symlink(outside.path(), root.path().join("home")).unwrap();
        // Whether this errors (a symlink loop inside the root) or not, the
        // host must be untouched.
        let _ = prepare(root.path(), "/home/user");
        assert_eq!(
            mode(outside.path()),
            0o700,
            "host dir chmodded through a symlink"
        );
        assert!(
            !outside.path().join("user").exists(),
            "host dir created through a symlink"
        );
    }

    #[test]
    fn etc_files_name_the_sandbox_and_its_gateway() {
        let plan = NetPlan::for_slot(1).unwrap();
        assert_eq!(hosts("box"), "127.0.0.1\tlocalhost\n127.0.1.1\tbox\n");
        assert!(resolv_conf(&plan).starts_with("nameserver 10.200.0.5\n"));
    }
}
