//! `GET /execute/ws`: the WebSocket exec protocol of `_ws_execute.py`.
//!
//! The first client message is `execute` (get-or-create by `command_id`) or
//! `reconnect` (from `stdout_offset` / `stderr_offset`). The agent answers
//! `started` {command_id, pid}, then streams `stdout` / `stderr`
//! {data, offset} and ends with `exit` {exit_code} — or `error`
//! {error_type, error} — and closes the socket. Meanwhile the client may
//! send `input`, `kill`, `close_stdin` and (extension) `resize`.
//!
//! **Closing.** The agent never leaves a socket open with nothing more to
//! say. It closes it itself after `exit`/`error` (1000), when a `reconnect`
//! on another socket takes the command over ([`CLOSE_SUPERSEDED`]: the
//! SDK's handle reattaches from its offsets if it is still read), and when
//! the agent shuts down (1001, which the SDK treats as "reconnect"). A close
//! frame from the client is answered at once in every state. After sending
//! its own close frame the agent waits up to [`CLOSE_GRACE`] for the
//! client's answer, then drops the connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use super::error::ApiError;
use super::AppState;
use crate::exec::ExecRequest;
use crate::pty::WindowSize;
use crate::session::{Attachment, HoldMode, Next, Outcome, Session, Stream};
use crate::sessions::SessionError;
use crate::wire::{self, ClientMessage, ServerMessage};

/// Normal closure, sent right after `exit` or `error`.
const CLOSE_NORMAL: u16 = 1000;
/// The agent is shutting down (the sandbox stops).
const CLOSE_GOING_AWAY: u16 = 1001;
/// Another socket reconnected to this socket's command and took it over.
pub const CLOSE_SUPERSEDED: u16 = 4000;
/// How long the agent waits for the client to answer its close frame.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The same wait while the agent shuts down.
const SHUTDOWN_CLOSE_GRACE: Duration = Duration::from_millis(300);

type Sink = SplitSink<WebSocket, Message>;
type Source = SplitStream<WebSocket>;

/// How a socket's conversation ended.
enum Ending {
    /// The client sent a close frame or went away: answer and drop.
    ByClient,
    /// The agent closes with this code and reason.
    Close(u16, &'static str),
    /// The agent closes because it is shutting down.
    Shutdown,
}

pub async fn upgrade(
    State(app): State<Arc<AppState>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => ws.on_upgrade(move |socket| serve(app, socket)),
        Err(rejection) => {
            ApiError::invalid(format!("expected a WebSocket upgrade: {rejection}")).into_response()
        }
    }
}

async fn serve(app: Arc<AppState>, socket: WebSocket) {
    // Held for the socket's life: shutdown waits until every socket closed.
    let mut shutdown = app.shutdown.subscribe();
    let (mut sink, mut source) = socket.split();
    let ending = tokio::select! {
        biased;
        _ = shutdown.wait_for(|stopping| *stopping) => Ending::Shutdown,
        ending = converse(&app, &mut sink, &mut source) => ending,
    };
    finish(sink, source, ending).await;
}

/// The protocol, from the first message to the end of the command.
async fn converse(app: &AppState, sink: &mut Sink, source: &mut Source) -> Ending {
    let Some(request) = first_request(source).await else {
        return Ending::ByClient;
    };
    let (attachment, generation) = match open(app, request) {
        Ok(opened) => opened,
        Err(error) => {
            let _ = send_error(sink, error.kind, &error.message).await;
            return Ending::Close(CLOSE_NORMAL, "");
        }
    };
    let session = Arc::clone(attachment.session());
    let started = ServerMessage::Started {
        command_id: session.id().into(),
        pid: session.pid(),
    };
    if send(sink, &started).await.is_err() {
        return Ending::ByClient;
    }
    tokio::select! {
        _ = forward_output(attachment, sink) => Ending::Close(CLOSE_NORMAL, ""),
        _ = handle_control(&session, source) => Ending::ByClient,
        _ = session.superseded(generation) => Ending::Close(
            CLOSE_SUPERSEDED,
            "superseded: another connection reconnected to this command",
        ),
    }
}

