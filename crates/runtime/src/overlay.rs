//! Overlay mounts made in the helper's private mount namespace: the
//! sandbox root (layers under a writable upper) and read-only overlays of
//! host directories.
//!
//! The writable overlay is mounted `volatile`: overlayfs then never syncs
//! the upper filesystem. Without it, every unmount (every stop) syncs the
//! whole host filesystem holding the upper dir (measured 1-120 ms here,
//! unbounded under write load), and a `sync` or `fsync` inside a sandbox
//! forces writeback on the host. The price: writes of a sandbox are only as
//! durable as the host's normal writeback, so a host crash can lose the last
//! seconds of them. A volatile mount leaves `work/work/incompat/volatile`
//! behind and overlayfs refuses to mount that work dir again until it is
//! removed; [`mount_at`] removes it.
//!
//! The kernel shows an overlay's options, `lowerdir=` and `upperdir=`
//! included, in every `/proc/<pid>/mountinfo` that lists the mount, the
//! sandbox's own among them. So the layers are named to the kernel as
//! `/proc/self/fd/<n>` of directories the helper opened just before: the
//! mount table then reveals no host path.
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use thiserror::Error;

use crate::idmap::UserNs;

/// The kernel reads overlay options from one page, NUL included.
const MAX_OPTIONS: usize = 4095;

#[derive(Debug, Error)]
pub enum OverlayError {
    #[error("an overlay needs at least {0} lower layer(s)")]
    TooFewLayers(usize),
    #[error("overlay path {0:?} must be absolute UTF-8 without newlines")]
    BadPath(PathBuf),
    #[error("overlay options are longer than one page ({0} bytes)")]
    TooLong(usize),
    #[error("failed to open overlay layer {path:?}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to mount overlay at {target:?}")]
    Mount {
        target: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("failed to unmount {target:?}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: Errno,
    },
}

/// The writable part of an overlay.
#[derive(Debug, Clone, Copy)]
pub struct Upper<'a> {
    pub upper: &'a Path,
    pub work: &'a Path,
}

/// Mount options for `lower` (topmost first) and, for a writable overlay,
/// its upper and work directories.
pub fn options(lower: &[PathBuf], upper: Option<Upper<'_>>) -> Result<String, OverlayError> {
    let needed = if upper.is_some() { 1 } else { 2 };
    if lower.len() < needed {
        return Err(OverlayError::TooFewLayers(needed));
    }
    let mut text = format!("lowerdir={}", join(lower)?);
    if let Some(u) = upper {
        text.push_str(&format!(
            ",upperdir={},workdir={},volatile",
            checked(u.upper)?,
            checked(u.work)?
        ));
    }
    // Without an index the kernel only warns if an upper dir is still held by
    // a dying mount namespace of the previous run, instead of refusing.
    text.push_str(",index=off");
    match text.len() {
        n if n > MAX_OPTIONS => Err(OverlayError::TooLong(n)),
        _ => Ok(text),
    }
}

fn join(paths: &[PathBuf]) -> Result<String, OverlayError> {
    let parts = paths
        .iter()
        .map(|p| checked(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(":"))
}

/// The path, with the option separators (`,` and, in `lowerdir`, `:`) and
/// the escape character backslash-escaped, as overlayfs expects. Layer
/// directories named after digests (`sha256:...`) are common.
fn checked(path: &Path) -> Result<String, OverlayError> {
    let bad = || OverlayError::BadPath(path.to_path_buf());
    let text = path.to_str().ok_or_else(bad)?;
    if text.contains('\n') || !path.is_absolute() {
        return Err(bad());
    }
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | ':' | ',') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Ok(escaped)
}

