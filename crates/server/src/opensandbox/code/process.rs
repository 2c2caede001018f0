//! A long-running process in a sandbox with a pipe to its stdin: an agent
//! WebSocket exec session (`GET /execute/ws`, see `crates/agent/src/lib.rs`)
//! held by a task of this server. Code contexts and bash sessions are such
//! processes.
//!
//! The session is started with `kill_on_disconnect`, no timeout and no idle
//! timeout: it lives exactly as long as the server holds the socket, so a
//! context is gone when it is deleted, when its sandbox stops, and when
//! the server restarts (nothing is left running unowned).

use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::upstream_pod::{self, AgentStream};

use crate::opensandbox::error::OsError;

/// What the process said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(String),
    Stderr(String),
    /// It exited with this code (128 + signal for a signal death).
    Exit(i32),
    /// The agent reported an error or the connection broke.
    Failed(String),
}

enum Control {
    Input(String),
}

/// Writes to the process; when every handle is dropped the process is
/// killed.
#[derive(Clone)]
pub struct Stdin {
    control: mpsc::UnboundedSender<Control>,
}

impl Stdin {
    /// Queues `text` for the process's stdin; false if it is gone.
    pub fn write(&self, text: String) -> bool {
        self.control.send(Control::Input(text)).is_ok()
    }
}

/// What to start.
pub struct Spec {
    /// Shell text (run with the agent's default shell).
    pub command: String,
    /// Agent session id.
    pub id: String,
    pub cwd: Option<String>,
}

/// Starts `spec` through the agent `socket` names (its unix socket, or on
/// Kubernetes its pod with the agent's credential); its stdin, and its
/// output (bounded: the agent holds back output the reader has not taken).
pub async fn spawn(socket: &Path, spec: Spec) -> Result<(Stdin, mpsc::Receiver<Output>), OsError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        OsError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "SANDBOX_UNREACHABLE",
            format!("the sandbox's agent is not reachable: {e}"),
        )
    };
    let mut request = "ws://agent/execute/ws"
        .into_client_request()
        .map_err(|e| unreachable(&e))?;
    let stream = upstream_pod::connect_agent(socket, request.headers_mut())
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| unreachable(&e))?;
    let mut execute = json!({
        "type": "execute",
        "command": spec.command,
        "command_id": spec.id,
        "timeout_seconds": 0,
        "idle_timeout_seconds": -1,
        "kill_on_disconnect": true,
        "ttl_seconds": 30,
    });
    if let Some(cwd) = spec.cwd {
        execute["cwd"] = json!(cwd);
    }
    ws.send(Message::text(execute.to_string()))
        .await
        .map_err(|e| unreachable(&e))?;
    let (control, control_rx) = mpsc::unbounded_channel();
    let (output, output_rx) = mpsc::channel(64);
    tokio::spawn(pump(ws, control_rx, output));
    Ok((Stdin { control }, output_rx))
}

type Socket = tokio_tungstenite::WebSocketStream<AgentStream>;

/// Moves stdin writes to the socket and the socket's messages to `output`
/// until the process ends or every [`Stdin`] is dropped (then kills it).
async fn pump(
    mut ws: Socket,
    mut control: mpsc::UnboundedReceiver<Control>,
    output: mpsc::Sender<Output>,
) {
    loop {
        tokio::select! {
            command = control.recv() => match command {
                Some(Control::Input(data)) => {
                    let message = json!({"type": "input", "data": data}).to_string();
                    if ws.send(Message::text(message)).await.is_err() {
                        let _ = output.send(Output::Failed("the agent connection broke".into())).await;
                        return;
                    }
                }
                None => {
                    let _ = ws.send(Message::text(json!({"type": "kill"}).to_string())).await;
                    let _ = ws.close(None).await;
                    return;
                }
            },
            message = ws.next() => {
                let Some(out) = decode(message) else { continue };
                let last = matches!(out, Output::Exit(_) | Output::Failed(_));
                if output.send(out).await.is_err() || last {
                    let _ = ws.close(None).await;
                    return;
                }
            }
        }
    }
}

