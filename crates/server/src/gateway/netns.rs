//! TCP connections opened inside a sandbox's network namespace.
//!
//! The socket is created while the calling thread has joined the sandbox's
//! netns (`setns` affects only the calling thread) and the thread returns to
//! the host namespace before anything else runs on it; a socket keeps the
//! namespace it was created in, so connecting to `127.0.0.1:port` then
//! reaches services bound only to the sandbox's loopback.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use nix::sched::{setns, CloneFlags};
use tokio::net::{TcpSocket, TcpStream};

/// The server's own network namespace, opened before any thread leaves it.
fn host_netns() -> std::io::Result<&'static File> {
    static HOST: OnceLock<File> = OnceLock::new();
    if let Some(file) = HOST.get() {
        return Ok(file);
    }
    let file = File::open("/proc/self/ns/net")?;
    Ok(HOST.get_or_init(|| file))
}

/// A new non-blocking TCP socket in the network namespace of process `pid`.
fn socket_in(pid: i32) -> std::io::Result<OwnedFd> {
    let host = host_netns()?;
    let target = File::open(format!("/proc/{pid}/ns/net"))?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET)?;
    // SAFETY: socket(2) takes plain integers and returns a new fd or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    let created = std::io::Error::last_os_error();
    if setns(host.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
        // This worker thread would keep running in the sandbox's namespace.
        tracing::error!("could not return to the host network namespace");
        std::process::abort();
    }
    if fd < 0 {
        return Err(created);
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connect to `127.0.0.1:port` as seen from inside the sandbox whose init is
/// `pid`.
pub async fn connect(pid: i32, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket_in(pid)?));
    socket.set_nodelay(true)?;
    socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
}
