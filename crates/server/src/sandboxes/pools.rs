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
//!
//! The `/pools` handlers only parse and shape: creating, renaming,
//! resizing and deleting a pool (with its checks) happen here.

use std::sync::Arc;
use std::time::Duration;

use sandpit_api::pools::{CreatePoolRequest, PoolResponse, UpdatePoolRequest};
use sandpit_api::{CreateSandboxRequest, SandboxStatus};

use super::{generated_name, validate, Sandboxes};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::{warm_prefix, PoolRow, SandboxRow, StoreError};

/// The refill task's pacing.
#[derive(Default)]
pub(super) struct Refill {
    /// Serialises refills (two passes never overshoot).
    serial: tokio::sync::Mutex<()>,
    /// Claims and pool changes wake the task.
    wake: tokio::sync::Notify,
}

/// How long one warm member may take to boot.
const WARM_BOOT_WAIT: i64 = 300;

/// Most warm sandboxes one pool may ask for.
const MAX_REPLICAS: i64 = 100;

/// Default and bounds of a create's `timeout` (seconds).
const DEFAULT_FILL_WAIT: i64 = 30;
const FILL_WAIT_RANGE: std::ops::RangeInclusive<i64> = 10..=600;

fn pool_not_found(name: &str) -> ApiError {
    ApiError::NotFound {
        kind: "Pool",
        name: name.to_owned(),
    }
}

fn pool_exists(name: &str) -> ApiError {
    ApiError::Conflict(format!("Pool '{name}' already exists"))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    validate::validate_name(name).map_err(|_| {
        ApiError::Validation(format!(
            "Invalid pool name '{name}': use lowercase letters, digits and hyphens (max 63)"
        ))
    })
}

fn check_replicas(replicas: i64, min: i64) -> Result<(), ApiError> {
    if (min..=MAX_REPLICAS).contains(&replicas) {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "replicas must be between {min} and {MAX_REPLICAS}, got {replicas}"
        )))
    }
}

/// A create's `timeout`, checked.
fn fill_wait(timeout: Option<i64>) -> Result<Duration, ApiError> {
    let wait = timeout.unwrap_or(DEFAULT_FILL_WAIT);
    if !FILL_WAIT_RANGE.contains(&wait) {
        return Err(ApiError::Validation(format!(
            "timeout must be between {} and {} seconds, got {wait}",
            FILL_WAIT_RANGE.start(),
            FILL_WAIT_RANGE.end()
        )));
    }
    Ok(Duration::from_secs(wait.unsigned_abs()))
}

