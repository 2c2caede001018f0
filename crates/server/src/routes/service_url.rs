//! `POST /boxes/{name}/service-url` (token mode, and login grants with
//! `access`; see `gateway/grants.rs`), the console's sign-in hop for login
//! grants, the JWKS that verifies tokens, and key rotation.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use sandpit_api::service_url::{
    RevokeServiceUrlsResponse, ServiceLoginRequest, ServiceLoginResponse, ServiceLoginTicket,
    ServiceUrlRequest, ServiceUrlResponse,
};

use super::extract::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::gateway::grants::{self, Access};
use crate::gateway::service;
use crate::gateway::tokens::{Claims, AUD_LOGIN, AUD_SERVICE, MAX_TTL};
use crate::state::AppState;
use crate::store::ServiceGrantRow;

/// Default token lifetime (10 minutes), as the SDK documents.
const DEFAULT_TTL: i64 = 600;

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
        ..Claims::default()
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
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let port = port(req.port)?;
    let origins = grants::normalize_origins(req.embed_origins.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    if let Some(access) = &req.access {
        let access = Access::parse(access).map_err(|e| ApiError::Validation(e.to_string()))?;
        if req.expires_in_seconds.is_some() {
            return Err(ApiError::Validation(
                "expires_in_seconds does not apply with access: a login grant has no token \
                 and no expiry"
                    .into(),
            ));
        }
        let answer = create_grant(&state, &caller, &headers, &name, port, access, origins).await?;
        return Ok(Json(answer).into_response());
    }
    let ttl = req.expires_in_seconds.unwrap_or(DEFAULT_TTL);
    if !(1..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::Validation(format!(
            "expires_in_seconds must be between 1 and {MAX_TTL}, got {ttl}"
        )));
    }
    let row = state.sandboxes.find(&caller, &name).await?;
    if let Some(grant) = grants::lookup_fresh(&state.store, &row.id, port).await? {
        return Err(ApiError::Conflict(format!(
            "port {port} of sandbox '{name}' has a login grant (access={}): token URLs are \
             refused while it is in place. Call service() with access again for its URL, or \
             remove the grant with POST /boxes/{name}/service-url/revoke",
            grant.access
        )));
    }
    let now = chrono::Utc::now();
    let expires_at = now + chrono::Duration::seconds(ttl);
    let claims = Claims {
        sub: row.id.clone(),
        port,
        tid: caller.tenant_id.clone(),
        aud: AUD_SERVICE.to_owned(),
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
        ep: state.service_keys.epoch(&row.id),
        eo: origins.clone(),
        ..Claims::default()
    };
    let token = state
        .service_keys
        .sign(&claims)
        .map_err(ApiError::Internal)?;
    let base = state.base_url(&headers);
    let urls = service::urls(&state.config, &base, &row.id, port, &token);
    // H1: never a browser URL on the console's origin; say why instead.
    let browser_url = urls
        .browser
        .map_err(|err| ApiError::Conflict(err.to_string()))?;
    let embed_url = if origins.is_empty() {
        String::new()
    } else {
        browser_url.clone()
    };
    Ok(Json(ServiceUrlResponse {
        browser_url,
        service_url: urls.service,
        token,
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        embed_url,
        embed_origins: origins,
    })
    .into_response())
}

/// Login mode: create (or update, keeping its id, so sessions stay) the
/// grant on `port` of sandbox `name`; its embed origins are replaced.
async fn create_grant(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    name: &str,
    port: u16,
    access: Access,
    origins: Vec<String>,
) -> Result<ServiceLoginResponse, ApiError> {
    let row = state.sandboxes.find(caller, name).await?;
    let base = state.base_url(headers);
    // H1 holds here too: the service gets an origin of its own or no URL.
    let root = service::origin(&state.config, &base, &row.id, port)
        .map_err(|err| ApiError::Conflict(err.to_string()))?;
    let now = crate::store::now();
    let grant = state
        .store
        .upsert_service_grant(&ServiceGrantRow {
            sandbox_id: row.id.clone(),
            port: i64::from(port),
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: row.tenant_id.clone(),
            access: access.as_str().to_owned(),
            embed_origins: serde_json::to_string(&origins)
                .map_err(|e| ApiError::Internal(e.into()))?,
            // Where a browser without a session signs in: this console.
            console_url: base,
            created_at: now.clone(),
            updated_at: now,
        })
        .await?;
    grants::remember(&row.id, port, Some(grant.clone()));
    let url = format!("{root}/");
    Ok(ServiceLoginResponse {
        browser_url: url.clone(),
        service_url: url.clone(),
        access: access.as_str().to_owned(),
        embed_url: if origins.is_empty() {
            String::new()
        } else {
            url
        },
        embed_origins: grant.origins(),
    })
}

