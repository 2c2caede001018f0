//! The helper's wire format: one JSON object per line, a request on the
//! helper's stdin answered by exactly one reply on its stdout. The first line
//! the helper writes, before any request, is `Ready` or `Error`.

use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;
use crate::spec::{RunningSandbox, SandboxSpec, Started};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Start { spec: Box<SandboxSpec> },
    Stop { id: String },
    Running,
    Cleanup { keep_ids: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The helper is set up and waits for requests.
    Ready {
        pid: u32,
        /// Sandboxes may ask for a user namespace (see [`crate::idmap`]).
        #[serde(default)]
        userns: bool,
    },
    Started(Started),
    Stopped,
    Running(Vec<RunningSandbox>),
    CleanedUp(Vec<String>),
    Error(RuntimeError),
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Stop { .. } => "stop",
            Self::Running => "running",
            Self::Cleanup { .. } => "cleanup",
        }
    }
}

/// Serialises one message as a line.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_else(|e| {
        let error = Reply::Error(RuntimeError::Helper(format!("cannot encode message: {e}")));
        serde_json::to_vec(&error).unwrap_or_default()
    });
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let stop = Request::Stop { id: "a".into() };
        assert_eq!(encode(&stop), b"{\"op\":\"stop\",\"id\":\"a\"}\n");
        assert_eq!(encode(&Request::Running), b"{\"op\":\"running\"}\n");
        let err = Reply::Error(RuntimeError::NotRunning("a".into()));
        assert_eq!(encode(&err), b"{\"error\":{\"NotRunning\":\"a\"}}\n");
        assert_eq!(encode(&Reply::Stopped), b"\"stopped\"\n");
    }

    #[test]
    fn replies_round_trip() {
        let reply = Reply::Started(Started {
            pid: 7,
            start_time: 9,
            sandbox_ip: "10.200.0.2".into(),
            host_ip: "10.200.0.1".into(),
            agent_listening: true,
        });
        let line = encode(&reply);
        assert_eq!(serde_json::from_slice::<Reply>(&line).unwrap(), reply);
    }
}
