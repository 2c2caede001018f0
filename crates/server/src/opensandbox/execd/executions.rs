//! The executions execd remembers for `status` and `logs`, in memory and
//! bounded.
//!
//! Without bounds one tenant could pin [`Limits::total`] × 1 MiB of logs
//! (4 GiB) with background commands. So the table keeps, per sandbox and
//! in all, a number of executions and a byte budget for their logs
//! ([`LIMITS`]):
//!
//! - a new command that would exceed a count evicts the oldest *finished*
//!   execution (of its sandbox, then of any); if only running ones remain it
//!   is refused: 429 `TOO_MANY_COMMANDS` for the sandbox's cap, 503
//!   `SERVER_BUSY` for the server's;
//! - output that takes a budget over evicts finished executions oldest
//!   first; if only running ones remain, the writing execution loses its
//!   oldest lines (its status stays, its `logs` cursor skips them);
//! - each execution keeps at most [`Limits::per_execution_bytes`], in lines
//!   of at most [`MAX_LINE_BYTES`] (longer output is cut into lines);
//! - the entries of a deleted sandbox are dropped ([`Executions::forget_sandbox`],
//!   called on delete and by `opensandbox::sweeper`).
//!
//! Lock order: the table, then an execution's state.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::http::StatusCode;

use crate::opensandbox::error::OsError;

/// The table's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Executions kept per sandbox.
    pub per_sandbox: usize,
    /// Log bytes kept per sandbox.
    pub per_sandbox_bytes: usize,
    /// Executions kept in all.
    pub total: usize,
    /// Log bytes kept in all.
    pub total_bytes: usize,
    /// Log bytes kept per execution.
    pub per_execution_bytes: usize,
}

/// The server's bounds: at most 16 MiB of logs per sandbox and 256 MiB in
/// all.
pub const LIMITS: Limits = Limits {
    per_sandbox: 128,
    per_sandbox_bytes: 16 << 20,
    total: 4096,
    total_bytes: 256 << 20,
    per_execution_bytes: 1 << 20,
};

/// Longest line kept; longer output is cut into lines of this size.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// How long a refused client is asked to wait when the server is full.
const RETRY_AFTER_SECONDS: u64 = 5;

/// Output lines, for `logs` with a line cursor. The last line may be open
/// (no newline yet).
#[derive(Debug, Default)]
pub struct Log {
    lines: VecDeque<String>,
    /// Index of `lines[0]` (lines dropped before it).
    first: usize,
    /// Whether the last line is unfinished.
    open: bool,
    bytes: usize,
}

impl Log {
    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn push(&mut self, mut text: &str) {
        while !text.is_empty() {
            if !self.open {
                self.lines.push_back(String::new());
                self.open = true;
            }
            let Some(line) = self.lines.back_mut() else {
                return;
            };
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            let mut take = text.find('\n').map_or(text.len(), |i| i + 1).min(room);
            while !text.is_char_boundary(take) {
                take -= 1;
            }
            if take > 0 {
                line.push_str(&text[..take]);
                self.bytes += take;
                text = &text[take..];
            }
            if take == 0 || line.ends_with('\n') || line.len() >= MAX_LINE_BYTES {
                self.open = false;
            }
        }
    }

    /// Drops the oldest lines until at least `want` bytes are gone (or
    /// nothing is left); returns the bytes dropped.
    pub fn drop_front(&mut self, want: usize) -> usize {
        let mut dropped = 0;
        while dropped < want {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            dropped += old.len();
            self.first += 1;
        }
        if self.lines.is_empty() {
            self.open = false;
        }
        self.bytes -= dropped;
        dropped
    }

    /// Lines from `cursor` on (and the unfinished last line if `all`), and
    /// the cursor for the next read.
    pub fn since(&self, cursor: usize, all: bool) -> (String, usize) {
        let complete = self.lines.len() - usize::from(self.open);
        let skip = cursor.saturating_sub(self.first);
        let mut out: String = self
            .lines
            .iter()
            .take(complete)
            .skip(skip)
            .map(String::as_str)
            .collect();
        let mut next = self.first + complete;
        if all && self.open && skip <= complete {
            if let Some(last) = self.lines.back() {
                out.push_str(last);
                next += 1;
            }
        }
        (out, next.max(cursor))
    }
}

/// What an execution is doing, behind its own lock.
#[derive(Debug, Default)]
pub struct ExecState {
    pub pid: Option<i32>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub log: Log,
}

