//! `/volumes` handlers (template-era API): parse, call, render.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandpit_api::volume::{VolumeListResponse, VolumeResponse};

use super::extract::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::templates::validate::{self, CreateVolumeRequest, UpdateVolumeRequest};
use crate::templates::{self as t, volume_response};

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateVolumeRequest>,
) -> Result<Response, ApiError> {
    let spec = validate::create_volume(req)?;
    let row = t::create_volume(&state.store, &state.config.data_dir, &caller, spec).await?;
    Ok((StatusCode::CREATED, Json(volume_response(&row))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VolumeListResponse>, ApiError> {
    let rows = state.store.volumes(&caller.tenant_id).await?;
    let volumes = rows.iter().map(volume_response).collect();
    Ok(Json(VolumeListResponse { volumes }))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<VolumeResponse>, ApiError> {
    let row = t::get_volume(&state.store, &caller, &name).await?;
    Ok(Json(volume_response(&row)))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<UpdateVolumeRequest>,
) -> Result<Json<VolumeResponse>, ApiError> {
    if let Some(new_name) = &req.name {
        crate::sandboxes::validate::validate_name(new_name)?;
    }
    let size = match req.size {
        Some(text) => {
            let bytes = validate::volume_size(&text)?;
            Some((text, bytes))
        }
        None => None,
    };
    let row = t::update_volume(&state.store, &caller, &name, req.name, size).await?;
    Ok(Json(volume_response(&row)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    t::delete_volume(&state.store, &state.config.data_dir, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
