//! Bringing sandboxes up and down: spec building, runtime calls, the agent
//! readiness probe, exit watchers and start-up recovery.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sandpit_api::SandboxStatus;
use sandpit_runtime::{Limits, SandboxSpec, Started};

use super::live::Live;
use super::{ImageRootfs, Sandboxes};
use crate::error::ApiError;
use crate::gateway::relay;
use crate::store::SandboxRow;

/// How long a freshly started agent has to answer its first request.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(15);

const CRASHED: &str = "The sandbox's agent (PID 1) exited unexpectedly";
const LOST: &str = "The sandbox was not running when the server started";

impl Sandboxes {
    /// Boot a `provisioning` sandbox, holding its lock.
    pub(super) async fn boot_locked(self: Arc<Self>, id: &str) -> Result<(), String> {
        let guard = self.sandbox_lock(id);
        let _held = guard.lock().await;
        self.boot(id).await
    }

    async fn row(&self, id: &str) -> Result<SandboxRow, String> {
        self.store
            .sandbox(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("sandbox {id} was deleted"))
    }

    /// Start the runtime side of a sandbox whose row says `provisioning`,
    /// and mark it `ready`; on failure undo everything and mark it `failed`.
    pub(super) async fn boot(self: &Arc<Self>, id: &str) -> Result<(), String> {
        if let Some(owner) = self.remote_owner(id).await.map_err(|e| e.to_string())? {
            let op = crate::cluster::rpc::PeerOp::Boot {
                sandbox_id: id.to_owned(),
            };
            return self.call_owner(&owner, &op).await;
        }
        let row = self.row(id).await?;
        if row.status().map_err(|e| e.to_string())? != SandboxStatus::Provisioning {
            return Err(format!("sandbox {id} is {} and cannot boot", row.status));
        }
        let Some(slot) = self.live.allocate_slot() else {
            return self
                .fail_boot(id, None, "no free network slot for another sandbox".into())
                .await;
        };
        let image = match self.rootfs_of(&row).await {
            Ok(image) => image,
            Err(message) => return self.fail_boot(id, Some(slot), message).await,
        };
        if row.persistent == 0 {
            if let Err(message) = self.discard_writes(&row.id).await {
                return self.fail_boot(id, Some(slot), message).await;
            }
        }
        let mut spec = self.spec(&row, &image, slot);
        if let Err(message) = self.apply_template(&row, &mut spec).await {
            return self.fail_boot(id, Some(slot), message).await;
        }
        if let Err(message) = self.prepare_mounts(&row, &mut spec).await {
            return self.fail_boot(id, Some(slot), message).await;
        }
        let runtime = self.runtime.clone();
        let started = tokio::task::spawn_blocking(move || runtime.start(&spec))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let started = match started {
            Ok(started) => started,
            Err(message) => return self.fail_boot(id, Some(slot), message).await,
        };
        // An agent whose socket already listens is probed after the sandbox
        // is marked ready (`confirm_agent`): its first request waits in the
        // backlog meanwhile, so the caller's next step overlaps its start.
        if !started.agent_listening {
            if let Err(message) = self.wait_agent(id).await {
                return self.fail_boot(id, Some(slot), message).await;
            }
        }
        let recorded = self
            .store
            .mark_running(
                id,
                i64::from(slot),
                i64::from(started.pid),
                started.start_time as i64,
            )
            .await;
        if let Err(err) = recorded {
            return self.fail_boot(id, Some(slot), err.to_string()).await;
        }
        self.register(&row.tenant_id, id, slot, &started);
        if started.agent_listening {
            self.confirm_agent(id, started.pid);
        }
        Ok(())
    }

