//! `/api/v1/admin/...`: tenants, quotas and API keys (controller:
//! `crate::tenants`). Admin keys only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sandpit_api::admin::{
    CreateKeyRequest, CreateTenantRequest, CreatedKeyResponse, KeyListResponse, TenantListResponse,
    TenantResponse, UpdateTenantRequest,
};
use serde::Deserialize;

use super::extract::{Body, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::Tenants;

/// The tenants controller, for admin callers only.
fn admin<'a>(state: &'a AppState, caller: &Caller) -> Result<Tenants<'a>, ApiError> {
    if caller.is_admin {
        Ok(Tenants::new(&state.store, &state.keys))
    } else {
        Err(ApiError::Forbidden("This needs an admin API key".into()))
    }
}

pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateTenantRequest>,
) -> Result<(StatusCode, Json<TenantResponse>), ApiError> {
    let tenant = admin(&state, &caller)?.create(req).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TenantListResponse>, ApiError> {
    let tenants = admin(&state, &caller)?.list().await?;
    Ok(Json(TenantListResponse { tenants }))
}

pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(which): Path<String>,
) -> Result<Json<TenantResponse>, ApiError> {
    Ok(Json(admin(&state, &caller)?.get(&which).await?))
}

pub async fn update_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(which): Path<String>,
    Body(req): Body<UpdateTenantRequest>,
) -> Result<Json<TenantResponse>, ApiError> {
    Ok(Json(admin(&state, &caller)?.update(&which, req).await?))
}

pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    let created = admin(&state, &caller)?.create_key(req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    /// Only keys of this tenant (name or id).
    tenant: Option<String>,
}

pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<KeyQuery>,
) -> Result<Json<KeyListResponse>, ApiError> {
    let keys = admin(&state, &caller)?
        .keys(query.tenant.as_deref())
        .await?;
    Ok(Json(KeyListResponse { keys }))
}

/// Revoke a key; it stops working on the next request.
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin(&state, &caller)?.revoke_key(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
pub struct GcQuery {
    /// Report what would be removed; remove nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/admin/gc`: garbage-collect this server's layer store now
/// (`crate::gc`); the answer says what was (or would be) removed.
pub async fn collect_garbage(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<GcQuery>,
) -> Result<Json<sandpit_images::GcReport>, ApiError> {
    if !caller.is_admin {
        return Err(ApiError::Forbidden("This needs an admin API key".into()));
    }
    let layers = state.snapshots()?.puller().store().clone();
    let report = crate::gc::collect(&state.store, &layers, state.config.gc.grace, query.dry_run)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(report))
}
