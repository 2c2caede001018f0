//! A client of the agent's data-plane protocol (documented in
//! `crates/agent/src/lib.rs`) over a sandbox's unix socket. execd is served
//! by translating to it: commands through the SSE exec transport, files
//! through `/upload`, `/download`, `/glob` and small POSIX shell scripts run
//! with the blocking `/execute`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use base64::Engine as _;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::OsError;
use crate::gateway::relay::{self, Upstream};

/// Largest JSON answer read from the agent.
const MAX_JSON_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the sandbox's agent is not reachable: {0}")]
    Unreachable(String),
    #[error("{message}")]
    Refused {
        status: StatusCode,
        kind: String,
        message: String,
    },
    #[error("unexpected answer from the sandbox's agent: {0}")]
    Protocol(String),
}

impl From<AgentError> for OsError {
    fn from(err: AgentError) -> Self {
        match &err {
            AgentError::Unreachable(_) => OsError::new(
                StatusCode::BAD_GATEWAY,
                "SANDBOX_UNREACHABLE",
                err.to_string(),
            ),
            AgentError::Refused { status, .. } => match *status {
                StatusCode::NOT_FOUND => {
                    OsError::new(StatusCode::NOT_FOUND, "FILE_NOT_FOUND", err.to_string())
                }
                StatusCode::PAYLOAD_TOO_LARGE => {
                    OsError::new(*status, "PAYLOAD_TOO_LARGE", err.to_string())
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    OsError::new(*status, "RANGE_NOT_SATISFIABLE", err.to_string())
                }
                s if s.is_client_error() => OsError::bad_request(err.to_string()),
                _ => OsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "RUNTIME_ERROR",
                    err.to_string(),
                ),
            },
            AgentError::Protocol(_) => OsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "RUNTIME_ERROR",
                err.to_string(),
            ),
        }
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved kept).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Quotes `text` for a POSIX shell.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[derive(Debug, Deserialize)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GlobMatch {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
}

#[derive(Debug, Deserialize)]
struct GlobResponse {
    matches: Vec<GlobMatch>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    detail: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    error: String,
    message: String,
}

/// `run_config` of an exec request: the user to run as.
#[derive(Debug, Clone, Serialize)]
pub struct RunAs {
    pub user: String,
}

/// Body of `POST /execute/stream/start`.
#[derive(Debug, Clone, Serialize)]
pub struct StartRequest {
    pub command: String,
    pub command_id: String,
    /// 0: no limit.
    pub timeout_seconds: f64,
    /// -1: never killed for want of a client.
    pub idle_timeout_seconds: f64,
    pub kill_on_disconnect: bool,
    pub ttl_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_config: Option<RunAs>,
}

impl StartRequest {
    /// A command that runs until it exits, whoever is attached.
    pub fn detached(command: String, command_id: String) -> Self {
        Self {
            command,
            command_id,
            timeout_seconds: 0.0,
            idle_timeout_seconds: -1.0,
            kill_on_disconnect: false,
            ttl_seconds: 600.0,
            env: None,
            cwd: None,
            run_config: None,
        }
    }
}

/// One event of a command, as the agent's SSE transport reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    Started { command_id: String, pid: i32 },
    Stdout(String),
    Stderr(String),
    Exit(i32),
    Error { error_type: String, error: String },
}

#[derive(Debug, Deserialize)]
struct Started {
    command_id: String,
    pid: i32,
}

#[derive(Debug, Deserialize)]
struct Chunk {
    data: String,
}

#[derive(Debug, Deserialize)]
struct Exit {
    exit_code: i32,
}

#[derive(Debug, Deserialize)]
struct ErrorEvent {
    error_type: String,
    error: String,
}

#[derive(Debug, Deserialize, Serialize)]
struct Offsets {
    stdout_offset: u64,
    stderr_offset: u64,
}

/// A sandbox's agent.
#[derive(Debug, Clone)]
pub struct Agent {
    socket: PathBuf,
}

