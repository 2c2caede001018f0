//! `POST /execute/stream/start` and `/execute/stream/resume`: the SSE exec
//! transport of `_sse_execute.py`.
//!
//! Events: `started` {command_id, pid}; `stdout` / `stderr` {data: base64,
//! offset}; `stream_end` {stream, offset} once per stream per response;
//! `exit` {exit_code} or `error` {error_type, error} to finish. The client can
//! only acknowledge output by resuming, so once a response has handed out
//! [`ACK_WINDOW_BYTES`] beyond the offsets it started from, it ends with
//! `ack_required` {stdout_offset, stderr_offset} and the client resumes from
//! there. Heartbeat comments go out every [`HEARTBEAT`].
//!
//! The SDK refuses PTY, open stdin and kill-on-disconnect over SSE, so a
//! command started here always has its stdin closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::stream::{self, Stream as FuturesStream};

use super::error::{kind, ApiError};
use super::json::JsonBody;
use super::AppState;
use crate::exec::ExecRequest;
use crate::session::{Attachment, HoldMode, Next, Outcome, RING_BYTES};
use crate::sessions::SessionError;
use crate::wire::{
    ExecuteRequest, ReconnectRequest, SseAckRequired, SseChunk, SseError, SseExit, SseStarted,
    SseStreamEnd,
};

/// Interval of heartbeat comments on a quiet stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Unacknowledged output one response may carry: 1 MiB, as LangSmith asks
/// (well within the ring, so the command keeps running while the client
/// comes back to acknowledge).
pub const ACK_WINDOW_BYTES: u64 = 1 << 20;
const _: () = assert!(ACK_WINDOW_BYTES <= RING_BYTES as u64 / 2);

pub async fn start(
    State(app): State<Arc<AppState>>,
    JsonBody(req): JsonBody<ExecuteRequest>,
) -> Result<Response, ApiError> {
    let id = req.command_id.clone();
    let mut req = ExecRequest::from_wire(req).map_err(SessionError::from)?;
    req.close_stdin = true;
    req.terminal = None;
    let (session, _) = app.sessions.get_or_start(id, &req)?;
    Ok(respond(session.attach([0, 0], HoldMode::Acked)))
}

pub async fn resume(
    State(app): State<Arc<AppState>>,
    JsonBody(req): JsonBody<ReconnectRequest>,
) -> Result<Response, ApiError> {
    match app.sessions.get(&req.command_id) {
        Ok(session) => {
            let from = [req.stdout_offset, req.stderr_offset];
            Ok(respond(session.attach(from, HoldMode::Acked)))
        }
        // The SDK turns a 404 into CommandNotFound itself; an expired
        // session is reported as an event so it raises SessionExpired.
        Err(SessionError::Expired(id)) => {
            let message = format!("session {id} expired");
            let event = error_event(kind::SESSION_EXPIRED, &message);
            Ok(sse(stream::iter([Ok(event)])))
        }
        Err(error) => Err(error.into()),
    }
}

fn respond(attachment: Attachment) -> Response {
    sse(stream::unfold(Step::Started(attachment), step))
}

fn sse<S>(events: S) -> Response
where
    S: FuturesStream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response()
}

/// Where a response stream is.
enum Step {
    Started(Attachment),
    Streaming(Attachment),
    Done,
}

async fn step(step: Step) -> Option<(Result<Event, Infallible>, Step)> {
    match step {
        Step::Started(attachment) => {
            let session = attachment.session();
            let started = SseStarted {
                command_id: session.id().into(),
                pid: session.pid(),
            };
            let event = event("started", &started);
            Some((Ok(event), Step::Streaming(attachment)))
        }
        Step::Streaming(attachment) => Some(next_event(attachment).await),
        Step::Done => None,
    }
}

async fn next_event(mut attachment: Attachment) -> (Result<Event, Infallible>, Step) {
    if attachment.unacked() >= ACK_WINDOW_BYTES {
        let [stdout_offset, stderr_offset] = attachment.cursors();
        let ack = SseAckRequired {
            stdout_offset,
            stderr_offset,
        };
        attachment.park();
        return (Ok(event("ack_required", &ack)), Step::Done);
    }
    match attachment.next().await {
        Next::Output {
            stream,
            offset,
            data,
        } => {
            let chunk = SseChunk {
                data: base64::engine::general_purpose::STANDARD.encode(data),
                offset,
            };
            (
                Ok(event(stream.name(), &chunk)),
                Step::Streaming(attachment),
            )
        }
        Next::StreamEnd { stream, offset } => {
            let end = SseStreamEnd {
                stream: stream.name().into(),
                offset,
            };
            (Ok(event("stream_end", &end)), Step::Streaming(attachment))
        }
        Next::Finished(Outcome::Exited(exit_code)) => {
            (Ok(event("exit", &SseExit { exit_code })), Step::Done)
        }
        Next::Finished(Outcome::TimedOut(after)) => {
            let error = ApiError::timeout(after);
            (Ok(error_event(error.kind, &error.message)), Step::Done)
        }
    }
}

fn error_event(error_type: &str, error: &str) -> Event {
    let error = SseError {
        error_type: error_type.into(),
        error: error.into(),
    };
    event("error", &error)
}

fn event<T: serde::Serialize>(name: &str, data: &T) -> Event {
    let json = serde_json::to_string(data).expect("SSE payloads serialise");
    Event::default().event(name).data(json)
}
