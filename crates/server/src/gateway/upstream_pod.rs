//! Upstreams on the pod network (the Kubernetes runtime): a sandbox's agent
//! at `pod IP:agent port`, which demands its per-sandbox bearer credential,
//! or a port a sandbox serves on its pod IP.
//!
//! The relay strips every client credential before a request leaves
//! ([`super::forwarding::filter_request`]); [`PodUpstream::authorize`] then
//! adds the agent's own, so a client never sees it and never supplies it.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use tokio::net::TcpStream;

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
    use crate::gateway::relay::{self, Upstream};
    use axum::body::Body;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request on loopback: the head the upstream received.
    async fn relayed_head(upstream: fn(SocketAddr) -> PodUpstream) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed early");
                head.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await
                .expect("write");
            String::from_utf8(head).expect("utf-8")
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
    async fn a_sandbox_port_gets_no_credential() {
        let head = relayed_head(PodUpstream::port).await;
        assert!(!head.contains("authorization"), "{head}");
        assert!(!head.contains("client-key"), "{head}");
    }
}