impl Agent {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    /// The agent's unix socket.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<Body>, AgentError> {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        relay::forward(req, &Upstream::Unix(self.socket.clone()), &target)
            .await
            .map_err(|e| AgentError::Unreachable(e.to_string()))
    }

    /// The response if it is a success, else its error as [`AgentError`].
    async fn checked(response: Response<Body>) -> Result<Response<Body>, AgentError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = read_body(response.into_body()).await?;
        let (kind, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.detail.error, body.detail.message),
            Err(_) => (
                "Unknown".to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ),
        };
        Err(AgentError::Refused {
            status,
            kind,
            message,
        })
    }

    async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, AgentError> {
        let response = self.post_json_raw(path, body).await?;
        let bytes = read_body(response.into_body()).await?;
        serde_json::from_slice(&bytes).map_err(|e| AgentError::Protocol(e.to_string()))
    }

    async fn post_json_raw(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Response<Body>, AgentError> {
        let body = serde_json::to_vec(body).map_err(|e| AgentError::Protocol(e.to_string()))?;
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        Self::checked(self.send(req).await?).await
    }

    /// Runs `script` with `/bin/sh -c` and waits for it (blocking
    /// `/execute`).
    pub async fn exec(&self, script: &str, timeout_seconds: f64) -> Result<ExecOutput, AgentError> {
        #[derive(Serialize)]
        struct Body<'a> {
            command: &'a str,
            timeout: f64,
            shell: &'a str,
        }
        let body = Body {
            command: script,
            timeout: timeout_seconds,
            shell: "/bin/sh",
        };
        self.post_json("/execute", &body).await
    }

    /// `GET /download?path=P`, passing `Range` on; the agent's response
    /// (200 or 206) as is.
    pub async fn download(
        &self,
        path: &str,
        range: Option<&HeaderValue>,
    ) -> Result<Response<Body>, AgentError> {
        let mut req = Request::get(format!("/download?path={}", encode_component(path)));
        if let Some(range) = range {
            req = req.header(header::RANGE, range.clone());
        }
        let req = req
            .body(Body::empty())
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        Self::checked(self.send(req).await?).await
    }

    /// `POST /upload?path=P`: writes `data` to `path` atomically.
    pub async fn upload(&self, path: &str, data: Bytes) -> Result<(), AgentError> {
        let boundary = format!("sandpit-{}", uuid::Uuid::new_v4().simple());
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let mut body = Vec::with_capacity(head.len() + data.len() + tail.len());
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(tail.as_bytes());
        let req = Request::post(format!("/upload?path={}", encode_component(path)))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        Self::checked(self.send(req).await?).await.map(drop)
    }

    /// `POST /glob`: paths under `path` matching `pattern`.
    pub async fn glob(
        &self,
        path: &str,
        pattern: &str,
        limit: i64,
    ) -> Result<Vec<GlobMatch>, AgentError> {
        let body = serde_json::json!({"path": path, "pattern": pattern, "limit": limit});
        let found: GlobResponse = self.post_json("/glob", &body).await?;
        Ok(found.matches)
    }

    /// Starts (or attaches to: ids are get-or-create) a command and streams
    /// its events.
    pub async fn start(&self, req: &StartRequest) -> Result<EventStream, AgentError> {
        let response = self.post_json_raw("/execute/stream/start", req).await?;
        Ok(EventStream {
            agent: self.clone(),
            command_id: req.command_id.clone(),
            body: response.into_body().into_data_stream(),
            buffer: Vec::new(),
        })
    }
}

async fn read_body(body: Body) -> Result<Bytes, AgentError> {
    let limited = http_body_util::Limited::new(body, MAX_JSON_BYTES);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| AgentError::Unreachable(e.to_string()))
}

/// A command's events, resuming transparently when the agent asks for an
/// acknowledgement (`ack_required`). A resumed stream repeats `Started`.
pub struct EventStream {
    agent: Agent,
    command_id: String,
    body: BodyDataStream,
    buffer: Vec<u8>,
}