/// One command run through execd.
#[derive(Debug)]
pub struct Execution {
    pub id: String,
    pub tenant_id: String,
    pub sandbox_id: String,
    pub content: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    state: Mutex<ExecState>,
}

impl Execution {
    pub fn new(id: String, tenant_id: &str, sandbox_id: &str, content: String) -> Self {
        Self {
            id,
            tenant_id: tenant_id.to_owned(),
            sandbox_id: sandbox_id.to_owned(),
            content,
            started_at: chrono::Utc::now(),
            state: Mutex::new(ExecState::default()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finished(&self) -> bool {
        self.state().finished_at.is_some()
    }
}

/// Executions kept and log bytes of one sandbox.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub count: usize,
    pub bytes: usize,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<Execution>>,
    /// Ids, oldest first (for eviction).
    order: VecDeque<String>,
    sandboxes: HashMap<String, Usage>,
    bytes: usize,
}

impl Table {
    fn usage(&self, sandbox_id: &str) -> Usage {
        self.sandboxes.get(sandbox_id).copied().unwrap_or_default()
    }

    fn add_bytes(&mut self, sandbox_id: &str, added: usize, removed: usize) {
        self.bytes = (self.bytes + added).saturating_sub(removed);
        if let Some(usage) = self.sandboxes.get_mut(sandbox_id) {
            usage.bytes = (usage.bytes + added).saturating_sub(removed);
        }
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Execution>> {
        let exec = self.by_id.remove(id)?;
        if let Some(at) = self.order.iter().position(|o| o == id) {
            self.order.remove(at);
        }
        let bytes = exec.state().log.bytes();
        self.add_bytes(&exec.sandbox_id, 0, bytes);
        if let Some(usage) = self.sandboxes.get_mut(&exec.sandbox_id) {
            usage.count = usage.count.saturating_sub(1);
            if usage.count == 0 {
                self.sandboxes.remove(&exec.sandbox_id);
            }
        }
        Some(exec)
    }

    /// Evicts the oldest finished execution (of `sandbox_id` if given);
    /// false if there is none.
    fn evict_finished(&mut self, sandbox_id: Option<&str>) -> bool {
        let victim = self.order.iter().find(|id| {
            self.by_id
                .get(*id)
                .is_some_and(|e| sandbox_id.is_none_or(|s| e.sandbox_id == s) && e.finished())
        });
        match victim.cloned() {
            Some(id) => self.remove(&id).is_some(),
            None => false,
        }
    }

    /// Drops the oldest lines of `exec` (which is in the table) so that
    /// `over` bytes go.
    fn trim(&mut self, exec: &Execution, over: usize) {
        let dropped = exec.state().log.drop_front(over);
        self.add_bytes(&exec.sandbox_id, 0, dropped);
    }
}

/// The executions of every sandbox, by id. Process-wide because it is
/// per-server memory, like the agent sessions it mirrors.
pub struct Executions {
    limits: Limits,
    table: Mutex<Table>,
}

pub fn executions() -> &'static Executions {
    static EXECUTIONS: OnceLock<Executions> = OnceLock::new();
    EXECUTIONS.get_or_init(|| Executions::new(LIMITS))
}

impl Executions {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `exec` (a new, running execution), evicting finished ones to
    /// make room, or refuses it (see the module docs).
    pub fn insert(&self, exec: Arc<Execution>) -> Result<(), OsError> {
        let limits = self.limits;
        let mut table = self.table();
        while table.usage(&exec.sandbox_id).count >= limits.per_sandbox {
            if !table.evict_finished(Some(&exec.sandbox_id)) {
                return Err(OsError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_COMMANDS",
                    format!(
                        "{} commands are running in this sandbox, the most it may have; \
                         wait for one to finish or interrupt one",
                        limits.per_sandbox
                    ),
                ));
            }
        }
        while table.by_id.len() >= limits.total {
            if !table.evict_finished(None) {
                return Err(OsError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVER_BUSY",
                    format!(
                        "The server is running {} commands, the most it tracks; try again later",
                        limits.total
                    ),
                )
                .with_retry_after(RETRY_AFTER_SECONDS));
            }
        }
        table.order.push_back(exec.id.clone());
        table
            .sandboxes
            .entry(exec.sandbox_id.clone())
            .or_default()
            .count += 1;
        table.by_id.insert(exec.id.clone(), exec);
        Ok(())
    }