    /// Probe the agent of a sandbox already marked ready, in the background;
    /// if it never answers, stop the sandbox and mark it `failed`, as a
    /// failed probe during the boot would have. (An agent that exits is the
    /// exit watcher's: `on_init_exit`.)
    fn confirm_agent(self: &Arc<Self>, id: &str, pid: i32) {
        let this = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if this.wait_agent(&id).await.is_ok() {
                return;
            }
            // Under the lock nothing else holds it stopped or frozen (a
            // capture), so a second probe is the one that decides.
            let guard = this.sandbox_lock(&id);
            let _held = guard.lock().await;
            if !this.live.runs_unstopped(&id, pid) {
                return;
            }
            let Err(message) = this.wait_agent(&id).await else {
                return;
            };
            tracing::warn!(sandbox = %id, %message, "sandbox failed to boot");
            if let Err(err) = this.halt(&id, SandboxStatus::Failed, Some(&message)).await {
                tracing::error!(sandbox = %id, error = ?err, "cleaning up a failed boot failed");
            }
        });
    }

    /// `persistent: false`: every boot starts from the image alone, so what
    /// the sandbox wrote before its last stop (whichever stop: API, idle,
    /// shutdown, crash) is gone. Removes the writable layer the runtime
    /// recreates at start (`upper`/`work`, or the `disk.img` holding them);
    /// `remove_dir_all` never follows a link the sandbox made.
    async fn discard_writes(&self, id: &str) -> Result<(), String> {
        let dir = self.dirs.sandbox(id);
        let work = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for name in ["upper", "work"] {
                match std::fs::remove_dir_all(dir.join(name)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            match std::fs::remove_file(dir.join("disk.img")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        });
        match work.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!(
                "discarding the writes of a non-persistent sandbox failed: {err}"
            )),
            Err(join) => Err(join.to_string()),
        }
    }

    async fn wait_agent(&self, id: &str) -> Result<(), String> {
        // A pod's agent is reached over the network (`peer::PodRoute`).
        let _ = self.route_agent(id);
        let socket = self.dirs.agent_socket(id);
        match relay::probe(&socket, "/healthz", AGENT_READY_TIMEOUT).await {
            Ok(status) if status.is_success() => Ok(()),
            Ok(status) => Err(format!(
                "the sandbox agent answered its readiness probe with {status}"
            )),
            Err(err) => Err(format!("the sandbox agent did not become ready: {err}")),
        }
    }

    /// Undo a failed boot and record why.
    async fn fail_boot(&self, id: &str, slot: Option<u32>, message: String) -> Result<(), String> {
        tracing::warn!(sandbox = %id, %message, "sandbox failed to boot");
        let runtime = self.runtime.clone();
        let owned = id.to_owned();
        if let Ok(Err(err)) = tokio::task::spawn_blocking(move || runtime.stop(&owned)).await {
            tracing::error!(sandbox = %id, error = %err, "cleaning up a failed boot failed");
        }
        self.release_mounts(id).await;
        if let Some(slot) = slot {
            self.live.release_slot(slot);
        }
        let _ = self
            .store
            .mark_not_running(id, SandboxStatus::Failed, Some(&message), None)
            .await;
        Err(message)
    }

    fn spec(&self, row: &SandboxRow, image: &ImageRootfs, slot: u32) -> SandboxSpec {
        let run_config: sandpit_api::sandbox::RunConfig = row
            .run_config
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        let workdir = run_config
            .work_dir
            .clone()
            .unwrap_or_else(|| image.workdir.clone());
        let mut env = image.env.clone();
        env.push(("HOSTNAME".into(), row.name.clone()));
        let mut mounts = image.mounts.clone();
        if let Some(bundle) = &self.boot.ca_bundle {
            mounts.push(super::egress_env::trust_store_mount(bundle));
            for (k, v) in super::egress_env::variables() {
                env.retain(|(name, _)| name != k);
                env.push((k.to_owned(), v.to_owned()));
            }
        }
        let rule_vars = super::egress_env::rule_variables(row.proxy_config.as_deref());
        for (k, v) in rule_vars
            .into_iter()
            .chain(super::egress_env::delegation_variables(&row.extra))
            .chain(run_config.env_vars.unwrap_or_default())
        {
            env.retain(|(name, _)| *name != k);
            env.push((k, v));
        }
        SandboxSpec {
            id: row.id.clone(),
            state_dir: self.dirs.sandbox(&row.id),
            agent_log: self.boot.agent_log,
            layers: image.layers.clone(),
            mounts,
            agent_binary: self.boot.agent_binary.clone(),
            agent_args: agent_args(&workdir, run_config.user.as_ref().or(image.user.as_ref())),
            agent_socket: self.dirs.agent_socket(&row.id),
            env,
            workdir,
            // A warm pool member's name is internal (and not a valid host
            // name); it keeps this one when it is handed out.
            hostname: if crate::store::is_warm_name(&row.name) {
                format!("sandbox-{}", &row.id[..8.min(row.id.len())])
            } else {
                row.name.clone()
            },
            limits: Limits {
                cpu_millis: (row.vcpus.max(1) as u64) * 1000,
                memory_bytes: row.mem_bytes.max(0) as u64,
                pids: self.defaults.pids_limit,
            },
            fs_capacity_bytes: row.fs_capacity_bytes.max(0) as u64,
            net_slot: slot,
            // The serve command checked that every slot's range fits.
            userns_base: self
                .defaults
                .userns_base
                .and_then(|base| sandpit_runtime::idmap::slot_base(base, slot).ok()),
            isolation: isolation_of(row),
        }
    }

    /// Remember a running sandbox and watch its init.
    fn register(self: &Arc<Self>, tenant_id: &str, id: &str, slot: u32, started: &Started) {
        let live = Live::new(tenant_id, self.dirs.agent_socket(id), started.pid, slot);
        let stopping = live.stopping();
        self.live.insert(id, live);
        let this = self.clone();
        // A pod has no host pid: its runtime tells when it ends.
        let route = self.route_agent(id);
        let ended = self.runtime.exited(id);
        let id = id.to_owned();
        let pid = started.pid;
        tokio::spawn(async move {
            match ended {
                Some(ended) => ended.await,
                None => super::watch::exited(pid).await,
            }
            if let Some(route) = route {
                route.forget();
            }
            if !stopping.load(Ordering::SeqCst) {
                this.on_init_exit(&id, pid).await;
            }
        });
    }

    async fn on_init_exit(&self, id: &str, pid: i32) {
        let guard = self.sandbox_lock(id);
        let _held = guard.lock().await;
        if !self.live.runs_unstopped(id, pid) {
            return;
        }
        tracing::warn!(sandbox = %id, pid, "sandbox init exited unexpectedly");
        if let Err(err) = self.halt(id, SandboxStatus::Failed, Some(CRASHED)).await {
            tracing::error!(sandbox = %id, error = ?err, "cleaning up a crashed sandbox failed");
        }
    }

    /// Stop the runtime side (if any) and record `status`. Caller holds the
    /// sandbox's lock.
    pub(super) async fn halt(
        &self,
        id: &str,
        status: SandboxStatus,
        message: Option<&str>,
    ) -> Result<(), ApiError> {
        if let Some(owner) = self.remote_owner(id).await? {
            return self.halt_remote(id, &owner, status, message).await;
        }
        // Its open egress connections find it gone and end.
        let live = self.live.take(id);
        let runtime = self.runtime.clone();
        let owned = id.to_owned();
        let stopped = tokio::task::spawn_blocking(move || runtime.stop(&owned))
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        self.release_mounts(id).await;
        if let Some(live) = live {
            self.live.release_slot(live.net_slot);
        }
        if let Err(err) = stopped {
            let message = format!("Stopping the sandbox failed: {err}");
            self.store
                .mark_not_running(id, SandboxStatus::Failed, Some(&message), None)
                .await?;
            return Err(ApiError::Internal(
                anyhow::Error::new(err).context("runtime stop"),
            ));
        }
        let stopped_at = (status == SandboxStatus::Stopped).then(crate::store::now);
        self.store
            .mark_not_running(id, status, message, stopped_at.as_deref())
            .await?;
        Ok(())
    }

    /// Reconcile the runtime with the database after a (re)start: adopt
    /// sandboxes that are still running, fail the ones that died, finish
    /// interrupted deletions, and sweep whatever else the runtime holds.
    pub async fn recover(self: &Arc<Self>) -> anyhow::Result<()> {
        let runtime = self.runtime.clone();
        let running: HashMap<String, Started> =
            tokio::task::spawn_blocking(move || runtime.running())
                .await??
                .into_iter()
                .map(|r| (r.id, r.started))
                .collect();
        let rows = self
            .store
            .sandboxes_with_status(&[
                SandboxStatus::Provisioning,
                SandboxStatus::Ready,
                SandboxStatus::Deleting,
            ])
            .await?;
        // With replicas, only this node's sandboxes run here.
        let nodes = match self.cluster() {
            Some(_) => self.store.sandbox_nodes().await?,
            None => HashMap::new(),
        };
        let mut keep = Vec::new();
        for row in rows.into_iter().filter(|r| self.is_mine(&nodes, &r.id)) {
            let guard = self.sandbox_lock(&row.id);
            let _held = guard.lock().await;
            if row.status()? == SandboxStatus::Deleting {
                self.destroy(&row.id)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                continue;
            }
            match running.get(&row.id) {
                Some(started) if self.adopt(&row, started).await => keep.push(row.id.clone()),
                _ => {
                    let _ = self.halt(&row.id, SandboxStatus::Failed, Some(LOST)).await;
                }
            }
        }
        let adopted = keep.len();
        let runtime = self.runtime.clone();
        let swept = tokio::task::spawn_blocking(move || runtime.cleanup(&keep)).await??;
        tracing::info!(adopted, swept = swept.len(), "recovered sandboxes");
        if self.cluster().is_some() {
            self.sweep_orphan_files().await?;
        }
        Ok(())
    }

    /// Take over a sandbox found running. False if it is not usable.
    async fn adopt(self: &Arc<Self>, row: &SandboxRow, started: &Started) -> bool {
        let same_process = row.pid == Some(i64::from(started.pid))
            && row.pid_start_time == Some(started.start_time as i64);
        let Some(slot) = row.net_slot.and_then(|s| u32::try_from(s).ok()) else {
            return false;
        };
        if !same_process {
            return false;
        }
        // A crash during a capture leaves the sandbox frozen: thaw it (a
        // cgroup file write) before probing its agent.
        let _ = self.runtime.set_frozen(&row.id, false);
        if self.wait_agent(&row.id).await.is_err() {
            return false;
        }
        self.live.reserve_slot(slot);
        self.adopt_mounts(row).await;
        self.register(&row.tenant_id, &row.id, slot, started);
        let _ = self
            .store
            .set_status(&row.id, SandboxStatus::Ready, None)
            .await;
        tracing::info!(sandbox = %row.id, pid = started.pid, "adopted running sandbox");
        true
    }
}

/// The agent's command line: its working directory and the default user of
/// commands (the sandbox's `run_config.user`, else the image's `User`).
/// The isolation a sandbox was created with (stored in `extra`; rows from
/// before it existed are `namespaces`).
fn isolation_of(row: &SandboxRow) -> sandpit_runtime::Isolation {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&row.extra)
        .ok()
        .and_then(|extra| extra.get("isolation")?.as_str()?.parse().ok())
        .unwrap_or_default()
}

fn agent_args(workdir: &str, user: Option<&String>) -> Vec<String> {
    let mut args: Vec<String> = ["agent", "--listen-fd", "3", "--workdir", workdir]
        .map(String::from)
        .to_vec();
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        args.extend(["--user".to_owned(), user.clone()]);
    }
    args
}
