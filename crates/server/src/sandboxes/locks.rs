//! The controller's in-process locks: one per sandbox (every lifecycle
//! operation holds it while it reads the row and drives the runtime) and
//! one per tenant (quota admission). Other replicas are excluded by the
//! database's locks (`Store::lock_tenant`, `Store::lock_pool`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;

type Table = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

#[derive(Default)]
pub(super) struct Locks {
    sandboxes: Table,
    tenants: Table,
}

impl Locks {
    pub fn sandbox(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        entry(&self.sandboxes, id)
    }

    pub fn tenant(&self, tenant_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        entry(&self.tenants, tenant_id)
    }

    /// Drop the lock of a deleted sandbox.
    pub fn forget_sandbox(&self, id: &str) {
        lock(&self.sandboxes).remove(id);
    }
}

fn entry(table: &Table, key: &str) -> Arc<tokio::sync::Mutex<()>> {
    lock(table).entry(key.to_owned()).or_default().clone()
}
