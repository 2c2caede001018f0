//! A JSON body extractor whose rejections use the agent's error body.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest JSON request body accepted.
pub const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

/// A request body parsed as JSON (whatever its content type, as the SDK
/// always sends JSON).
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::to_bytes(req.into_body(), MAX_JSON_BYTES)
            .await
            .map_err(|e| ApiError::invalid(format!("cannot read request body: {e}")))?;
        parse(&body).map(JsonBody)
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}
