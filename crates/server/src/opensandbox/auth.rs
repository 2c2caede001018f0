//! Who calls an OpenSandbox route.
//!
//! Lifecycle routes take the API key from `OPEN-SANDBOX-API-KEY` (or
//! Sandpit's own `X-Api-Key`) and resolve it through the same key cache,
//! failure throttle and tenant rules as every Sandpit route
//! (`crate::auth::Keys::authenticate`; `X-Tenant-Id` works the same way).
//!
//! execd routes also take the `X-Sandbox-Token` of an endpoint of port
//! [`super::EXECD_PORT`] (what `GET .../endpoints/44772` hands out), which
//! grants that one sandbox of that one tenant until it expires.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::OsError;
use super::EXECD_PORT;
use crate::auth::{client_ip, Caller, API_KEY_HEADER, TENANT_HEADER};
use crate::gateway::tokens::AUD_ENDPOINT;
use crate::state::AppState;

/// Header carrying the API key, as OpenSandbox clients send it.
pub const KEY_HEADER: &str = "open-sandbox-api-key";

/// Header carrying an endpoint token (what the endpoint route hands out).
pub const ENDPOINT_TOKEN_HEADER: &str = "x-sandbox-token";

/// Key id recorded for callers authenticated by an endpoint token.
const TOKEN_KEY_ID: &str = "opensandbox-endpoint-token";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The caller of a lifecycle route.
pub struct OsCaller(pub Caller);

impl FromRequestParts<AppState> for OsCaller {
    type Rejection = OsError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        by_key(state, &parts.headers, parts).await.map(OsCaller)
    }
}

async fn by_key(state: &AppState, headers: &HeaderMap, parts: &Parts) -> Result<Caller, OsError> {
    let key = header(headers, KEY_HEADER)
        .or_else(|| header(headers, API_KEY_HEADER))
        .ok_or_else(|| {
            OsError::from(crate::error::ApiError::Unauthorized(
                "Missing API key: set the OPEN-SANDBOX-API-KEY header".into(),
            ))
        })?;
    Ok(state
        .keys
        .authenticate(
            &state.store,
            key,
            header(headers, TENANT_HEADER),
            client_ip(parts),
        )
        .await?)
}

/// The caller of an execd route for sandbox `id` (the id in the path): an
/// endpoint token for exactly this sandbox and the execd port, else a key.
pub async fn execd_caller(state: &AppState, parts: &Parts, id: &str) -> Result<Caller, OsError> {
    let Some(token) = header(&parts.headers, ENDPOINT_TOKEN_HEADER) else {
        return by_key(state, &parts.headers, parts).await;
    };
    let denied = || {
        OsError::from(crate::error::ApiError::Unauthorized(
            "Invalid or expired X-Sandbox-Token for this sandbox's execd endpoint".into(),
        ))
    };
    let claims = state
        .service_keys
        .verify(token, AUD_ENDPOINT)
        .map_err(|_| denied())?;
    if claims.sub != id || claims.port != EXECD_PORT {
        return Err(denied());
    }
    Ok(Caller {
        tenant_id: claims.tid,
        is_admin: false,
        key_id: TOKEN_KEY_ID.to_owned(),
    })
}
