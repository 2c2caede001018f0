//! User namespaces for sandboxes, and idmapped mounts through them.
//!
//! A sandbox with a user namespace sees uids and gids `0..IDS_PER_SANDBOX`,
//! which are host ids `base..base + IDS_PER_SANDBOX`. Files keep their
//! on-disk owners (root-owned images, the writable layer, volumes): the
//! mounts the sandbox sees are idmapped through the same mapping, so disk
//! uid 0 shows as the sandbox's root, with no per-sandbox copy or chown.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, read, write, ForkResult};
use thiserror::Error;

/// Host ids one sandbox's user namespace maps (its uids and gids `0..` this).
pub const IDS_PER_SANDBOX: u32 = 65_536;
/// The default first host id of slot 0.
pub const DEFAULT_BASE: u32 = 100_000;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[derive(Debug, Error)]
pub enum IdmapError {
    #[error("cannot create a user namespace")]
    UserNs(#[source] io::Error),
    #[error("cannot give {path} an idmapped mount")]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("user id range of slot {slot} from base {base} is beyond the 32-bit ids")]
    Range { base: u32, slot: u32 },
}

/// The first host id of network slot `slot`'s range, from `base`.
pub fn slot_base(base: u32, slot: u32) -> Result<u32, IdmapError> {
    slot.checked_mul(IDS_PER_SANDBOX)
        .and_then(|offset| offset.checked_add(base))
        .filter(|first| first.checked_add(IDS_PER_SANDBOX - 1).is_some())
        .ok_or(IdmapError::Range { base, slot })
}

/// A user namespace mapping `0..IDS_PER_SANDBOX` to host ids from `base`,
/// held open by a file descriptor (its creating process is gone).
#[derive(Debug)]
pub struct UserNs {
    fd: OwnedFd,
    base: u32,
}

impl UserNs {
    /// Must be called from a single-threaded process (it forks).
    pub fn new(base: u32) -> Result<Self, IdmapError> {
        let err = |e: nix::Error| IdmapError::UserNs(e.into());
        let (ready_r, ready_w) = pipe().map_err(err)?;
        let (hold_r, hold_w) = pipe().map_err(err)?;
        // SAFETY: the runtime helper is single-threaded; the child only
        // makes system calls and leaves with `_exit`.
        match unsafe { fork() }.map_err(err)? {
            ForkResult::Child => {
                drop(ready_r);
                drop(hold_w);
                let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
                let _ = write(&ready_w, &[u8::from(ok)]);
                let mut byte = [0u8; 1];
                let _ = read(hold_r.as_raw_fd(), &mut byte);
                // SAFETY: ends the forked child without running the
                // parent's atexit handlers or destructors.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                drop(ready_w);
                drop(hold_r);
                let made = map_child(child.as_raw(), base, &ready_r);
                drop(hold_w);
                let _ = waitpid(child, None);
                made.map(|fd| Self { fd, base }).map_err(IdmapError::UserNs)
            }
        }
    }

    /// Clones the mount at `path` with this namespace's idmapping and puts
    /// the clone in its place.
    pub fn remount(&self, path: &Path) -> Result<(), IdmapError> {
        let mount_err = |source| IdmapError::Mount {
            path: path.to_path_buf(),
            source,
        };
        let clone = self.idmapped_clone(path).map_err(mount_err)?;
        umount2(path, MntFlags::MNT_DETACH).map_err(|e| mount_err(e.into()))?;
        move_mount(&clone, path).map_err(mount_err)
    }

    /// Binds `source` (a directory or a file) at `target`, created if
    /// missing, idmapped.
    pub fn bind(&self, source: &Path, target: &Path) -> Result<(), IdmapError> {
        let mount_err = |source| IdmapError::Mount {
            path: target.to_path_buf(),
            source,
        };
        if !target.exists() {
            match source.is_dir() {
                true => fs::create_dir_all(target),
                false => File::create(target).map(drop),
            }
            .map_err(mount_err)?;
        }
        let clone = self.idmapped_clone(source).map_err(mount_err)?;
        move_mount(&clone, target).map_err(mount_err)
    }

