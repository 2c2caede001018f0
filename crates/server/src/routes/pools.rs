//! `/pools` handlers (langsmith 0.7.x warm pools).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sandpit_api::pools::{CreatePoolRequest, PoolListResponse, PoolResponse, UpdatePoolRequest};

use super::extract::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::sandboxes::validate::validate_name;
use crate::state::AppState;
use crate::store::{PoolRow, StoreError};

const MAX_REPLICAS: i64 = 100;

fn pool_not_found(name: &str) -> ApiError {
    ApiError::NotFound {
        kind: "Pool",
        name: name.to_owned(),
    }
}

async fn render(state: &AppState, row: PoolRow) -> Result<PoolResponse, ApiError> {
    let ready_replicas = state.sandboxes.ready_members(&row).await?;
    Ok(PoolResponse {
        id: row.id,
        name: row.name,
        template_name: row.template_name,
        replicas: row.replicas,
        ready_replicas,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn check_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|_| {
        ApiError::Validation(format!(
            "Invalid pool name '{name}': use lowercase letters, digits and hyphens (max 63)"
        ))
    })
}

fn check_replicas(replicas: i64, min: i64) -> Result<(), ApiError> {
    if (min..=MAX_REPLICAS).contains(&replicas) {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "replicas must be between {min} and {MAX_REPLICAS}, got {replicas}"
        )))
    }
}

/// The template a pool may use: it exists and mounts no volumes.
async fn check_template(state: &AppState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    let template = match crate::templates::get_template(&state.store, caller, name).await {
        Ok(t) => t,
        Err(ApiError::NotFound { .. }) => {
            return Err(ApiError::TemplateNotFound(format!(
                "Template '{name}' not found"
            )))
        }
        Err(e) => return Err(e),
    };
    if !crate::templates::volume_mounts(&template)?.is_empty() {
        return Err(ApiError::InvalidTemplate(format!(
            "Template '{name}' has volume mounts; templates with volumes cannot be used in pools"
        )));
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreatePoolRequest>,
) -> Result<(StatusCode, Json<PoolResponse>), ApiError> {
    check_name(&req.name)?;
    check_replicas(req.replicas, 1)?;
    let wait = req.timeout.unwrap_or(30);
    if !(10..=600).contains(&wait) {
        return Err(ApiError::Validation(format!(
            "timeout must be between 10 and 600 seconds, got {wait}"
        )));
    }
    check_template(&state, &caller, &req.template_name).await?;
    let now = crate::store::now();
    let row = PoolRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: caller.tenant_id.clone(),
        name: req.name.clone(),
        template_name: req.template_name,
        replicas: req.replicas,
        created_at: now.clone(),
        updated_at: now,
    };
    match state.store.insert_pool(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!(
                "Pool '{}' already exists",
                req.name
            )))
        }
        Err(e) => return Err(e.into()),
    }
    if req.wait_for_ready {
        let sandboxes = state.sandboxes.clone();
        let fill = row.clone();
        let filled = tokio::time::timeout(Duration::from_secs(wait as u64), async move {
            sandboxes.reconcile_pool(&fill).await
        })
        .await;
        match filled {
            Ok(Ok(())) => {}
            // A quota or a boot failure: the pool is not created.
            Ok(Err(err)) => {
                state.sandboxes.delete_pool(&row).await?;
                return Err(err);
            }
            Err(_) => {
                state.sandboxes.wake_pools();
                return Err(ApiError::PoolTimeout(format!(
                    "Pool '{}' did not reach {} ready replicas within {wait}s",
                    row.name, row.replicas
                )));
            }
        }
    } else {
        state.sandboxes.wake_pools();
    }
    Ok((StatusCode::CREATED, Json(render(&state, row).await?)))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PoolListResponse>, ApiError> {
    let mut pools = Vec::new();
    for row in state.store.pools(Some(&caller.tenant_id)).await? {
        pools.push(render(&state, row).await?);
    }
    Ok(Json(PoolListResponse { pools }))
}

async fn find(state: &AppState, caller: &Caller, name: &str) -> Result<PoolRow, ApiError> {
    state
        .store
        .pool(&caller.tenant_id, name)
        .await?
        .ok_or_else(|| pool_not_found(name))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PoolResponse>, ApiError> {
    let row = find(&state, &caller, &name).await?;
    Ok(Json(render(&state, row).await?))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<UpdatePoolRequest>,
) -> Result<Json<PoolResponse>, ApiError> {
    let mut row = find(&state, &caller, &name).await?;
    if let Some(new_name) = req.name {
        check_name(&new_name)?;
        row.name = new_name;
    }
    if let Some(replicas) = req.replicas {
        check_replicas(replicas, 0)?;
        if replicas > row.replicas {
            // Scaling up needs the template to still be usable.
            check_template(&state, &caller, &row.template_name).await?;
        }
        row.replicas = replicas;
    }
    match state.store.update_pool(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!(
                "Pool '{}' already exists",
                row.name
            )))
        }
        Err(e) => return Err(e.into()),
    }
    state.sandboxes.wake_pools();
    let row = find(&state, &caller, &row.name).await?;
    Ok(Json(render(&state, row).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let row = find(&state, &caller, &name).await?;
    state.sandboxes.delete_pool(&row).await?;
    Ok(StatusCode::NO_CONTENT)
}
