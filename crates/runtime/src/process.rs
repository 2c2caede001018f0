//! Host processes by pid and start time: the identity of a sandbox's init.
//!
//! A pid alone can be recycled, so an init is always named by its pid *and*
//! its start time (field 22 of `/proc/<pid>/stat`). Signals go through a
//! pidfd opened after the start time was checked, so they cannot reach a
//! process that took over the pid.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
    pub fn read(pid: i32) -> Option<Self> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(&text)
    }

    /// Parses the text of a stat file. The command name (field 2) may hold
    /// spaces and parentheses, so fields are counted from the last `)`.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        // `rest` starts at field 3 (state); start time is field 22.
        let start_time = fields.nth(22 - 4)?.parse().ok()?;
        Some(Self { state, start_time })
    }

    /// Still running: neither a zombie nor dead.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// True when `pid` is alive and is the process that started at `start_time`.
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    ProcStat::read(pid).is_some_and(|s| s.start_time == start_time && s.is_alive())
}

/// A pidfd: a handle on one process that survives pid reuse.
#[derive(Debug)]
pub struct PidFd {
    pid: i32,
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd for `pid`.
    pub fn open(pid: i32) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
        // it touches no memory of ours.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        let raw = i32::try_from(ret).map_err(|_| io::Error::other("pidfd out of range"))?;
        // SAFETY: the kernel just returned this fd to us and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { pid, fd })
    }

    /// Opens a pidfd for `pid` only if it is the process started at
    /// `start_time`. The check happens after the open, so the handle names
    /// the checked process even if the pid is recycled a moment later.
    pub fn open_checked(pid: i32, start_time: u64) -> Option<Self> {
        let pidfd = Self::open(pid).ok()?;
        is_alive(pid, start_time).then_some(pidfd)
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends SIGKILL. A process that already exited is not an error.
    pub fn kill(&self) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let null = std::ptr::null::<libc::siginfo_t>();
        // SAFETY: pidfd_send_signal reads only its scalar arguments; a null
        // siginfo is allowed and means "as if sent by kill(2)".
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, null, 0) };
        match ret {
            0 => Ok(()),
            _ => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Waits until the process has exited (zombie or reaped), up to `timeout`.
    /// Returns whether it exited.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => return true,
                Ok(_) => return false,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Reaps the process if it is our child and has exited; harmless
    /// otherwise.
    pub fn reap(&self) {
        let _ = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG));
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Kills the process named by `pid` and `start_time` and waits for it to
/// exit. Returns whether it is gone (true also when it was never there).
pub fn kill_and_wait(pid: i32, start_time: u64, timeout: Duration) -> bool {
    let Some(pidfd) = PidFd::open_checked(pid, start_time) else {
        return true;
    };
    if pidfd.kill().is_err() {
        return false;
    }
    let exited = pidfd.wait_exit(timeout);
    pidfd.reap();
    exited
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let text = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615";
        let stat = ProcStat::parse(text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_time, 98765);
        assert!(stat.is_alive());
    }

    #[test]
    fn zombies_are_not_alive() {
        let text = "7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0";
        assert!(!ProcStat::parse(text).unwrap().is_alive());
    }

    #[test]
    fn reads_our_own_start_time() {
        let me = i32::try_from(std::process::id()).unwrap();
        let stat = ProcStat::read(me).unwrap();
        assert!(is_alive(me, stat.start_time));
        assert!(!is_alive(me, stat.start_time + 1));
    }
}
