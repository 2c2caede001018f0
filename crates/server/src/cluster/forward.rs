//! Data-plane requests (`/dataplane/{id}/...`, the console terminal,
//! service URLs, and every OpenSandbox route of one sandbox,
//! `/v1/sandboxes/{id}/...`: its lifecycle and execd answer from the
//! owner's live state) for a sandbox another replica runs are proxied to
//! that replica as they came (method, path, headers with the caller's
//! credentials, streamed body, WebSocket upgrades): the owner
//! authenticates the caller and relays to the sandbox itself, so this
//! replica never needs the sandbox's agent, network or files.
//!
//! The owner sees the forwarding replica's address, not the client's, so
//! the proxy also sends the client's address ([`CLIENT_ADDR`]) with the
//! cluster token, and the owner adopts it (only with a valid token) before
//! anything reads the address: the throttle of failed key checks counts
//! the client that failed, not every client of the forwarding replica.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::{Uri, Version};

use super::{rpc, Cluster, Owner};
use crate::auth::ClientAddr;
use crate::error::ApiError;
use crate::gateway::relay;
use crate::state::AppState;

/// Set on a proxied request (the forwarding node's name): a request is
/// proxied at most once, so two replicas that disagree cannot loop.
pub const FORWARDED_BY: &str = "x-sandpit-forwarded-by";
/// Set on a proxied request: the address of the client the forwarding
/// replica served, believed only with the cluster token.
pub const CLIENT_ADDR: &str = "x-sandpit-client-addr";

/// The sandbox a data-plane path addresses.
pub fn sandbox_of(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/dataplane/")
        .or_else(|| path.strip_prefix("/console-terminal/"))
        .or_else(|| path.strip_prefix("/v1/sandboxes/"))?;
    let id = rest.split('/').next().filter(|id| !id.is_empty())?;
    uuid::Uuid::parse_str(id).is_ok().then_some(id)
}

/// The sandbox a download link (`/download/{token}`) names; the replica
/// that runs it checks the token.
fn download_sandbox(path: &str) -> Option<String> {
    let token = path.strip_prefix("/download/")?;
    crate::routes::download_link::unverified_sandbox(token)
}

/// Middleware (outermost): proxy data-plane requests for a sandbox a
/// live peer runs; answer 502 if its node is down.
pub async fn route(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster.clone() else {
        return next.run(req).await;
    };
    adopt_client_addr(&cluster, &mut req);
    let id = match sandbox_of(req.uri().path()) {
        Some(id) => id.to_owned(),
        // Download links and service URLs (by host or path) name the
        // sandbox too.
        None => match download_sandbox(req.uri().path())
            .or_else(|| crate::gateway::service::sandbox_of(&state.config, &req))
        {
            Some(id) => id,
            None => return next.run(req).await,
        },
    };
    if req.headers().contains_key(FORWARDED_BY) || state.sandboxes.runs_here(&id) {
        return next.run(req).await;
    }
    match cluster.owner(&id).await {
        Ok(Owner::Peer(node)) => proxy(req, &node.url, &cluster)
            .await
            .unwrap_or_else(|err| err.into_response()),
        Ok(Owner::Down(node)) => ApiError::Upstream(format!(
            "Sandbox '{id}' runs on replica '{node}', which is not answering"
        ))
        .into_response(),
        // Ours, or unknown (the route answers 404): handled here.
        Ok(Owner::Local) | Err(_) => next.run(req).await,
    }
}

/// An API call about sandbox `id` that only the node running it can serve
/// (a snapshot capture reads its files): proxied to that node when it is
/// another live replica. `Ok(Err(req))` hands the request back to be
/// served here (no cluster, this node's sandbox, or already proxied once).
pub async fn to_owner(
    state: &AppState,
    id: &str,
    req: Request,
) -> Result<Result<Response, Request>, ApiError> {
    let Some(cluster) = state.cluster.as_ref() else {
        return Ok(Err(req));
    };
    if req.headers().contains_key(FORWARDED_BY) || state.sandboxes.runs_here(id) {
        return Ok(Err(req));
    }
    let mut req = req;
    // A nested router's handler sees its path without the nest's prefix.
    if let Some(OriginalUri(uri)) = req.extensions().get::<OriginalUri>().cloned() {
        *req.uri_mut() = uri;
    }
    match cluster.owner(id).await? {
        Owner::Peer(node) => proxy(req, &node.url, cluster).await.map(Ok),
        Owner::Down(node) => Err(ApiError::Upstream(format!(
            "Sandbox '{id}' runs on replica '{node}', which is not answering"
        ))),
        Owner::Local => Ok(Err(req)),
    }
}

