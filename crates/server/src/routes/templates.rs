//! `/templates` handlers (template-era API): parse, call, render.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandpit_api::template::{TemplateListResponse, TemplateResponse};

use super::extract::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::templates::validate::{self, CreateTemplateRequest, UpdateTemplateRequest};
use crate::templates::{self as t, template_response};

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateTemplateRequest>,
) -> Result<Response, ApiError> {
    let spec = validate::create_template(req)?;
    let row = t::create_template(&state.store, &caller, spec).await?;
    Ok((StatusCode::CREATED, Json(template_response(&row)?)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TemplateListResponse>, ApiError> {
    let rows = state.store.templates(&caller.tenant_id).await?;
    let templates = rows
        .iter()
        .map(template_response)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(TemplateListResponse { templates }))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TemplateResponse>, ApiError> {
    let row = t::get_template(&state.store, &caller, &name).await?;
    Ok(Json(template_response(&row)?))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<UpdateTemplateRequest>,
) -> Result<Json<TemplateResponse>, ApiError> {
    let row = match req.name {
        Some(new_name) => {
            crate::sandboxes::validate::validate_name(&new_name)?;
            t::rename_template(&state.store, &caller, &name, &new_name).await?
        }
        None => t::get_template(&state.store, &caller, &name).await?,
    };
    Ok(Json(template_response(&row)?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    t::delete_template(&state.store, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
