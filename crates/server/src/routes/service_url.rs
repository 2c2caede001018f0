//! `POST /boxes/{name}/service-url`, the JWKS that verifies its tokens, and
//! key rotation.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::extract::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::gateway::service;
use crate::gateway::tokens::{Claims, AUD_SERVICE, MAX_TTL};
use crate::state::AppState;

/// Default token lifetime (10 minutes), as the SDK documents.
const DEFAULT_TTL: i64 = 600;

fn default_ttl() -> i64 {
    DEFAULT_TTL
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUrlRequest {
    /// Port inside the sandbox, 1..=65535.
    port: i64,
    /// Token lifetime, 1 s ..= 24 h.
    #[serde(default = "default_ttl")]
    expires_in_seconds: i64,
    /// Login-gated URLs (LangSmith accounts) do not exist here.
    #[serde(default)]
    access: Option<String>,
    /// Embed URLs do not exist here: refused unless empty.
    #[serde(default)]
    embed_origins: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct ServiceUrlResponse {
    browser_url: String,
    service_url: String,
    token: String,
    expires_at: String,
}

/// A port number from a request, or 422.
pub fn port(value: i64) -> Result<u16, ApiError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ApiError::Validation(format!("port must be between 1 and 65535, got {value}"))
        })
}

/// Sign a token for `port` of sandbox `id` of `tenant_id`, valid `ttl` seconds.
pub fn sign(
    state: &AppState,
    aud: &str,
    tenant_id: &str,
    id: &str,
    port: u16,
    ttl: i64,
) -> Result<(String, chrono::DateTime<chrono::Utc>), ApiError> {
    let now = chrono::Utc::now();
    let expires_at = now + chrono::Duration::seconds(ttl);
    let claims = Claims {
        sub: id.to_owned(),
        port,
        tid: tenant_id.to_owned(),
        aud: aud.to_owned(),
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
        ep: state.service_keys.epoch(id),
    };
    let token = state
        .service_keys
        .sign(&claims)
        .map_err(ApiError::Internal)?;
    Ok((token, expires_at))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(req): Body<ServiceUrlRequest>,
) -> Result<Json<ServiceUrlResponse>, ApiError> {
    let port = port(req.port)?;
    if !(1..=MAX_TTL).contains(&req.expires_in_seconds) {
        return Err(ApiError::Validation(format!(
            "expires_in_seconds must be between 1 and {MAX_TTL}, got {}",
            req.expires_in_seconds
        )));
    }
    if let Some(access) = &req.access {
        return Err(ApiError::Validation(format!(
            "access '{access}' is not supported: Sandpit has no sign-in for service URLs; \
             omit access to get a token URL"
        )));
    }
    if req.embed_origins.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::Validation(
            "embed_origins is not supported: Sandpit issues no embed_url; omit embed_origins"
                .into(),
        ));
    }
    let row = state.sandboxes.find(&caller, &name).await?;
    let (token, expires_at) = sign(
        &state,
        AUD_SERVICE,
        &caller.tenant_id,
        &row.id,
        port,
        req.expires_in_seconds,
    )?;
    let base = state.base_url(&headers);
    let urls = service::urls(&state.config, &base, &row.id, port, &token);
    // H1: never a browser URL on the console's origin; say why instead.
    let browser_url = urls
        .browser
        .map_err(|err| ApiError::Conflict(err.to_string()))?;
    Ok(Json(ServiceUrlResponse {
        browser_url,
        service_url: urls.service,
        token,
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}

/// `POST /boxes/{name}/service-url/revoke`: refuse every service-URL and
/// endpoint token signed so far for this sandbox (any port); URLs made
/// afterwards work.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = state.sandboxes.find(&caller, &name).await?;
    let epoch = match &state.cluster {
        // Every replica refuses the tokens.
        Some(cluster) => crate::cluster::keys::revoke(cluster, &state.service_keys, &row.id).await,
        None => state.service_keys.revoke(&row.id),
    }
    .map_err(ApiError::Internal)?;
    Ok(Json(serde_json::json!({ "token_epoch": epoch })))
}

/// `GET /.well-known/jwks.json`: the keys that verify service tokens.
pub async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.service_keys.jwks())
}

/// `POST /api/v1/admin/service-keys/rotate`: sign with a new key from now
/// on; tokens signed before stay valid until they expire.
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !caller.is_admin {
        return Err(ApiError::Forbidden("This needs an admin API key".into()));
    }
    let kid = state.service_keys.rotate().map_err(ApiError::Internal)?;
    if let Some(cluster) = &state.cluster {
        // Other replicas verify its tokens from their next sync on.
        crate::cluster::keys::sync_service_keys(cluster, &state.service_keys)
            .await
            .map_err(ApiError::Internal)?;
    }
    Ok(Json(serde_json::json!({ "kid": kid })))
}
