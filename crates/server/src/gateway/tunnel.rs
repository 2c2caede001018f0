//! TCP tunnels: `GET {dataplane}/tunnel` upgraded to a WebSocket that
//! carries a yamux session (binary messages are a byte stream). The client
//! opens one yamux stream per TCP connection and writes a connect header
//! (`version: u8 = 1`, `port: u16` big-endian); the server answers one status
//! byte, dials `127.0.0.1:port` inside the sandbox's network namespace (a
//! pod's IP on Kubernetes) and splices. This is the protocol of the
//! `langsmith` SDK's `sb.tunnel()`.

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use sandpit_tunnel::{Codec, ConnectHeader, Frame, Status, PIPE, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::upstream_pod::SandboxNet;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::sandboxes::ActivityGuard;
use crate::state::AppState;

/// Copy buffer per direction of a tunnelled connection.
const SPLICE_BUFFER: usize = 64 << 10;
/// How often a session checks that its sandbox still runs.
const ALIVE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Authorises the caller and starts a stopped sandbox, like any data-plane
    // request.
    state.sandboxes.dataplane_socket(&caller, &id).await?;
    let net = state
        .sandboxes
        .live_net(&caller.tenant_id, &id)
        .ok_or_else(|| ApiError::NotReady(format!("Sandbox '{id}' is not running")))?;
    let guard = state.sandboxes.connection(&id);
    let sandboxes = state.sandboxes.clone();
    let tenant = caller.tenant_id.clone();
    let alive = move || sandboxes.live_net(&tenant, &id) == Some(net);
    Ok(ws
        .max_message_size(16 << 20)
        .on_upgrade(move |socket| session(socket, net, guard, alive)))
}

/// Serve one tunnel session until the client goes away or the sandbox
/// behind it stops (`alive` turns false): then the pump closes the
/// WebSocket with a close frame, never by dropping the connection.
async fn session(
    socket: WebSocket,
    net: SandboxNet,
    guard: ActivityGuard,
    alive: impl Fn() -> bool + Send + 'static,
) {
    let (ours, pump_end) = tokio::io::duplex(PIPE);
    tokio::spawn(sandpit_tunnel::pump(socket, pump_end, codec()));
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
                tokio::spawn(serve_stream(stream, net));
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

/// axum's messages for the shared pump; a session that ends first closes
/// with 1000 "tunnel session ended".
fn codec() -> Codec<Message> {
    Codec {
        classify: |message| match message {
            Message::Binary(data) => Frame::Data(data),
            Message::Close(_) => Frame::Close,
            _ => Frame::Other,
        },
        binary: Message::Binary,
        close: || {
            Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "tunnel session ended".into(),
            }))
        },
    }
}

/// One tunnelled connection: header, status, splice.
async fn serve_stream(stream: yamux::Stream, net: SandboxNet) {
    let mut stream = stream.compat();
    let mut header = [0u8; ConnectHeader::LEN];
    if stream.read_exact(&mut header).await.is_err() {
        return;
    }
    let ConnectHeader { version, port } = ConnectHeader::decode(header);
    let (status, upstream) = if version != PROTOCOL_VERSION {
        (Status::UnsupportedVersion, None)
    } else if port == 0 {
        (Status::PortNotAllowed, None)
    } else {
        match net.connect(port).await {
            Ok(tcp) => (Status::Ok, Some(tcp)),
            // A pod's agent port.
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                (Status::PortNotAllowed, None)
            }
            Err(err) => {
                tracing::debug!(port, error = %err, "tunnel dial failed");
                (Status::DialFailed, None)
            }
        }
    };
    if stream.write_all(&[status.byte()]).await.is_err() {
        return;
    }
    let Some(mut tcp) = upstream else {
        let _ = stream.shutdown().await;
        return;
    };
    match tokio::io::copy_bidirectional_with_sizes(
        &mut stream,
        &mut tcp,
        SPLICE_BUFFER,
        SPLICE_BUFFER,
    )
    .await
    {
        Ok((up, down)) => crate::metrics::global().tunnel_bytes(up + down),
        Err(err) => {
            tracing::debug!(port, error = %err, "tunnelled connection ended with an error")
        }
    }
}
