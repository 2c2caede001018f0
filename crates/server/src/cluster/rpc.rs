//! The internal API one replica uses to have another run an operation on
//! a sandbox it owns: `POST /internal/v1/cluster` with the cluster token
//! (derived from the shared secret) in `x-sandpit-cluster-token`. It is
//! served on the same listener as the public API; without the token every
//! request is refused (401), and nothing here is reachable from a sandbox
//! that the public API is not.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::error::{error_response, ApiError};
use crate::state::AppState;

/// The path of the internal API.
pub const PATH: &str = "/internal/v1/cluster";
/// The header carrying the cluster token.
pub const TOKEN_HEADER: &str = "x-sandpit-cluster-token";
/// Longest an operation may take (a boot waits up to 300 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(330);

/// An operation on a sandbox, run by the node that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PeerOp {
    /// Boot a sandbox whose row is `provisioning` (a create or a start
    /// admitted on another replica).
    Boot { sandbox_id: String },
    /// Stop it, recording `status` (and `message`).
    Halt {
        sandbox_id: String,
        status: String,
        message: Option<String>,
    },
    /// Stop it and remove its files and row.
    Destroy { sandbox_id: String },
    /// Apply a retention action the leader found due, if the owner (which
    /// knows the sandbox's open connections) agrees it is.
    Retire {
        sandbox_id: String,
        due: String,
        scale: u32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    error: Option<String>,
}

/// `host:port` of an `http://host:port` node URL.
pub fn authority(url: &str) -> Result<String, ClusterError> {
    let bad = || ClusterError::BadNodeUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
        return Err(bad());
    }
    Ok(authority.to_owned())
}

/// Run `op` on the node at `url`. `Err` carries the owner's message.
pub async fn call(url: &str, token: &str, op: &PeerOp) -> Result<(), String> {
    match tokio::time::timeout(CALL_TIMEOUT, send(url, token, op)).await {
        Ok(result) => result,
        Err(_) => Err(format!("the replica at {url} did not answer in time")),
    }
}

/// An HTTP/1.1 connection to the node at `url`: its authority (for
/// `Host`) and the sender.
pub(super) async fn connect<B>(
    url: &str,
) -> Result<(String, hyper::client::conn::http1::SendRequest<B>), String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let authority = authority(url).map_err(|e| e.to_string())?;
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| unreachable(url, &e))?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(url, &e))?;
    tokio::spawn(conn);
    Ok((authority, sender))
}

pub(super) fn unreachable(url: &str, e: &dyn std::fmt::Display) -> String {
    format!("replica {url} unreachable: {e}")
}

/// Whether `headers` carry this cluster's token.
pub(super) fn token_ok(cluster: &super::Cluster, headers: &HeaderMap) -> bool {
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    cluster.secret().check_rpc_token(token)
}

async fn send(url: &str, token: &str, op: &PeerOp) -> Result<(), String> {
    let (authority, mut sender) = connect(url).await?;
    let body = serde_json::to_vec(op).map_err(|e| e.to_string())?;
    let request = http::Request::post(PATH)
        .header(http::header::HOST, &authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(TOKEN_HEADER, token)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(url, &e))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(url, &e))?
        .to_bytes();
    match serde_json::from_slice::<Reply>(&bytes) {
        Ok(Reply { error: None }) if status.is_success() => Ok(()),
        Ok(Reply { error: Some(e) }) => Err(e),
        _ => Err(format!(
            "replica {url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )),
    }
}

/// `POST /internal/v1/cluster`: run an operation a peer sent.
pub async fn serve(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(cluster) = state.cluster.as_ref() else {
        return error_response(StatusCode::NOT_FOUND, "NotFound", "No such route");
    };
    if !token_ok(cluster, &headers) {
        return ApiError::Unauthorized("Invalid cluster token".into()).into_response();
    }
    let op: PeerOp = match serde_json::from_slice(&body) {
        Ok(op) => op,
        Err(err) => {
            return ApiError::BadRequest(format!("Invalid operation: {err}")).into_response();
        }
    };
    let error = state.sandboxes.peer_op(op).await.err();
    Json(Reply { error }).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_are_plain_http_authorities() {
        assert_eq!(authority("http://10.0.0.5:8080").unwrap(), "10.0.0.5:8080");
        assert_eq!(authority("http://node-a:8080/").unwrap(), "node-a:8080");
        for bad in ["https://a:1", "http://a", "http://a:1/x", "a:1", "http://"] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn operations_round_trip_as_json() {
        let op = PeerOp::Halt {
            sandbox_id: "s".into(),
            status: "stopped".into(),
            message: None,
        };
        let json = serde_json::to_string(&op).unwrap();
        assert!(json.contains(r#""op":"halt""#), "{json}");
        assert_eq!(serde_json::from_str::<PeerOp>(&json).unwrap(), op);
    }
}
