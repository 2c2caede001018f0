//! OpenSandbox's `GET /v1/sandboxes/{sandboxId}/endpoints/{port}`.
//!
//! Sandpit always proxies (`use_server_proxy` is accepted either way): the
//! endpoint is `{server host}/sandboxes/{id}/port/{port}` and the headers
//! carry a signed token for that sandbox and port only. Port 44772 (execd)
//! is `{server host}/v1/sandboxes/{id}/execd`, served by Sandpit itself.
//!
//! `expires` (OSEP-0011's signed endpoints: a decimal Unix second, as the
//! OpenSandbox SDK's `get_signed_sandbox_endpoint` sends it) makes the token
//! stop working at that second. A value that is not a decimal integer, is
//! not in the future, or is more than [`MAX_TTL`] away is 400; without it
//! the token lasts [`MAX_TTL`].

use std::collections::BTreeMap;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::extract::Query;
use super::service_url::{port, sign};
use crate::auth::{Caller, ClientAddr, TENANT_HEADER};
use crate::error::ApiError;
use crate::gateway::service::ENDPOINT_TOKEN_HEADER;
use crate::gateway::tokens::{AUD_ENDPOINT, MAX_TTL};
use crate::state::AppState;

/// Header carrying the API key, as OpenSandbox clients send it.
pub const OPEN_SANDBOX_KEY_HEADER: &str = "open-sandbox-api-key";

#[derive(Debug, Deserialize)]
pub struct EndpointQuery {
    #[serde(default)]
    #[allow(dead_code)]
    use_server_proxy: Option<bool>,
    /// Unix second at which the endpoint stops working.
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EndpointResponse {
    endpoint: String,
    headers: BTreeMap<String, String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The caller, from `OPEN-SANDBOX-API-KEY` (or `X-Api-Key`), throttled per
/// client address like every key check.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Result<Caller, ApiError> {
    let key = header(headers, OPEN_SANDBOX_KEY_HEADER)
        .or_else(|| header(headers, crate::auth::API_KEY_HEADER))
        .ok_or_else(|| {
            ApiError::Unauthorized("Missing API key: set the OPEN-SANDBOX-API-KEY header".into())
        })?;
    state
        .keys
        .authenticate(&state.store, key, header(headers, TENANT_HEADER), client)
        .await
}

/// Seconds from `now` to the `expires` query value (see the module docs).
fn ttl_until(expires: Option<&str>, now: i64) -> Result<i64, ApiError> {
    let Some(raw) = expires else {
        return Ok(MAX_TTL);
    };
    let at: u64 = raw
        .parse()
        .ok()
        .filter(|_| raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "expires must be a Unix time in seconds (a decimal integer), got '{raw}'"
            ))
        })?;
    let at = i64::try_from(at).unwrap_or(i64::MAX);
    if at <= now {
        return Err(ApiError::BadRequest(format!(
            "expires ({at}) is not in the future (now is {now})"
        )));
    }
    if at - now > MAX_TTL {
        return Err(ApiError::BadRequest(format!(
            "expires ({at}) is more than {MAX_TTL} seconds away (now is {now})"
        )));
    }
    Ok(at - now)
}

pub async fn endpoint(
    State(state): State<AppState>,
    client: Option<Extension<ConnectInfo<ClientAddr>>>,
    headers: HeaderMap,
    Path((id, port_value)): Path<(String, i64)>,
    Query(query): Query<EndpointQuery>,
) -> Result<Response, ApiError> {
    let caller = caller(
        &state,
        &headers,
        client.map(|Extension(ConnectInfo(ClientAddr(addr)))| addr.ip()),
    )
    .await?;
    let port = port(port_value)?;
    let ttl = ttl_until(query.expires.as_deref(), chrono::Utc::now().timestamp())?;
    let row = state.sandboxes.find(&caller, &id).await?;
    let (token, _) = sign(&state, AUD_ENDPOINT, &caller.tenant_id, &row.id, port, ttl)?;
    let base = state.base_url(&headers);
    let host = base
        .split_once("://")
        .map_or(base.as_str(), |(_, rest)| rest);
    let body = EndpointResponse {
        endpoint: if port == crate::opensandbox::EXECD_PORT {
            // execd is Sandpit's translation on this server (`crate::opensandbox::execd`).
            format!("{host}{}", crate::opensandbox::execd_path(&row.id))
        } else {
            format!("{host}/sandboxes/{}/port/{port}", row.id)
        },
        headers: BTreeMap::from([("X-Sandbox-Token".to_owned(), token)]),
    };
    debug_assert_eq!(ENDPOINT_TOKEN_HEADER, "x-sandbox-token");
    let mut response = Json(body).into_response();
    if let Ok(value) = uuid::Uuid::new_v4().to_string().parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_is_a_future_unix_second_within_the_maximum() {
        let now = 1_700_000_000;
        assert_eq!(ttl_until(None, now).ok(), Some(MAX_TTL));
        assert_eq!(ttl_until(Some("1700000060"), now).ok(), Some(60));
        let max = (now + MAX_TTL).to_string();
        assert_eq!(ttl_until(Some(&max), now).ok(), Some(MAX_TTL));
        for bad in [
            "1700000000",
            "1699999999",
            "0",
            "",
            "-5",
            "+1700000060",
            "1700000060.5",
            "soon",
            "99999999999999999999999",
        ] {
            let err = ttl_until(Some(bad), now).expect_err(bad);
            assert!(matches!(err, ApiError::BadRequest(_)), "{bad}: {err:?}");
        }
        let far = (now + MAX_TTL + 1).to_string();
        assert!(ttl_until(Some(&far), now).is_err());
    }
}
