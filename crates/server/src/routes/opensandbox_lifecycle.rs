//! OpenSandbox lifecycle routes under `/v1` (`specs/sandbox-lifecycle.yml`;
//! the endpoints route is `opensandbox.rs`). Handlers parse and call
//! `crate::opensandbox::lifecycle`; errors are OpenSandbox's
//! `{"code", "message"}`.
//!
//! Paths the `opensandbox` 1.1.1 SDK knows beyond the spec (snapshots,
//! templates, network policy, diagnostics) answer 501 `NOT_IMPLEMENTED`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::opensandbox::auth::OsCaller;
use crate::opensandbox::error::{request_id, OsError};
use crate::opensandbox::lifecycle;
use crate::opensandbox::model::{self, RenewRequest, RenewResponse};
use crate::sandboxes::validate::UpdateSpec;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sandboxes", post(create).get(list))
        .route("/v1/metrics/events", post(metrics_event))
        .route("/v1/sandboxes/{id}", get(get_one).delete(delete))
        .route("/v1/sandboxes/{id}/pause", post(pause))
        .route("/v1/sandboxes/{id}/resume", post(resume))
        .route("/v1/sandboxes/{id}/renew-expiration", post(renew))
        .route("/v1/sandboxes/{id}/metadata", patch(patch_metadata))
        .route("/v1/sandboxes/{id}/networkpolicy", any(network_policy))
        .route("/v1/sandboxes/{id}/snapshots", any(snapshots))
        .route("/v1/sandboxes/{id}/diagnostics/{*rest}", any(diagnostics))
        .route("/v1/snapshots", any(snapshots))
        .route("/v1/snapshots/{*rest}", any(snapshots))
        .route("/v1/templates", any(templates))
        .route("/v1/templates/{*rest}", any(templates))
}

/// `response` with an `X-Request-ID`.
pub fn stamped(mut response: Response) -> Response {
    response.headers_mut().insert("x-request-id", request_id());
    response
}

/// A JSON body, or 400 in OpenSandbox's shape.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, OsError> {
    serde_json::from_slice(body)
        .map_err(|e| OsError::bad_request(format!("Invalid request body: {e}")))
}

async fn create(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    body: Bytes,
) -> Result<Response, OsError> {
    let req = parse_json(&body)?;
    let row = lifecycle::create(&state, &caller, req).await?;
    let mut response = (StatusCode::ACCEPTED, Json(model::create_view(&row))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/sandboxes/{}", row.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(stamped(response))
}

async fn list(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    uri: Uri,
) -> Result<Response, OsError> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| OsError::bad_request(format!("Invalid query: {e}")))?
        .0;
    let query = lifecycle::list_query(pairs)?;
    let view = lifecycle::list(&state, &caller, &query).await?;
    Ok(stamped(Json(view).into_response()))
}

async fn get_one(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> Result<Response, OsError> {
    let row = lifecycle::find(&state, &caller, &id).await?;
    Ok(stamped(Json(model::sandbox_view(&row)).into_response()))
}

async fn delete(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> Result<Response, OsError> {
    lifecycle::delete(&state, &caller, &id).await?;
    Ok(stamped(StatusCode::NO_CONTENT.into_response()))
}

async fn pause(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> Result<Response, OsError> {
    lifecycle::pause(&state, &caller, &id).await?;
    Ok(stamped(StatusCode::ACCEPTED.into_response()))
}

async fn resume(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
) -> Result<Response, OsError> {
    lifecycle::resume(&state, &caller, &id).await?;
    Ok(stamped(StatusCode::ACCEPTED.into_response()))
}

async fn renew(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, OsError> {
    let req: RenewRequest = parse_json(&body)?;
    let at = lifecycle::renew(&state, &caller, &id, &req.expires_at).await?;
    let body = RenewResponse {
        expires_at: model::rfc3339(at),
    };
    Ok(stamped(Json(body).into_response()))
}

/// `PATCH /v1/sandboxes/{id}/metadata` (SDK `patch_metadata`): keys set
/// to a string are set, keys set to `null` removed.
async fn patch_metadata(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, OsError> {
    let patch: BTreeMap<String, Option<String>> = parse_json(&body)?;
    let row = lifecycle::find(&state, &caller, &id).await?;
    let mut labels: BTreeMap<String, String> =
        serde_json::from_str(&row.labels).unwrap_or_default();
    for (key, value) in patch {
        match value {
            Some(v) => labels.insert(key, v),
            None => labels.remove(&key),
        };
    }
    let spec = UpdateSpec {
        labels: Some(labels),
        ..UpdateSpec::default()
    };
    let row = state.sandboxes.update(&caller, &row.id, spec).await?;
    Ok(stamped(Json(model::sandbox_view(&row)).into_response()))
}

/// `POST /v1/metrics/events`: the SDKs' best-effort telemetry, accepted
/// (204) and not recorded.
async fn metrics_event(OsCaller(_): OsCaller, body: Bytes) -> Result<Response, OsError> {
    let _: serde_json::Value = parse_json(&body)?;
    Ok(stamped(StatusCode::NO_CONTENT.into_response()))
}

async fn network_policy(OsCaller(_): OsCaller) -> OsError {
    OsError::not_implemented(
        "The sandbox network policy API (use proxy_config through the LangSmith API)",
    )
}

async fn snapshots(OsCaller(_): OsCaller) -> OsError {
    OsError::not_implemented(
        "The OpenSandbox snapshots API (use Sandpit snapshots through the LangSmith API)",
    )
}

async fn templates(OsCaller(_): OsCaller) -> OsError {
    OsError::not_implemented("The OpenSandbox templates API")
}

async fn diagnostics(OsCaller(_): OsCaller) -> OsError {
    OsError::not_implemented("The OpenSandbox diagnostics API")
}