/// The pools a caller manages (`/pools`).
impl Sandboxes {
    /// Create a pool; with `wait_for_ready`, fill it first (a pool whose
    /// fill fails is not created).
    pub async fn create_pool(
        self: &Arc<Self>,
        caller: &Caller,
        req: CreatePoolRequest,
    ) -> Result<PoolRow, ApiError> {
        check_name(&req.name)?;
        check_replicas(req.replicas, 1)?;
        let wait = fill_wait(req.timeout)?;
        self.check_pool_template(caller, &req.template_name).await?;
        let now = crate::store::now();
        let row = PoolRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: caller.tenant_id.clone(),
            name: req.name,
            template_name: req.template_name,
            replicas: req.replicas,
            created_at: now.clone(),
            updated_at: now,
        };
        match self.store.insert_pool(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(pool_exists(&row.name)),
            Err(e) => return Err(e.into()),
        }
        if !req.wait_for_ready {
            self.wake_pools();
            return Ok(row);
        }
        let this = self.clone();
        let fill = row.clone();
        let filled =
            tokio::time::timeout(wait, async move { this.reconcile_pool(&fill).await }).await;
        match filled {
            Ok(Ok(())) => Ok(row),
            // A quota or a boot failure: the pool is not created.
            Ok(Err(err)) => {
                self.delete_pool(&row).await?;
                Err(err)
            }
            Err(_) => {
                self.wake_pools();
                Err(ApiError::PoolTimeout(format!(
                    "Pool '{}' did not reach {} ready replicas within {}s",
                    row.name,
                    row.replicas,
                    wait.as_secs()
                )))
            }
        }
    }

    /// The caller's pools.
    pub async fn pools(&self, caller: &Caller) -> Result<Vec<PoolRow>, ApiError> {
        Ok(self.store.pools(Some(&caller.tenant_id)).await?)
    }

    /// A caller's pool by name.
    pub async fn find_pool(&self, caller: &Caller, name: &str) -> Result<PoolRow, ApiError> {
        self.store
            .pool(&caller.tenant_id, name)
            .await?
            .ok_or_else(|| pool_not_found(name))
    }

    /// Rename or resize a caller's pool; the refill task does the rest.
    pub async fn update_pool(
        &self,
        caller: &Caller,
        name: &str,
        req: UpdatePoolRequest,
    ) -> Result<PoolRow, ApiError> {
        let mut row = self.find_pool(caller, name).await?;
        if let Some(new_name) = req.name {
            check_name(&new_name)?;
            row.name = new_name;
        }
        if let Some(replicas) = req.replicas {
            check_replicas(replicas, 0)?;
            if replicas > row.replicas {
                // Scaling up needs the template to still be usable.
                self.check_pool_template(caller, &row.template_name).await?;
            }
            row.replicas = replicas;
        }
        match self.store.update_pool(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(pool_exists(&row.name)),
            Err(e) => return Err(e.into()),
        }
        self.wake_pools();
        self.find_pool(caller, &row.name).await
    }

    /// Delete a caller's pool and its warm sandboxes.
    pub async fn delete_pool_named(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        let row = self.find_pool(caller, name).await?;
        self.delete_pool(&row).await
    }

    /// A pool as the API shows it (with its ready count now).
    pub async fn pool_response(&self, row: PoolRow) -> Result<PoolResponse, ApiError> {
        let ready_replicas = self.ready_members(&row).await?;
        Ok(PoolResponse {
            id: row.id,
            name: row.name,
            template_name: row.template_name,
            replicas: row.replicas,
            ready_replicas,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// The template a pool may use: it exists and mounts no volumes.
    async fn check_pool_template(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        let template = match crate::templates::get_template(&self.store, caller, name).await {
            Ok(t) => t,
            Err(ApiError::NotFound { .. }) => {
                return Err(ApiError::TemplateNotFound(format!(
                    "Template '{name}' not found"
                )))
            }
            Err(e) => return Err(e),
        };
        if !crate::templates::volume_mounts(&template)?.is_empty() {
            return Err(ApiError::InvalidTemplate(format!(
                "Template '{name}' has volume mounts; templates with volumes cannot be used in pools"
            )));
        }
        Ok(())
    }
}

/// How long a woken refill waits before it boots anything.
const REFILL_SETTLE: Duration = Duration::from_millis(25);

/// The refill and the claims.
impl Sandboxes {
    /// Ask the refill task to run now.
    pub fn wake_pools(&self) {
        self.pools.wake.notify_one();
    }

    /// Wait until woken or `interval` passes (the refill task's pacing).
    /// A wake-up waits [`REFILL_SETTLE`] more: a claim's refill boots a
    /// sandbox, which on a small host takes the CPU the claimer's first
    /// command needs right then, and claims in a burst are refilled together.
    pub async fn pools_idle(&self, interval: Duration) {
        if tokio::time::timeout(interval, self.pools.wake.notified())
            .await
            .is_ok()
        {
            tokio::time::sleep(REFILL_SETTLE).await;
        }
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
        let _serial = self.pools.serial.lock().await;
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
                self.locks.forget_sandbox(&row.id);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Delete a pool and its warm sandboxes.
    async fn delete_pool(&self, pool: &PoolRow) -> Result<(), ApiError> {
        let _serial = self.pools.serial.lock().await;
        self.store.delete_pool_row(&pool.id).await?;
        for member in self.store.pool_members(pool).await? {
            self.remove_member(&member).await?;
        }
        Ok(())
    }

    /// How many of a pool's members are ready now.
    async fn ready_members(&self, pool: &PoolRow) -> Result<i64, ApiError> {
        let members = self.store.pool_members(pool).await?;
        Ok(members
            .iter()
            .filter(|m| m.status == SandboxStatus::Ready.as_str())
            .count() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_wait_defaults_and_bounds() {
        assert_eq!(fill_wait(None).unwrap(), Duration::from_secs(30));
        assert_eq!(fill_wait(Some(600)).unwrap(), Duration::from_secs(600));
        assert!(fill_wait(Some(9)).is_err());
        assert!(fill_wait(Some(601)).is_err());
    }

    #[test]
    fn replicas_within_bounds() {
        assert!(check_replicas(0, 1).is_err());
        assert!(check_replicas(0, 0).is_ok());
        assert!(check_replicas(100, 1).is_ok());
        assert!(check_replicas(101, 0).is_err());
    }
}
