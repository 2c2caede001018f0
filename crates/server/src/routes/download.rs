//! Download links (issue 17 item 2): `POST /boxes/{name}/download-url`
//! mints a link to one file of a sandbox; `GET`/`HEAD /download/{token}`
//! serves it with no other credential.
//!
//! The link is pinned to the sandbox, the path, the content type and the
//! disposition (all inside the signed token, `download_link.rs`). The file
//! is read by the sandbox's agent (`GET /download?path=`, with `Range` and
//! the conditional headers passed on), never opened by the host, and a
//! stopped sandbox is started first, as the SDK documents. Whatever the
//! file holds, it is served with `Content-Security-Policy: sandbox` and
//! `X-Content-Type-Options: nosniff`, so even an `inline` HTML file gets an
//! opaque origin with no scripts.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::download_link::{LinkClaims, LinkError, LinkKey};
use super::extract::Body as JsonBody;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::gateway::relay::{self, Upstream};
use crate::opensandbox::agent::encode_component;
use crate::state::AppState;

/// Longest lifetime a link may be given (a year); omit it for no expiry.
pub const MAX_TTL: i64 = 365 * 24 * 3600;
const MAX_PATH: usize = 4096;
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Request headers passed to the agent; every other one stays here.
const PASSED: [header::HeaderName; 4] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
];
/// Response headers kept from the agent; the rest are ours.
const KEPT: [header::HeaderName; 6] = [
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::ETAG,
    header::LAST_MODIFIED,
    header::TRANSFER_ENCODING,
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadUrlRequest {
    path: String,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    content_disposition: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DownloadUrlResponse {
    download_url: String,
    token: String,
    expires_at: Option<String>,
}

/// A validated request: the claims minus who and when.
struct Link {
    path: String,
    ttl: Option<i64>,
    content_type: String,
    disposition: String,
}

fn validate(req: DownloadUrlRequest) -> Result<Link, ApiError> {
    if req.path.is_empty() || req.path.len() > MAX_PATH || req.path.contains('\0') {
        return Err(ApiError::Validation(format!(
            "path must be 1-{MAX_PATH} bytes with no NUL"
        )));
    }
    if let Some(ttl) = req.expires_in_seconds {
        if !(1..=MAX_TTL).contains(&ttl) {
            return Err(ApiError::Validation(format!(
                "expires_in_seconds must be between 1 and {MAX_TTL}, got {ttl}; \
                 omit it for a link that never expires"
            )));
        }
    }
    let content_type = req
        .content_type
        .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into());
    if !valid_content_type(&content_type) {
        return Err(ApiError::Validation(format!(
            "content_type '{content_type}' is not a media type (type/subtype[; params])"
        )));
    }
    let disposition = req
        .content_disposition
        .unwrap_or_else(|| "attachment".into());
    if !matches!(disposition.as_str(), "attachment" | "inline") {
        return Err(ApiError::Validation(format!(
            "content_disposition must be 'attachment' or 'inline', got '{disposition}'"
        )));
    }
    Ok(Link {
        path: req.path,
        ttl: req.expires_in_seconds,
        content_type,
        disposition,
    })
}

/// `type/subtype` with optional parameters, visible ASCII and spaces only,
/// at most 255 bytes (it becomes a header).
fn valid_content_type(value: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    value.len() <= 255
        && value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<DownloadUrlRequest>,
) -> Result<Json<DownloadUrlResponse>, ApiError> {
    let link = validate(req)?;
    let row = state.sandboxes.find(&caller, &name).await?;
    let now = chrono::Utc::now();
    let expires_at = link.ttl.map(|ttl| now + chrono::Duration::seconds(ttl));
    let claims = LinkClaims {
        sub: row.id,
        tid: caller.tenant_id,
        path: link.path,
        ct: link.content_type,
        cd: link.disposition,
        iat: now.timestamp(),
        exp: expires_at.map(|t| t.timestamp()),
    };
    let token = key(&state)?
        .sign(&claims)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(DownloadUrlResponse {
        download_url: format!("{}/download/{token}", state.base_url(&headers)),
        token,
        expires_at: expires_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    }))
}

fn key(state: &AppState) -> Result<std::sync::Arc<LinkKey>, ApiError> {
    LinkKey::of(&state.config.data_dir).map_err(|e| ApiError::Internal(e.into()))
}

