//! Test harness: a real agent process on a unix socket in a private
//! directory, plus small WebSocket, SSE and HTTP clients for it.
//!
//! The agent is stopped with SIGTERM (so it kills its commands) and its
//! directory removed when the [`Agent`] is dropped, even if a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long any single wait in a test may take before it fails.
pub const STEP: Duration = Duration::from_secs(20);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("sandpit-agent-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running agent.
pub struct Agent {
    child: Option<Child>,
    pub socket: PathBuf,
    pub workdir: PathBuf,
    // Last, so the directory goes after the process.
    pub dir: TempDir,
}

impl Agent {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_configured(|command| {
            command.args(extra).env_remove("TERM");
        })
    }

    /// An agent on a socket of its own, with what `configure` adds to its
    /// command line and environment.
    pub fn start_configured(configure: impl FnOnce(&mut Command)) -> Self {
        let dir = TempDir::new();
        let socket = dir.path().join("agent.sock");
        let workdir = dir.path().join("work");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sandpit-agent"));
        command
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--workdir")
            .arg(&workdir);
        configure(&mut command);
        let child = command.stdin(Stdio::null()).spawn().expect("spawn agent");
        let agent = Self {
            child: Some(child),
            socket,
            workdir,
            dir,
        };
        agent.wait_for_socket();
        agent
    }

    /// Wraps an agent started by the caller on `socket`.
    pub fn adopt(child: Child, dir: TempDir, socket: PathBuf, workdir: PathBuf) -> Self {
        let agent = Self {
            child: Some(child),
            socket,
            workdir,
            dir,
        };
        agent.wait_for_socket();
        agent
    }

    fn wait_for_socket(&self) {
        let deadline = Instant::now() + STEP;
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "agent did not start listening");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id() as i32, libc::SIGTERM);
        child.wait().expect("wait agent")
    }

    /// Opens `/execute/ws`.
    pub async fn ws(&self) -> Ws {
        let stream = UnixStream::connect(&self.socket).await.expect("connect");
        let (ws, _) = tokio_tungstenite::client_async("ws://localhost/execute/ws", stream)
            .await
            .expect("websocket handshake");
        Ws(ws)
    }

    /// Sends one HTTP request on a fresh connection.
    pub async fn http(&self, request: Request<Full<Bytes>>) -> HttpResponse {
        let stream = UnixStream::connect(&self.socket).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        let response = sender.send_request(request).await.expect("send request");
        HttpResponse::read(response).await
    }

    pub async fn get(&self, uri: &str) -> HttpResponse {
        self.http(request("GET", uri, &[], Bytes::new())).await
    }

    pub async fn post_json(&self, uri: &str, body: Value) -> HttpResponse {
        let body = Bytes::from(body.to_string());
        self.http(request(
            "POST",
            uri,
            &[("content-type", "application/json")],
            body,
        ))
        .await
    }

    /// Runs a command over the WebSocket and collects everything.
    pub async fn run(&self, execute: Value) -> Run {
        let mut ws = self.ws().await;
        ws.execute(execute).await;
        ws.collect().await
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill takes plain integers; `pid` is a process we started.
    unsafe {
        libc::kill(pid, signal);
    }
}

pub fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body)).expect("request")
}

/// A fully read HTTP response.
pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    async fn read(response: Response<Incoming>) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_string())
    }

    /// The `detail.error` kind of an error body.
    pub fn error_kind(&self) -> String {
        self.json()["detail"]["error"]
            .as_str()
            .expect("detail.error")
            .to_string()
    }

    pub fn error_message(&self) -> String {
        self.json()["detail"]["message"]
            .as_str()
            .expect("detail.message")
            .to_string()
    }
}

/// A WebSocket client speaking the exec protocol.
pub struct Ws(pub WebSocketStream<UnixStream>);

impl Ws {
    pub async fn send(&mut self, value: Value) {
        self.0
            .send(Message::text(value.to_string()))
            .await
            .expect("ws send");
    }

    pub async fn execute(&mut self, mut execute: Value) {
        execute["type"] = json!("execute");
        self.send(execute).await;
    }

    pub async fn reconnect(&mut self, command_id: &str, stdout_offset: u64, stderr_offset: u64) {
        self.send(json!({"type": "reconnect", "command_id": command_id,
            "stdout_offset": stdout_offset, "stderr_offset": stderr_offset}))
            .await;
    }

    /// Next protocol message; `None` once the server closed.
    pub async fn recv(&mut self) -> Option<Value> {
        self.recv_within(STEP)
            .await
            .expect("no message within the step timeout")
    }

    /// Like [`Ws::recv`], but `Err` if nothing arrives within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .map_err(|_| ())?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Ok(Some(serde_json::from_str(&text).expect("json message")))
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Next text message, unparsed; `None` once the server closed.
    pub async fn recv_text(&mut self) -> Option<String> {
        loop {
            let next = tokio::time::timeout(STEP, self.0.next())
                .await
                .expect("no message in time");
            match next {
                Some(Ok(Message::Text(text))) => return Some(text.to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads the `started` message.
    pub async fn started(&mut self) -> Value {
        let msg = self.recv().await.expect("started before close");
        assert_eq!(msg["type"], "started", "expected started, got {msg}");
        msg
    }

    /// Reads until the server closes.
    pub async fn collect(mut self) -> Run {
        let mut run = Run::default();
        while let Some(msg) = self.recv().await {
            run.push(msg);
        }
        run
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.0.close(None).await;
    }
}

/// Everything a command sent.
#[derive(Debug, Default)]
pub struct Run {
    pub messages: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i64>,
    pub error: Option<Value>,
}

impl Run {
    pub fn push(&mut self, msg: Value) {
        match msg["type"].as_str().expect("type") {
            "stdout" => self.stdout.push_str(msg["data"].as_str().expect("data")),
            "stderr" => self.stderr.push_str(msg["data"].as_str().expect("data")),
            "exit" => self.exit_code = msg["exit_code"].as_i64(),
            "error" => self.error = Some(msg.clone()),
            _ => {}
        }
        self.messages.push(msg);
    }

    pub fn started(&self) -> &Value {
        let first = &self.messages[0];
        assert_eq!(first["type"], "started", "first message: {first}");
        first
    }

    pub fn command_id(&self) -> String {
        self.started()["command_id"]
            .as_str()
            .expect("command_id")
            .to_string()
    }

    /// Checks that each stream's chunks are contiguous from `from`:
    /// `offset + len(data)` of one chunk is the next chunk's offset.
    pub fn assert_contiguous(&self, stream: &str, from: u64) -> u64 {
        let mut next = from;
        for msg in self.messages.iter().filter(|m| m["type"] == stream) {
            let offset = msg["offset"].as_u64().expect("offset");
            assert_eq!(offset, next, "{stream} chunk at {offset}, expected {next}");
            next = offset + msg["data"].as_str().expect("data").len() as u64;
        }
        next
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Whether `/proc/<pid>` exists at all (a zombie counts).
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `cond` until true or the step timeout.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the tests run as root (some checks need to switch users).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
