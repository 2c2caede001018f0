//! TCP tunnels: `GET {dataplane}/tunnel` upgraded to a WebSocket that
//! carries a yamux session (binary messages are a byte stream). The client
//! opens one yamux stream per TCP connection and writes a connect header
//! (`version: u8 = 1`, `port: u16` big-endian); the server answers one status
//! byte, dials `127.0.0.1:port` inside the sandbox's network namespace and
//! splices. This is the protocol of the `langsmith` SDK's `sb.tunnel()`.

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::sandboxes::ActivityGuard;
use crate::state::AppState;

/// Version of the connect header this server speaks.
pub const PROTOCOL_VERSION: u8 = 1;
pub const STATUS_OK: u8 = 0;
pub const STATUS_PORT_NOT_ALLOWED: u8 = 1;
pub const STATUS_DIAL_FAILED: u8 = 2;
pub const STATUS_UNSUPPORTED_VERSION: u8 = 3;

/// Bytes buffered between the WebSocket and the yamux session.
const PIPE: usize = 256 << 10;
/// Copy buffer per direction of a tunnelled connection.
const SPLICE_BUFFER: usize = 64 << 10;
/// How often a session checks that its sandbox still runs.
const ALIVE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);
/// How long one side of a closing session waits for the other.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Authorises the caller and starts a stopped sandbox, like any data-plane
    // request.
    state.sandboxes.dataplane_socket(&caller, &id).await?;
    let pid = state
        .sandboxes
        .live_pid(&caller.tenant_id, &id)
        .ok_or_else(|| ApiError::NotReady(format!("Sandbox '{id}' is not running")))?;
    let guard = state.sandboxes.connection(&id);
    let sandboxes = state.sandboxes.clone();
    let tenant = caller.tenant_id.clone();
    let alive = move || sandboxes.live_pid(&tenant, &id) == Some(pid);
    Ok(ws
        .max_message_size(16 << 20)
        .on_upgrade(move |socket| session(socket, pid, guard, alive)))
}

/// Serve one tunnel session until the client goes away or the sandbox
/// behind it stops (`alive` turns false): then the pump closes the
/// WebSocket with a close frame, never by dropping the connection.
async fn session(
    socket: WebSocket,
    pid: i32,
    guard: ActivityGuard,
    alive: impl Fn() -> bool + Send + 'static,
) {
    let (ours, pump_end) = tokio::io::duplex(PIPE);
    tokio::spawn(pump(socket, pump_end));
    let mut connection =
        yamux::Connection::new(ours.compat(), yamux::Config::default(), yamux::Mode::Server);
    let mut check = tokio::time::interval(ALIVE_CHECK);
    loop {
        let next = tokio::select! {
            next = std::future::poll_fn(|cx| connection.poll_next_inbound(cx)) => next,
            _ = check.tick() => {
                if alive() {
                    continue;
                }
                tracing::debug!("tunnel session ended: its sandbox stopped");
                break;
            }
        };
        match next {
            Some(Ok(stream)) => {
                tokio::spawn(serve_stream(stream, pid));
            }
            Some(Err(err)) => {
                tracing::debug!(error = %err, "tunnel session ended with an error");
                break;
            }
            None => break,
        }
    }
    drop(guard);
}

/// Move bytes between the WebSocket's binary messages and the pipe the yamux
/// session reads and writes. When either side ends, the other gets
/// `CLOSE_GRACE` to finish: a client's close frame ends the session, whose
/// end sends the answering close frame; a session that ends sends a close
/// frame and waits for the client's answer.
async fn pump(socket: WebSocket, pipe: tokio::io::DuplexStream) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut pipe_rx, mut pipe_tx) = tokio::io::split(pipe);
    let inbound = async {
        while let Some(Ok(message)) = ws_rx.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            if pipe_tx.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = pipe_tx.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; PIPE];
        loop {
            match pipe_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if ws_tx.send(Message::Binary(data)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "tunnel session ended".into(),
            })))
            .await;
        // After the client's close frame that send is refused, and the
        // answer tungstenite queued goes out only with a flush.
        let _ = ws_tx.flush().await;
    };
    tokio::pin!(inbound, outbound);
    tokio::select! {
        _ = &mut inbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut outbound).await;
        }
        _ = &mut outbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut inbound).await;
        }
    }
}

/// One tunnelled connection: header, status, splice.
async fn serve_stream(stream: yamux::Stream, pid: i32) {
    let mut stream = stream.compat();
    let mut header = [0u8; 3];
    if stream.read_exact(&mut header).await.is_err() {
        return;
    }
    let port = u16::from_be_bytes([header[1], header[2]]);
    let (status, upstream) = if header[0] != PROTOCOL_VERSION {
        (STATUS_UNSUPPORTED_VERSION, None)
    } else if port == 0 {
        (STATUS_PORT_NOT_ALLOWED, None)
    } else {
        match super::netns::connect(pid, port).await {
            Ok(tcp) => (STATUS_OK, Some(tcp)),
            Err(err) => {
                tracing::debug!(port, error = %err, "tunnel dial failed");
                (STATUS_DIAL_FAILED, None)
            }
        }
    };
    if stream.write_all(&[status]).await.is_err() {
        return;
    }
    let Some(mut tcp) = upstream else {
        let _ = stream.shutdown().await;
        return;
    };
    if let Err(err) = tokio::io::copy_bidirectional_with_sizes(
        &mut stream,
        &mut tcp,
        SPLICE_BUFFER,
        SPLICE_BUFFER,
    )
    .await
    {
        tracing::debug!(port, error = %err, "tunnelled connection ended with an error");
    }
}
