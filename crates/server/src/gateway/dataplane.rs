//! The data-plane route: `{base}/dataplane/{sandbox id}/...` → the sandbox's
//! agent. The caller's key must belong to the sandbox's tenant; a stopped
//! sandbox is started first; every request counts as activity.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::response::Response;

use super::relay::{self, RelayError, Upstream};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn relay_root(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    forward(state, caller, id, String::new(), req).await
}

pub async fn relay(
    state: State<AppState>,
    caller: Caller,
    Path((id, rest)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    forward(state, caller, id, rest, req).await
}

pub(crate) async fn forward(
    State(state): State<AppState>,
    caller: Caller,
    id: String,
    rest: String,
    req: Request,
) -> Result<Response, ApiError> {
    check_upload_size(&req, state.config.max_upload_bytes)?;
    // The agent's control paths are the server's alone.
    if rest.starts_with("_sandpit/") || rest == "_sandpit" {
        return Err(ApiError::NotFound {
            kind: "Endpoint",
            name: format!("/{rest}"),
        });
    }
    let socket = state.sandboxes.dataplane_socket(&caller, &id).await?;
    let mut target = format!("/{rest}");
    if let Some(query) = req.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    let req = limit_body(req, state.config.max_upload_bytes);
    let connection = state.sandboxes.connection(&id);
    relay::forward_holding(req, &Upstream::Unix(socket), &target, connection)
        .await
        .map_err(|err| match err {
            RelayError::BadTarget(_) => ApiError::BadRequest("Invalid request path".into()),
            other => {
                tracing::debug!(sandbox = %id, error = ?other, "dataplane relay failed");
                ApiError::Upstream(format!("Sandbox '{id}' is not reachable: {other}"))
            }
        })
}

/// Refuse a body whose declared length is over the limit before relaying.
fn check_upload_size(req: &Request, max: u64) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > max => Err(ApiError::PayloadTooLarge(format!(
            "Request body of {len} bytes exceeds the limit of {max} bytes"
        ))),
        _ => Ok(()),
    }
}

/// Cap a streamed body of unknown length; the agent sees an aborted upload
/// and keeps nothing.
fn limit_body(req: Request, max: u64) -> Request {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
    Request::from_parts(parts, Body::new(limited))
}
