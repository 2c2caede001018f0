//! execd's code interpreter (`/code`, `/code/context`, `/code/contexts`):
//! Python contexts, each a `driver.py` interpreter in the sandbox
//! ([`kernel`]) kept alive by this server.
//!
//! A context keeps its namespace between runs; a run streams `init` (the
//! context id, which `DELETE /code?id=` interrupts), `execution_count`,
//! `stdout`/`stderr`, `result` (the last expression's display data,
//! `text/plain` renamed `text` as execd does) or `error` (`ename`,
//! `evalue`, `traceback`), then `execution_complete`. One run at a time per
//! context; others wait their turn. A run without a context id uses the
//! sandbox's default context of its language, created on first use.
//!
//! Contexts live in this server's memory, at most [`MAX_CONTEXTS`] per
//! sandbox: they end when deleted, when their sandbox stops or is deleted,
//! and when the server restarts. Only Python is served: the SDK's other
//! languages answer 501, unknown ones 400.

pub mod kernel;
pub mod process;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use self::kernel::Kernel;
use crate::opensandbox::error::OsError;
use crate::opensandbox::execd::now_millis;

/// Contexts per sandbox (each is a process in it).
pub const MAX_CONTEXTS: usize = 16;

/// The languages the `opensandbox-code-interpreter` SDK names that Sandpit
/// does not serve.
const OTHER_LANGUAGES: &[&str] = &["java", "go", "typescript", "javascript", "bash"];

/// `POST /code/context` body.
#[derive(Debug, Default, Deserialize)]
pub struct ContextRequest {
    pub language: Option<String>,
    pub cwd: Option<String>,
}

/// A context as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ContextView {
    pub id: String,
    pub language: String,
}

/// `POST /code` body.
#[derive(Debug, Deserialize)]
pub struct RunRequest {
    pub code: Option<String>,
    #[serde(default)]
    pub context: Option<RunContext>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RunContext {
    pub id: Option<String>,
    pub language: Option<String>,
}

/// One code context.
pub struct Context {
    pub id: String,
    pub language: String,
    tenant_id: String,
    sandbox_id: String,
    default: bool,
    kernel: Kernel,
    /// Held by the running cell.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Context {
    /// Interrupts the running cell, if any.
    pub fn interrupt(&self) {
        self.kernel.interrupt();
    }

    pub fn view(&self) -> ContextView {
        ContextView {
            id: self.id.clone(),
            language: self.language.clone(),
        }
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<Context>>,
    /// Contexts being started, per sandbox (they count against the cap).
    starting: HashMap<String, usize>,
}

impl Table {
    fn count(&self, sandbox_id: &str) -> usize {
        self.by_id
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .count()
            + self.starting.get(sandbox_id).copied().unwrap_or(0)
    }
}

/// Every sandbox's contexts.
#[derive(Default)]
pub struct Contexts {
    table: Mutex<Table>,
    /// Serialises creating default contexts (one per sandbox and language).
    defaults: tokio::sync::Mutex<()>,
}

pub fn contexts() -> &'static Contexts {
    static CONTEXTS: OnceLock<Contexts> = OnceLock::new();
    CONTEXTS.get_or_init(Contexts::default)
}

fn not_found(id: &str) -> OsError {
    OsError::new(
        StatusCode::NOT_FOUND,
        "CONTEXT_NOT_FOUND",
        format!("context {id} not found"),
    )
}

/// The language to serve, or why not.
pub fn check_language(language: Option<&str>) -> Result<String, OsError> {
    let language = language
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or("python")
        .to_ascii_lowercase();
    if language == "python" || language == "python3" {
        return Ok("python".into());
    }
    if OTHER_LANGUAGES.contains(&language.as_str()) {
        return Err(OsError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NOT_IMPLEMENTED",
            format!(
                "Code contexts for language '{language}' are not implemented by Sandpit; \
                 only 'python' is (use commands or bash sessions for shell code)"
            ),
        ));
    }
    Err(OsError::bad_request(format!(
        "Unknown language '{language}'; Sandpit serves 'python'"
    )))
}

/// A slot for a context being started; released on drop.
struct Reservation<'a> {
    contexts: &'a Contexts,
    sandbox_id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut table = self.contexts.lock();
        if let Some(n) = table.starting.get_mut(&self.sandbox_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.starting.remove(&self.sandbox_id);
            }
        }
    }
}

