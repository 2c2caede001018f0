//! The agent's listening socket: inherited on a descriptor (how the runtime
//! starts it) or bound from `--listen` (tests and bare runs).
//!
//! An inherited descriptor is marked close-on-exec before anything else
//! happens, so no command ever holds the sandbox's control socket.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use axum::Router;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};

use crate::config::{ListenAddr, ListenTarget};

/// Why the agent cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("descriptor {0} is not an open socket")]
    NotASocket(RawFd, #[source] nix::Error),
    #[error("descriptor {0} is neither a unix nor a TCP socket")]
    UnsupportedFamily(RawFd),
    #[error("cannot use descriptor {0}")]
    Fd(RawFd, #[source] io::Error),
    #[error("cannot listen on {0:?}")]
    Bind(ListenAddr, #[source] io::Error),
}

/// A ready listener.
#[derive(Debug)]
pub enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    /// Opens `target`. Must run inside the tokio runtime.
    pub async fn open(target: &ListenTarget) -> Result<Self, ListenError> {
        match target {
            ListenTarget::Fd(fd) => Self::inherit(*fd),
            ListenTarget::Addr(addr) => Self::bind(addr)
                .await
                .map_err(|e| ListenError::Bind(addr.clone(), e)),
        }
    }

    /// Serves `app` until the listener fails.
    pub async fn serve(self, app: Router) -> io::Result<()> {
        match self {
            Listener::Unix(listener) => axum::serve(listener, app).await,
            Listener::Tcp(listener) => {
                use axum::serve::ListenerExt;
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app).await
            }
        }
    }

    fn inherit(fd: RawFd) -> Result<Self, ListenError> {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| ListenError::NotASocket(fd, e))?;
        let family = getsockname::<SockaddrStorage>(fd)
            .map_err(|e| ListenError::NotASocket(fd, e))?
            .family();
        // SAFETY: the runtime handed us this descriptor for our exclusive use
        // and nothing else in the process refers to it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let io_err = |e| ListenError::Fd(fd, e);
        match family {
            Some(AddressFamily::Unix) => {
                let std = std::os::unix::net::UnixListener::from(owned);
                std.set_nonblocking(true).map_err(io_err)?;
                Ok(Self::Unix(
                    tokio::net::UnixListener::from_std(std).map_err(io_err)?,
                ))
            }
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                let std = std::net::TcpListener::from(owned);
                std.set_nonblocking(true).map_err(io_err)?;
                Ok(Self::Tcp(
                    tokio::net::TcpListener::from_std(std).map_err(io_err)?,
                ))
            }
            _ => Err(ListenError::UnsupportedFamily(fd)),
        }
    }

    async fn bind(addr: &ListenAddr) -> io::Result<Self> {
        match addr {
            ListenAddr::Unix(path) => {
                remove_stale_socket(path);
                Ok(Self::Unix(tokio::net::UnixListener::bind(path)?))
            }
            ListenAddr::Tcp(addr) => Ok(Self::Tcp(tokio::net::TcpListener::bind(addr).await?)),
        }
    }
}

/// Removes a socket file left by an earlier run (never any other file).
fn remove_stale_socket(path: &Path) {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket {
        let _ = std::fs::remove_file(path);
    }
}
