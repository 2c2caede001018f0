//! The one place errors become HTTP statuses and error kinds.
//!
//! Every 4xx/5xx body is `{"detail": {"error": KIND, "message": TEXT}}`, with
//! KIND chosen for the SDK's `handle_sandbox_http_error` and
//! `raise_file_http_error`: `FileNotFound` with 404 for a missing file,
//! `ReadError` / `WriteError` for file operations (so the SDK raises
//! `SandboxOperationError` with the right operation), `CommandError` for a
//! command that cannot start, 400 for bad input. The WebSocket and SSE
//! `error` messages reuse the same kinds.

use std::error::Error;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::files::FileError;
use crate::paths::PathError;
use crate::search::SearchError;
use crate::sessions::SessionError;
use crate::wire::{ErrorBody, ErrorDetail};

/// Error kinds (`detail.error`, and `error_type` on the exec streams).
pub mod kind {
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    pub const COMMAND_ERROR: &str = "CommandError";
    pub const COMMAND_NOT_FOUND: &str = "CommandNotFound";
    pub const SESSION_EXPIRED: &str = "SessionExpired";
    pub const COMMAND_TIMEOUT: &str = "CommandTimeout";
    pub const FILE_NOT_FOUND: &str = "FileNotFound";
    pub const READ_ERROR: &str = "ReadError";
    pub const WRITE_ERROR: &str = "WriteError";
    pub const NOT_FOUND: &str = "NotFound";
}

/// Which kind of file operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    Read,
    Write,
}

impl FileOp {
    fn kind(self) -> &'static str {
        match self {
            FileOp::Read => kind::READ_ERROR,
            FileOp::Write => kind::WRITE_ERROR,
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind::INVALID_REQUEST, message)
    }

    /// A command killed by its timeout.
    pub fn timeout(after: std::time::Duration) -> Self {
        let message = format!("Command timed out after {} seconds", after.as_secs_f64());
        Self::new(StatusCode::REQUEST_TIMEOUT, kind::COMMAND_TIMEOUT, message)
    }

    pub fn session(error: &SessionError) -> Self {
        let status = match error {
            SessionError::NotFound(_) => StatusCode::NOT_FOUND,
            SessionError::Expired(_) => StatusCode::GONE,
            SessionError::Invalid(_) => StatusCode::BAD_REQUEST,
            SessionError::Spawn(_) | SessionError::Wire(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let kind = match error {
            SessionError::NotFound(_) => kind::COMMAND_NOT_FOUND,
            SessionError::Expired(_) => kind::SESSION_EXPIRED,
            _ => kind::COMMAND_ERROR,
        };
        Self::new(status, kind, chain(error))
    }

    pub fn path(op: FileOp, error: &PathError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, op.kind(), error.to_string())
    }

    pub fn file(op: FileOp, error: &FileError) -> Self {
        let status = match error {
            FileError::NotFound(_) => {
                return Self::new(StatusCode::NOT_FOUND, kind::FILE_NOT_FOUND, chain(error))
            }
            FileError::IsDirectory(_) | FileError::NotAFile(_) => StatusCode::BAD_REQUEST,
            FileError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            FileError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FileError::Io(..) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, op.kind(), chain(error))
    }

    pub fn search(error: &SearchError) -> Self {
        let status = match error {
            SearchError::NotFound(_) => {
                return Self::new(StatusCode::NOT_FOUND, kind::FILE_NOT_FOUND, chain(error))
            }
            SearchError::NotADirectory(_) | SearchError::Pattern(_) | SearchError::EmptyNeedle => {
                StatusCode::BAD_REQUEST
            }
            SearchError::Io(..) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, kind::READ_ERROR, chain(error))
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        Self::session(&error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(kind = self.kind, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            detail: ErrorDetail {
                error: self.kind,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// An error and its sources, joined with `": "`.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn missing_files_are_404_file_not_found() {
        let err = ApiError::file(FileOp::Read, &FileError::NotFound(PathBuf::from("/x")));
        assert_eq!(
            (err.status, err.kind),
            (StatusCode::NOT_FOUND, kind::FILE_NOT_FOUND)
        );
    }

    #[test]
    fn file_errors_carry_the_operation() {
        let err = ApiError::file(FileOp::Write, &FileError::TooLarge { limit: 1 });
        assert_eq!(
            (err.status, err.kind),
            (StatusCode::PAYLOAD_TOO_LARGE, kind::WRITE_ERROR)
        );
        let err = ApiError::path(FileOp::Read, &PathError::Escapes);
        assert_eq!(
            (err.status, err.kind),
            (StatusCode::BAD_REQUEST, kind::READ_ERROR)
        );
        assert_eq!(err.message, "path escapes the sandbox root");
    }

    #[test]
    fn chain_joins_sources() {
        let io = std::io::Error::other("disk on fire");
        let err = FileError::Io(PathBuf::from("/f"), io);
        assert_eq!(chain(&err), "cannot access /f: disk on fire");
    }
}
