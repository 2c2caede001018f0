//! The data plane's command protocol, as the `langsmith` SDK speaks it:
//! the WebSocket `/execute/ws` messages, the bodies of the SSE transport
//! (`/execute/stream/*`) and of the blocking `POST /execute`.
//!
//! The agent parses requests leniently (unknown fields are ignored)
//! because the SDK adds fields over time and an older agent must keep
//! working. Field names and defaults follow `langsmith/sandbox/
//! _ws_execute.py`, `_sse_execute.py`, `_sandbox.py` and `_models.py`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// SDK default of `run(timeout=...)`.
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 60.0;
/// SDK default of `run(idle_timeout=...)`.
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: f64 = 300.0;
/// SDK default of `run(ttl_seconds=...)`.
pub const DEFAULT_TTL_SECONDS: f64 = 600.0;

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_SECONDS
}

fn default_idle_timeout() -> f64 {
    DEFAULT_IDLE_TIMEOUT_SECONDS
}

fn default_ttl() -> f64 {
    DEFAULT_TTL_SECONDS
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A message from the client on `/execute/ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: f64,
    #[serde(default)]
    pub kill_on_disconnect: bool,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_config: Option<RunConfig>,
    #[serde(default)]
    pub close_stdin: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pty: bool,
    /// Extension: initial PTY size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
}

impl ExecuteRequest {
    /// `command` with the SDK's defaults for everything else.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            command_id: None,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            shell: None,
            idle_timeout_seconds: DEFAULT_IDLE_TIMEOUT_SECONDS,
            kill_on_disconnect: false,
            ttl_seconds: DEFAULT_TTL_SECONDS,
            env: None,
            cwd: None,
            run_config: None,
            close_stdin: false,
            pty: false,
            cols: None,
            rows: None,
        }
    }
}

/// Per-command user, working directory and environment. The lenient twin
/// of [`crate::sandbox::RunConfig`]: the agent ignores fields it does not
/// know, where the control API refuses them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
}

/// Reattach to a command: the WebSocket `reconnect` message and the body of
/// `POST /execute/stream/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconnectRequest {
    pub command_id: String,
    #[serde(default)]
    pub stdout_offset: u64,
    #[serde(default)]
    pub stderr_offset: u64,
}

/// Body of the blocking `POST /execute` (langsmith 0.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockingExecuteRequest {
    pub command: String,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// As on the streaming transports (the JS SDK sends it here when the
    /// optional `ws` package is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_config: Option<RunConfig>,
}

/// Response of the blocking `POST /execute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockingExecuteResponse {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// A message from the agent on `/execute/ws`. Text borrows where it can, so
/// the agent serialises without copying and a client parses a frame in
/// place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Started {
        #[serde(borrow)]
        command_id: Cow<'a, str>,
        pid: i32,
    },
    Stdout {
        #[serde(borrow)]
        data: Cow<'a, str>,
        offset: u64,
    },
    Stderr {
        #[serde(borrow)]
        data: Cow<'a, str>,
        offset: u64,
    },
    Exit {
        exit_code: i32,
    },
    Error {
        #[serde(borrow)]
        error_type: Cow<'a, str>,
        #[serde(borrow)]
        error: Cow<'a, str>,
    },
    /// A message type this version does not know (a client skips it; the
    /// agent never sends it).
    #[serde(other)]
    Unknown,
}

/// `data:` of the SSE `started` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseStarted<'a> {
    #[serde(borrow)]
    pub command_id: Cow<'a, str>,
    pub pid: i32,
}

/// `data:` of the SSE `stdout` / `stderr` events (base64 payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseChunk {
    pub data: String,
    pub offset: u64,
}

/// `data:` of the SSE `stream_end` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseStreamEnd {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub offset: u64,
}

/// `data:` of the SSE `exit` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseExit {
    pub exit_code: i32,
}

/// `data:` of the SSE `ack_required` event: resume from these offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseAckRequired {
    pub stdout_offset: u64,
    pub stderr_offset: u64,
}

