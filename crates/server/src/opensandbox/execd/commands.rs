//! `POST /command`, `GET /command/status/{id}`, `GET /command/{id}/logs`
//! and `DELETE /command?id=`.
//!
//! Each command is an agent exec session (id = the execution id) that a
//! collector task reads to its end: it records the exit code and the
//! output (for status and logs) and, for a foreground command, forwards
//! execd events to the client's SSE response. A foreground command whose
//! client goes away is killed, like execd does; a background one runs
//! until it exits.
//!
//! Executions are remembered in memory, bounded per sandbox and in all
//! (`super::executions`): status and logs of commands started before a
//! server restart are gone.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use super::executions::{executions, Execution};
use super::now_millis;
use crate::opensandbox::agent::{sh_quote, Agent, AgentEvent, EventStream, RunAs, StartRequest};
use crate::opensandbox::error::OsError;
use crate::opensandbox::model::rfc3339;

/// `POST /command` body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunCommand {
    pub command: Option<String>,
    pub argv: Option<Vec<String>>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub background: bool,
    /// Milliseconds; the command is killed after that long.
    pub timeout: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub envs: Option<BTreeMap<String, String>>,
}

impl RunCommand {
    /// The shell text to run.
    fn shell_text(&self) -> Result<String, OsError> {
        match (&self.command, &self.argv) {
            (Some(c), None) if !c.trim().is_empty() => Ok(c.clone()),
            (None, Some(argv)) if argv.first().is_some_and(|a| !a.is_empty()) => Ok(format!(
                "exec {}",
                argv.iter()
                    .map(|a| sh_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            _ => Err(OsError::bad_request(
                "Exactly one of command (non-empty) and argv (non-empty) is required",
            )),
        }
    }

    fn start_request(&self, id: &str) -> Result<StartRequest, OsError> {
        let mut req = StartRequest::detached(self.shell_text()?, id.to_owned());
        req.timeout_seconds = self.timeout.map_or(0.0, |ms| ms as f64 / 1000.0);
        req.env = self.envs.clone().filter(|e| !e.is_empty());
        req.cwd = self.cwd.clone().filter(|c| !c.is_empty());
        req.run_config = match (self.uid, self.gid) {
            (Some(uid), Some(gid)) => Some(RunAs {
                user: format!("{uid}:{gid}"),
            }),
            (Some(uid), None) => Some(RunAs {
                user: uid.to_string(),
            }),
            (None, Some(_)) => return Err(OsError::bad_request("gid requires uid")),
            (None, None) => None,
        };
        Ok(req)
    }
}

/// `GET /command/status/{id}` body.
#[derive(Debug, Serialize)]
pub struct StatusView {
    id: String,
    content: String,
    running: bool,
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    started_at: String,
    finished_at: Option<String>,
}

fn event(kind: &str, extra: serde_json::Value) -> Event {
    let mut body = json!({"type": kind, "timestamp": now_millis()});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    Event::default().data(body.to_string())
}

/// Starts `req` in the sandbox and answers with execd's SSE stream.
pub async fn run(
    agent: Agent,
    guard: crate::sandboxes::ActivityGuard,
    tenant_id: &str,
    sandbox_id: &str,
    req: RunCommand,
) -> Result<Response, OsError> {
    let id = uuid::Uuid::new_v4().to_string();
    let start = req.start_request(&id)?;
    let content = req.command.clone().unwrap_or_else(|| start.command.clone());
    let exec = Arc::new(Execution::new(id.clone(), tenant_id, sandbox_id, content));
    // Kept before it starts: a command the table refuses never runs.
    executions().insert(exec.clone())?;
    let events = match started(&agent, &start).await {
        Ok((events, pid)) => {
            exec.state().pid = Some(pid);
            events
        }
        Err(e) => {
            executions().remove(&id);
            return Err(e);
        }
    };
    let init = event("init", json!({"text": id}));
    if req.background {
        tokio::spawn(collect(events, exec, agent, None));
        let done = event("execution_complete", json!({"execution_time": 0}));
        return Ok(sse(futures_util::stream::iter([Ok(init), Ok(done)])));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _guard = guard;
        collect(events, exec, agent, Some(tx)).await;
    });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter([Ok(init)]), rest);
    Ok(sse(stream))
}

/// Starts the command; its events after `Started`, and its pid.
async fn started(agent: &Agent, start: &StartRequest) -> Result<(EventStream, i32), OsError> {
    let mut events = agent.start(start).await?;
    match events.next().await? {
        Some(AgentEvent::Started { pid, .. }) => Ok((events, pid)),
        Some(AgentEvent::Error { error_type, error }) => {
            Err(OsError::bad_request(format!("{error_type}: {error}")))
        }
        other => Err(OsError::internal(
            "starting an execd command",
            format!("first agent event {other:?}"),
        )),
    }
}

fn sse<S>(stream: S) -> Response
where
    S: futures_util::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(stream)
        .keep_alive(KeepAlive::new().text("ping"))
        .into_response()
}

