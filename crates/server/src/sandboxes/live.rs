//! What runs on this node now, kept in memory beside the database: each
//! running sandbox's agent socket, init pid and network slot, the slots in
//! use, and the counter of policy changes the egress proxy watches. The
//! lifecycle (the rest of [`super::Sandboxes`]) changes it as sandboxes
//! boot and stop; the data plane reads it without touching the database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::lock;
use super::slots::Slots;

/// A sandbox whose init is running.
#[derive(Debug, Clone)]
pub(super) struct Live {
    pub tenant_id: String,
    pub socket: PathBuf,
    pub pid: i32,
    pub net_slot: u32,
    /// Set before the server stops the sandbox on purpose, so the exit
    /// watcher does not report it as a crash.
    stopping: Arc<AtomicBool>,
}

impl Live {
    pub fn new(tenant_id: &str, socket: PathBuf, pid: i32, net_slot: u32) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            socket,
            pid,
            net_slot,
            stopping: Arc::default(),
        }
    }

    /// The flag the exit watcher reads (see the field).
    pub fn stopping(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

pub(super) struct LiveSandboxes {
    running: Mutex<HashMap<String, Live>>,
    slots: Slots,
    /// Counts policy changes (a `proxy_config` update, a sandbox leaving
    /// its network slot): the egress proxy's open connections re-read
    /// their policy when it moves.
    policy_changes: watch::Sender<u64>,
}

impl LiveSandboxes {
    pub fn new() -> Self {
        Self {
            running: Mutex::default(),
            slots: Slots::default(),
            policy_changes: watch::channel(0).0,
        }
    }

    /// See the `policy_changes` field.
    pub fn policy_changes(&self) -> watch::Receiver<u64> {
        self.policy_changes.subscribe()
    }

    pub fn policy_changed(&self) {
        self.policy_changes.send_modify(|n| *n += 1);
    }

    /// A free network slot, now taken.
    pub fn allocate_slot(&self) -> Option<u32> {
        self.slots.allocate()
    }

    /// Mark `slot` taken (a sandbox found running at start-up).
    pub fn reserve_slot(&self, slot: u32) {
        self.slots.reserve(slot);
    }

    pub fn release_slot(&self, slot: u32) {
        self.slots.release(slot);
    }

    pub fn insert(&self, id: &str, live: Live) {
        lock(&self.running).insert(id.to_owned(), live);
    }

    /// Forget `id`, which the server is stopping on purpose: its exit
    /// watcher stands down and the egress proxy's open connections find it
    /// gone. Its slot stays taken until [`LiveSandboxes::release_slot`]
    /// (after the runtime stopped it).
    pub fn take(&self, id: &str) -> Option<Live> {
        let live = lock(&self.running).remove(id)?;
        live.stopping.store(true, Ordering::SeqCst);
        self.policy_changed();
        Some(live)
    }

    /// Whether `id` still runs the init `pid`, not being stopped on purpose.
    pub fn runs_unstopped(&self, id: &str, pid: i32) -> bool {
        lock(&self.running)
            .get(id)
            .is_some_and(|l| l.pid == pid && !l.is_stopping())
    }

    /// The entry of `id`, if it runs here.
    pub fn get(&self, id: &str) -> Option<Live> {
        lock(&self.running).get(id).cloned()
    }

    /// The entry of `id` if it runs here and is tenant `tenant_id`'s.
    pub fn of_tenant(&self, tenant_id: &str, id: &str) -> Option<Live> {
        self.get(id).filter(|live| live.tenant_id == tenant_id)
    }

    pub fn contains(&self, id: &str) -> bool {
        lock(&self.running).contains_key(id)
    }

    /// The sandbox running on network `slot`.
    pub fn on_slot(&self, slot: u32) -> Option<String> {
        lock(&self.running)
            .iter()
            .find(|(_, live)| live.net_slot == slot)
            .map(|(id, _)| id.clone())
    }

    pub fn ids(&self) -> Vec<String> {
        lock(&self.running).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_marks_stopping_and_counts_a_policy_change() {
        let live = LiveSandboxes::new();
        let changes = live.policy_changes();
        let entry = Live::new("t", PathBuf::from("/s"), 42, 3);
        let flag = entry.stopping();
        live.insert("a", entry);
        assert!(live.runs_unstopped("a", 42));
        assert!(!live.runs_unstopped("a", 43));
        assert_eq!(live.on_slot(3).as_deref(), Some("a"));
        assert!(live.of_tenant("other", "a").is_none());
        let taken = live.take("a").expect("was live");
        assert_eq!(taken.net_slot, 3);
        assert!(flag.load(Ordering::SeqCst));
        assert_eq!(*changes.borrow(), 1);
        assert!(!live.contains("a"));
        assert!(live.take("a").is_none());
        assert_eq!(*changes.borrow(), 1);
    }
}
