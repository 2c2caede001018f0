//! The one place where failures become HTTP responses.
//!
//! Handlers and the controller return [`ApiError`]; its `IntoResponse` picks
//! the status and writes the `{"detail": {"error", "message"}}` body the
//! `langsmith` SDK maps to its exceptions. Internal errors are logged with
//! their cause chain and answered with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandpit_api::ErrorBody;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no key, or a key that is unknown or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid key that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404 for a resource kind ("Sandbox", "File", ...).
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    /// 409: the name is taken.
    #[error("{0}")]
    Conflict(String),
    /// 400: malformed request (bad query parameters, path escapes, ...).
    #[error("{0}")]
    BadRequest(String),
    /// 422: a field has a bad value.
    #[error("{0}")]
    Validation(String),
    /// 400 NotReady: the sandbox is not in a state that allows this.
    #[error("{0}")]
    NotReady(String),
    /// 408: waited for `ready` and it did not come.
    #[error("{0}")]
    Timeout(String),
    /// 413: body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: the sandbox could not be created (runtime failure).
    #[error("{0}")]
    CreationFailed(String),
    /// 400 TemplateNotFound: a pool names a template that does not exist.
    #[error("{0}")]
    TemplateNotFound(String),
    /// 400 ValidationError: a template that cannot be used this way (a pool
    /// of a template with volumes).
    #[error("{0}")]
    InvalidTemplate(String),
    /// 504: a pool's replicas were not ready in time.
    #[error("{0}")]
    PoolTimeout(String),
    /// 429: a tenant quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// 429 with `Retry-After`: too many failed key checks from one client.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// 507: the host's disk is too full to start a sandbox.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 502: the sandbox's agent could not be reached.
    #[error("{0}")]
    Upstream(String),
    /// 500: a bug or an environmental failure; details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn sandbox_not_found(name: &str) -> Self {
        ApiError::NotFound {
            kind: "Sandbox",
            name: name.to_owned(),
        }
    }

    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "ValidationError"),
            ApiError::NotReady(_) => (StatusCode::BAD_REQUEST, "NotReady"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "Timeout"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
            ApiError::CreationFailed(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "SandboxCreationFailed")
            }
            ApiError::TemplateNotFound(_) => (StatusCode::BAD_REQUEST, "TemplateNotFound"),
            ApiError::InvalidTemplate(_) => (StatusCode::BAD_REQUEST, "ValidationError"),
            ApiError::PoolTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            ApiError::QuotaExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "QuotaExceeded"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RateLimited"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "InsufficientStorage")
            }
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "ConnectionError"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(err.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let message = match &self {
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                "Internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(ErrorBody::new(kind, message))).into_response();
        if let ApiError::RateLimited { retry_after, .. } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after),
            );
        }
        response
    }
}

/// Error body for non-`ApiError` rejections (unknown routes, bad methods).
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(ErrorBody::new(kind, message))).into_response()
}
