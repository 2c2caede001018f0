//! The data-plane wire types, as the `langsmith` SDK speaks them.
//!
//! Requests are parsed leniently (unknown fields are ignored) because the
//! SDK adds fields over time and an older agent must keep working. Field
//! names and defaults follow `langsmith/sandbox/_ws_execute.py`,
//! `_sse_execute.py`, `_sandbox.py` and `_models.py`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// SDK default of `run(timeout=...)`.
const DEFAULT_TIMEOUT_SECONDS: f64 = 60.0;
/// SDK default of `run(idle_timeout=...)`.
const DEFAULT_IDLE_TIMEOUT_SECONDS: f64 = 300.0;
/// SDK default of `run(ttl_seconds=...)`.
const DEFAULT_TTL_SECONDS: f64 = 600.0;

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_SECONDS
}

fn default_idle_timeout() -> f64 {
    DEFAULT_IDLE_TIMEOUT_SECONDS
}

fn default_ttl() -> f64 {
    DEFAULT_TTL_SECONDS
}

/// A message from the client on `/execute/ws`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Execute(Box<ExecuteRequest>),
    Reconnect(ReconnectRequest),
    Input {
        data: String,
    },
    Kill,
    CloseStdin,
    /// Extension (our web console): set the PTY's window size.
    Resize {
        cols: u16,
        rows: u16,
    },
}

/// Start (or attach to) a command: the WebSocket `execute` message and the
/// body of `POST /execute/stream/start`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExecuteRequest {
    pub command: String,
    #[serde(default)]
    pub command_id: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: f64,
    #[serde(default)]
    pub kill_on_disconnect: bool,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: f64,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub run_config: Option<RunConfig>,
    #[serde(default)]
    pub close_stdin: bool,
    #[serde(default)]
    pub pty: bool,
    /// Extension: initial PTY size.
    #[serde(default)]
    pub cols: Option<u16>,
    #[serde(default)]
    pub rows: Option<u16>,
}

/// Per-command user, working directory and environment.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub work_dir: Option<String>,
    #[serde(default)]
    pub env_vars: Option<BTreeMap<String, String>>,
}

/// Reattach to a command: the WebSocket `reconnect` message and the body of
/// `POST /execute/stream/resume`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReconnectRequest {
    pub command_id: String,
    #[serde(default)]
    pub stdout_offset: u64,
    #[serde(default)]
    pub stderr_offset: u64,
}

/// Body of the blocking `POST /execute` (langsmith 0.7).
#[derive(Debug, Clone, Deserialize)]
pub struct BlockingExecuteRequest {
    pub command: String,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// As on the streaming transports (the JS SDK sends it here when the
    /// optional `ws` package is missing).
    #[serde(default)]
    pub run_config: Option<RunConfig>,
}

/// Response of the blocking `POST /execute`.
#[derive(Debug, Serialize)]
pub struct BlockingExecuteResponse {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// A message from the agent on `/execute/ws`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Started {
        command_id: &'a str,
        pid: i32,
    },
    /// Rendered by the faster [`output_message`]; kept as its schema.
    #[cfg_attr(not(test), allow(dead_code))]
    Stdout {
        data: &'a str,
        offset: u64,
    },
    #[cfg_attr(not(test), allow(dead_code))]
    Stderr {
        data: &'a str,
        offset: u64,
    },
    Exit {
        exit_code: i32,
    },
    Error {
        error_type: &'a str,
        error: &'a str,
    },
}

