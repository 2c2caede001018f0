//! The agent's socket relay for gVisor sandboxes.
//!
//! The server connects to the sandbox's agent socket on the host (bound by
//! the helper, mode 0600, as for every sandbox). runsc cannot hand that
//! listener to the agent, so a relay process accepts on it and forwards each
//! connection to the socket the agent bound inside the sandbox, which
//! `--host-uds=create` made a host socket in the helper-side tmpfs
//! `agent_dir`. That directory is writable from inside the sandbox, so the
//! relay never follows a path there: it opens `agent.sock` with
//! `O_PATH | O_NOFOLLOW` under the directory's fd, checks it is a socket and
//! connects through `/proc/self/fd/<n>`. Code in the sandbox can at most
//! point the relay at another socket inside its own directory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use super::AGENT_SOCKET_NAME;

/// How long the relay waits for the agent to bind its socket before it
/// gives up on one connection (the server's readiness probe retries).
const CONNECT_WAIT: Duration = Duration::from_millis(500);

/// Starts the relay as a daemon (reparented to the host's init) serving
/// `listener`; returns its pid.
pub fn spawn(listener: &UnixListener, agent_dir: &Path) -> io::Result<i32> {
    let dir = File::open(agent_dir)?;
    let (mut parent_end, mut child_end) = UnixStream::pair()?;
    // SAFETY: the helper is single-threaded, so the child may run any code.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Child => {
            drop(parent_end);
            // SAFETY: as above; the grandchild is reparented to init when
            // the child exits, so the helper has no daemon to reap.
            let code = match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let keep = [listener.as_raw_fd(), dir.as_raw_fd()];
                    isolate_fds(&keep);
                    serve(listener, &dir);
                }
                Ok(ForkResult::Parent { child }) => {
                    let pid = child.as_raw().to_le_bytes();
                    i32::from(child_end.write_all(&pid).is_err())
                }
                Err(_) => 1,
            };
            // SAFETY: _exit ends the intermediate child without running the
            // helper's exit handlers or flushing its buffers twice.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            let _ = waitpid(child, None);
            let mut pid = [0u8; 4];
            parent_end.read_exact(&mut pid)?;
            Ok(i32::from_le_bytes(pid))
        }
    }
}

/// Points stdio at `/dev/null` and closes every other fd but `keep` (the
/// helper's pipes to the server and other sandboxes' listeners).
fn isolate_fds(keep: &[RawFd]) {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: closing an fd this process no longer uses; nothing else in
        // this freshly forked, single-threaded process holds it.
        unsafe { libc::close(fd) };
    }
}

fn serve(listener: &UnixListener, dir: &File) -> ! {
    loop {
        match listener.accept() {
            Ok((client, _)) => {
                let Ok(dir) = dir.as_fd().try_clone_to_owned() else {
                    continue;
                };
                std::thread::spawn(move || forward(client, &dir));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Connects to the agent and copies bytes both ways until each side ends.
fn forward(client: UnixStream, dir: &OwnedFd) {
    let Some(agent) = connect_waiting(dir) else {
        return;
    };
    let (Ok(client_r), Ok(agent_w)) = (client.try_clone(), agent.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pump(client_r, agent_w));
    pump(agent, client);
    let _ = up.join();
}

fn pump(mut from: UnixStream, mut to: UnixStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn connect_waiting(dir: &OwnedFd) -> Option<UnixStream> {
    let deadline = std::time::Instant::now() + CONNECT_WAIT;
    loop {
        match connect(dir) {
            Ok(stream) => return Some(stream),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
}

/// Connects to `agent.sock` in `dir` without following a symlink: only a
/// socket that is itself in the directory is reached.
pub fn connect(dir: &OwnedFd) -> io::Result<UnixStream> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let raw = openat(
        Some(dir.as_raw_fd()),
        AGENT_SOCKET_NAME,
        flags,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    // SAFETY: openat just returned this fd and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    if !file.metadata()?.file_type().is_socket() {
        return Err(io::Error::other("the agent's socket is not a socket"));
    }
    UnixStream::connect(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_fd(path: &Path) -> OwnedFd {
        File::open(path).unwrap().into()
    }

    #[test]
    fn connects_to_the_socket_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(AGENT_SOCKET_NAME)).unwrap();
        let mut stream = connect(&dir_fd(dir.path())).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        stream.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        accepted.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    }

    #[test]
    fn never_follows_a_symlink_to_another_socket() {
        let outside = tempfile::tempdir().unwrap();
        let _victim = UnixListener::bind(outside.path().join("victim.sock")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("victim.sock"),
            dir.path().join(AGENT_SOCKET_NAME),
        )
        .unwrap();
        assert!(connect(&dir_fd(dir.path())).is_err());
    }

    #[test]
    fn refuses_what_is_not_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(AGENT_SOCKET_NAME), "x").unwrap();
        assert!(connect(&dir_fd(dir.path())).is_err());
    }
}
