//! Data-plane operations: running commands over `{dataplane_url}/execute/ws`.

use futures_util::{SinkExt, StreamExt};
use sandpit_api::exec::{ClientMessage, ExecuteRequest, ServerMessage};
use sandpit_api::SandboxResponse;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::{Client, ClientError};

/// Options of one command.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Kill the command after this long (0 = never).
    pub timeout_seconds: u64,
    pub shell: String,
    /// Keep stdin open for [`Input`] (otherwise it is closed at start).
    pub stdin: bool,
    /// Run under a pseudo-terminal of this size (columns, rows); output then
    /// arrives as `Stdout` only.
    pub pty: Option<(u16, u16)>,
    /// Working directory (default: the sandbox's).
    pub cwd: Option<String>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            timeout_seconds: 60,
            shell: "/bin/bash".into(),
            stdin: false,
            pty: None,
            cwd: None,
        }
    }
}

/// What a client sends to a running command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for its stdin (text: the protocol carries strings).
    Data(String),
    /// Close its stdin (EOF).
    Close,
    /// Resize its pseudo-terminal.
    Resize { cols: u16, rows: u16 },
    /// SIGKILL its process group.
    Kill,
}

impl Input {
    fn message(self) -> ClientMessage {
        match self {
            Input::Data(data) => ClientMessage::Input { data },
            Input::Close => ClientMessage::CloseStdin,
            Input::Resize { cols, rows } => ClientMessage::Resize { cols, rows },
            Input::Kill => ClientMessage::Kill,
        }
    }
}

impl ExecOptions {
    /// The `execute` message that starts `command` with these options.
    fn message(&self, command: &str) -> ClientMessage {
        let (cols, rows) = self.pty.unzip();
        ClientMessage::Execute(Box::new(ExecuteRequest {
            command_id: Some(uuid::Uuid::now_v7().simple().to_string()),
            timeout_seconds: self.timeout_seconds as f64,
            shell: Some(self.shell.clone()),
            close_stdin: !self.stdin,
            kill_on_disconnect: self.stdin,
            pty: self.pty.is_some(),
            cols,
            rows,
            cwd: self.cwd.clone(),
            ..ExecuteRequest::new(command)
        }))
    }
}

/// A client message as WebSocket text.
fn ws_text(message: &ClientMessage) -> Result<Message, ClientError> {
    let text = serde_json::to_string(message).map_err(ClientError::transport)?;
    Ok(Message::text(text))
}

/// A finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i64,
}

/// Data-plane handle for one sandbox.
#[derive(Clone)]
pub struct SandboxHandle {
    pub(crate) client: Client,
    pub(crate) dataplane_url: String,
}

impl SandboxHandle {
    pub(crate) fn new(client: Client, sandbox: &SandboxResponse) -> Self {
        Self {
            client,
            dataplane_url: sandbox.dataplane_url.clone().unwrap_or_default(),
        }
    }

    pub async fn run(&self, command: &str) -> Result<ExecResult, ClientError> {
        self.run_with(command, &ExecOptions::default()).await
    }

    /// Run `command` and collect its output, as `sb.run()` does.
    pub async fn run_with(
        &self,
        command: &str,
        options: &ExecOptions,
    ) -> Result<ExecResult, ClientError> {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let exit_code = self
            .run_streaming(command, options, |stream, data| match stream {
                Stream::Stdout => stdout.push_str(data),
                Stream::Stderr => stderr.push_str(data),
            })
            .await?;
        Ok(ExecResult {
            stdout,
            stderr,
            exit_code,
        })
    }

    /// Run `command`, handing each output chunk to `on_chunk` as it arrives;
    /// returns the exit code.
    pub async fn run_streaming(
        &self,
        command: &str,
        options: &ExecOptions,
        on_chunk: impl FnMut(Stream, &str),
    ) -> Result<i64, ClientError> {
        let (_no_input, input) = tokio::sync::mpsc::unbounded_channel();
        self.run_interactive(command, options, input, on_chunk)
            .await
    }