/// Renders a `stdout` / `stderr` message: byte-for-byte what serialising
/// [`ServerMessage::Stdout`] gives, but escaping the text eight bytes at a
/// time, since output messages carry nearly all of the agent's traffic.
pub fn output_message(stream: &str, data: &str, offset: u64) -> String {
    let mut out = String::with_capacity(data.len() + data.len() / 8 + 64);
    out.push_str(r#"{"type":""#);
    out.push_str(stream);
    out.push_str(r#"","data":""#);
    escape_json_into(&mut out, data);
    out.push_str(r#"","offset":"#);
    out.push_str(&offset.to_string());
    out.push('}');
    out
}

/// Appends `text` as the inside of a JSON string, escaping like serde_json:
/// `"`, `\` and control characters; everything else verbatim.
fn escape_json_into(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if i + 8 <= bytes.len() {
            let word = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        if let Some(escape) = escape_for(byte) {
            // Escaped bytes are ASCII, so both cuts are character boundaries.
            out.push_str(&text[run_start..i]);
            push_escape(out, byte, escape);
            run_start = i + 1;
        }
        i += 1;
    }
    out.push_str(&text[run_start..]);
}

/// Whether any byte of `word` is a control character, `"` or `\`.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space || has_zero(word ^ (ONES * b'"' as u64)) || has_zero(word ^ (ONES * b'\\' as u64))
}

/// The escape of `byte` (`b'u'` for the `\u00XX` form), if it needs one.
fn escape_for(byte: u8) -> Option<u8> {
    match byte {
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        b'\n' => Some(b'n'),
        b'\r' => Some(b'r'),
        b'\t' => Some(b't'),
        0x08 => Some(b'b'),
        0x0c => Some(b'f'),
        0x00..=0x1f => Some(b'u'),
        _ => None,
    }
}

fn push_escape(out: &mut String, byte: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push(escape as char);
    if escape == b'u' {
        out.push_str("00");
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
}

/// `data:` of the SSE `started` event.
#[derive(Debug, Serialize)]
pub struct SseStarted<'a> {
    pub command_id: &'a str,
    pub pid: i32,
}

/// `data:` of the SSE `stdout` / `stderr` events (base64 payload).
#[derive(Debug, Serialize)]
pub struct SseChunk {
    pub data: String,
    pub offset: u64,
}

/// `data:` of the SSE `stream_end` event.
#[derive(Debug, Serialize)]
pub struct SseStreamEnd {
    pub stream: &'static str,
    pub offset: u64,
}

/// `data:` of the SSE `exit` event.
#[derive(Debug, Serialize)]
pub struct SseExit {
    pub exit_code: i32,
}

/// `data:` of the SSE `ack_required` event: resume from these offsets.
#[derive(Debug, Serialize)]
pub struct SseAckRequired {
    pub stdout_offset: u64,
    pub stderr_offset: u64,
}

/// `data:` of the SSE `error` event (same fields as the WebSocket `error`).
#[derive(Debug, Serialize)]
pub struct SseError<'a> {
    pub error_type: &'a str,
    pub error: &'a str,
}

/// Body of `POST /glob`.
#[derive(Debug, Deserialize)]
pub struct GlobRequest {
    pub pattern: String,
    pub path: String,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Body of `POST /grep`.
#[derive(Debug, Deserialize)]
pub struct GrepRequest {
    pub pattern: String,
    pub path: String,
    #[serde(default)]
    pub glob: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// One entry of a glob result (`FileInfo` in the SDK).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub size_bytes: u64,
    pub modified_at: Option<String>,
}

/// One matching line of a grep result (`GrepMatch` in the SDK).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct GrepMatch {
    pub path: String,
    pub line: u64,
    pub text: String,
}

/// Response of `POST /glob` and `POST /grep`.
#[derive(Debug, Serialize)]
pub struct SearchResponse<T> {
    pub matches: Vec<T>,
    pub truncated: bool,
}

/// Every 4xx/5xx body: `{"detail": {"error": KIND, "message": TEXT}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub detail: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub error: &'a str,
    pub message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Snapshot of the agent's outgoing WebSocket frames: a change here is a
    /// protocol change.
    #[test]
    fn server_messages_snapshot() {
        let frames = [
            ServerMessage::Started {
                command_id: "c1",
                pid: 7,
            },
            ServerMessage::Stdout {
                data: "a\n",
                offset: 0,
            },
            ServerMessage::Stderr {
                data: "é",
                offset: 3,
            },
            ServerMessage::Exit { exit_code: 137 },
            ServerMessage::Error {
                error_type: "CommandTimeout",
                error: "Command timed out after 1 seconds",
            },
        ];
        let text: Vec<String> = frames
            .iter()
            .map(|f| serde_json::to_string(f).expect("serialises"))
            .collect();
        assert_eq!(
            text,
            [
                r#"{"type":"started","command_id":"c1","pid":7}"#,
                r#"{"type":"stdout","data":"a\n","offset":0}"#,
                r#"{"type":"stderr","data":"é","offset":3}"#,
                r#"{"type":"exit","exit_code":137}"#,
                r#"{"type":"error","error_type":"CommandTimeout","error":"Command timed out after 1 seconds"}"#,
            ]
        );
    }

    #[test]
    fn sdk_execute_message_parses_with_defaults() {
        let msg: ClientMessage = serde_json::from_value(json!({
            "type": "execute",
            "command": "echo hi",
            "timeout_seconds": 60,
            "shell": "/bin/bash",
            "idle_timeout_seconds": 300,
            "kill_on_disconnect": false,
            "ttl_seconds": 600,
            "command_id": "abc",
            "close_stdin": true,
            "some_future_field": 1,
        }))
        .expect("parses");
        let ClientMessage::Execute(exec) = msg else {
            panic!("not execute")
        };
        assert_eq!(exec.command_id.as_deref(), Some("abc"));
        assert!(exec.close_stdin && !exec.pty);

        let minimal: ExecuteRequest =
            serde_json::from_value(json!({"command": "true"})).expect("parses");
        assert_eq!(minimal.timeout_seconds, 60.0);
        assert_eq!(minimal.idle_timeout_seconds, 300.0);
        assert_eq!(minimal.ttl_seconds, 600.0);
    }

    #[test]
    fn control_messages_parse() {
        for (text, ok) in [
            (r#"{"type":"kill"}"#, true),
            (r#"{"type":"close_stdin"}"#, true),
            (r#"{"type":"input","data":"x"}"#, true),
            (r#"{"type":"resize","cols":100,"rows":30}"#, true),
            (
                r#"{"type":"reconnect","command_id":"c","stdout_offset":5}"#,
                true,
            ),
            (r#"{"type":"bogus"}"#, false),
        ] {
            assert_eq!(
                serde_json::from_str::<ClientMessage>(text).is_ok(),
                ok,
                "{text}"
            );
        }
    }

    #[test]
    fn fast_output_messages_match_serde() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain ascii text that is long enough for words\n".repeat(3),
            "quote\" back\\slash \t\r\n\x08\x0c\x00\x01\x1f\x7f é€🦀".to_string(),
            "\u{FFFD}\u{FFFD}abc".to_string(),
        ];
        // Every byte value in every position of a word.
        for byte in 0u8..0x80 {
            for pos in 0..9 {
                let mut text = "abcdefghijklmnop".to_string();
                text.insert(pos, byte as char);
                samples.push(text);
            }
        }
        for (n, data) in samples.iter().enumerate() {
            let expected = serde_json::to_string(&ServerMessage::Stdout {
                data,
                offset: n as u64,
            })
            .expect("serialises");
            assert_eq!(
                output_message("stdout", data, n as u64),
                expected,
                "{data:?}"
            );
        }
    }

    #[test]
    fn error_body_snapshot() {
        let body = ErrorBody {
            detail: ErrorDetail {
                error: "FileNotFound",
                message: "no such file: /x",
            },
        };
        assert_eq!(
            serde_json::to_string(&body).expect("serialises"),
            r#"{"detail":{"error":"FileNotFound","message":"no such file: /x"}}"#
        );
    }
}