/// `data:` of the SSE `error` event (same fields as the WebSocket `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseError<'a> {
    #[serde(borrow)]
    pub error_type: Cow<'a, str>,
    #[serde(borrow)]
    pub error: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Snapshot of the agent's outgoing WebSocket frames: a change here is a
    /// protocol change.
    #[test]
    fn server_messages_snapshot() {
        let frames = [
            ServerMessage::Started {
                command_id: "c1".into(),
                pid: 7,
            },
            ServerMessage::Stdout {
                data: "a\n".into(),
                offset: 0,
            },
            ServerMessage::Stderr {
                data: "é".into(),
                offset: 3,
            },
            ServerMessage::Exit { exit_code: 137 },
            ServerMessage::Error {
                error_type: "CommandTimeout".into(),
                error: "Command timed out after 1 seconds".into(),
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
        for (frame, text) in frames.iter().zip(&text) {
            assert_eq!(
                &serde_json::from_str::<ServerMessage<'_>>(text).unwrap(),
                frame
            );
        }
    }

    #[test]
    fn unknown_server_messages_parse_as_unknown() {
        let frame: ServerMessage<'_> =
            serde_json::from_str(r#"{"type":"heartbeat","at":1}"#).unwrap();
        assert_eq!(frame, ServerMessage::Unknown);
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
        assert_eq!(minimal, ExecuteRequest::new("true"));
        assert_eq!(minimal.timeout_seconds, 60.0);
        assert_eq!(minimal.idle_timeout_seconds, 300.0);
        assert_eq!(minimal.ttl_seconds, 600.0);
    }

    /// What the Rust client sends: the SDK's field names, and unset
    /// options left out.
    #[test]
    fn execute_message_serialises_with_sdk_names() {
        let exec = ExecuteRequest {
            command_id: Some("c".into()),
            shell: Some("/bin/sh".into()),
            close_stdin: true,
            pty: true,
            cols: Some(80),
            rows: Some(24),
            ..ExecuteRequest::new("ls")
        };
        let message = ClientMessage::Execute(Box::new(exec));
        let value = serde_json::to_value(&message).unwrap();
        assert_eq!(
            value,
            json!({
                "type": "execute", "command": "ls", "command_id": "c",
                "timeout_seconds": 60.0, "shell": "/bin/sh",
                "idle_timeout_seconds": 300.0, "kill_on_disconnect": false,
                "ttl_seconds": 600.0, "close_stdin": true, "pty": true,
                "cols": 80, "rows": 24,
            })
        );
        assert_eq!(
            serde_json::from_value::<ClientMessage>(value).unwrap(),
            message
        );
    }

    #[test]
    fn control_messages_round_trip() {
        for (text, ok) in [
            (r#"{"type":"kill"}"#, true),
            (r#"{"type":"close_stdin"}"#, true),
            (r#"{"type":"input","data":"x"}"#, true),
            (r#"{"type":"resize","cols":100,"rows":30}"#, true),
            (
                r#"{"type":"reconnect","command_id":"c","stdout_offset":5,"stderr_offset":0}"#,
                true,
            ),
            (r#"{"type":"bogus"}"#, false),
        ] {
            let parsed = serde_json::from_str::<ClientMessage>(text);
            assert_eq!(parsed.is_ok(), ok, "{text}");
            if let Ok(message) = parsed {
                assert_eq!(serde_json::to_string(&message).unwrap(), text);
            }
        }
    }

    #[test]
    fn blocking_and_sse_bodies_have_the_sdk_field_names() {
        let req: BlockingExecuteRequest =
            serde_json::from_value(json!({"command": "ls", "cwd": "/tmp"})).unwrap();
        assert_eq!((req.timeout, req.cwd.as_deref()), (60.0, Some("/tmp")));
        let response = BlockingExecuteResponse {
            stdout: "o".into(),
            stderr: String::new(),
            exit_code: 1,
        };
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({"stdout": "o", "stderr": "", "exit_code": 1})
        );
        let ack = SseAckRequired {
            stdout_offset: 1,
            stderr_offset: 2,
        };
        assert_eq!(
            serde_json::to_value(&ack).unwrap(),
            json!({"stdout_offset": 1, "stderr_offset": 2})
        );
        let end = SseStreamEnd {
            stream: "stdout".into(),
            offset: 9,
        };
        assert_eq!(
            serde_json::to_value(&end).unwrap(),
            json!({"stream": "stdout", "offset": 9})
        );
    }
}
