//! Notice when a sandbox's init exits without being asked to.
//!
//! A `pidfd` becomes readable when its process exits, whoever its parent is
//! (the runtime helper reaps the inits), so the server learns about a dead
//! agent at once instead of at the next request.

use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Open a pidfd for `pid`.
fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no
    // memory is passed to the kernel.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("pidfd out of range"))?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Resolve once the process `pid` has exited. Returns immediately if it is
/// already gone.
pub async fn exited(pid: i32) {
    let fd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => return,
    };
    // SAFETY: `fd` is an OwnedFd moved into the AsyncFd, so it stays open and
    // unchanged for the AsyncFd's whole life.
    let Ok(fd) = (unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }) else {
        return;
    };
    let _ = fd.readable().await;
}

/// Clock-tick start time of `pid` (field 22 of `/proc/pid/stat`).
#[cfg(test)]
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        assert!(start_time(pid).is_some());
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), exited(pid)).await;
        assert!(waited.is_ok());
        child.wait().unwrap();
        assert!(start_time(pid).is_none());
    }
}
