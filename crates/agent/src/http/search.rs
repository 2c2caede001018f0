//! `POST /glob` and `POST /grep`, answering the SDK's `GlobResult` and
//! `GrepResult` shapes. The walks run on the blocking pool.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::error::{ApiError, FileOp};
use super::json::JsonBody;
use super::AppState;
use crate::paths;
use crate::search::{self, Found, DEFAULT_GLOB_LIMIT, DEFAULT_GREP_LIMIT, MAX_LIMIT};
use crate::wire::{FileInfo, GlobRequest, GrepMatch, GrepRequest, SearchResponse};

pub async fn glob(
    State(app): State<Arc<AppState>>,
    JsonBody(req): JsonBody<GlobRequest>,
) -> Result<Json<SearchResponse<FileInfo>>, ApiError> {
    let root =
        paths::resolve(&app.workdir, &req.path).map_err(|e| ApiError::path(FileOp::Read, &e))?;
    let limit = limit(req.limit, DEFAULT_GLOB_LIMIT)?;
    let found = blocking(move || search::glob(&root, &req.pattern, limit)).await?;
    Ok(Json(response(found)))
}

pub async fn grep(
    State(app): State<Arc<AppState>>,
    JsonBody(req): JsonBody<GrepRequest>,
) -> Result<Json<SearchResponse<GrepMatch>>, ApiError> {
    let root =
        paths::resolve(&app.workdir, &req.path).map_err(|e| ApiError::path(FileOp::Read, &e))?;
    let limit = limit(req.limit, DEFAULT_GREP_LIMIT)?;
    let found =
        blocking(move || search::grep(&root, &req.pattern, req.glob.as_deref(), limit)).await?;
    Ok(Json(response(found)))
}

fn limit(requested: Option<i64>, default: usize) -> Result<usize, ApiError> {
    match requested {
        None => Ok(default),
        Some(n) if n >= 1 => Ok(usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT)),
        Some(n) => Err(ApiError::invalid(format!(
            "limit must be at least 1, got {n}"
        ))),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<Found<T>, search::SearchError> + Send + 'static,
) -> Result<Found<T>, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                super::error::kind::READ_ERROR,
                e.to_string(),
            )
        })?
        .map_err(|e| ApiError::search(&e))
}

fn response<T>(found: Found<T>) -> SearchResponse<T> {
    SearchResponse {
        matches: found.matches,
        truncated: found.truncated,
    }
}