    /// Appends output to `exec`'s log within the budgets (see the module
    /// docs). Output of an execution no longer kept is not recorded.
    pub fn append(&self, exec: &Arc<Execution>, text: &str) {
        let limits = self.limits;
        let mut table = self.table();
        if !table
            .by_id
            .get(&exec.id)
            .is_some_and(|kept| Arc::ptr_eq(kept, exec))
        {
            return;
        }
        let (added, removed) = {
            let mut state = exec.state();
            let before = state.log.bytes();
            state.log.push(text);
            let over = state.log.bytes().saturating_sub(limits.per_execution_bytes);
            state.log.drop_front(over);
            let after = state.log.bytes();
            (after.saturating_sub(before), before.saturating_sub(after))
        };
        table.add_bytes(&exec.sandbox_id, added, removed);
        while table.usage(&exec.sandbox_id).bytes > limits.per_sandbox_bytes {
            if !table.evict_finished(Some(&exec.sandbox_id)) {
                let over = table.usage(&exec.sandbox_id).bytes - limits.per_sandbox_bytes;
                table.trim(exec, over);
                break;
            }
        }
        while table.bytes > limits.total_bytes {
            if !table.evict_finished(None) {
                let over = table.bytes - limits.total_bytes;
                table.trim(exec, over);
                break;
            }
        }
    }

    /// Forgets an execution (one that never started).
    pub fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    /// Drops every execution of sandbox `sandbox_id` (it was deleted).
    pub fn forget_sandbox(&self, sandbox_id: &str) {
        let mut table = self.table();
        let ids: Vec<String> = table
            .by_id
            .values()
            .filter(|e| e.sandbox_id == sandbox_id)
            .map(|e| e.id.clone())
            .collect();
        for id in ids {
            table.remove(&id);
        }
    }

    /// The sandboxes that have executions.
    pub fn sandbox_ids(&self) -> Vec<String> {
        self.table().sandboxes.keys().cloned().collect()
    }

    /// Executions and log bytes kept for `sandbox_id`.
    pub fn usage(&self, sandbox_id: &str) -> Usage {
        self.table().usage(sandbox_id)
    }

    /// Log bytes kept in all.
    pub fn total_bytes(&self) -> usize {
        self.table().bytes
    }

