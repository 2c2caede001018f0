//! Warm pools: pre-started sandboxes of a template.
//!
//! A pool's members are ordinary sandboxes named `_warm-<pool id>-<suffix>`
//! (hidden from listings, unreachable by name). `create` with a pooled
//! template claims a ready member whose image and resources match what the
//! request would boot — one conditional `UPDATE` renames it, so two creates
//! can never claim the same one — and wakes the refill task. The refill
//! (`reconcile_pools`, also run on a timer) replaces members that stopped or
//! failed, creates missing ones and removes extras; it is serialised by one
//! lock so two passes never overshoot. Members count towards the tenant's
//! quotas: they hold CPU and memory.

use std::sync::Arc;
use std::time::Duration;

use sandpit_api::{CreateSandboxRequest, SandboxStatus};

use super::{generated_name, validate, Sandboxes};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::{warm_prefix, PoolRow, SandboxRow};

/// How long one warm member may take to boot.
const WARM_BOOT_WAIT: i64 = 300;

impl Sandboxes {
    /// Ask the refill task to run now.
    pub fn wake_pools(&self) {
        self.pool_wake.notify_one();
    }

    /// Wait until woken or `interval` passes (the refill task's pacing).
    pub async fn pools_idle(&self, interval: Duration) {
        let _ = tokio::time::timeout(interval, self.pool_wake.notified()).await;
    }

    /// Claim a warm sandbox for `want` (a row about to be inserted for a
    /// create with `template`), if a pool of the template has a matching
    /// ready one. Returns the claimed sandbox under its new name.
    pub(super) async fn claim_warm(
        &self,
        template: &str,
        want: &SandboxRow,
    ) -> Result<Option<SandboxRow>, ApiError> {
        for pool in self
            .store
            .pools_for_template(&want.tenant_id, template)
            .await?
        {
            for member in self.store.pool_members(&pool).await? {
                let matches = member.status == SandboxStatus::Ready.as_str()
                    && member.image == want.image
                    && member.vcpus == want.vcpus
                    && member.mem_bytes == want.mem_bytes
                    && member.fs_capacity_bytes == want.fs_capacity_bytes;
                if !matches {
                    continue;
                }
                let claimed = SandboxRow {
                    id: member.id.clone(),
                    ..want.clone()
                };
                match self.store.claim_warm(&member.name, &claimed).await {
                    Ok(true) => {
                        tracing::info!(sandbox = %member.id, pool = %pool.name, "claimed warm sandbox");
                        self.wake_pools();
                        return Ok(self.store.sandbox(&member.id).await?);
                    }
                    Ok(false) => continue, // claimed by a concurrent create
                    Err(crate::store::StoreError::Conflict) => {
                        return Err(ApiError::Conflict(format!(
                            "Sandbox name '{}' already in use",
                            want.name
                        )))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(None)
    }

    /// One refill pass over every pool.
    pub async fn reconcile_pools(self: &Arc<Self>) {
        let pools = match self.store.pools(None).await {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!(error = %err, "listing pools failed");
                return;
            }
        };
        for pool in pools {
            if let Err(err) = self.reconcile_pool(&pool).await {
                tracing::warn!(pool = %pool.name, error = %err, "refilling pool failed");
            }
        }
    }

    /// Bring one pool to its replica count. Errors (a quota, a failed boot)
    /// are returned after the members that could be made were made.
    pub async fn reconcile_pool(self: &Arc<Self>, pool: &PoolRow) -> Result<(), ApiError> {
        let _serial = self.pool_lock.lock().await;
        // And across replicas; released when this returns.
        let _shared = self.store.lock_pool(&pool.id).await?;
        // The pool may have been deleted or resized since it was read.
        let Some(pool) = self.store.pool_by_id(&pool.id).await? else {
            return Ok(());
        };
        let mut live = Vec::new();
        for member in self.store.pool_members(&pool).await? {
            match member.status()? {
                SandboxStatus::Ready | SandboxStatus::Provisioning => live.push(member),
                // Stopped (e.g. by a server shutdown) or failed: replace.
                _ => self.remove_member(&member).await?,
            }
        }
        let want = usize::try_from(pool.replicas).unwrap_or(0);
        while live.len() > want {
            let extra = live.pop().expect("len > want >= 0");
            self.remove_member(&extra).await?;
        }
        for _ in live.len()..want {
            self.create_member(&pool).await?;
        }
        Ok(())
    }

    async fn create_member(self: &Arc<Self>, pool: &PoolRow) -> Result<SandboxRow, ApiError> {
        let request = CreateSandboxRequest {
            template_name: Some(pool.template_name.clone()),
            wait_for_ready: Some(true),
            timeout: Some(WARM_BOOT_WAIT),
            idle_ttl_seconds: Some(0),
            delete_after_stop_seconds: Some(0),
            ..Default::default()
        };
        let mut spec = validate::create_spec(request, self.defaults())?;
        let suffix = generated_name();
        spec.name = Some(format!(
            "{}{}",
            warm_prefix(&pool.id),
            suffix.trim_start_matches("sandbox-")
        ));
        let owner = Caller {
            tenant_id: pool.tenant_id.clone(),
            is_admin: false,
            key_id: format!("pool:{}", pool.id),
        };
        self.create(&owner, spec).await
    }

    async fn remove_member(&self, member: &SandboxRow) -> Result<(), ApiError> {
        let guard = self.sandbox_lock(&member.id);
        let _held = guard.lock().await;
        match self.store.sandbox(&member.id).await? {
            // Still a member (not claimed meanwhile): remove it.
            Some(row) if row.name == member.name => {
                self.destroy(&row.id).await?;
                super::lock(&self.locks).remove(&row.id);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Delete a pool and its warm sandboxes.
    pub async fn delete_pool(&self, pool: &PoolRow) -> Result<(), ApiError> {
        let _serial = self.pool_lock.lock().await;
        self.store.delete_pool_row(&pool.id).await?;
        for member in self.store.pool_members(pool).await? {
            self.remove_member(&member).await?;
        }
        Ok(())
    }

    /// How many of a pool's members are ready now.
    pub async fn ready_members(&self, pool: &PoolRow) -> Result<i64, ApiError> {
        let members = self.store.pool_members(pool).await?;
        Ok(members
            .iter()
            .filter(|m| m.status == SandboxStatus::Ready.as_str())
            .count() as i64)
    }
}
