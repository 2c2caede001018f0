//! Drops the in-memory execd state (executions, code contexts) of deleted
//! sandboxes.
//!
//! An OpenSandbox delete drops it at once ([`forget_sandbox`]); a sandbox
//! deleted another way (the LangSmith API, its TTL, the console) is noticed
//! by a task that checks, every [`SWEEP_INTERVAL`], which of the sandboxes
//! with state still have a row.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::opensandbox::code::contexts;
use crate::opensandbox::execd::executions::executions;
use crate::store::Store;

/// How often the sweeper looks for deleted sandboxes.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Drops everything kept in memory for sandbox `id`.
pub fn forget_sandbox(id: &str) {
    executions().forget_sandbox(id);
    contexts().forget_sandbox(id);
}

/// Sandboxes with state kept in memory.
fn tracked() -> Vec<String> {
    let mut ids = executions().sandbox_ids();
    ids.extend(contexts().sandbox_ids());
    ids.sort();
    ids.dedup();
    ids
}

/// One pass: forgets the tracked sandboxes that no longer exist.
pub async fn sweep(store: &Store) {
    for id in tracked() {
        match store.sandbox(&id).await {
            Ok(None) => forget_sandbox(&id),
            Ok(Some(_)) => {}
            Err(error) => {
                tracing::debug!(%error, "sweeping OpenSandbox state");
                return;
            }
        }
    }
}

/// Starts the sweeper on the current runtime unless it runs already.
pub fn ensure_running(store: &Store) {
    static TASK: OnceLock<Mutex<Option<tokio::task::JoinHandle<()>>>> = OnceLock::new();
    let slot = TASK.get_or_init(|| Mutex::new(None));
    let mut task = slot.lock().unwrap_or_else(|e| e.into_inner());
    if task.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    let store = store.clone();
    *task = Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            sweep(&store).await;
        }
    }));
}
