//! Data-plane operations: running commands over `{dataplane_url}/execute/ws`.

use futures_util::{SinkExt, StreamExt};
use sandpit_api::SandboxResponse;
use serde_json::json;
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
    fn message(&self) -> serde_json::Value {
        match self {
            Input::Data(data) => json!({"type": "input", "data": data}),
            Input::Close => json!({"type": "close_stdin"}),
            Input::Resize { cols, rows } => json!({"type": "resize", "cols": cols, "rows": rows}),
            Input::Kill => json!({"type": "kill"}),
        }
    }
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
        let mut execute = json!({
            "type": "execute",
            "command": command,
            "command_id": uuid::Uuid::now_v7().simple().to_string(),
            "timeout_seconds": options.timeout_seconds,
            "shell": options.shell,
            "close_stdin": !options.stdin,
            "kill_on_disconnect": options.stdin,
        });
        if let Some((cols, rows)) = options.pty {
            execute["pty"] = json!(true);
            execute["cols"] = json!(cols);
            execute["rows"] = json!(rows);
        }
        if let Some(cwd) = &options.cwd {
            execute["cwd"] = json!(cwd);
        }
        ws.send(Message::text(execute.to_string()))
            .await
            .map_err(ClientError::transport)?;
        let mut input_open = true;
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                next = input.recv(), if input_open => {
                    match next {
                        Some(item) => ws
                            .send(Message::text(item.message().to_string()))
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
            let frame: Frame<'_> =
                serde_json::from_str(&text).map_err(|e| ClientError::Protocol(e.to_string()))?;
            match frame.kind {
                "stdout" => on_chunk(Stream::Stdout, &frame.data.unwrap_or_default()),
                "stderr" => on_chunk(Stream::Stderr, &frame.data.unwrap_or_default()),
                "exit" => {
                    let _ = ws.close(None).await;
                    return Ok(frame.exit_code.unwrap_or(-1));
                }
                "error" => {
                    return Err(ClientError::Command {
                        error_type: frame.error_type.unwrap_or("Error").to_owned(),
                        message: frame.error.map(|e| e.into_owned()).unwrap_or_default(),
                    })
                }
                _ => {}
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

/// One server message of the exec WebSocket.
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow, default)]
    data: Option<std::borrow::Cow<'a, str>>,
    exit_code: Option<i64>,
    error_type: Option<&'a str>,
    #[serde(borrow, default)]
    error: Option<std::borrow::Cow<'a, str>>,
}