impl Contexts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(&self, sandbox_id: &str) -> Result<Reservation<'_>, OsError> {
        let mut table = self.lock();
        if table.count(sandbox_id) >= MAX_CONTEXTS {
            return Err(OsError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_CONTEXTS",
                format!(
                    "This sandbox has {MAX_CONTEXTS} code contexts, the most it may have; \
                     delete one first"
                ),
            ));
        }
        *table.starting.entry(sandbox_id.to_owned()).or_default() += 1;
        Ok(Reservation {
            contexts: self,
            sandbox_id: sandbox_id.to_owned(),
        })
    }

    /// Starts a new context in the sandbox whose agent listens at `socket`.
    pub async fn create(
        &'static self,
        socket: &Path,
        tenant_id: &str,
        sandbox_id: &str,
        req: ContextRequest,
        default: bool,
    ) -> Result<Arc<Context>, OsError> {
        let language = check_language(req.language.as_deref())?;
        let reservation = self.reserve(sandbox_id)?;
        let id = uuid::Uuid::new_v4().to_string();
        let gone = id.clone();
        let cwd = req.cwd.filter(|c| !c.is_empty());
        let kernel = Kernel::start(socket, &id, cwd, move || {
            self.lock().by_id.remove(&gone);
        })
        .await?;
        let context = Arc::new(Context {
            id: id.clone(),
            language,
            tenant_id: tenant_id.to_owned(),
            sandbox_id: sandbox_id.to_owned(),
            default,
            kernel,
            turn: Arc::default(),
        });
        if context.kernel.alive() {
            self.lock().by_id.insert(id, context.clone());
        }
        drop(reservation);
        Ok(context)
    }

    /// Context `id` of the caller's sandbox, or 404.
    pub fn get(
        &self,
        tenant_id: &str,
        sandbox_id: &str,
        id: &str,
    ) -> Result<Arc<Context>, OsError> {
        self.lock()
            .by_id
            .get(id)
            .filter(|c| c.tenant_id == tenant_id && c.sandbox_id == sandbox_id && c.kernel.alive())
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// The sandbox's contexts (of `language` if given), oldest id first.
    pub fn list(
        &self,
        tenant_id: &str,
        sandbox_id: &str,
        language: Option<&str>,
    ) -> Vec<ContextView> {
        let mut views: Vec<ContextView> = self
            .lock()
            .by_id
            .values()
            .filter(|c| c.tenant_id == tenant_id && c.sandbox_id == sandbox_id)
            .filter(|c| language.is_none_or(|l| c.language == l))
            .map(|c| c.view())
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    /// Deletes context `id` (its interpreter is killed), or 404.
    pub fn delete(&self, tenant_id: &str, sandbox_id: &str, id: &str) -> Result<(), OsError> {
        let mut table = self.lock();
        let found = table
            .by_id
            .get(id)
            .is_some_and(|c| c.tenant_id == tenant_id && c.sandbox_id == sandbox_id);
        if !found {
            return Err(not_found(id));
        }
        table.by_id.remove(id);
        Ok(())
    }

    /// Deletes the sandbox's contexts of `language`.
    pub fn delete_language(&self, tenant_id: &str, sandbox_id: &str, language: &str) {
        self.lock().by_id.retain(|_, c| {
            !(c.tenant_id == tenant_id && c.sandbox_id == sandbox_id && c.language == language)
        });
    }

    /// Drops every context of sandbox `sandbox_id` (it was deleted).
    pub fn forget_sandbox(&self, sandbox_id: &str) {
        self.lock().by_id.retain(|_, c| c.sandbox_id != sandbox_id);
    }

    /// Sandboxes that have contexts.
    pub fn sandbox_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .by_id
            .values()
            .map(|c| c.sandbox_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The sandbox's default context for `language`, started on first use.
    pub async fn default_for(
        &'static self,
        socket: &Path,
        tenant_id: &str,
        sandbox_id: &str,
        language: &str,
    ) -> Result<Arc<Context>, OsError> {
        let _one_at_a_time = self.defaults.lock().await;
        let existing = self
            .lock()
            .by_id
            .values()
            .find(|c| {
                c.default
                    && c.tenant_id == tenant_id
                    && c.sandbox_id == sandbox_id
                    && c.language == language
                    && c.kernel.alive()
            })
            .cloned();
        if let Some(context) = existing {
            return Ok(context);
        }
        let req = ContextRequest {
            language: Some(language.to_owned()),
            cwd: None,
        };
        self.create(socket, tenant_id, sandbox_id, req, true).await
    }
}

/// The port the code-interpreter SDK probes (`${JUPYTER_PORT:-44771}`)
/// to see that the interpreter runtime serves.
pub const RUNTIME_PORT: u16 = 44771;

/// Starts, unless it runs already (agent sessions are get-or-create by
/// id), the sandbox's runtime marker: the image's `python3` listening on
/// [`RUNTIME_PORT`] (or `$JUPYTER_PORT`) on loopback. The SDK's readiness
/// check connects to it, so `CodeInterpreter.create` succeeds exactly when
/// the image has a working `python3`, which is what contexts run on.
/// Called on execd's `/ping` (the SDKs ping before anything else).
pub async fn ensure_runtime(agent: &crate::opensandbox::agent::Agent) {
    const MARKER: &str = "import os, socket\n\
        s = socket.socket()\n\
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        s.bind(('127.0.0.1', int(os.environ.get('JUPYTER_PORT') or 44771)))\n\
        s.listen(64)\n\
        while True:\n    s.accept()[0].close()\n";
    let command = format!(
        "exec python3 -c {} 2>/dev/null",
        crate::opensandbox::agent::sh_quote(MARKER)
    );
    let req = crate::opensandbox::agent::StartRequest::detached(
        command,
        "opensandbox-code-runtime".into(),
    );
    if let Err(e) = agent.start(&req).await {
        tracing::debug!(error = %e, "starting the code runtime marker");
    }
}

fn sse_event(kind: &str, extra: serde_json::Value) -> Event {
    let mut body = json!({"type": kind, "timestamp": now_millis()});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    Event::default().data(body.to_string())
}

/// A driver event as execd's SSE event (`None`: not shown).
fn translate(event: kernel::Event, started: std::time::Instant) -> Vec<Event> {
    use kernel::Event as K;
    match event {
        K::Ready { .. } => Vec::new(),
        K::Stdout { text } => vec![sse_event("stdout", json!({"text": text}))],
        K::Stderr { text } => vec![sse_event("stderr", json!({"text": text}))],
        K::Count { n } => vec![sse_event("execution_count", json!({"execution_count": n}))],
        K::Result { mut data } => {
            if let Some(text) = data.remove("text/plain") {
                data.insert("text".into(), text);
            }
            vec![sse_event("result", json!({"results": data}))]
        }
        K::Error {
            ename,
            evalue,
            traceback,
        } => vec![error_event(&ename, &evalue, traceback)],
        K::Done => vec![complete(started)],
        K::Died(why) => vec![
            error_event("ContextDied", &why, vec![why.clone()]),
            complete(started),
        ],
    }
}

fn complete(started: std::time::Instant) -> Event {
    let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    sse_event("execution_complete", json!({"execution_time": ms}))
}

fn error_event(name: &str, value: &str, traceback: Vec<String>) -> Event {
    sse_event(
        "error",
        json!({"error": {"ename": name, "evalue": value, "traceback": traceback}}),
    )
}

/// Runs `code` in `context` and answers with execd's SSE stream. If the
/// client goes away the cell is interrupted.
pub async fn run(
    context: Arc<Context>,
    code: String,
    guard: crate::sandboxes::ActivityGuard,
) -> Result<Response, OsError> {
    let turn = context.turn.clone().lock_owned().await;
    let (events_tx, mut events) = mpsc::channel(64);
    if !context.kernel.run(&code, events_tx) {
        return Err(not_found(&context.id));
    }
    let started = std::time::Instant::now();
    let (client, rx) = mpsc::channel::<Event>(64);
    let init = sse_event("init", json!({"text": context.id}));
    tokio::spawn(async move {
        let _guard = guard;
        let _turn = turn;
        let mut client = Some(client);
        while let Some(event) = events.recv().await {
            let last = matches!(event, kernel::Event::Done | kernel::Event::Died(_));
            for out in translate(event, started) {
                let gone = match &client {
                    Some(tx) => tx.send(out).await.is_err(),
                    None => false,
                };
                if gone {
                    client = None;
                    context.kernel.interrupt();
                }
            }
            if last {
                break;
            }
        }
        context.kernel.finish_run();
    });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter([Ok(init)]), rest);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().text("ping"))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages() {
        assert_eq!(check_language(None).ok().as_deref(), Some("python"));
        assert_eq!(
            check_language(Some("Python")).ok().as_deref(),
            Some("python")
        );
        let e = check_language(Some("java")).expect_err("501");
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
        let e = check_language(Some("cobol")).expect_err("400");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn results_rename_text_plain() {
        let mut data = serde_json::Map::new();
        data.insert("text/plain".into(), json!("4"));
        data.insert("text/html".into(), json!("<b>4</b>"));
        let events = translate(kernel::Event::Result { data }, std::time::Instant::now());
        assert_eq!(events.len(), 1);
    }
}
