//! Running code inside another network namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sched::{setns, CloneFlags};

/// Runs `f` with the calling thread inside the network namespace `target`,
/// then moves the thread back. Sockets `f` creates stay bound to `target`.
pub fn within<T>(target: BorrowedFd<'_>, f: impl FnOnce() -> T) -> io::Result<T> {
    let own = File::open("/proc/thread-self/ns/net")?;
    setns(target, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let out = f();
    if let Err(err) = setns(own.as_fd(), CloneFlags::CLONE_NEWNET) {
        // Every later veth would be created in a sandbox: do not go on.
        tracing::error!(%err, "cannot return to the host network namespace");
        std::process::abort();
    }
    Ok(out)
}
