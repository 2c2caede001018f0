//! Upstreams on the pod network (the Kubernetes runtime): a sandbox's agent
//! at `pod IP:agent port`, which demands its per-sandbox bearer credential,
//! or a port a sandbox serves on its pod IP.
//!
//! The relay strips every client credential before a request leaves
//! ([`super::forwarding::filter_request`]); [`PodUpstream::authorize`] then
//! adds the agent's own, so a client never sees it and never supplies it.
//!
//! The server names a sandbox's agent by its socket path everywhere (the
//! data plane, files, OpenSandbox's execd, the readiness probe). For a
//! sandbox of a remote runtime that path names a pod instead: the
//! [agent directory](register_agent) maps it to the pod's agent, and
//! [`super::relay`] connects there. A sandbox's own ports are reached
//! through [`SandboxNet`]: its network namespace locally, its pod IP on
//! Kubernetes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use sandpit_runtime::NetworkEndpoint;
use tokio::net::{TcpStream, UnixStream};

use super::relay::Upstream;

/// A connection to an agent: its unix socket, or its pod over TCP.
pub type AgentStream = tokio_util::either::Either<UnixStream, TcpStream>;

/// How long connecting to a pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP upstream on the pod network.
#[derive(Clone)]
pub struct PodUpstream {
    pub addr: SocketAddr,
    /// The agent's bearer credential; `None` for a sandbox's own ports.
    token: Option<HeaderValue>,
}

impl std::fmt::Debug for PodUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodUpstream")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Agent socket path → the pod agent it names.
fn directory() -> &'static Mutex<HashMap<PathBuf, PodUpstream>> {
    static AGENTS: OnceLock<Mutex<HashMap<PathBuf, PodUpstream>>> = OnceLock::new();
    AGENTS.get_or_init(Default::default)
}

/// Whether any pod agent was ever registered: the local runtime's requests
/// skip the directory.
static ANY_POD: AtomicBool = AtomicBool::new(false);

/// From now on `socket` names the agent at `endpoint`. `false` if its
/// credential cannot be a header value (then nothing is registered).
pub fn register_agent(socket: PathBuf, endpoint: &NetworkEndpoint) -> bool {
    let addr = SocketAddr::new(endpoint.ip, endpoint.agent_port);
    let Some(agent) = PodUpstream::agent(addr, &endpoint.token) else {
        return false;
    };
    ANY_POD.store(true, Ordering::Release);
    directory()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(socket, agent);
    true
}

/// `socket` no longer names the agent at `addr` with credential `token`
/// (its pod ended). A newer registration of the same socket stays, even at
/// the same address (a pod IP is reused; a credential never is).
pub fn forget_agent(socket: &Path, addr: SocketAddr, token: &str) {
    let Some(gone) = PodUpstream::agent(addr, token) else {
        return;
    };
    let mut agents = directory().lock().unwrap_or_else(PoisonError::into_inner);
    if agents
        .get(socket)
        .is_some_and(|a| a.addr == gone.addr && a.token == gone.token)
    {
        agents.remove(socket);
    }
}

/// The pod agent `socket` names, if it names one.
pub fn agent_at(socket: &Path) -> Option<PodUpstream> {
    if !ANY_POD.load(Ordering::Acquire) {
        return None;
    }
    directory()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(socket)
        .cloned()
}

/// Connects to the agent `socket` names, for callers that speak to it
/// themselves rather than through [`super::relay`]: its unix socket, or
/// the pod agent registered for that path (then `headers`, a request's
/// headers, get the agent's credential).
pub async fn connect_agent(socket: &Path, headers: &mut HeaderMap) -> std::io::Result<AgentStream> {
    match agent_at(socket) {
        Some(pod) => {
            pod.authorize(headers);
            Ok(AgentStream::Right(pod.connect().await?))
        }
        None => Ok(AgentStream::Left(UnixStream::connect(socket).await?)),
    }
}

/// Where a sandbox's own ports are, for service URLs and tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxNet {
    /// `127.0.0.1` in the network namespace of the init `pid` (local).
    Netns(i32),
    /// The pod IP; `agent_port` is the agent's, never a service's.
    Pod { ip: IpAddr, agent_port: u16 },
}

/// Why a sandbox port cannot be reached.
fn agent_port_refused() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "the agent's port is not a sandbox port",
    )
}