impl EventStream {
    pub async fn next(&mut self) -> Result<Option<AgentEvent>, AgentError> {
        loop {
            if let Some(frame) = take_frame(&mut self.buffer) {
                let (name, data) = parse_frame(&frame);
                if name == "ack_required" {
                    self.resume(&data).await?;
                    continue;
                }
                if let Some(event) = decode(&name, &data)? {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(AgentError::Unreachable(e.to_string())),
                None => return Ok(None),
            }
        }
    }

    async fn resume(&mut self, data: &str) -> Result<(), AgentError> {
        let offsets: Offsets =
            serde_json::from_str(data).map_err(|e| AgentError::Protocol(e.to_string()))?;
        let body = serde_json::json!({
            "command_id": self.command_id,
            "stdout_offset": offsets.stdout_offset,
            "stderr_offset": offsets.stderr_offset,
        });
        let response = self
            .agent
            .post_json_raw("/execute/stream/resume", &body)
            .await?;
        self.body = response.into_body().into_data_stream();
        self.buffer.clear();
        Ok(())
    }
}

/// Removes and returns the first complete SSE frame of `buffer`.
fn take_frame(buffer: &mut Vec<u8>) -> Option<String> {
    let end = buffer.windows(2).position(|w| w == b"\n\n")?;
    let frame: Vec<u8> = buffer.drain(..end + 2).collect();
    Some(String::from_utf8_lossy(&frame[..end]).into_owned())
}

/// The event name and the (joined) data lines of a frame.
fn parse_frame(frame: &str) -> (String, String) {
    let mut name = String::from("message");
    let mut data: Vec<&str> = Vec::new();
    for line in frame.lines() {
        if let Some(rest) = line.strip_prefix("event:") {
            name = rest.trim().to_owned();
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    (name, data.join("\n"))
}

fn json<T: DeserializeOwned>(data: &str) -> Result<T, AgentError> {
    serde_json::from_str(data).map_err(|e| AgentError::Protocol(format!("{e}: {data}")))
}

fn decode(name: &str, data: &str) -> Result<Option<AgentEvent>, AgentError> {
    let text = |data: &str| -> Result<String, AgentError> {
        let chunk: Chunk = json(data)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(chunk.data)
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    Ok(Some(match name {
        "started" => {
            let s: Started = json(data)?;
            AgentEvent::Started {
                command_id: s.command_id,
                pid: s.pid,
            }
        }
        "stdout" => AgentEvent::Stdout(text(data)?),
        "stderr" => AgentEvent::Stderr(text(data)?),
        "exit" => AgentEvent::Exit(json::<Exit>(data)?.exit_code),
        "error" => {
            let e: ErrorEvent = json(data)?;
            AgentEvent::Error {
                error_type: e.error_type,
                error: e.error,
            }
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_and_decoded() {
        let mut buffer = b"event: started\ndata: {\"command_id\":\"c\",\"pid\":7}\n\n: heartbeat\n\nevent: stdout\ndata: {\"data\":\"aGkK\",\"offset\":0}\n\nevent: exit\ndata: {\"exit_code\":3}\n\npartial".to_vec();
        let mut events = Vec::new();
        while let Some(frame) = take_frame(&mut buffer) {
            let (name, data) = parse_frame(&frame);
            if let Some(e) = decode(&name, &data).expect("decodes") {
                events.push(e);
            }
        }
        assert_eq!(
            events,
            vec![
                AgentEvent::Started {
                    command_id: "c".into(),
                    pid: 7
                },
                AgentEvent::Stdout("hi\n".into()),
                AgentEvent::Exit(3),
            ]
        );
        assert_eq!(buffer, b"partial");
    }

    #[test]
    fn quoting_and_encoding() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(encode_component("/a b/ü&x"), "/a%20b/%C3%BC%26x");
    }
}
