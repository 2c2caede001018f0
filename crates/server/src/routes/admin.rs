//! `/api/v1/admin/...`: tenants, quotas and API keys. Admin keys only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sandpit_api::admin::{
    CreateKeyRequest, CreateTenantRequest, CreatedKeyResponse, KeyListResponse, KeyResponse,
    TenantListResponse, TenantResponse, UpdateTenantRequest,
};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{Body, Query};
use crate::auth::{generate_key, hash_key, key_prefix, Caller};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ApiKeyRow, QuotaUpdate, Store, StoreError, TenantRow};

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden("This needs an admin API key".into()))
    }
}

/// A tenant by id or name.
async fn find_tenant(store: &Store, which: &str) -> Result<TenantRow, ApiError> {
    if let Some(t) = store.tenant(which).await? {
        return Ok(t);
    }
    store
        .tenant_by_name(which)
        .await?
        .ok_or(ApiError::NotFound {
            kind: "Tenant",
            name: which.to_owned(),
        })
}

async fn tenant_response(store: &Store, t: TenantRow) -> Result<TenantResponse, ApiError> {
    let usage = store.usage(&t.id).await?;
    Ok(TenantResponse {
        id: t.id,
        name: t.name,
        created_at: t.created_at,
        max_sandboxes: t.max_sandboxes,
        max_vcpus: t.max_vcpus,
        max_mem_bytes: t.max_mem_bytes,
        sandboxes: usage.sandboxes,
        vcpus_in_use: usage.vcpus,
        mem_bytes_in_use: usage.mem_bytes,
    })
}

fn quota(field: &str, value: Option<i64>) -> Result<Option<i64>, ApiError> {
    match value {
        Some(v) if v < 0 => Err(ApiError::Validation(format!(
            "{field} must be >= 0, got {v}"
        ))),
        other => Ok(other),
    }
}

/// `null` clears a quota, a number sets it, absence leaves it.
fn quota_change(field: &str, value: Option<Value>) -> Result<Option<Option<i64>>, ApiError> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => {
            let v = n
                .as_i64()
                .ok_or_else(|| ApiError::Validation(format!("{field} must be an integer")))?;
            Ok(Some(quota(field, Some(v))?))
        }
        Some(_) => Err(ApiError::Validation(format!(
            "{field} must be an integer or null"
        ))),
    }
}

fn validate_tenant_name(name: &str) -> Result<(), ApiError> {
    crate::sandboxes::validate::validate_name(name)
        .map_err(|_| ApiError::Validation(format!("Invalid tenant name '{name}'")))
}

pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateTenantRequest>,
) -> Result<(StatusCode, Json<TenantResponse>), ApiError> {
    require_admin(&caller)?;
    validate_tenant_name(&req.name)?;
    let update = QuotaUpdate {
        max_sandboxes: Some(quota("max_sandboxes", req.max_sandboxes)?),
        max_vcpus: Some(quota("max_vcpus", req.max_vcpus)?),
        max_mem_bytes: Some(quota("max_mem_bytes", req.max_mem_bytes)?),
    };
    let tenant = match state.store.create_tenant(&req.name).await {
        Ok(t) => t,
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!(
                "Tenant '{}' already exists",
                req.name
            )))
        }
        Err(e) => return Err(e.into()),
    };
    state.store.update_quotas(&tenant.id, &update).await?;
    let tenant = find_tenant(&state.store, &tenant.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(tenant_response(&state.store, tenant).await?),
    ))
}

pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TenantListResponse>, ApiError> {
    require_admin(&caller)?;
    let mut tenants = Vec::new();
    for t in state.store.tenants().await? {
        tenants.push(tenant_response(&state.store, t).await?);
    }
    Ok(Json(TenantListResponse { tenants }))
}

pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(which): Path<String>,
) -> Result<Json<TenantResponse>, ApiError> {
    require_admin(&caller)?;
    let tenant = find_tenant(&state.store, &which).await?;
    Ok(Json(tenant_response(&state.store, tenant).await?))
}

pub async fn update_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(which): Path<String>,
    Body(req): Body<UpdateTenantRequest>,
) -> Result<Json<TenantResponse>, ApiError> {
    require_admin(&caller)?;
    let tenant = find_tenant(&state.store, &which).await?;
    let update = QuotaUpdate {
        max_sandboxes: quota_change("max_sandboxes", req.max_sandboxes)?,
        max_vcpus: quota_change("max_vcpus", req.max_vcpus)?,
        max_mem_bytes: quota_change("max_mem_bytes", req.max_mem_bytes)?,
    };
    state.store.update_quotas(&tenant.id, &update).await?;
    let tenant = find_tenant(&state.store, &tenant.id).await?;
    Ok(Json(tenant_response(&state.store, tenant).await?))
}

fn key_response(row: ApiKeyRow, tenant: &TenantRow) -> KeyResponse {
    KeyResponse {
        id: row.id,
        name: row.name,
        prefix: row.prefix,
        tenant_id: tenant.id.clone(),
        tenant: tenant.name.clone(),
        admin: row.is_admin != 0,
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    }
}

pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    require_admin(&caller)?;
    let tenant = find_tenant(&state.store, &req.tenant).await?;
    let key = generate_key();
    let name = req.name.unwrap_or_else(|| "key".into());
    let row = state
        .store
        .insert_key(
            &tenant.id,
            &name,
            &hash_key(&key),
            &key_prefix(&key),
            req.admin,
        )
        .await?;
    let info = key_response(row, &tenant);
    Ok((StatusCode::CREATED, Json(CreatedKeyResponse { key, info })))
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
    require_admin(&caller)?;
    let filter = match &query.tenant {
        Some(which) => Some(find_tenant(&state.store, which).await?),
        None => None,
    };
    let tenants = state.store.tenants().await?;
    let mut keys = Vec::new();
    for row in state
        .store
        .keys(filter.as_ref().map(|t| t.id.as_str()))
        .await?
    {
        if let Some(t) = tenants.iter().find(|t| t.id == row.tenant_id) {
            keys.push(key_response(row, t));
        }
    }
    Ok(Json(KeyListResponse { keys }))
}

/// Revoke a key; it stops working on the next request.
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if !state.store.revoke_key(&id).await? {
        return Err(ApiError::NotFound {
            kind: "API key",
            name: id,
        });
    }
    state.keys.forget_all();
    Ok(StatusCode::NO_CONTENT)
}