    /// Execution `id` of `tenant_id`'s sandbox `sandbox_id`, or 404.
    pub fn get(
        &self,
        tenant_id: &str,
        sandbox_id: &str,
        id: &str,
    ) -> Result<Arc<Execution>, OsError> {
        self.table()
            .by_id
            .get(id)
            .filter(|e| e.tenant_id == tenant_id && e.sandbox_id == sandbox_id)
            .cloned()
            .ok_or_else(|| {
                OsError::new(
                    StatusCode::NOT_FOUND,
                    "COMMAND_NOT_FOUND",
                    format!("No command '{id}' in this sandbox"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        per_sandbox: 4,
        per_sandbox_bytes: 1000,
        total: 6,
        total_bytes: 1500,
        per_execution_bytes: 600,
    };

    fn exec(table: &Executions, sandbox: &str, n: usize) -> Result<Arc<Execution>, OsError> {
        let e = Arc::new(Execution::new(
            format!("{sandbox}-{n}"),
            "t",
            sandbox,
            "cmd".into(),
        ));
        table.insert(e.clone())?;
        Ok(e)
    }

    fn finish(e: &Execution) {
        e.state().finished_at = Some(chrono::Utc::now());
    }

    fn line(n: usize) -> String {
        "x".repeat(n - 1) + "\n"
    }

    fn kept(table: &Executions, e: &Execution) -> bool {
        table.get("t", &e.sandbox_id, &e.id).is_ok()
    }

    #[test]
    fn log_cursor_counts_lines_and_drops_the_oldest() {
        let mut log = Log::default();
        log.push("a\nb");
        assert_eq!(log.since(0, false), ("a\n".to_owned(), 1));
        log.push("c\nd\n");
        assert_eq!(log.since(1, false), ("bc\nd\n".to_owned(), 3));
        assert_eq!(log.since(3, true), (String::new(), 3));
        log.push("e");
        assert_eq!(log.since(3, true), ("e".to_owned(), 4));
        assert_eq!(log.drop_front(3), 5);
        assert_eq!(log.since(0, false), ("d\n".to_owned(), 3));
        assert_eq!(log.bytes(), 3);
    }

    #[test]
    fn output_without_newlines_is_cut_into_bounded_lines() {
        let mut log = Log::default();
        // Multi-byte characters: cuts stay on character boundaries.
        let text = "é".repeat(MAX_LINE_BYTES);
        log.push(&text);
        log.push(&text);
        assert_eq!(log.bytes(), 4 * MAX_LINE_BYTES);
        assert!(log.lines.iter().all(|l| l.len() <= MAX_LINE_BYTES));
        assert_eq!(log.lines.len(), 4);
        let (out, next) = log.since(0, true);
        assert_eq!((out.len(), next), (4 * MAX_LINE_BYTES, 4));
    }

    #[test]
    fn one_sandbox_cannot_keep_more_than_its_count() {
        let table = Executions::new(SMALL);
        let first: Vec<_> = (0..4).map(|n| exec(&table, "a", n)).collect();
        let first: Vec<_> = first.into_iter().map(|e| e.expect("kept")).collect();
        // Only running ones: refused with 429 in OpenSandbox's shape.
        let refused = exec(&table, "a", 4).expect_err("refused");
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code, "TOO_MANY_COMMANDS");
        // Another sandbox is not affected.
        exec(&table, "b", 0).expect("other sandbox");
        // A finished one makes room: the oldest finished goes.
        finish(&first[2]);
        finish(&first[1]);
        exec(&table, "a", 5).expect("room made");
        assert!(!kept(&table, &first[1]));
        assert!(kept(&table, &first[2]) && kept(&table, &first[0]));
        assert_eq!(table.usage("a").count, 4);
    }

    #[test]
    fn the_server_refuses_with_503_when_full_of_running_commands() {
        let table = Executions::new(SMALL);
        for n in 0..3 {
            exec(&table, "a", n).expect("kept");
            exec(&table, "b", n).expect("kept");
        }
        let refused = exec(&table, "c", 0).expect_err("full");
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        let old = table.get("t", "a", "a-0").expect("there");
        finish(&old);
        exec(&table, "c", 0).expect("room made");
        assert!(!kept(&table, &old));
    }

    #[test]
    fn logs_stay_within_the_sandbox_budget() {
        let table = Executions::new(SMALL);
        let done = exec(&table, "a", 0).expect("kept");
        table.append(&done, &line(500));
        finish(&done);
        let running = exec(&table, "a", 1).expect("kept");
        table.append(&running, &line(400));
        assert_eq!(table.usage("a").bytes, 900);
        // Over 1000: the finished execution goes first.
        table.append(&running, &line(150));
        assert!(!kept(&table, &done));
        assert_eq!(table.usage("a").bytes, 550);
        // Per execution: 600 at most, oldest lines first.
        table.append(&running, &line(100));
        assert_eq!(table.usage("a").bytes, 250);
        // Two running ones over the budget: the writer loses old lines.
        let other = exec(&table, "a", 2).expect("kept");
        for _ in 0..6 {
            table.append(&other, &line(100));
        }
        table.append(&running, &line(300));
        table.append(&running, &line(300));
        let usage = table.usage("a");
        assert!(usage.bytes <= 1000, "{usage:?}");
        assert_eq!(table.total_bytes(), usage.bytes);
        assert_eq!(logs_len(&other), 600);
        assert!(kept(&table, &running));
    }

    fn logs_len(e: &Execution) -> usize {
        e.state().log.bytes()
    }

    #[test]
    fn logs_stay_within_the_total_budget() {
        let table = Executions::new(SMALL);
        let mut all = Vec::new();
        for sandbox in ["a", "b", "c"] {
            let e = exec(&table, sandbox, 0).expect("kept");
            table.append(&e, &line(600));
            all.push(e);
        }
        assert!(table.total_bytes() <= 1500);
        finish(&all[0]);
        let e = exec(&table, "d", 0).expect("kept");
        table.append(&e, &line(400));
        assert!(table.total_bytes() <= 1500);
        assert!(!kept(&table, &all[0]), "the finished one was evicted");
        let sum: usize =
            all.iter().chain([&e]).map(|e| logs_len(e)).sum::<usize>() - logs_len(&all[0]);
        assert_eq!(sum, table.total_bytes());
    }

    #[test]
    fn a_deleted_sandbox_leaves_nothing() {
        let table = Executions::new(SMALL);
        let a = exec(&table, "a", 0).expect("kept");
        table.append(&a, &line(100));
        let b = exec(&table, "b", 0).expect("kept");
        table.append(&b, &line(50));
        table.forget_sandbox("a");
        assert!(!kept(&table, &a));
        assert_eq!(table.usage("a"), Usage::default());
        assert_eq!(table.total_bytes(), 50);
        assert_eq!(table.sandbox_ids(), vec!["b".to_owned()]);
        // Output arriving for a forgotten execution is not recorded.
        table.append(&a, &line(100));
        assert_eq!(table.total_bytes(), 50);
    }
}
