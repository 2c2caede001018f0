//! OpenSandbox's error shape: `{"code": ..., "message": ...}` with the
//! spec's status codes, and an `X-Request-ID` on every answer.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::ApiError;

/// An error on an OpenSandbox route (lifecycle or execd).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    retry_after: Option<u64>,
}

impl OsError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 `INVALID_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// 409 `CONFLICT`: the sandbox's state does not allow the operation.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", message)
    }

    /// 501 `NOT_IMPLEMENTED` for a spec path or field Sandpit does not serve.
    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NOT_IMPLEMENTED",
            format!("{what} is not implemented by Sandpit (see README.md, 'OpenSandbox clients')"),
        )
    }

    /// 500 with the cause logged, not shown.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal server error",
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

/// A fresh request id for the `X-Request-ID` header.
pub fn request_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

impl IntoResponse for OsError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code,
            message: &self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("x-request-id", request_id());
        if let Some(seconds) = self.retry_after {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ApiError> for OsError {
    fn from(err: ApiError) -> Self {
        let (status, code) = match &err {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
            ApiError::BadRequest(_)
            | ApiError::Validation(_)
            | ApiError::TemplateNotFound(_)
            | ApiError::InvalidTemplate(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            ApiError::NotReady(_) => (StatusCode::CONFLICT, "SANDBOX_NOT_READY"),
            ApiError::Timeout(_) | ApiError::PoolTimeout(_) => {
                (StatusCode::GATEWAY_TIMEOUT, "TIMEOUT")
            }
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ApiError::CreationFailed(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "SANDBOX_CREATION_FAILED")
            }
            ApiError::QuotaExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "QUOTA_EXCEEDED"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "INSUFFICIENT_STORAGE")
            }
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "SANDBOX_UNREACHABLE"),
            ApiError::Internal(cause) => {
                return Self::internal("internal error", format!("{cause:#}"))
            }
        };
        let retry_after = match &err {
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        Self {
            status,
            code,
            message: err.to_string(),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_is_code_and_message_with_a_request_id() {
        let response = OsError::from(ApiError::sandbox_not_found("x")).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.headers().contains_key("x-request-id"));
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(value["code"], "NOT_FOUND");
        assert_eq!(value["message"], "Sandbox 'x' not found");
        assert_eq!(value.as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn validation_is_400_and_not_ready_is_409() {
        let e = OsError::from(ApiError::Validation("bad".into()));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
        );
        let e = OsError::from(ApiError::NotReady("later".into()));
        assert_eq!(e.status, StatusCode::CONFLICT);
    }
}
