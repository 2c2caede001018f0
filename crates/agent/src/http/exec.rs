//! `POST /execute`: run a command and answer with its whole output
//! (langsmith 0.7's blocking fallback).
//!
//! The session dies with the request (kill on disconnect, no TTL). Each
//! stream's answer keeps at most [`MAX_BLOCKING_OUTPUT_BYTES`]; the rest is
//! read and dropped. A command killed by its timeout answers 408 with kind
//! `CommandTimeout`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::error::ApiError;
use super::json::JsonBody;
use super::AppState;
use crate::exec::ExecRequest;
use crate::session::{HoldMode, Next, Outcome, Stream};
use crate::sessions::SessionError;
use crate::wire::{BlockingExecuteRequest, BlockingExecuteResponse};

/// Output kept per stream in a blocking answer: 16 MiB.
pub const MAX_BLOCKING_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

pub async fn blocking(
    State(app): State<Arc<AppState>>,
    JsonBody(req): JsonBody<BlockingExecuteRequest>,
) -> Result<Json<BlockingExecuteResponse>, ApiError> {
    let req = ExecRequest::from_blocking(req).map_err(SessionError::from)?;
    let (session, _) = app.sessions.get_or_start(None, &req)?;
    let mut attachment = session.attach([0, 0], HoldMode::Cursor);
    let mut output = [Vec::new(), Vec::new()];
    loop {
        match attachment.next().await {
            Next::Output { stream, data, .. } => keep(&mut output[stream_index(stream)], &data),
            Next::StreamEnd { .. } => {}
            Next::Finished(Outcome::Exited(exit_code)) => {
                let [stdout, stderr] =
                    output.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                return Ok(Json(BlockingExecuteResponse {
                    stdout,
                    stderr,
                    exit_code,
                }));
            }
            Next::Finished(Outcome::TimedOut(after)) => return Err(ApiError::timeout(after)),
        }
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Appends `data` up to the cap, cutting on a character boundary.
fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_BLOCKING_OUTPUT_BYTES.saturating_sub(buf.len());
    let mut take = room.min(data.len());
    while take < data.len() && take > 0 && data[take] & 0b1100_0000 == 0b1000_0000 {
        take -= 1;
    }
    buf.extend_from_slice(&data[..take]);
}
