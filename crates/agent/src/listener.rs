//! The agent's listening socket: inherited on a descriptor (how the runtime
//! starts it) or bound from `--listen` (tests and bare runs).
//!
//! An inherited descriptor is marked close-on-exec before anything else
//! happens, so no command ever holds the sandbox's control socket.
//!
//! On Kubernetes the agent listens on TCP on the pod network, where other
//! pods can reach it: there it demands a bearer credential
//! ([`Credential`], from `$SANDPIT_AGENT_TOKEN`) on every request, compared
//! in constant time, and it refuses to listen on a non-loopback address
//! without one.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
use subtle::ConstantTimeEq;

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
    #[error("refusing to listen on {0} without a credential (set ${CREDENTIAL_ENV})")]
    NoCredential(std::net::SocketAddr),
}

/// The environment variable holding the agent's bearer credential.
pub const CREDENTIAL_ENV: &str = "SANDPIT_AGENT_TOKEN";

/// A bearer secret every request must present (`Authorization: Bearer`).
#[derive(Clone)]
pub struct Credential(Vec<u8>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

impl Credential {
    /// Reads `$SANDPIT_AGENT_TOKEN` and removes it from the environment,
    /// so commands never inherit it. Must run before any thread starts.
    pub fn take_from_env() -> Option<Self> {
        let value = std::env::var_os(CREDENTIAL_ENV)?;
        // Sound only single-threaded: `main_with_args` calls this before the
        // tokio runtime (or any other thread) exists.
        std::env::remove_var(CREDENTIAL_ENV);
        let bytes = value.into_encoded_bytes();
        (!bytes.is_empty()).then_some(Self(bytes))
    }

    /// Whether `headers` carry this credential.
    fn admits(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        // `ct_eq` is constant-time for equal lengths; a length mismatch
        // leaks only the length.
        given.ct_eq(&self.0).into()
    }
}

/// Refuses (401) every request without `credential`.
async fn require(credential: Credential, req: Request, next: Next) -> Response {
    if credential.admits(req.headers()) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "missing or wrong agent credential\n",
        )
            .into_response()
    }
}

/// A ready listener.
#[derive(Debug)]
pub enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    /// Opens `target`. Must run inside the tokio runtime. A TCP address
    /// other than loopback needs a `credential`.
    pub async fn open(
        target: &ListenTarget,
        credential: Option<&Credential>,
    ) -> Result<Self, ListenError> {
        if let (ListenTarget::Addr(ListenAddr::Tcp(addr)), None) = (target, credential) {
            if !addr.ip().is_loopback() {
                return Err(ListenError::NoCredential(*addr));
            }
        }
        match target {
            ListenTarget::Fd(fd) => Self::inherit(*fd),
            ListenTarget::Addr(addr) => Self::bind(addr)
                .await
                .map_err(|e| ListenError::Bind(addr.clone(), e)),
        }
    }

    /// Serves `app` until the listener fails; with a `credential`, only to
    /// requests that present it.
    pub async fn serve(self, app: Router, credential: Option<Credential>) -> io::Result<()> {
        let app = match credential {
            Some(credential) => app.layer(axum::middleware::from_fn(move |req, next| {
                require(credential.clone(), req, next)
            })),
            None => app,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn with(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn only_the_exact_bearer_credential_is_admitted() {
        let credential = Credential(b"s3cret".to_vec());
        assert!(credential.admits(&with("Bearer s3cret")));
        assert!(!credential.admits(&HeaderMap::new()));
        assert!(!credential.admits(&with("Bearer s3cre")));
        assert!(!credential.admits(&with("Bearer s3cret2")));
        assert!(!credential.admits(&with("Basic s3cret")));
        assert!(!credential.admits(&with("bearer s3cret")));
    }

    #[tokio::test]
    async fn a_non_loopback_tcp_address_needs_a_credential() {
        let target = ListenTarget::Addr(ListenAddr::Tcp("0.0.0.0:0".parse().expect("addr")));
        let err = Listener::open(&target, None).await.expect_err("refused");
        assert!(matches!(err, ListenError::NoCredential(_)), "{err}");
        let credential = Credential(b"x".to_vec());
        assert!(Listener::open(&target, Some(&credential)).await.is_ok());
    }
}