/// Mounts an overlay at `target`; read-only when it has no upper.
///
/// With `idmap`, every layer is an idmapped clone (see [`UserNs`]): files
/// owned by disk id `n` show as the namespace's host id for `n`, and the
/// overlay is mounted with the namespace root's file system ids, so what
/// it creates in the upper is stored as root's, unshifted. The upper and
/// work directories must then be siblings (one clone holds both).
pub fn mount_at(
    target: &Path,
    lower: &[PathBuf],
    upper: Option<Upper<'_>>,
    idmap: Option<&UserNs>,
) -> Result<(), OverlayError> {
    if let Some(u) = upper {
        let _ = fs::remove_dir_all(u.work.join("work/incompat"));
    }
    // Held open until the mount is made.
    let lower_fds = lower
        .iter()
        .map(|p| open_layer(p, idmap))
        .collect::<Result<Vec<_>, _>>()?;
    let lower_names: Vec<PathBuf> = lower_fds.iter().map(fd_path).collect();
    let (_upper_fds, upper_names) = match (upper, idmap) {
        (Some(u), None) => {
            let (upper, work) = (open_dir(u.upper)?, open_dir(u.work)?);
            let names = (fd_path(&upper), fd_path(&work));
            (vec![upper, work], Some(names))
        }
        (Some(u), Some(ns)) => {
            let (parent, upper_name, work_name) = siblings(u)?;
            let clone = open_layer(parent, Some(ns))?;
            let base = fd_path(&clone);
            let names = (base.join(upper_name), base.join(work_name));
            (vec![clone], Some(names))
        }
        (None, _) => (vec![], None),
    };
    let named_upper = upper_names
        .as_ref()
        .map(|(upper, work)| Upper { upper, work });
    let data = options(&lower_names, named_upper)?;
    let flags = match upper {
        Some(_) => MsFlags::empty(),
        None => MsFlags::MS_RDONLY,
    };
    let make = || {
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(data.as_str()),
        )
    };
    let made = match (idmap, upper) {
        (Some(ns), Some(_)) => ns.as_owner(make),
        _ => make(),
    };
    made.map_err(|source| OverlayError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

/// The common parent of the upper and work directories, and their names.
fn siblings<'a>(u: Upper<'a>) -> Result<(&'a Path, &'a OsStr, &'a OsStr), OverlayError> {
    let bad = || OverlayError::BadPath(u.work.to_path_buf());
    let parent = u.upper.parent().ok_or_else(bad)?;
    if u.work.parent() != Some(parent) {
        return Err(bad());
    }
    Ok((
        parent,
        u.upper.file_name().ok_or_else(bad)?,
        u.work.file_name().ok_or_else(bad)?,
    ))
}

fn open_layer(path: &Path, idmap: Option<&UserNs>) -> Result<OwnedFd, OverlayError> {
    let opened = match idmap {
        Some(ns) => ns.idmapped_clone(path),
        None => return open_dir(path),
    };
    opened.map_err(|source| OverlayError::Open {
        path: path.to_path_buf(),
        source,
    })
}

fn open_dir(path: &Path) -> Result<OwnedFd, OverlayError> {
    File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|source| OverlayError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// How this process names `fd` to the kernel: `/proc/self/fd/<n>`.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Detaches whatever is mounted at `target`; nothing mounted is fine.
pub fn unmount(target: &Path) -> Result<(), OverlayError> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(source) => Err(OverlayError::Unmount {
            target: target.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn writable_overlay_options() {
        let upper = Upper {
            upper: Path::new("/s/upper"),
            work: Path::new("/s/work"),
        };
        let text = options(&paths(&["/l/top", "/l/base"]), Some(upper)).unwrap();
        assert_eq!(
            text,
            "lowerdir=/l/top:/l/base,upperdir=/s/upper,workdir=/s/work,volatile,index=off"
        );
    }

    #[test]
    fn read_only_overlay_needs_two_layers() {
        assert!(matches!(
            options(&paths(&["/usr"]), None),
            Err(OverlayError::TooFewLayers(2))
        ));
        let text = options(&paths(&["/extra", "/usr"]), None).unwrap();
        assert_eq!(text, "lowerdir=/extra:/usr,index=off");
    }

    #[test]
    fn escapes_separators_in_paths() {
        let text = options(&paths(&["/l/sha256:ab,c", "/l/back\\slash"]), None).unwrap();
        assert_eq!(
            text,
            "lowerdir=/l/sha256\\:ab\\,c:/l/back\\\\slash,index=off"
        );
    }

    #[test]
    fn rejects_paths_that_would_break_the_option_string() {
        for bad in ["/a\nb", "relative"] {
            let err = options(&paths(&[bad, "/x"]), None).unwrap_err();
            assert!(matches!(err, OverlayError::BadPath(_)), "{bad}");
        }
        let long: Vec<PathBuf> = (0..400)
            .map(|i| PathBuf::from(format!("/layer/{i:06}")))
            .collect();
        assert!(matches!(
            options(&long, None),
            Err(OverlayError::TooLong(_))
        ));
    }
}
