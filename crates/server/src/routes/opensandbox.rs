//! OpenSandbox's `GET /v1/sandboxes/{sandboxId}/endpoints/{port}`.
//!
//! Sandpit always proxies (`use_server_proxy` is accepted either way): the
//! endpoint is `{server host}/sandboxes/{id}/port/{port}` and the headers
//! carry a signed token for that sandbox and port only.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::extract::Query;
use super::service_url::{port, sign};
use crate::auth::{Caller, TENANT_HEADER};
use crate::error::ApiError;
use crate::gateway::service::ENDPOINT_TOKEN_HEADER;
use crate::gateway::tokens::{AUD_ENDPOINT, MAX_TTL};
use crate::state::AppState;

/// Header carrying the API key, as OpenSandbox clients send it.
pub const OPEN_SANDBOX_KEY_HEADER: &str = "open-sandbox-api-key";

#[derive(Debug, Deserialize)]
pub struct EndpointQuery {
    #[serde(default)]
    #[allow(dead_code)]
    use_server_proxy: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct EndpointResponse {
    endpoint: String,
    headers: BTreeMap<String, String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The caller, from `OPEN-SANDBOX-API-KEY` (or `X-Api-Key`).
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = header(headers, OPEN_SANDBOX_KEY_HEADER)
        .or_else(|| header(headers, crate::auth::API_KEY_HEADER))
        .ok_or_else(|| {
            ApiError::Unauthorized("Missing API key: set the OPEN-SANDBOX-API-KEY header".into())
        })?;
    state
        .keys
        .resolve(&state.store, key, header(headers, TENANT_HEADER))
        .await
}

pub async fn endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, port_value)): Path<(String, i64)>,
    Query(_query): Query<EndpointQuery>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    let port = port(port_value)?;
    let row = state.sandboxes.find(&caller, &id).await?;
    let (token, _) = sign(
        &state,
        AUD_ENDPOINT,
        &caller.tenant_id,
        &row.id,
        port,
        MAX_TTL,
    )?;
    let base = state.base_url(&headers);
    let host = base
        .split_once("://")
        .map_or(base.as_str(), |(_, rest)| rest);
    let body = EndpointResponse {
        endpoint: format!("{host}/sandboxes/{}/port/{port}", row.id),
        headers: BTreeMap::from([("X-Sandbox-Token".to_owned(), token)]),
    };
    debug_assert_eq!(ENDPOINT_TOKEN_HEADER, "x-sandbox-token");
    let mut response = Json(body).into_response();
    if let Ok(value) = uuid::Uuid::new_v4().to_string().parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    Ok(response)
}
