//! Activity: what keeps a sandbox from being stopped for idleness.
//!
//! Every data-plane request, service-URL or tunnel connection counts: it is
//! recorded when it starts and when it ends, and while it is open the sandbox
//! is busy (a command streaming output to an attached client for an hour is
//! activity the whole hour). A process merely running in the background is
//! not. Timestamps go to the database (`last_activity_at`) at most once a
//! second per sandbox, so deadlines survive restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::Store;

/// Activity is written to the database at most this often per sandbox.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    flushed: HashMap<String, Instant>,
    /// When each sandbox last saw activity, which may be newer than the
    /// database (writes are throttled and asynchronous).
    seen: HashMap<String, Instant>,
    open: HashMap<String, usize>,
}

/// Per-sandbox activity bookkeeping.
#[derive(Clone)]
pub struct Activity {
    store: Store,
    state: Arc<Mutex<State>>,
}

/// An open connection to a sandbox; activity again when dropped.
pub struct ActivityGuard {
    activity: Activity,
    id: String,
    opened: Instant,
}

impl Activity {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record activity now (written out at most once a second).
    pub fn touch(&self, id: &str) {
        let now = Instant::now();
        {
            let mut state = self.lock();
            state.seen.insert(id.to_owned(), now);
            match state.flushed.get(id) {
                Some(last) if now.duration_since(*last) < FLUSH_EVERY => return,
                _ => state.flushed.insert(id.to_owned(), now),
            };
        }
        let store = self.store.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(err) = store.touch_activity(&id, &crate::store::now()).await {
                tracing::warn!(sandbox = %id, error = %err, "recording activity failed");
            }
        });
    }

    /// A connection to `id` opened: activity now, busy until the guard drops.
    pub fn open(&self, id: &str) -> ActivityGuard {
        self.touch(id);
        *self.lock().open.entry(id.to_owned()).or_default() += 1;
        ActivityGuard {
            activity: self.clone(),
            id: id.to_owned(),
            opened: Instant::now(),
        }
    }

    /// Whether a connection to `id` is open right now, or activity was seen
    /// so recently that the database may not show it yet.
    pub fn busy(&self, id: &str) -> bool {
        let state = self.lock();
        state.open.get(id).is_some_and(|n| *n > 0)
            || state
                .seen
                .get(id)
                .is_some_and(|at| at.elapsed() < 2 * FLUSH_EVERY)
    }

    pub fn forget(&self, id: &str) {
        let mut state = self.lock();
        state.flushed.remove(id);
        state.seen.remove(id);
    }
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        {
            let mut state = self.activity.lock();
            if let Some(n) = state.open.get_mut(&self.id) {
                *n -= 1;
                if *n == 0 {
                    state.open.remove(&self.id);
                }
            }
            // The end of a long connection is activity too, whatever the last
            // flush. A short one (a service-URL request) was recorded when it
            // opened, within FLUSH_EVERY; forcing a write per request would
            // put a database write on every proxied request.
            if self.opened.elapsed() >= FLUSH_EVERY {
                state.flushed.remove(&self.id);
            }
        }
        self.activity.touch(&self.id);
    }
}
