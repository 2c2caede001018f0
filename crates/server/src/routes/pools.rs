//! `/pools` handlers (langsmith 0.7.x warm pools). The work is the
//! controller's (`crate::sandboxes`' `pools` module): these parse and shape.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sandpit_api::pools::{CreatePoolRequest, PoolListResponse, PoolResponse, UpdatePoolRequest};

use super::extract::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreatePoolRequest>,
) -> Result<(StatusCode, Json<PoolResponse>), ApiError> {
    let row = state.sandboxes.create_pool(&caller, req).await?;
    let pool = state.sandboxes.pool_response(row).await?;
    Ok((StatusCode::CREATED, Json(pool)))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PoolListResponse>, ApiError> {
    let mut pools = Vec::new();
    for row in state.sandboxes.pools(&caller).await? {
        pools.push(state.sandboxes.pool_response(row).await?);
    }
    Ok(Json(PoolListResponse { pools }))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PoolResponse>, ApiError> {
    let row = state.sandboxes.find_pool(&caller, &name).await?;
    Ok(Json(state.sandboxes.pool_response(row).await?))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<UpdatePoolRequest>,
) -> Result<Json<PoolResponse>, ApiError> {
    let row = state.sandboxes.update_pool(&caller, &name, req).await?;
    Ok(Json(state.sandboxes.pool_response(row).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.delete_pool_named(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
