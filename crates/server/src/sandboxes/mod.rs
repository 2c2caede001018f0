//! The sandbox controller: every lifecycle operation goes through here.
//!
//! The database is the source of truth. Each operation takes the sandbox's
//! lock, re-reads its row, asks [`action::decide`] whether the status allows
//! it, then drives the runtime and records the outcome. Runtime calls are
//! synchronous and run on the blocking pool.

mod action;
mod activity;
mod boot;
mod disk_space;
mod egress_env;
mod images;
mod live;
mod live_config;
mod locks;
mod mounting;
mod peer;
mod pools;
mod quota;
mod response;
mod retention;
mod slots;
pub mod validate;
mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sandpit_api::{SandboxResponse, SandboxStatus};
use sandpit_runtime::{MountSpec, Runtime};

pub use action::{decide, Decision, SandboxAction};
use activity::Activity;
pub use activity::ActivityGuard;
use live::LiveSandboxes;
use locks::Locks;
use quota::Demand;
pub use response::{dataplane_url, sandbox_response};
use validate::{CreateSpec, UpdateSpec};

use crate::auth::Caller;
use crate::config::Defaults;
use crate::error::ApiError;
use crate::paths::DataDirs;
use crate::store::{ListFilter, SandboxRow, Store, StoreError};

/// How long a data-plane request waits for a stopped sandbox to start.
const AUTO_START_WAIT: Duration = Duration::from_secs(60);

/// Root filesystem of an image, as the runtime consumes it.
#[derive(Debug, Clone)]
pub struct ImageRootfs {
    pub name: String,
    pub layers: Vec<PathBuf>,
    pub mounts: Vec<MountSpec>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    /// The image's `User` (commands run as root when `None`).
    pub user: Option<String>,
}

/// What the controller needs besides the store and the runtime.
pub struct SandboxesConfig {
    pub dirs: DataDirs,
    pub host_image: ImageRootfs,
    pub agent_binary: PathBuf,
    pub defaults: Defaults,
    /// Keep each agent's stdout/stderr in its state dir (debugging only).
    pub agent_log: bool,
    /// The trust bundle with Sandpit's egress CA, mounted into every
    /// sandbox (`None` without egress).
    pub ca_bundle: Option<PathBuf>,
}

/// What every boot puts into a sandbox besides its image's layers.
struct BootFiles {
    host_image: ImageRootfs,
    agent_binary: PathBuf,
    agent_log: bool,
    ca_bundle: Option<PathBuf>,
}

/// The lifecycle controller. What runs now is [`live::LiveSandboxes`]; the
/// services it uses (snapshots, mounts, the cluster) are built before it
/// and handed over at construction (`with_*`), none of them knows it.
pub struct Sandboxes {
    store: Store,
    runtime: Arc<dyn Runtime>,
    dirs: DataDirs,
    defaults: Defaults,
    boot: BootFiles,
    live: LiveSandboxes,
    locks: Locks,
    activity: Activity,
    /// Snapshots and OCI images (`images`); `None`: not enabled.
    snapshots: Option<Arc<crate::snapshots::Snapshots>>,
    /// Git and bucket mounts (`mounting`); `None`: not supported.
    mounts: Option<Arc<crate::mounts::Mounts>>,
    /// The other replicas, when there are (`peer`).
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The pool refill task's pacing (`pools`).
    pools: pools::Refill,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn generated_name() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("sandbox-{suffix}")
}

fn to_json(value: &impl serde::Serialize) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(e.into()))
}

impl Sandboxes {
    pub fn new(store: Store, runtime: Arc<dyn Runtime>, config: SandboxesConfig) -> Self {
        Self {
            activity: Activity::new(store.clone()),
            store,
            runtime,
            dirs: config.dirs,
            defaults: config.defaults,
            boot: BootFiles {
                host_image: config.host_image,
                agent_binary: config.agent_binary,
                agent_log: config.agent_log,
                ca_bundle: config.ca_bundle,
            },
            live: LiveSandboxes::new(),
            locks: Locks::default(),
            snapshots: None,
            mounts: None,
            cluster: None,
            pools: pools::Refill::default(),
        }
    }