    /// Run `command` with `input` feeding its stdin (and PTY size, and
    /// kills) while output goes to `on_chunk`; returns the exit code. When
    /// the sender side of `input` is dropped, no more input is sent.
    pub async fn run_interactive(
        &self,
        command: &str,
        options: &ExecOptions,
        mut input: tokio::sync::mpsc::UnboundedReceiver<Input>,
        mut on_chunk: impl FnMut(Stream, &str),
    ) -> Result<i64, ClientError> {
        let url = format!(
            "{}/execute/ws",
            self.dataplane_url.replacen("http://", "ws://", 1)
        );
        let mut request = url.into_client_request().map_err(ClientError::transport)?;
        let key = self
            .client
            .api_key()
            .parse()
            .map_err(ClientError::transport)?;
        request.headers_mut().insert("x-api-key", key);
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(ClientError::transport)?;
        ws.send(ws_text(&options.message(command))?)
            .await
            .map_err(ClientError::transport)?;
        let mut input_open = true;
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                next = input.recv(), if input_open => {
                    match next {
                        Some(item) => ws
                            .send(ws_text(&item.message())?)
                            .await
                            .map_err(ClientError::transport)?,
                        None => input_open = false,
                    }
                    continue;
                }
            };
            let Some(message) = message else { break };
            let message = message.map_err(ClientError::transport)?;
            let Message::Text(text) = message else {
                continue;
            };
            let frame: ServerMessage<'_> =
                serde_json::from_str(&text).map_err(|e| ClientError::Protocol(e.to_string()))?;
            match frame {
                ServerMessage::Stdout { data, .. } => on_chunk(Stream::Stdout, &data),
                ServerMessage::Stderr { data, .. } => on_chunk(Stream::Stderr, &data),
                ServerMessage::Exit { exit_code } => {
                    let _ = ws.close(None).await;
                    return Ok(exit_code.into());
                }
                ServerMessage::Error { error_type, error } => {
                    return Err(ClientError::Command {
                        error_type: error_type.into_owned(),
                        message: error.into_owned(),
                    })
                }
                ServerMessage::Started { .. } | ServerMessage::Unknown => {}
            }
        }
        Err(ClientError::Protocol(
            "the command stream ended without an exit message".into(),
        ))
    }
}

/// Which output stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn sent(message: &ClientMessage) -> Value {
        let Ok(Message::Text(text)) = ws_text(message) else {
            panic!("not a text frame")
        };
        serde_json::from_str(&text).unwrap()
    }

    /// The execute message carries the options under the SDK's names.
    #[test]
    fn execute_message_carries_the_options() {
        let options = ExecOptions {
            timeout_seconds: 5,
            stdin: true,
            pty: Some((120, 40)),
            cwd: Some("/work".into()),
            ..ExecOptions::default()
        };
        let mut value = sent(&options.message("ls"));
        assert_eq!(value["command_id"].as_str().map(str::len), Some(32));
        value["command_id"] = Value::Null;
        assert_eq!(
            value,
            json!({
                "type": "execute", "command": "ls", "command_id": null,
                "timeout_seconds": 5.0, "shell": "/bin/bash",
                "idle_timeout_seconds": 300.0, "kill_on_disconnect": true,
                "ttl_seconds": 600.0, "cwd": "/work", "close_stdin": false,
                "pty": true, "cols": 120, "rows": 40,
            })
        );
        let plain = sent(&ExecOptions::default().message("true"));
        assert_eq!(plain["close_stdin"], true);
        assert_eq!(plain.get("pty"), None);
    }

    #[test]
    fn inputs_are_the_agent_control_messages() {
        let cases = [
            (
                Input::Data("x".into()),
                json!({"type": "input", "data": "x"}),
            ),
            (Input::Close, json!({"type": "close_stdin"})),
            (
                Input::Resize { cols: 3, rows: 4 },
                json!({"type": "resize", "cols": 3, "rows": 4}),
            ),
            (Input::Kill, json!({"type": "kill"})),
        ];
        for (input, expected) in cases {
            assert_eq!(sent(&input.message()), expected);
        }
    }
}