    /// A detached, idmapped copy of the mount tree at `path` (a directory
    /// need not be a mount point): usable as an overlay layer through
    /// `/proc/self/fd/<n>`.
    pub fn idmapped_clone(&self, path: &Path) -> io::Result<OwnedFd> {
        let clone = open_tree_clone(path)?;
        set_idmap(&clone, &self.fd)?;
        Ok(clone)
    }

    /// Runs `f` with this process's file system ids set to the namespace's
    /// root (capabilities kept): what `f` creates through an idmapped mount
    /// belongs to root inside, and an overlay mounted by `f` does its
    /// copy-ups as that root. The ids are put back after.
    pub fn as_owner<T>(&self, f: impl FnOnce() -> T) -> T {
        // SAFETY: prctl with integer arguments only reads the bits.
        let saved = unsafe { libc::prctl(PR_GET_SECUREBITS) };
        let keep = saved.max(0) as libc::c_ulong | SECBIT_NO_SETUID_FIXUP;
        // SAFETY: prctl and setfsuid/setfsgid with integer arguments only
        // change this (single-threaded) process's credentials, undone below.
        unsafe {
            libc::prctl(PR_SET_SECUREBITS, keep);
            libc::setfsgid(self.base);
            libc::setfsuid(self.base);
        }
        let result = f();
        // SAFETY: as above, restoring the ids and bits saved.
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
            libc::prctl(PR_SET_SECUREBITS, saved.max(0) as libc::c_ulong);
        }
        result
    }
}

const PR_GET_SECUREBITS: libc::c_int = 27;
const PR_SET_SECUREBITS: libc::c_int = 28;
/// File system id changes keep the capabilities.
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;

/// Waits for the child to unshare, writes its maps and opens its namespace.
fn map_child(pid: i32, base: u32, ready: &OwnedFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let n = read(ready.as_raw_fd(), &mut byte)?;
    if n != 1 || byte[0] != 1 {
        return Err(io::Error::other("unshare(CLONE_NEWUSER) failed"));
    }
    let map = format!("0 {base} {IDS_PER_SANDBOX}\n");
    fs::write(format!("/proc/{pid}/uid_map"), &map)?;
    fs::write(format!("/proc/{pid}/gid_map"), &map)?;
    Ok(File::open(format!("/proc/{pid}/ns/user"))?.into())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn open_tree_clone(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn set_idmap(mount: &OwnedFd, userns: &OwnedFd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: `attr` outlives the call and its size is passed; the path is
    // an empty NUL-terminated string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn move_mount(mount: &OwnedFd, target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: both paths are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Whether sandboxes can have user namespaces here: one can be made, and a
/// directory under `dir` and an overlay can be idmapped. Run by the helper
/// (single-threaded, in its own mount namespace) at start.
pub fn probe(dir: &Path) -> Result<(), IdmapError> {
    let ns = UserNs::new(DEFAULT_BASE)?;
    let probe = dir.join("idmap-probe");
    let err = |source| IdmapError::Mount {
        path: probe.clone(),
        source,
    };
    for sub in ["lower", "upper", "work", "merged"] {
        fs::create_dir_all(probe.join(sub)).map_err(err)?;
    }
    let merged = probe.join("merged");
    let upper = crate::overlay::Upper {
        upper: &probe.join("upper"),
        work: &probe.join("work"),
    };
    let layers = [probe.join("lower")];
    let mounted = crate::overlay::mount_at(&merged, &layers, Some(upper), Some(&ns));
    let written = mounted
        .map_err(|e| err(io::Error::other(crate::error::chain(&e))))
        .and_then(|()| {
            ns.as_owner(|| fs::create_dir(merged.join("made")))
                .map_err(err)
        });
    let _ = umount2(&merged, MntFlags::MNT_DETACH);
    let _ = fs::remove_dir_all(&probe);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_disjoint_ranges() {
        assert_eq!(slot_base(100_000, 0).unwrap(), 100_000);
        assert_eq!(slot_base(100_000, 1).unwrap(), 165_536);
        assert_eq!(slot_base(100_000, 2).unwrap(), 231_072);
        assert!(slot_base(100_000, 65_535).is_err());
        assert!(slot_base(u32::MAX - 10, 0).is_err());
    }
}

#[cfg(test)]
mod probe_tests {
    #[test]
    #[ignore = "needs root"]
    fn probe_succeeds_here() {
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = super::probe(dir.path()) {
            panic!("{}", crate::error::chain(&e));
        }
    }
}
