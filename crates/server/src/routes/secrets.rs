//! `/api/v1/workspaces/current/secrets`: the caller's tenant's workspace
//! secrets, in the shape of the `langsmith` SDK's `workspace_secrets`
//! resource. Values go in and never come out.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertSecret {
    /// Required to create a secret; omitted keeps the current value.
    #[serde(default)]
    value: Option<String>,
    /// Allowed hosts per secret: not supported; only empty is accepted.
    #[serde(default)]
    configs: Option<Vec<Value>>,
}

fn secret_body(name: &str) -> Value {
    json!({ "key": name })
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Value>>, ApiError> {
    let names = state.secrets.names(&caller.tenant_id).await?;
    Ok(Json(names.iter().map(|n| secret_body(n)).collect()))
}

pub async fn upsert(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Body(req): Body<UpsertSecret>,
) -> Result<Json<Value>, ApiError> {
    if req.configs.is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::Validation(
            "configs (allowed hosts per secret) are not supported by this server".into(),
        ));
    }
    match req.value {
        Some(value) => state.secrets.set(&caller.tenant_id, &key, &value).await?,
        None if state.secrets.exists(&caller.tenant_id, &key).await? => {}
        None => {
            return Err(ApiError::Validation(format!(
                "value is required to create secret {key}"
            )))
        }
    }
    Ok(Json(secret_body(&key)))
}

/// Deleting a missing key succeeds, as the SDK documents.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.secrets.delete(&caller.tenant_id, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
