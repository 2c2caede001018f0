//! The error body every 4xx/5xx response carries:
//! `{"detail": {"error": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Top-level error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub detail: ErrorDetail,
}

/// The `detail` object: a machine-readable `error` kind and a human `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub error: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            detail: ErrorDetail {
                error: error.into(),
                message: message.into(),
            },
        }
    }
}