/// One socket message as [`Output`]; `None` for messages to skip.
fn decode(
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Option<Output> {
    let text = match message {
        Some(Ok(Message::Text(text))) => text.to_string(),
        Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
        Some(Ok(Message::Close(_))) | None => {
            return Some(Output::Failed("the process's connection closed".into()))
        }
        Some(Ok(_)) => return None,
        Some(Err(e)) => return Some(Output::Failed(format!("the agent connection broke: {e}"))),
    };
    decode_text(&text)
}

fn decode_text(text: &str) -> Option<Output> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
    match value["type"].as_str()? {
        "stdout" => Some(Output::Stdout(field("data"))),
        "stderr" => Some(Output::Stderr(field("data"))),
        "exit" => Some(Output::Exit(
            value["exit_code"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(-1),
        )),
        "error" => Some(Output::Failed(format!(
            "{}: {}",
            field("error_type"),
            field("error")
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandpit_runtime::NetworkEndpoint;
    use std::path::PathBuf;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    /// A pod's agent on loopback: checks the credential, takes the
    /// execute message, answers with output and an exit.
    // tungstenite's handshake callback type fixes its large error.
    #[allow(clippy::result_large_err)]
    async fn fake_pod_agent(listener: tokio::net::TcpListener) -> (String, serde_json::Value) {
        let (conn, _) = listener.accept().await.expect("accept");
        let mut auth = String::new();
        let mut ws = tokio_tungstenite::accept_hdr_async(conn, |req: &Request, res: Response| {
            auth = req.headers()["authorization"]
                .to_str()
                .unwrap_or_default()
                .to_owned();
            Ok(res)
        })
        .await
        .expect("websocket");
        let execute = match ws.next().await {
            Some(Ok(Message::Text(text))) => serde_json::from_str(&text).expect("json"),
            other => panic!("no execute message: {other:?}"),
        };
        for message in [
            json!({"type": "stdout", "data": "from the pod\n"}),
            json!({"type": "exit", "exit_code": 3}),
        ] {
            ws.send(Message::text(message.to_string()))
                .await
                .expect("send");
        }
        (auth, execute)
    }

    #[tokio::test]
    async fn a_process_in_a_pod_is_started_through_its_agent_with_the_credential() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let socket = PathBuf::from(format!("/nonexistent/code-agent-{}.sock", addr.port()));
        let endpoint = NetworkEndpoint {
            ip: addr.ip(),
            agent_port: addr.port(),
            token: "code-pod-secret".into(),
        };
        assert!(upstream_pod::register_agent(socket.clone(), &endpoint));
        let agent = tokio::spawn(fake_pod_agent(listener));
        let spec = Spec {
            command: "exec python3".into(),
            id: "code-1".into(),
            cwd: None,
        };
        let (_stdin, mut output) = spawn(&socket, spec).await.expect("started on the pod");
        assert_eq!(
            output.recv().await,
            Some(Output::Stdout("from the pod\n".into()))
        );
        assert_eq!(output.recv().await, Some(Output::Exit(3)));
        let (auth, execute) = agent.await.expect("agent");
        assert_eq!(auth, "Bearer code-pod-secret");
        assert_eq!(execute["command"], "exec python3");
        assert_eq!(execute["kill_on_disconnect"], true);
    }

    #[tokio::test]
    async fn an_unreachable_agent_is_a_502() {
        let socket = PathBuf::from("/nonexistent/no-agent.sock");
        let spec = Spec {
            command: "true".into(),
            id: "code-2".into(),
            cwd: None,
        };
        let err = spawn(&socket, spec).await.err().expect("refused");
        assert_eq!(err.status, axum::http::StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn agent_messages_decode() {
        assert_eq!(
            decode_text(r#"{"type":"stdout","data":"hi\n","offset":0}"#),
            Some(Output::Stdout("hi\n".into()))
        );
        assert_eq!(
            decode_text(r#"{"type":"exit","exit_code":127}"#),
            Some(Output::Exit(127))
        );
        assert_eq!(
            decode_text(r#"{"type":"error","error_type":"CommandError","error":"x"}"#),
            Some(Output::Failed("CommandError: x".into()))
        );
        assert_eq!(decode_text(r#"{"type":"started","pid":3}"#), None);
        assert_eq!(decode_text("not json"), None);
    }
}