    /// Moves at every policy change (a `proxy_config` update, a sandbox
    /// leaving its network slot): the egress proxy's open connections
    /// re-read their policy then.
    pub fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.live.policy_changes()
    }

    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// The runtime backend (for probes and usage).
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    fn sandbox_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.sandbox(id)
    }

    /// A caller's sandbox by name (or by id, which never changes).
    pub async fn find(&self, caller: &Caller, name: &str) -> Result<SandboxRow, ApiError> {
        if crate::store::is_warm_name(name) {
            return Err(ApiError::sandbox_not_found(name));
        }
        if let Some(row) = self.store.sandbox_by_name(&caller.tenant_id, name).await? {
            return Ok(row);
        }
        if uuid::Uuid::parse_str(name).is_ok() {
            if let Some(row) = self.store.sandbox(name).await? {
                if row.tenant_id == caller.tenant_id {
                    return Ok(row);
                }
            }
        }
        Err(ApiError::sandbox_not_found(name))
    }

    /// The tenant and stored `proxy_config` of the running sandbox on
    /// network `slot` (`(tenant, None)`: it has none). `None` if no sandbox
    /// runs there.
    pub async fn proxy_config_on_slot(
        &self,
        slot: u32,
    ) -> Option<(String, String, Option<serde_json::Value>)> {
        let id = self.live.on_slot(slot)?;
        self.proxy_config_of(&id).await
    }

    /// [`Self::proxy_config_on_slot`] of sandbox `id`, which the backend
    /// names as running (a pod, maybe another replica's).
    pub async fn proxy_config_of(
        &self,
        id: &str,
    ) -> Option<(String, String, Option<serde_json::Value>)> {
        let id = id.to_owned();
        let row = self.store.sandbox(&id).await.ok()??;
        match row.proxy_config {
            None => Some((id, row.tenant_id, None)),
            Some(text) => serde_json::from_str(&text)
                .ok()
                .map(|v| (id, row.tenant_id, Some(v))),
        }
    }

    /// A caller's sandbox by id.
    pub async fn find_by_id(&self, caller: &Caller, id: &str) -> Result<SandboxRow, ApiError> {
        match self.store.sandbox(id).await? {
            Some(row) if row.tenant_id == caller.tenant_id => Ok(row),
            _ => Err(ApiError::sandbox_not_found(id)),
        }
    }

    pub async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        mut spec: CreateSpec,
    ) -> Result<SandboxRow, ApiError> {
        let choice = self.image_of(caller, &mut spec).await?;
        validate::within_maxima(&spec, &self.defaults)?;
        let name = spec.name.clone().unwrap_or_else(generated_name);
        let now = crate::store::now();
        let row = SandboxRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: caller.tenant_id.clone(),
            name: name.clone(),
            status: SandboxStatus::Provisioning.as_str().to_owned(),
            status_message: None,
            image: choice.image,
            snapshot_id: choice.snapshot_id,
            template_name: choice.template_name,
            vcpus: spec.vcpus,
            mem_bytes: spec.mem_bytes,
            fs_capacity_bytes: spec.fs_capacity_bytes,
            idle_ttl_seconds: spec.idle_ttl_seconds,
            delete_after_stop_seconds: spec.delete_after_stop_seconds,
            ttl_seconds: spec.ttl_seconds,
            persistent: i64::from(spec.persistent),
            proxy_config: spec.proxy_config.as_ref().map(to_json).transpose()?,
            run_config: spec.run_config.as_ref().map(to_json).transpose()?,
            labels: to_json(&spec.labels)?,
            extra: to_json(&spec.extra)?,
            net_slot: None,
            pid: None,
            pid_start_time: None,
            created_by: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            stopped_at: None,
            last_activity_at: now,
        };
        if let Some(template) = row.template_name.as_deref() {
            // A warm member booted without the request's mounts.
            // Nor with an access_delegation grant (its environment is set at boot).
            if !crate::store::is_warm_name(&row.name)
                && !crate::mounts::has_mounts(&spec.extra)
                && !spec.extra.contains_key(crate::delegation::FIELD)
            {
                if let Some(claimed) = self.claim_warm(template, &row).await? {
                    return Ok(claimed);
                }
            }
        }
        let demand = Demand {
            sandboxes: 1,
            vcpus: row.vcpus,
            mem_bytes: row.mem_bytes,
        };
        let owner = self.place().await?;
        let tenant = self.tenant_lock(&row.tenant_id);
        let admitting = tenant.lock().await;
        // Other replicas admit for the same tenant under the database lock.
        let shared = self.store.lock_tenant(&row.tenant_id).await?;
        let admitted = self.admit(&row, &demand, &owner).await;
        shared.release().await?;
        drop(admitting);
        admitted?;
        let this = self.clone();
        let id = row.id.clone();
        let boot = tokio::spawn(async move { this.boot_locked(&id).await });
        if !spec.wait_for_ready {
            return Ok(row);
        }
        self.await_boot(boot, &row, Duration::from_secs(spec.wait_seconds as u64))
            .await
    }

    /// Check the quota and insert the row of a new sandbox that is to run
    /// on `owner`. Caller holds the tenant's locks.
    async fn admit(
        &self,
        row: &SandboxRow,
        demand: &Demand,
        owner: &crate::cluster::Owner,
    ) -> Result<(), ApiError> {
        self.check_quota(&row.tenant_id, demand).await?;
        match self.store.insert_sandbox(row).await {
            Ok(()) => self.record_owner(&row.id, owner).await,
            Err(StoreError::Conflict) => Err(ApiError::Conflict(format!(
                "Sandbox name '{}' already in use",
                row.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Wait for a spawned boot; map its outcome to the create response.
    async fn await_boot(
        &self,
        boot: tokio::task::JoinHandle<Result<(), String>>,
        row: &SandboxRow,
        wait: Duration,
    ) -> Result<SandboxRow, ApiError> {
        match tokio::time::timeout(wait, boot).await {
            Err(_) => Err(ApiError::Timeout(format!(
                "Sandbox '{}' not ready after {}s (status: provisioning)",
                row.name,
                wait.as_secs()
            ))),
            Ok(Err(join)) => Err(ApiError::Internal(join.into())),
            Ok(Ok(Err(message))) => Err(ApiError::CreationFailed(message)),
            Ok(Ok(Ok(()))) => self
                .store
                .sandbox(&row.id)
                .await?
                .ok_or_else(|| ApiError::sandbox_not_found(&row.name)),
        }
    }

    pub async fn list(
        &self,
        caller: &Caller,
        filter: &ListFilter,
    ) -> Result<Vec<SandboxRow>, ApiError> {
        Ok(self.store.list_sandboxes(&caller.tenant_id, filter).await?)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        name: &str,
        spec: UpdateSpec,
    ) -> Result<SandboxRow, ApiError> {
        let found = self.find(caller, name).await?;
        let guard = self.sandbox_lock(&found.id);
        let _held = guard.lock().await;
        let mut row = self.find_by_id(caller, &found.id).await?;
        let status = row.status()?;
        let actions = [
            Some(SandboxAction::Update),
            spec.proxy_config
                .as_ref()
                .map(|_| SandboxAction::UpdateProxy),
        ];
        for action in actions.into_iter().flatten() {
            if let Decision::Reject(err) = decide(action, status, &row.name) {
                return Err(err);
            }
        }
        let mut spec = spec;
        if let Some(new) = spec.proxy_config.as_mut().filter(|v| !v.is_null()) {
            let old = row
                .proxy_config
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok());
            crate::proxy_config::carry_over(new, old.as_ref());
            crate::proxy_config::validate(Some(new.clone()))?;
        }
        let proxy_changes = spec.proxy_config.is_some();
        apply_update(&mut row, spec)?;
        match self.store.update_sandbox_settings(&row).await {
            Ok(()) if proxy_changes => self.live.policy_changed(),
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(ApiError::Conflict(format!(
                    "Sandbox name '{}' already in use",
                    row.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.find_by_id(caller, &row.id).await
    }

    pub async fn stop(&self, caller: &Caller, name: &str) -> Result<SandboxRow, ApiError> {
        let found = self.find(caller, name).await?;
        let guard = self.sandbox_lock(&found.id);
        let _held = guard.lock().await;
        let row = self.find_by_id(caller, &found.id).await?;
        match decide(SandboxAction::Stop, row.status()?, &row.name) {
            Decision::Reject(err) => return Err(err),
            Decision::AlreadyDone | Decision::StartFirst => {}
            Decision::Proceed => {
                self.halt(&row.id, SandboxStatus::Stopped, None).await?;
            }
        }
        self.find_by_id(caller, &row.id).await
    }

    /// Start a stopped (or failed) sandbox and wait until it is ready.
    pub async fn start(
        self: &Arc<Self>,
        caller: &Caller,
        name: &str,
        wait: Duration,
    ) -> Result<SandboxRow, ApiError> {
        let found = self.find(caller, name).await?;
        let held = self.sandbox_lock(&found.id).lock_owned().await;
        let row = self.find_by_id(caller, &found.id).await?;
        match decide(SandboxAction::Start, row.status()?, &row.name) {
            Decision::Reject(err) => return Err(err),
            Decision::AlreadyDone => return Ok(row),
            Decision::Proceed | Decision::StartFirst => {}
        }
        let demand = Demand {
            sandboxes: 0,
            vcpus: row.vcpus,
            mem_bytes: row.mem_bytes,
        };
        {
            let tenant = self.tenant_lock(&row.tenant_id);
            let _admitting = tenant.lock().await;
            let shared = self.store.lock_tenant(&row.tenant_id).await?;
            let admitted = match self.check_quota(&row.tenant_id, &demand).await {
                Ok(()) => self
                    .store
                    .set_status(&row.id, SandboxStatus::Provisioning, None)
                    .await
                    .map_err(ApiError::from),
                Err(err) => Err(err),
            };
            shared.release().await?;
            admitted?;
        }
        let this = self.clone();
        let id = row.id.clone();
        let boot = tokio::spawn(async move {
            let _held = held;
            this.boot(&id).await
        });
        // A failed or slow boot is visible in the row's status.
        if let Ok(Err(join)) = tokio::time::timeout(wait, boot).await {
            return Err(ApiError::Internal(join.into()));
        }
        self.find_by_id(caller, &row.id).await
    }

    /// Refuse `demand` if it would take the tenant past a quota, or if the
    /// host disk is too full (`disk_space`). Callers
    /// hold the tenant's lock until the usage it admits is recorded.
    async fn check_quota(&self, tenant_id: &str, demand: &Demand) -> Result<(), ApiError> {
        let tenant = self
            .store
            .tenant(tenant_id)
            .await?
            .ok_or_else(|| ApiError::Forbidden("Unknown tenant".into()))?;
        let usage = self.store.usage(tenant_id).await?;
        quota::check(&tenant, &usage, demand)?;
        disk_space::check(self.dirs.root(), self.defaults.min_free_disk_bytes)
    }

    fn tenant_lock(&self, tenant_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.tenant(tenant_id)
    }

    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        let found = self.find(caller, name).await?;
        let guard = self.sandbox_lock(&found.id);
        let _held = guard.lock().await;
        let row = self.find_by_id(caller, &found.id).await?;
        if let Decision::Reject(err) = decide(SandboxAction::Delete, row.status()?, &row.name) {
            return Err(err);
        }
        self.destroy(&row.id).await
    }

    /// Stop the sandbox, remove its files and its row. Caller holds the lock.
    async fn destroy(&self, id: &str) -> Result<(), ApiError> {
        if let Some(owner) = self.remote_owner(id).await? {
            self.destroy_remote(id, &owner).await?;
            self.locks.forget_sandbox(id);
            self.activity.forget(id);
            return Ok(());
        }
        self.store
            .set_status(id, SandboxStatus::Deleting, None)
            .await?;
        self.halt(id, SandboxStatus::Deleting, None).await?;
        let dir = self.dirs.sandbox(id);
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("removing sandbox files")))?;
        self.store.delete_sandbox_row(id).await?;
        self.locks.forget_sandbox(id);
        self.activity.forget(id);
        Ok(())
    }

    /// The agent socket of a caller's sandbox for a data-plane request,
    /// starting a stopped sandbox first. Counts as activity.
    pub async fn dataplane_socket(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
    ) -> Result<PathBuf, ApiError> {
        // Hot path: a running sandbox is answered from memory.
        if let Some(socket) = self.live_socket(caller, id) {
            self.touch(id);
            return Ok(socket);
        }
        let row = self.find_by_id(caller, id).await?;
        match decide(SandboxAction::Dataplane, row.status()?, &row.name) {
            Decision::Reject(err) => return Err(err),
            Decision::StartFirst => {
                let row = self.start(caller, id, AUTO_START_WAIT).await?;
                if row.status()? != SandboxStatus::Ready {
                    return Err(ApiError::NotReady(format!(
                        "Sandbox '{}' could not be started",
                        row.name
                    )));
                }
            }
            Decision::Proceed | Decision::AlreadyDone => {}
        }
        self.touch(id);
        self.live_socket(caller, id)
            .ok_or_else(|| ApiError::NotReady(format!("Sandbox '{}' is not running", row.name)))
    }

    fn live_socket(&self, caller: &Caller, id: &str) -> Option<PathBuf> {
        self.live
            .of_tenant(&caller.tenant_id, id)
            .map(|live| live.socket)
    }

    /// The init pid of tenant `tenant_id`'s running sandbox `id`, whose
    /// network namespace service and tunnel connections are opened in.
    /// `None` for a pod too (no host pid: see [`Sandboxes::live_net`]).
    pub fn live_pid(&self, tenant_id: &str, id: &str) -> Option<i32> {
        self.live
            .of_tenant(tenant_id, id)
            .map(|live| live.pid)
            .filter(|pid| *pid > 0)
    }

    /// Record activity now; flushed to the database at most once a second.
    pub fn touch(&self, id: &str) {
        self.activity.touch(id);
    }

    /// Mark a connection to `id` open until the guard drops (data-plane
    /// streams, service and tunnel connections).
    pub fn connection(&self, id: &str) -> ActivityGuard {
        self.activity.open(id)
    }

    pub fn response(&self, row: &SandboxRow, base_url: &str) -> Result<SandboxResponse, ApiError> {
        Ok(sandbox_response(row, base_url)?)
    }

    /// Stop every running sandbox (server shutdown). Files are kept.
    pub async fn shutdown(&self) {
        for id in self.live.ids() {
            let guard = self.sandbox_lock(&id);
            let _held = guard.lock().await;
            let message = Some("Stopped because the server shut down");
            if let Err(err) = self.halt(&id, SandboxStatus::Stopped, message).await {
                tracing::error!(sandbox = %id, error = ?err, "stopping sandbox at shutdown failed");
            }
        }
        let runtime = self.runtime.clone();
        if let Err(err) = tokio::task::spawn_blocking(move || runtime.shutdown()).await {
            tracing::error!(error = %err, "shutting the runtime down failed");
        }
    }
}

/// Apply a validated PATCH to a row.
fn apply_update(row: &mut SandboxRow, spec: UpdateSpec) -> Result<(), ApiError> {
    if let Some(name) = spec.name {
        row.name = name;
    }
    if let Some(v) = spec.idle_ttl_seconds {
        row.idle_ttl_seconds = v;
    }
    if let Some(v) = spec.delete_after_stop_seconds {
        row.delete_after_stop_seconds = v;
    }
    if let Some(v) = spec.ttl_seconds {
        row.ttl_seconds = Some(v).filter(|t| *t > 0);
    }
    if let Some(v) = spec.proxy_config {
        row.proxy_config = if v.is_null() {
            None
        } else {
            Some(to_json(&v)?)
        };
    }
    if let Some(rc) = spec.run_config {
        let mut merged: sandpit_api::sandbox::RunConfig = match &row.run_config {
            Some(text) => serde_json::from_str(text).map_err(|e| ApiError::Internal(e.into()))?,
            None => Default::default(),
        };
        merged.user = rc.user.or(merged.user);
        merged.work_dir = rc.work_dir.or(merged.work_dir);
        if let Some(env) = rc.env_vars {
            merged
                .env_vars
                .get_or_insert_with(Default::default)
                .extend(env);
        }
        row.run_config = Some(to_json(&merged)?);
    }
    if let Some(labels) = spec.labels {
        row.labels = to_json(&labels)?;
    }
    Ok(())
}