impl SandboxNet {
    /// A TCP connection to the sandbox's `port`.
    pub async fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        match *self {
            SandboxNet::Netns(pid) => super::netns::connect(pid, port).await,
            SandboxNet::Pod { ip, agent_port } if port == agent_port => {
                let _ = ip;
                Err(agent_port_refused())
            }
            SandboxNet::Pod { ip, .. } => {
                PodUpstream::port(SocketAddr::new(ip, port)).connect().await
            }
        }
    }

    /// The relay's upstream for HTTP to the sandbox's `port`; `None` for
    /// the agent's port of a pod (it is reached only as the agent, with
    /// the server's credential, through the data plane).
    pub fn upstream(&self, port: u16) -> Option<Upstream> {
        match *self {
            SandboxNet::Netns(pid) => Some(Upstream::Netns { pid, port }),
            SandboxNet::Pod { agent_port, .. } if port == agent_port => None,
            SandboxNet::Pod { ip, .. } => {
                Some(Upstream::Pod(PodUpstream::port(SocketAddr::new(ip, port))))
            }
        }
    }
}

impl PodUpstream {
    /// A sandbox's agent. `None` if the token cannot be a header value.
    pub fn agent(addr: SocketAddr, token: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        value.set_sensitive(true);
        Some(Self {
            addr,
            token: Some(value),
        })
    }

    /// A port the sandbox serves on its pod IP.
    pub fn port(addr: SocketAddr) -> Self {
        Self { addr, token: None }
    }

    /// Puts the agent's credential on a request whose client credentials
    /// were already stripped.
    pub fn authorize(&self, headers: &mut HeaderMap) {
        match &self.token {
            Some(token) => headers.insert(AUTHORIZATION, token.clone()),
            None => headers.remove(AUTHORIZATION),
        };
    }

    pub async fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::relay;
    use axum::body::Body;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn read_head(conn: &mut tokio::net::TcpStream) -> String {
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early");
            head.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(head).expect("utf-8")
    }

    /// One request on loopback: the head the upstream received.
    async fn relayed_head(upstream: fn(SocketAddr) -> PodUpstream) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let head = read_head(&mut conn).await;
            conn.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await
                .expect("write");
            head
        });
        let req = http::Request::get("/healthz")
            .header("authorization", "Bearer client-key")
            .header("x-api-key", "client-key")
            .body(Body::empty())
            .expect("request");
        let response = relay::forward(req, &Upstream::Pod(upstream(addr)), "/healthz")
            .await
            .expect("relayed");
        assert_eq!(response.status(), http::StatusCode::NO_CONTENT);
        server.await.expect("server").to_ascii_lowercase()
    }

    #[tokio::test]
    async fn the_agent_gets_its_credential_never_the_clients() {
        let head =
            relayed_head(|addr| PodUpstream::agent(addr, "agent-secret").expect("token")).await;
        assert!(
            head.contains("authorization: bearer agent-secret"),
            "{head}"
        );
        assert!(!head.contains("client-key"), "{head}");
    }

    #[tokio::test]
    async fn an_agent_socket_registered_for_a_pod_is_relayed_to_the_pod_with_its_credential() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let socket = PathBuf::from(format!("/nonexistent/agent-{}.sock", addr.port()));
        let endpoint = NetworkEndpoint {
            ip: addr.ip(),
            agent_port: addr.port(),
            token: "pod-secret".into(),
        };
        assert!(register_agent(socket.clone(), &endpoint));
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let head = read_head(&mut conn).await;
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .expect("write");
            head
        });
        let status = relay::probe(&socket, "/healthz", Duration::from_secs(5))
            .await
            .expect("the probe reached the pod");
        assert_eq!(status, http::StatusCode::OK);
        let head = server.await.expect("server").to_ascii_lowercase();
        assert!(head.contains("authorization: bearer pod-secret"), "{head}");

        // An older pod at the same address ended: the registration stays.
        forget_agent(&socket, addr, "older-pod-secret");
        assert!(agent_at(&socket).is_some());
        // Its pod ended: the path names nothing any more.
        forget_agent(&socket, addr, "pod-secret");
        assert!(agent_at(&socket).is_none());
        assert!(relay::probe(&socket, "/healthz", Duration::from_secs(5))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_pods_agent_port_is_never_a_service_or_tunnel_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let net = SandboxNet::Pod {
            ip: addr.ip(),
            agent_port: addr.port(),
        };
        assert!(net.upstream(addr.port()).is_none());
        let err = net.connect(addr.port()).await.expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        // Another port of the pod is reachable.
        let other = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = other.local_addr().expect("addr").port();
        assert!(net.connect(port).await.is_ok());
        assert!(matches!(net.upstream(port), Some(Upstream::Pod(_))));
    }

    #[tokio::test]
    async fn a_sandbox_port_gets_no_credential() {
        let head = relayed_head(PodUpstream::port).await;
        assert!(!head.contains("authorization"), "{head}");
        assert!(!head.contains("client-key"), "{head}");
    }
}
