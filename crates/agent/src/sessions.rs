//! The registry of command sessions, keyed by command id.
//!
//! `execute` is get-or-create on the client's command id, so a retried
//! request attaches to the command the first attempt started instead of
//! running it twice. A finished session is forgotten after its TTL; the ids
//! of the last [`EXPIRED_MEMORY`] forgotten sessions are remembered so a late
//! reconnect learns "expired" rather than "not found".

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::exec::{ExecContext, ExecError, ExecRequest};
use crate::process::{self, SpawnError};
use crate::reaper::Reaper;
use crate::session::Session;
use crate::wire::RunConfig;

/// How long the warm-up command may run before it is killed.
const WARM_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many expired command ids are remembered.
pub const EXPIRED_MEMORY: usize = 4096;

/// Why a command could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("command {0} not found")]
    NotFound(String),
    #[error("session {0} expired")]
    Expired(String),
    #[error(transparent)]
    Invalid(#[from] ExecError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("failed to watch the command's output")]
    Wire(#[source] std::io::Error),
}

/// All sessions of this sandbox.
pub struct Sessions {
    live: Mutex<HashMap<String, Arc<Session>>>,
    expired: Mutex<Expired>,
    reaper: Arc<Reaper>,
    /// Replaced whole by [`Sessions::set_defaults`]; running commands keep
    /// what they started with.
    context: RwLock<ExecContext>,
}

impl Sessions {
    pub fn new(reaper: Arc<Reaper>, context: ExecContext) -> Arc<Self> {
        Arc::new(Self {
            live: Mutex::new(HashMap::new()),
            expired: Mutex::new(Expired::default()),
            reaper,
            context: RwLock::new(context),
        })
    }

    /// Returns the session for `id`, starting `req` under that id if there
    /// is none. `None` picks a fresh id. The flag tells if it was started.
    pub fn get_or_start(
        self: &Arc<Self>,
        id: Option<String>,
        req: &ExecRequest,
    ) -> Result<(Arc<Session>, bool), SessionError> {
        let id = id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let mut live = self.live();
        if let Some(session) = live.get(&id) {
            return Ok((Arc::clone(session), false));
        }
        if self.expired().contains(&id) {
            return Err(SessionError::Expired(id));
        }
        let spec = self
            .context
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .spawn_spec(req)?;
        let child = process::spawn(&self.reaper, &spec)?;
        let pid = child.pid;
        let session = Session::start(id.clone(), child, req.lifecycle, req.close_stdin)
            .inspect_err(|_| process::kill_group(pid))
            .map_err(SessionError::Wire)?;
        live.insert(id, Arc::clone(&session));
        drop(live);
        self.forget_after_ttl(&session);
        tracing::debug!(id = session.id(), pid, "command started");
        Ok((session, true))
    }

    /// The live session with `id`.
    pub fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        if let Some(session) = self.live().get(id) {
            return Ok(Arc::clone(session));
        }
        if self.expired().contains(id) {
            return Err(SessionError::Expired(id.to_string()));
        }
        Err(SessionError::NotFound(id.to_string()))
    }

    /// SIGKILLs every running command's process group.
    pub fn kill_all(&self) {
        for session in self.live().values() {
            session.kill();
        }
    }

    fn forget_after_ttl(self: &Arc<Self>, session: &Arc<Session>) {
        let Some(ttl) = session.ttl() else {
            return;
        };
        let sessions = Arc::downgrade(self);
        let session = Arc::clone(session);
        tokio::spawn(async move {
            session.finished().await;
            tokio::time::sleep(ttl).await;
            if let Some(sessions) = sessions.upgrade() {
                sessions.forget(session.id());
            }
        });
    }

    fn forget(&self, id: &str) {
        self.live().remove(id);
        self.expired().insert(id.to_string());
    }

    /// Runs `true` once, as a command with the defaults (so without the
    /// shell: [`crate::simple`]) as the default user, its output discarded
    /// and outside the session table, and waits for it (bounded).
    ///
    /// A sandbox's root is a fresh mount: its first command pays for the
    /// first lookups of the loader and the libraries, and the agent's first
    /// spawn pays for code and memory not touched yet — 4.5 ms from
    /// `execute` to `started` against 0.4 ms for the next command
    /// (docs/benchmarks.md). The agent pays it right after start instead, so
    /// a warm pool hands out sandboxes that already paid. Without bash it
    /// costs 1.3 ms less CPU per sandbox, and a first `bash -c` command
    /// still finds libc and the loader warm.
    pub async fn warm_up(&self) {
        let request = ExecRequest::warm_up();
        let spec = self
            .context
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .spawn_spec(&request);
        let child = match spec.map(|spec| process::spawn(&self.reaper, &spec)) {
            Ok(Ok(child)) => child,
            Ok(Err(error)) => return tracing::debug!(%error, "warm-up not started"),
            Err(error) => return tracing::debug!(%error, "warm-up not started"),
        };
        // Its stdin is closed and nothing reads its output: `true` writes none.
        drop(child.io);
        if tokio::time::timeout(WARM_UP_LIMIT, child.exit)
            .await
            .is_err()
        {
            process::kill_group(child.pid);
        }
        // The spawn's buffers (its child stack among them) were freed into
        // the heap, resident; an idle sandbox gives them back.
        // SAFETY: malloc_trim only returns free heap memory to the kernel.
        unsafe { libc::malloc_trim(0) };
    }

    /// New defaults (working directory, user, variables) for the commands
    /// started from now on.
    pub fn set_defaults(&self, defaults: RunConfig) -> Result<(), ExecError> {
        let mut next = self
            .context
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        next.apply(defaults)?;
        *self.context.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self) -> MutexGuard<'_, Expired> {
        self.expired.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded memory of expired ids, oldest forgotten first.
#[derive(Default)]
struct Expired {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Expired {
    fn insert(&mut self, id: String) {
        if !self.ids.insert(id.clone()) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > EXPIRED_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_memory_is_bounded() {
        let mut expired = Expired::default();
        for n in 0..EXPIRED_MEMORY + 10 {
            expired.insert(n.to_string());
        }
        assert!(!expired.contains("0"));
        assert!(expired.contains(&(EXPIRED_MEMORY + 9).to_string()));
        assert_eq!(expired.ids.len(), EXPIRED_MEMORY);
    }
}
