//! The reverse-proxy core: forward one request to an upstream and stream the
//! response back, following HTTP upgrades (WebSocket) by splicing the two
//! upgraded connections.
//!
//! What crosses in each direction is [`super::forwarding`]'s decision (the
//! same policy the fast path applies): no hop-by-hop header either way, no
//! Sandpit credential or service token towards the sandbox, no `Domain=` on
//! a service's `Set-Cookie`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

/// Where a request goes.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// An agent's unix socket on the host (or the pod agent this path
    /// names: [`super::upstream_pod::register_agent`]).
    Unix(PathBuf),
    /// `127.0.0.1:port` inside the network namespace of process `pid`
    /// (a sandbox's init): services a sandbox runs, loopback-only included.
    Netns { pid: i32, port: u16 },
    /// An address on the pod network (the Kubernetes runtime).
    Pod(super::upstream_pod::PodUpstream),
}

/// Why a request could not be relayed. Carries which side failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("could not connect to the upstream")]
    Connect(#[source] std::io::Error),
    #[error("upstream connection failed")]
    Upstream(#[source] hyper::Error),
    #[error("pooled upstream request failed")]
    Pooled(#[source] hyper_util::client::legacy::Error),
    #[error("upstream timed out")]
    Timeout,
    #[error("bad request target")]
    BadTarget(#[source] http::Error),
}

/// Buffer per direction when splicing upgraded connections: large enough
/// that streaming a command's output costs few syscalls per megabyte.
const SPLICE_BUFFER: usize = 64 << 10;

/// The upgrade protocol a request asks for, if it is an upgrade.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if wants_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

impl RelayError {
    /// Nothing accepted the connection (refused, or the sandbox is gone).
    pub fn is_connect(&self) -> bool {
        matches!(self, RelayError::Connect(_))
    }
}

/// Forward `req` to `upstream` with its URI replaced by `path_and_query`.
pub async fn forward(
    req: Request<Body>,
    upstream: &Upstream,
    path_and_query: &str,
) -> Result<Response<Body>, RelayError> {
    forward_holding(req, upstream, path_and_query, ()).await
}

/// [`forward`], keeping `hold` alive until the exchange is over: until the
/// response body has been sent, or until an upgraded connection closes. The
/// data plane holds an activity guard this way, so a sandbox with a client
/// attached is never idle.
pub async fn forward_holding<H: Send + 'static>(
    mut req: Request<Body>,
    upstream: &Upstream,
    path_and_query: &str,
    hold: H,
) -> Result<Response<Body>, RelayError> {
    // On Kubernetes an agent's socket path names its pod's agent.
    let pod_agent = match upstream {
        Upstream::Unix(socket) => super::upstream_pod::agent_at(socket).map(Upstream::Pod),
        _ => None,
    };
    let upstream = pod_agent.as_ref().unwrap_or(upstream);
    let upgrade = upgrade_protocol(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    // An HTTP/2 client names the host in the URI, not in `Host`.
    let authority = parts.uri.authority().cloned();
    // Upstreams speak HTTP/1.1 whatever the client spoke.
    parts.version = Version::HTTP_11;
    parts.uri = Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .map_err(RelayError::BadTarget)?;
    super::forwarding::filter_request(&mut parts.headers);
    if let Upstream::Pod(pod) = upstream {
        pod.authorize(&mut parts.headers);
    }
    if let Some(protocol) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    if !parts.headers.contains_key(header::HOST) {
        let host = authority
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("sandbox"));
        parts.headers.insert(header::HOST, host);
    }
    if let (Upstream::Netns { pid, port }, None) = (upstream, &upgrade) {
        parts.uri = super::pool::uri(*pid, *port, path_and_query).map_err(RelayError::BadTarget)?;
        let response = super::pool::client()
            .request(Request::from_parts(parts, body))
            .await
            .map_err(RelayError::Pooled)?;
        return Ok(respond(response, hold));
    }
    let upstream_req = Request::from_parts(parts, body);
    match upstream {
        Upstream::Unix(path) => {
            let io = UnixStream::connect(path)
                .await
                .map_err(RelayError::Connect)?;
            exchange(io, upstream_req, client_upgrade, hold).await
        }
        Upstream::Netns { pid, port } => {
            let io = super::netns::connect(*pid, *port)
                .await
                .map_err(RelayError::Connect)?;
            exchange(io, upstream_req, client_upgrade, hold).await
        }
        Upstream::Pod(pod) => {
            let io = pod.connect().await.map_err(RelayError::Connect)?;
            exchange(io, upstream_req, client_upgrade, hold).await
        }
    }
}

/// Send `upstream_req` over `io` and relay the response (or the upgraded
/// connection) back.
pub(crate) async fn exchange<I, H>(
    io: I,
    upstream_req: Request<Body>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    hold: H,
) -> Result<Response<Body>, RelayError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Send + 'static,
{
    let io = TokioIo::new(io);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(io)
        .await
        .map_err(RelayError::Upstream)?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(error = %err, "upstream connection ended with an error");
        }
    });

    let mut response = sender
        .send_request(upstream_req)
        .await
        .map_err(RelayError::Upstream)?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                splice(client_upgrade, upstream_upgrade).await;
                drop(hold);
            });
        }
        let (mut parts, _) = response.into_parts();
        // The upgrade itself is hop-by-hop; hyper's server side answers it.
        let (connection, upgrade) = (
            parts.headers.remove(header::CONNECTION),
            parts.headers.remove(header::UPGRADE),
        );
        super::forwarding::filter_response(&mut parts.headers);
        if let (Some(connection), Some(upgrade)) = (connection, upgrade) {
            parts.headers.insert(header::CONNECTION, connection);
            parts.headers.insert(header::UPGRADE, upgrade);
        }
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    Ok(respond(response, hold))
}

/// The upstream's response for the client, keeping `hold` alive until its
/// body has been sent.
fn respond<H: Send + 'static>(
    response: Response<hyper::body::Incoming>,
    hold: H,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    super::forwarding::filter_response(&mut parts.headers);
    let body = body.map_frame(move |frame| {
        let _ = &hold;
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

/// Copy bytes both ways between two upgraded connections until both close.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::debug!(error = %err, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(err) = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        SPLICE_BUFFER,
        SPLICE_BUFFER,
    )
    .await
    {
        tracing::debug!(error = %err, "upgraded connection ended with an error");
    }
}

/// `GET path` on a unix-socket upstream, returning the status. Used as the
/// agent's readiness probe.
pub async fn probe(socket: &Path, path: &str, timeout: Duration) -> Result<StatusCode, RelayError> {
    let request = Request::get(path)
        .header(header::HOST, "sandbox")
        .body(Body::empty())
        .map_err(RelayError::BadTarget)?;
    let upstream = Upstream::Unix(socket.to_path_buf());
    let response = tokio::time::timeout(timeout, forward(request, &upstream, path))
        .await
        .map_err(|_| RelayError::Timeout)??;
    Ok(response.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        super::super::forwarding::filter_request(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrade_is_detected_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        h.insert("connection", HeaderValue::from_static("close"));
        assert!(upgrade_protocol(&h).is_none());
    }
}
