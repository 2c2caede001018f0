//! Request ids: every API request gets one (`x-request-id` from the client
//! when it is sane, else a new UUID), every log line written while it is
//! served carries it (a `request` span), the response echoes it in
//! `x-request-id`, and an error body in the LangSmith shape
//! (`{"detail": {"error", "message"}}`) gets it as `detail.request_id`, an
//! extra field the SDK ignores.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// The longest client-given id kept; longer ones are replaced.
const MAX_LEN: usize = 128;

/// Error bodies larger than this are passed on untouched.
const MAX_ERROR_BODY: usize = 64 << 10;

/// The id a client sent, if it is short and printable; else a new one.
pub fn id_for(given: Option<&HeaderValue>) -> String {
    given
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN)
        .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Middleware in front of every route.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = id_for(req.headers().get(HEADER));
    let value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert(HEADER, value.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let mut response = next.run(req).instrument(span).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        response = with_id_in_error(response, &id).await;
    }
    response.headers_mut().insert(HEADER, value);
    response
}

/// Add `detail.request_id` to a small JSON error body of the LangSmith
/// shape; anything else is returned as it was.
async fn with_id_in_error(response: Response, id: &str) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // A buffered body knows its size; a stream does not and is left alone.
    let small = hyper::body::Body::size_hint(response.body())
        .upper()
        .is_some_and(|len| len <= MAX_ERROR_BODY as u64);
    if !is_json || !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let rewritten = add_request_id(&bytes, id);
    let bytes = rewritten.map(axum::body::Bytes::from).unwrap_or(bytes);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

/// `body` with `detail.request_id` set, when it is `{"detail": {...}}`.
fn add_request_id(body: &[u8], id: &str) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let detail = value.get_mut("detail")?.as_object_mut()?;
    detail.insert("request_id".into(), serde_json::Value::String(id.into()));
    serde_json::to_vec(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_others_replaced() {
        let given = HeaderValue::from_static("abc-123");
        assert_eq!(id_for(Some(&given)), "abc-123");
        let spaced = HeaderValue::from_static("a b");
        assert_ne!(id_for(Some(&spaced)), "a b");
        let long = HeaderValue::from_str(&"x".repeat(200)).unwrap();
        assert_eq!(id_for(Some(&long)).len(), 36);
        assert_eq!(id_for(None).len(), 36);
    }

    #[test]
    fn only_the_langsmith_error_shape_gets_the_id() {
        let body = br#"{"detail":{"error":"NotFound","message":"m"}}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&add_request_id(body, "r1").unwrap()).unwrap();
        assert_eq!(out["detail"]["request_id"], "r1");
        assert_eq!(out["detail"]["error"], "NotFound");
        assert!(add_request_id(br#"{"code":"X","message":"m"}"#, "r1").is_none());
        assert!(add_request_id(br#"{"detail":"text"}"#, "r1").is_none());
        assert!(add_request_id(b"not json", "r1").is_none());
    }
}
