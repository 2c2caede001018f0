//! Mount namespaces made for one job and gone with it.
//!
//! A sandbox's helper-side mounts (its disk, root overlay, `/etc` tmpfs,
//! exposed-file overlays, idmapped binds) are made in a namespace of the
//! start's own ([`Detour::new_namespace`]): a copy of the helpers' shared
//! one, from which the container's namespace is then cloned. The helper
//! comes back as soon as the container runs, and the kernel drops the
//! start's namespace, detaching its mounts (as `umount -l` would); the
//! container holds its own copies of what it needs, the disk's file system
//! among them, until it exits.
//!
//! So the helpers' namespace holds the host's mounts and nothing of any
//! sandbox: the mount table a start copies, and that every `mountinfo`
//! reader in a start walks (libcontainer, libcgroups once per cgroup
//! controller, `mount`), does not grow with the sandboxes running. Before,
//! it held ~13 mounts per sandbox, and a start with 1,200 running spent
//! most of its time formatting `mountinfo`.
//!
//! What needs a running sandbox's mounts from outside (a snapshot capture
//! reading the disk's `upper`) mounts them again in a namespace of its own
//! ([`run_private`]); the disk's loop device is reused, so it is the same
//! file system.

use std::fs::File;
use std::io;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MountNsError {
    #[error("failed to open this thread's mount namespace")]
    Open(#[source] io::Error),
    #[error("failed to create a mount namespace")]
    Create(#[source] nix::Error),
}

/// This thread's mount namespace.
const OWN: &str = "/proc/thread-self/ns/mnt";

/// This thread, moved into a namespace of its own until dropped.
#[must_use = "dropping a Detour comes back at once"]
pub struct Detour {
    home: File,
}

impl Detour {
    /// Moves this thread into a new mount namespace, a copy of the one it is
    /// in. Its mounts are private copies when the namespace it copies is
    /// rprivate (the helpers' is), so what is mounted there shows nowhere
    /// else.
    pub fn new_namespace() -> Result<Self, MountNsError> {
        let home = File::open(OWN).map_err(MountNsError::Open)?;
        unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS).map_err(MountNsError::Create)?;
        Ok(Self { home })
    }
}

impl Drop for Detour {
    fn drop(&mut self) {
        if let Err(err) = setns(&self.home, CloneFlags::CLONE_NEWNS) {
            // Going on would make every later mount in the wrong namespace.
            tracing::error!(error = %err, "cannot return to the helpers' mount namespace");
            std::process::abort();
        }
    }
}

/// Runs `f` on a new thread, in a new mount namespace with `/` rprivate
/// (nothing mounted there propagates anywhere); the namespace and its
/// mounts go with the thread. For multithreaded callers: no other thread
/// moves.
pub fn run_private<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, MountNsError> {
    std::thread::scope(|scope| {
        let inside = scope.spawn(|| {
            unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
                .map_err(MountNsError::Create)?;
            let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
            mount(None::<&str>, "/", None::<&str>, private, None::<&str>)
                .map_err(MountNsError::Create)?;
            Ok(f())
        });
        inside
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