/// `GET`/`HEAD /download/{token}`.
pub async fn fetch(
    State(state): State<AppState>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let claims = key(&state)?
        .verify(&token, chrono::Utc::now().timestamp())
        .map_err(|err| match err {
            LinkError::Expired => ApiError::Unauthorized("Download link has expired".into()),
            _ => ApiError::Unauthorized("Invalid download link".into()),
        })?;
    // The link acts for the sandbox's tenant, on that one sandbox only.
    let owner = Caller {
        tenant_id: claims.tid.clone(),
        is_admin: false,
        key_id: "download-link".into(),
    };
    let socket = state
        .sandboxes
        .dataplane_socket(&owner, &claims.sub)
        .await
        .map_err(|err| match err {
            ApiError::NotFound { .. } => ApiError::NotFound {
                kind: "Sandbox",
                name: "of this download link".into(),
            },
            other => other,
        })?;
    let upstream = agent_request(req.method(), req.headers())?;
    let target = format!("/download?path={}", encode_component(&claims.path));
    let connection = state.sandboxes.connection(&claims.sub);
    let response = relay::forward_holding(upstream, &Upstream::Unix(socket), &target, connection)
        .await
        .map_err(|err| {
            tracing::debug!(sandbox = %claims.sub, error = ?err, "download relay failed");
            ApiError::Upstream("The sandbox's agent is not reachable".into())
        })?;
    served(response, &claims)
}

/// A fresh request for the agent: the method and the range/conditional
/// headers of the client's, nothing else (no cookies, no credentials).
fn agent_request(method: &Method, headers: &HeaderMap) -> Result<Request, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::BadRequest(
            "Download links answer GET and HEAD only".into(),
        ));
    }
    let mut req = Request::builder()
        .method(method.clone())
        .uri("/")
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.into()))?;
    for name in PASSED {
        if let Some(value) = headers.get(&name) {
            req.headers_mut().insert(name, value.clone());
        }
    }
    Ok(req)
}

/// The agent's answer with our headers: only the framing, range and
/// validator headers are kept; type, disposition and policy are the link's.
fn served(response: Response, claims: &LinkClaims) -> Result<Response, ApiError> {
    let status = response.status();
    let ok = status.is_success()
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::RANGE_NOT_SATISFIABLE;
    if !ok {
        return Err(match status {
            StatusCode::NOT_FOUND => ApiError::NotFound {
                kind: "File",
                name: claims.path.clone(),
            },
            _ => ApiError::BadRequest(format!(
                "Cannot download '{}' (the sandbox answered {status})",
                claims.path
            )),
        });
    }
    let (parts, body) = response.into_parts();
    let mut out = Response::new(body);
    *out.status_mut() = status;
    for name in KEPT {
        if let Some(value) = parts.headers.get(&name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    let h = out.headers_mut();
    let ct = HeaderValue::from_str(&claims.ct)
        .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
    h.insert(header::CONTENT_TYPE, ct);
    h.insert(header::CONTENT_DISPOSITION, disposition(claims));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(out)
}

/// `attachment; filename="a.txt"; filename*=UTF-8''a.txt` from the path's
/// last component (quotes, backslashes and controls replaced).
fn disposition(claims: &LinkClaims) -> HeaderValue {
    let base = claims
        .path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or("download");
    let ascii: String = base
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = encode_component(base).replace('/', "%2F");
    HeaderValue::from_str(&format!(
        "{}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}",
        claims.cd
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: serde_json::Value) -> DownloadUrlRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn requests_are_validated() {
        let link = validate(req(serde_json::json!({"path": "/a"}))).unwrap();
        assert_eq!(
            (
                link.content_type.as_str(),
                link.disposition.as_str(),
                link.ttl
            ),
            (DEFAULT_CONTENT_TYPE, "attachment", None)
        );
        for bad in [
            serde_json::json!({"path": ""}),
            serde_json::json!({"path": "/a\u{0}b"}),
            serde_json::json!({"path": "/a", "expires_in_seconds": 0}),
            serde_json::json!({"path": "/a", "content_type": "text/html\r\nX: y"}),
            serde_json::json!({"path": "/a", "content_type": "nonsense"}),
            serde_json::json!({"path": "/a", "content_disposition": "form-data"}),
        ] {
            assert!(validate(req(bad.clone())).is_err(), "{bad}");
        }
        assert!(validate(req(serde_json::json!({
            "path": "/a", "content_type": "text/csv; charset=utf-8", "content_disposition": "inline"
        })))
        .is_ok());
    }

    #[test]
    fn disposition_names_the_file_safely() {
        let claims = LinkClaims {
            sub: "s".into(),
            tid: "t".into(),
            path: "/out/r\"é\\port.csv".into(),
            ct: "text/csv".into(),
            cd: "inline".into(),
            iat: 0,
            exp: None,
        };
        assert_eq!(
            disposition(&claims),
            "inline; filename=\"r___port.csv\"; filename*=UTF-8''r%22%C3%A9%5Cport.csv"
        );
    }
}