/// `POST /api/v1/console/service-logins` (the sign-in page, with the
/// console's key): a sign-in ticket for a login-gated service the caller
/// may open. `restricted` admits callers that can read the sandbox,
/// `workspace` any caller of the owning tenant; Sandpit keys carry no
/// per-key permissions, so today both admit exactly the tenant's keys.
/// Another tenant's sandbox, or one without a grant, is 404.
pub async fn service_login(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(req): Body<ServiceLoginRequest>,
) -> Result<Json<ServiceLoginTicket>, ApiError> {
    let (id, port) = service::parse_label(&req.service).ok_or_else(|| {
        ApiError::Validation(format!(
            "service must be {{sandbox-id}}--{{port}}, got {:?}",
            req.service
        ))
    })?;
    let not_found = || ApiError::sandbox_not_found(&id);
    let grant = grants::lookup_fresh(&state.store, &id, port)
        .await?
        .filter(|g| g.tenant_id == caller.tenant_id)
        .ok_or_else(not_found)?;
    if Access::parse(&grant.access) == Ok(Access::Restricted) {
        // Readable by this caller (tenant-scoped lookup), or 404.
        state.sandboxes.find(&caller, &id).await?;
    }
    let base = state.base_url(&headers);
    let root = service::origin(&state.config, &base, &id, port)
        .map_err(|err| ApiError::Conflict(err.to_string()))?;
    let now = chrono::Utc::now().timestamp();
    let next = grants::same_host_path(req.next.as_deref().unwrap_or("/"));
    let ticket = Claims {
        sub: id.clone(),
        port,
        tid: grant.tenant_id.clone(),
        aud: AUD_LOGIN.to_owned(),
        iat: now,
        exp: now + grants::TICKET_TTL,
        ep: state.service_keys.epoch(&id),
        gid: Some(grant.id.clone()),
        jti: Some(uuid::Uuid::new_v4().to_string()),
        next: Some(next),
        ..Claims::default()
    };
    let ticket = state
        .service_keys
        .sign(&ticket)
        .map_err(ApiError::Internal)?;
    Ok(Json(ServiceLoginTicket {
        login_url: format!("{root}/_svc/login?ticket={ticket}"),
    }))
}

/// `GET /service-sign-in`: the sign-in page (console origin; never framed,
/// no opener kept, nothing but same-origin scripts and calls).
pub async fn sign_in_page() -> axum::response::Response {
    sign_in_asset("text/html; charset=utf-8", grants::SIGN_IN_PAGE)
}

/// `GET /service-sign-in.js`: its script.
pub async fn sign_in_script() -> axum::response::Response {
    sign_in_asset("text/javascript; charset=utf-8", grants::SIGN_IN_SCRIPT)
}

fn sign_in_asset(content_type: &'static str, body: &'static str) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; connect-src 'self'; \
                 style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; \
                 frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `POST /boxes/{name}/service-url/revoke`: refuse every service-URL and
/// endpoint token signed so far for this sandbox (any port); URLs made
/// afterwards work.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<RevokeServiceUrlsResponse>, ApiError> {
    let row = state.sandboxes.find(&caller, &name).await?;
    // Login grants go too (and with the epoch bump, their sessions).
    let grants_removed = state.store.delete_service_grants(&row.id).await?;
    grants::forget(&row.id);
    let epoch = match &state.cluster {
        // Every replica refuses the tokens.
        Some(cluster) => crate::cluster::keys::revoke(cluster, &state.service_keys, &row.id).await,
        None => state.service_keys.revoke(&row.id),
    }
    .map_err(ApiError::Internal)?;
    Ok(Json(RevokeServiceUrlsResponse {
        token_epoch: epoch,
        grants_removed,
    }))
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