/// Reads a command's events to the end (see the module docs).
async fn collect(
    mut events: EventStream,
    exec: Arc<Execution>,
    agent: Agent,
    mut client: Option<tokio::sync::mpsc::Sender<Event>>,
) {
    let mut out: Vec<Event> = Vec::new();
    loop {
        let next = match &client {
            Some(tx) => tokio::select! {
                next = events.next() => Some(next),
                () = tx.closed() => None,
            },
            None => Some(events.next().await),
        };
        let Some(next) = next else {
            // The client of a foreground command went away: kill it, and
            // keep reading to record how it ended.
            client = None;
            let _ = interrupt(&agent, &exec).await;
            continue;
        };
        let finished = match next {
            Ok(Some(AgentEvent::Started { .. })) => false,
            Ok(Some(AgentEvent::Stdout(text))) => {
                executions().append(&exec, &text);
                out.push(event("stdout", json!({"text": text})));
                false
            }
            Ok(Some(AgentEvent::Stderr(text))) => {
                executions().append(&exec, &text);
                out.push(event("stderr", json!({"text": text})));
                false
            }
            Ok(Some(AgentEvent::Exit(code))) => {
                exec.state().exit_code = Some(code);
                if code != 0 {
                    out.push(error_event(
                        "CommandExecError",
                        &code.to_string(),
                        Vec::new(),
                    ));
                }
                true
            }
            Ok(Some(AgentEvent::Error { error_type, error })) => {
                exec.state().error = Some(format!("{error_type}: {error}"));
                out.push(error_event(&error_type, &error, vec![error.clone()]));
                true
            }
            Ok(None) | Err(_) => {
                let why = match next {
                    Err(e) => e.to_string(),
                    _ => "the command's output ended without an exit status".into(),
                };
                exec.state().error = Some(why.clone());
                out.push(error_event("ConnectionError", &why, vec![why.clone()]));
                true
            }
        };
        if finished {
            let elapsed = (chrono::Utc::now() - exec.started_at).num_milliseconds();
            exec.state().finished_at = Some(chrono::Utc::now());
            out.push(event(
                "execution_complete",
                json!({"execution_time": elapsed}),
            ));
        }
        if let Some(tx) = &client {
            for e in out.drain(..) {
                if tx.send(e).await.is_err() {
                    // The client went away from a foreground command.
                    client = None;
                    if !finished {
                        let _ = interrupt(&agent, &exec).await;
                    }
                    break;
                }
            }
        }
        out.clear();
        if finished {
            return;
        }
    }
}

fn error_event(name: &str, value: &str, traceback: Vec<String>) -> Event {
    event(
        "error",
        json!({"error": {"ename": name, "evalue": value, "traceback": traceback}}),
    )
}

/// Kills the command's process group (the agent starts each command in a
/// session of its own).
pub async fn interrupt(agent: &Agent, exec: &Execution) -> Result<(), OsError> {
    let (pid, running) = {
        let state = exec.state();
        (state.pid, state.finished_at.is_none())
    };
    let Some(pid) = pid.filter(|_| running) else {
        return Ok(());
    };
    let script = format!("kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null; true");
    agent.exec(&script, 10.0).await?;
    Ok(())
}

pub fn status(exec: &Execution) -> StatusView {
    let state = exec.state();
    StatusView {
        id: exec.id.clone(),
        content: exec.content.clone(),
        running: state.finished_at.is_none(),
        exit_code: state.exit_code,
        error: state.error.clone(),
        started_at: rfc3339(exec.started_at),
        finished_at: state.finished_at.map(rfc3339),
    }
}

/// Output from line `cursor` on, and the next cursor.
pub fn logs(exec: &Execution, cursor: usize) -> (String, usize) {
    let state = exec.state();
    state.log.since(cursor, state.finished_at.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_quoted_and_exactly_one_form_is_taken() {
        let req = RunCommand {
            argv: Some(vec!["echo".into(), "a b".into(), "it's".into()]),
            ..RunCommand::default()
        };
        assert_eq!(
            req.shell_text().ok().as_deref(),
            Some(r"exec 'echo' 'a b' 'it'\''s'")
        );
        assert!(RunCommand::default().shell_text().is_err());
        let both = RunCommand {
            command: Some("ls".into()),
            argv: Some(vec!["ls".into()]),
            ..RunCommand::default()
        };
        assert!(both.shell_text().is_err());
    }
}
