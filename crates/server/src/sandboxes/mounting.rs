//! The controller's side of sandbox mounts (`crate::mounts`): prepared
//! before every boot, released after every stop, adopted at recovery.

use std::sync::Arc;

use sandpit_runtime::SandboxSpec;

use super::Sandboxes;
use crate::mounts::{MountTarget, Mounts};
use crate::store::SandboxRow;

impl Sandboxes {
    /// Enable mounts on this controller (at construction).
    pub fn with_mounts(mut self, mounts: Arc<Mounts>) -> Self {
        self.mounts = Some(mounts);
        self
    }

    /// Fetch and mount what `row` asks for and add the binds to `spec`.
    pub(super) async fn prepare_mounts(
        &self,
        row: &SandboxRow,
        spec: &mut SandboxSpec,
    ) -> Result<(), String> {
        let Some(mounts) = self.mounts.as_ref() else {
            return match crate::mounts::has_mounts(&extra(row)) {
                true => Err("this server does not support mounts".into()),
                false => Ok(()),
            };
        };
        let target = MountTarget {
            row,
            state_dir: &spec.state_dir,
            namespace_pid: self.runtime.mount_namespace_pid(),
            owner: spec.userns_base.unwrap_or(0),
        };
        let binds = mounts.prepare(&target).await?;
        spec.mounts.extend(binds);
        Ok(())
    }

    /// Stop what the sandbox's mounts run on the host (after the runtime
    /// stopped the sandbox).
    pub(super) async fn release_mounts(&self, id: &str) {
        if let Some(mounts) = self.mounts.as_ref() {
            let state_dir = self.dirs.sandbox(id);
            mounts
                .release(id, &state_dir, self.runtime.mount_namespace_pid())
                .await;
        }
    }

    /// A sandbox adopted at start-up: take its mounts over.
    pub(super) async fn adopt_mounts(&self, row: &SandboxRow) {
        let Some(mounts) = self.mounts.as_ref() else {
            return;
        };
        let state_dir = self.dirs.sandbox(&row.id);
        let slot = row.net_slot.and_then(|s| u32::try_from(s).ok());
        let owner = self
            .defaults
            .userns_base
            .zip(slot)
            .and_then(|(base, slot)| sandpit_runtime::idmap::slot_base(base, slot).ok())
            .unwrap_or(0);
        let target = MountTarget {
            row,
            state_dir: &state_dir,
            namespace_pid: self.runtime.mount_namespace_pid(),
            owner,
        };
        mounts.adopt(&target).await;
    }
}

fn extra(row: &SandboxRow) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(&row.extra).unwrap_or_default()
}
