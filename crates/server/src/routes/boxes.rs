//! `/boxes` handlers: parse, call the controller, render.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandpit_api::{
    CreateSandboxRequest, ListSandboxesQuery, SandboxListResponse, StatusResponse,
    UpdateSandboxRequest,
};
use serde::Deserialize;

use super::extract::{Body, OptionalBody, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::sandboxes::validate;
use crate::state::AppState;
use crate::store::SandboxRow;

/// Default wait of `POST /boxes/{name}/start`.
const START_WAIT: Duration = Duration::from_secs(120);

fn render(state: &AppState, headers: &HeaderMap, row: &SandboxRow) -> Result<Response, ApiError> {
    let body = state.sandboxes.response(row, &state.base_url(headers))?;
    Ok(Json(body).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(req): Body<CreateSandboxRequest>,
) -> Result<Response, ApiError> {
    validate::refuse_unimplemented(&req)?;
    crate::delegation::refuse_redelegation(&headers, req.access_delegation.as_ref())?;
    let spec = validate::create_spec(req, state.sandboxes.defaults())?;
    let row = state.sandboxes.create(&caller, spec).await?;
    crate::delegation::record(&state.store, &caller, &row).await?;
    let mut response = render(&state, &headers, &row)?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<ListSandboxesQuery>,
) -> Result<Json<SandboxListResponse>, ApiError> {
    let filter = validate::list_filter(query)?;
    let rows = state.sandboxes.list(&caller, &filter).await?;
    let base = state.base_url(&headers);
    let sandboxes = rows
        .iter()
        .map(|row| state.sandboxes.response(row, &base))
        .collect::<Result<_, _>>()?;
    Ok(Json(SandboxListResponse {
        sandboxes,
        offset: filter.offset,
    }))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let row = state.sandboxes.find(&caller, &name).await?;
    render(&state, &headers, &row)
}

pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    let row = state.sandboxes.find(&caller, &name).await?;
    Ok(Json(StatusResponse {
        status: row.status()?,
        status_message: row.status_message,
    }))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(req): Body<UpdateSandboxRequest>,
) -> Result<Response, ApiError> {
    let run_config_changes = req.run_config.is_some();
    let spec = validate::update_spec(req)?;
    let row = state.sandboxes.update(&caller, &name, spec).await?;
    if run_config_changes {
        state.sandboxes.push_run_config(&row).await;
    }
    render(&state, &headers, &row)
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.delete(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    OptionalBody(_): OptionalBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let row = state.sandboxes.stop(&caller, &name).await?;
    render(&state, &headers, &row)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Seconds to wait for `ready` (default 120).
    timeout: Option<u64>,
}

pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    OptionalBody(req): OptionalBody<StartRequest>,
) -> Result<Response, ApiError> {
    let wait = req.timeout.map(Duration::from_secs).unwrap_or(START_WAIT);
    let row = state.sandboxes.start(&caller, &name, wait).await?;
    render(&state, &headers, &row)
}
