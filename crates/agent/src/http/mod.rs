//! The agent's HTTP surface: routes, shared state, and one module per
//! endpoint family. Handlers only parse and shape answers; sessions, files
//! and searches live outside `http`.

mod control;
mod error;
mod exec;
mod exec_sse;
mod exec_ws;
mod files;
mod json;
mod range;
mod search;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::sessions::Sessions;
use error::{kind, ApiError};

/// What every handler can reach.
pub struct AppState {
    pub sessions: Arc<Sessions>,
    /// Base of relative file paths.
    pub workdir: PathBuf,
    pub max_upload_bytes: u64,
    /// Becomes true when the agent shuts down. Every exec WebSocket holds a
    /// receiver while open, so `receiver_count` is the number still open.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

/// Where the server pushes a running sandbox's new `run_config`.
pub const CONTROL_RUN_CONFIG: &str = "/_sandpit/run-config";

/// The data-plane router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/execute", post(exec::blocking))
        .route("/execute/ws", get(exec_ws::upgrade))
        .route("/execute/stream/start", post(exec_sse::start))
        .route("/execute/stream/resume", post(exec_sse::resume))
        .route("/upload", post(files::upload))
        .route("/download", get(files::download).head(files::stat))
        .route("/glob", post(search::glob))
        .route("/grep", post(search::grep))
        .route(CONTROL_RUN_CONFIG, put(control::run_config))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Uploads count their own bytes against `max_upload_bytes`.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, kind::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    let message = "method not allowed on this endpoint";
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        kind::INVALID_REQUEST,
        message,
    )
}