/// Closes the socket: sends the agent's close frame (or the answer to the
/// client's), then waits, bounded, for the client's side of the handshake.
async fn finish(mut sink: Sink, mut source: Source, ending: Ending) {
    let (frame, grace) = match ending {
        Ending::ByClient => (None, CLOSE_GRACE),
        Ending::Close(code, reason) => (Some((code, reason)), CLOSE_GRACE),
        Ending::Shutdown => (
            Some((CLOSE_GOING_AWAY, "sandbox agent shutting down")),
            SHUTDOWN_CLOSE_GRACE,
        ),
    };
    let handshake = async {
        if let Some((code, reason)) = frame {
            let close = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = sink.send(Message::Close(Some(close))).await;
        }
        // Flushes our close frame, or the answer to the client's, which
        // is queued when it is read.
        let _ = sink.close().await;
        while let Some(Ok(_)) = source.next().await {}
    };
    let _ = tokio::time::timeout(grace, handshake).await;
}

/// Reads until the first protocol message; `None` if the client left.
async fn first_request(source: &mut Source) -> Option<Result<ClientMessage, ApiError>> {
    loop {
        let text = match source.next().await? {
            Ok(Message::Text(text)) => text.to_string(),
            Ok(Message::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return None,
        };
        return Some(
            serde_json::from_str(&text)
                .map_err(|e| ApiError::invalid(format!("invalid message: {e}"))),
        );
    }
}

/// Starts or finds the command and attaches to it. Returns the attachment
/// and the takeover generation it belongs to: an `execute` joins the
/// sockets already attached, a `reconnect` takes the command over from them.
fn open(
    app: &AppState,
    request: Result<ClientMessage, ApiError>,
) -> Result<(Attachment, u64), ApiError> {
    match request? {
        ClientMessage::Execute(execute) => {
            let id = execute.command_id.clone();
            let req = ExecRequest::from_wire(*execute).map_err(SessionError::from)?;
            let (session, _) = app.sessions.get_or_start(id, &req)?;
            let generation = session.generation();
            Ok((session.attach([0, 0], HoldMode::Cursor), generation))
        }
        ClientMessage::Reconnect(reconnect) => {
            let session = app.sessions.get(&reconnect.command_id)?;
            let from = [reconnect.stdout_offset, reconnect.stderr_offset];
            // Attach first, so a kill-on-disconnect command never sees zero
            // clients between the old sockets leaving and this one arriving.
            let attachment = session.attach(from, HoldMode::Cursor);
            Ok((attachment, session.take_over()))
        }
        _ => Err(ApiError::invalid(
            "the first message must be execute or reconnect",
        )),
    }
}

/// Sends output until the command finishes.
async fn forward_output(mut attachment: Attachment, sink: &mut Sink) {
    loop {
        let sent = match attachment.next().await {
            Next::Output {
                stream,
                offset,
                data,
            } => send_output(sink, stream, offset, data).await,
            Next::StreamEnd { .. } => Ok(()),
            Next::Finished(Outcome::Exited(exit_code)) => {
                let _ = send(sink, &ServerMessage::Exit { exit_code }).await;
                return;
            }
            Next::Finished(Outcome::TimedOut(after)) => {
                let error = ApiError::timeout(after);
                let _ = send_error(sink, error.kind, &error.message).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

async fn send_output(
    sink: &mut Sink,
    stream: Stream,
    offset: u64,
    data: Vec<u8>,
) -> Result<(), axum::Error> {
    let text = String::from_utf8(data)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let message = wire::output_message(stream.name(), &text, offset);
    sink.send(Message::Text(message.into())).await
}

/// Applies control messages until the client goes away.
async fn handle_control(session: &Session, source: &mut Source) {
    while let Some(Ok(message)) = source.next().await {
        let parsed = match message {
            Message::Text(text) => serde_json::from_str::<ClientMessage>(&text),
            Message::Binary(bytes) => serde_json::from_slice::<ClientMessage>(&bytes),
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        match parsed {
            Ok(ClientMessage::Input { data }) => session.write_input(data),
            Ok(ClientMessage::Kill) => session.kill(),
            Ok(ClientMessage::CloseStdin) => session.close_stdin(),
            Ok(ClientMessage::Resize { cols, rows }) => session.resize(WindowSize { cols, rows }),
            Ok(ClientMessage::Execute(_) | ClientMessage::Reconnect(_)) => {
                tracing::debug!("ignoring a second execute/reconnect on one socket");
            }
            Err(error) => tracing::debug!(%error, "ignoring an unparsable control message"),
        }
    }
}

async fn send(sink: &mut Sink, message: &ServerMessage<'_>) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).expect("server messages serialise");
    sink.send(Message::Text(text.into())).await
}

async fn send_error(sink: &mut Sink, error_type: &str, error: &str) -> Result<(), axum::Error> {
    send(
        sink,
        &ServerMessage::Error {
            error_type: error_type.into(),
            error: error.into(),
        },
    )
    .await
}
