//! A Python context's interpreter: `driver.py` run with the sandbox's
//! `python3` as a [`process`](super::process), speaking line-delimited
//! JSON (requests on its stdin, events on its stdout; see the driver).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::process::{self, Output, Spec, Stdin};
use crate::opensandbox::agent::sh_quote;
use crate::opensandbox::error::OsError;

/// The driver program.
pub const DRIVER: &str = include_str!("driver.py");
/// How long an interpreter may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest event line read from a driver (its results are at most 1 MiB
/// per MIME type, its output chunks 64 KiB).
const MAX_LINE_BYTES: usize = 16 << 20;
/// Driver stderr kept to explain a failed start.
const MAX_STARTUP_STDERR: usize = 4096;

/// An event of a run, as the driver reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    Ready {
        version: String,
    },
    Stdout {
        text: String,
    },
    Stderr {
        text: String,
    },
    Count {
        n: u64,
    },
    Result {
        data: serde_json::Map<String, serde_json::Value>,
    },
    Error {
        ename: String,
        evalue: String,
        #[serde(default)]
        traceback: Vec<String>,
    },
    Done,
    /// Not from the driver: the interpreter is gone.
    #[serde(skip)]
    Died(String),
}

type Subscriber = Arc<Mutex<Option<mpsc::Sender<Event>>>>;

/// A running interpreter.
pub struct Kernel {
    stdin: Stdin,
    current: Subscriber,
    alive: Arc<AtomicBool>,
    pub version: String,
}

impl Kernel {
    /// Starts an interpreter; `on_exit` runs when it is gone.
    pub async fn start(
        socket: &Path,
        id: &str,
        cwd: Option<String>,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> Result<Self, OsError> {
        let spec = Spec {
            command: format!("exec python3 -u -c {}", sh_quote(DRIVER)),
            id: format!("code-{id}"),
            cwd,
        };
        let (stdin, output) = process::spawn(socket, spec).await?;
        let current: Subscriber = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(read(
            output,
            ready_tx,
            current.clone(),
            alive.clone(),
            on_exit,
        ));
        let version = match tokio::time::timeout(START_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(version))) => version,
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) | Err(_) => {
                return Err(OsError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "TIMEOUT",
                    "the Python interpreter did not start in time",
                ))
            }
        };
        Ok(Self {
            stdin,
            current,
            alive,
            version,
        })
    }

    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Starts running `code`; its events go to `events` until `Done` (or
    /// `Died`). The caller runs one cell at a time.
    pub fn run(&self, code: &str, events: mpsc::Sender<Event>) -> bool {
        *lock(&self.current) = Some(events.clone());
        if !self.alive() {
            return false;
        }
        self.stdin
            .write(json!({"op": "run", "code": code}).to_string() + "\n")
    }

    /// Interrupts the running cell (a `KeyboardInterrupt` in it).
    pub fn interrupt(&self) {
        self.stdin
            .write(json!({"op": "interrupt"}).to_string() + "\n");
    }

    /// Stops the run's event stream (after `Done`).
    pub fn finish_run(&self) {
        *lock(&self.current) = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why an interpreter did not start, as an error.
fn start_failure(why: &str, code: Option<i32>, stderr: &str) -> OsError {
    let detail = stderr.trim();
    if code == Some(127) {
        return OsError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "LANGUAGE_UNAVAILABLE",
            format!("python3 is not available in this sandbox's image ({detail})"),
        );
    }
    OsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "RUNTIME_ERROR",
        format!("the Python interpreter did not start: {why}; {detail}"),
    )
}

/// Reads the driver's output: startup, then events for the current run.
async fn read(
    mut output: mpsc::Receiver<Output>,
    ready: oneshot::Sender<Result<String, OsError>>,
    current: Subscriber,
    alive: Arc<AtomicBool>,
    on_exit: impl FnOnce(),
) {
    let mut ready = Some(ready);
    let mut stderr = String::new();
    let mut lines = LineBuffer::default();
    let why = loop {
        let Some(out) = output.recv().await else {
            break "the interpreter's connection ended".to_owned();
        };
        match out {
            Output::Stdout(text) => {
                let events = match lines.push(&text) {
                    Ok(events) => events,
                    Err(e) => break e,
                };
                for event in events {
                    if let Event::Ready { version } = event {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Ok(version));
                        }
                        continue;
                    }
                    let subscriber = lock(&current).clone();
                    if let Some(tx) = subscriber {
                        let _ = tx.send(event).await;
                    }
                }
            }
            Output::Stderr(text) => {
                if ready.is_some() && stderr.len() < MAX_STARTUP_STDERR {
                    stderr.push_str(&text);
                }
            }
            Output::Exit(code) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(start_failure("it exited", Some(code), &stderr)));
                }
                break format!("the interpreter exited with code {code}");
            }
            Output::Failed(why) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(start_failure(&why, None, &stderr)));
                }
                break why;
            }
        }
    };
    alive.store(false, Ordering::SeqCst);
    let subscriber = lock(&current).take();
    if let Some(tx) = subscriber {
        let _ = tx.send(Event::Died(why)).await;
    }
    on_exit();
}

/// Splits the driver's stdout into event lines.
#[derive(Default)]
struct LineBuffer {
    partial: String,
}

impl LineBuffer {
    fn push(&mut self, text: &str) -> Result<Vec<Event>, String> {
        self.partial.push_str(text);
        let mut events = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            match serde_json::from_str::<Event>(line.trim_end()) {
                Ok(event) => events.push(event),
                Err(e) => tracing::debug!(error = %e, "skipping a driver line"),
            }
        }
        if self.partial.len() > MAX_LINE_BYTES {
            return Err("the interpreter sent an over-long event".into());
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_lines_become_events_across_chunks() {
        let mut lines = LineBuffer::default();
        assert_eq!(lines.push(r#"{"ev": "count", "#), Ok(vec![]));
        let events = lines
            .push(
                "\"n\": 2}\n{\"ev\": \"result\", \"data\": {\"text/plain\": \"4\"}}\n{\"ev\": \"do",
            )
            .expect("events");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], Event::Count { n: 2 });
        assert_eq!(lines.push("ne\"}\n"), Ok(vec![Event::Done]));
        let error = lines
            .push(r#"{"ev":"error","ename":"NameError","evalue":"x","traceback":["a"]}"#)
            .and_then(|_| lines.push("\n"))
            .expect("error event");
        assert!(matches!(&error[0], Event::Error { ename, .. } if ename == "NameError"));
    }

    #[test]
    fn a_missing_python_is_422() {
        let e = start_failure("it exited", Some(127), "sh: python3: not found\n");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("python3: not found"));
    }
}
