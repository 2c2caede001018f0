//! `PUT /_sandpit/run-config`: the server pushes a running sandbox's new
//! `run_config` (`{user, work_dir, env_vars}`, the merged whole) after an
//! update, so the next command uses it without a restart. Commands already
//! running keep what they started with. Only the server calls it: the
//! data-plane relay refuses paths under `/_sandpit/`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::error::ApiError;
use super::json::JsonBody;
use super::AppState;
use crate::wire::RunConfig;

pub async fn run_config(
    State(app): State<Arc<AppState>>,
    JsonBody(defaults): JsonBody<RunConfig>,
) -> Result<StatusCode, ApiError> {
    app.sessions
        .set_defaults(defaults)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}