/// On a request a peer proxied here (cluster token valid), the client
/// address it names replaces the peer's own. The address (and the token
/// sent with it) is removed, so neither reaches a handler or a sandbox,
/// and a client cannot name an address of its choosing.
fn adopt_client_addr(cluster: &Cluster, req: &mut Request) {
    let headers = req.headers_mut();
    // Only proxied requests carry an address; the internal API's calls
    // (which need their token) do not.
    let Some(claimed) = headers.remove(CLIENT_ADDR) else {
        return;
    };
    let token = headers.remove(rpc::TOKEN_HEADER);
    let trusted = token
        .as_ref()
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| cluster.secret().check_rpc_token(t));
    let Some(ip) = claimed
        .to_str()
        .ok()
        .and_then(|v| v.parse::<IpAddr>().ok())
        .filter(|_| trusted && req.headers().contains_key(FORWARDED_BY))
    else {
        return;
    };
    req.extensions_mut()
        .insert(ConnectInfo(ClientAddr(SocketAddr::new(ip, 0))));
}

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

async fn proxy(mut req: Request, url: &str, cluster: &Cluster) -> Result<Response, ApiError> {
    let client = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|ConnectInfo(ClientAddr(addr))| addr.ip());
    let authority = super::rpc::authority(url).map_err(|e| ApiError::Internal(e.into()))?;
    let upgrade = relay::upgrade_protocol(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let authority_header = parts.uri.authority().cloned();
    parts.version = Version::HTTP_11;
    parts.uri = Uri::builder()
        .path_and_query(target)
        .build()
        .map_err(|e| ApiError::BadRequest(format!("Invalid request path: {e}")))?;
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }
    if !parts.headers.contains_key(header::HOST) {
        let host = authority_header
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("sandpit"));
        parts.headers.insert(header::HOST, host);
    }
    let via =
        HeaderValue::from_str(cluster.node_name()).map_err(|e| ApiError::Internal(e.into()))?;
    parts.headers.insert(FORWARDED_BY, via);
    if let Some(ip) = client {
        let token = HeaderValue::from_str(&cluster.secret().rpc_token())
            .map_err(|e| ApiError::Internal(e.into()))?;
        parts.headers.insert(rpc::TOKEN_HEADER, token);
        let addr =
            HeaderValue::from_str(&ip.to_string()).map_err(|e| ApiError::Internal(e.into()))?;
        parts.headers.insert(CLIENT_ADDR, addr);
    }
    let unreachable =
        |e: &dyn std::fmt::Display| ApiError::Upstream(format!("Replica {url} unreachable: {e}"));
    let io = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| unreachable(&e))?;
    relay::exchange(io, Request::from_parts(parts, body), client_upgrade, ())
        .await
        .map_err(|e| unreachable(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_plane_paths_of_a_sandbox_id_are_forwarded() {
        let id = "6f1c1f9e-0a57-4d8e-9d6c-2a3c1d0e5b7a";
        assert_eq!(sandbox_of(&format!("/dataplane/{id}")), Some(id));
        assert_eq!(sandbox_of(&format!("/dataplane/{id}/execute/ws")), Some(id));
        assert_eq!(sandbox_of(&format!("/console-terminal/{id}")), Some(id));
        assert_eq!(sandbox_of(&format!("/v1/sandboxes/{id}")), Some(id));
        assert_eq!(
            sandbox_of(&format!("/v1/sandboxes/{id}/execd/ping")),
            Some(id)
        );
        assert_eq!(sandbox_of("/v1/sandboxes"), None);
        assert_eq!(sandbox_of("/dataplane/not-an-id/x"), None);
        assert_eq!(sandbox_of(&format!("/api/v2/sandboxes/boxes/{id}")), None);
        assert_eq!(sandbox_of("/dataplane/"), None);
    }
}
