//! A network namespace made before the sandbox, for runsc to join.
//!
//! libcontainer creates the namespace with the init and the veth is wired
//! into it while the init is paused; runsc instead reads the namespace's
//! interfaces when it boots, so the namespace must exist and be wired
//! first. A forked child ([`Holder`]) unshares one and waits; the spec names
//! it as `/proc/<holder>/ns/net`; once the sandbox joined it, the holder is
//! killed (the sandbox keeps the namespace alive).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

/// How long the holder may take to unshare.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A child process alone in a new network namespace; killed and reaped on
/// drop.
#[derive(Debug)]
pub struct Holder {
    pid: Pid,
}

impl Holder {
    /// Forks the holder and waits until its namespace exists (with IPv6
    /// off, as in every sandbox).
    pub fn new() -> io::Result<Self> {
        let (mut parent_end, mut child_end) = UnixStream::pair()?;
        // SAFETY: the helper is single-threaded, so the child may run any
        // code; it only unshares, writes a byte and waits to be killed.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => {
                drop(parent_end);
                let status = match unshare(CloneFlags::CLONE_NEWNET) {
                    Ok(()) => {
                        disable_ipv6();
                        b'1'
                    }
                    Err(_) => b'0',
                };
                let _ = child_end.write_all(&[status]);
                loop {
                    // Wait for SIGKILL.
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            ForkResult::Parent { child } => {
                drop(child_end);
                let holder = Self { pid: child };
                parent_end.set_read_timeout(Some(READY_TIMEOUT))?;
                let mut status = [0u8];
                parent_end.read_exact(&mut status)?;
                match status[0] {
                    b'1' => Ok(holder),
                    _ => Err(io::Error::other(
                        "could not create a network namespace for the sandbox",
                    )),
                }
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The namespace as a path another process can join.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

/// Switches IPv6 off in the calling process's network namespace (the
/// firewall filters IPv4 only); a kernel without IPv6 has nothing to switch.
fn disable_ipv6() {
    for key in ["all", "default"] {
        let path = format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6");
        let _ = fs::write(path, "1");
    }
}
