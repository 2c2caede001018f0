//! Sandboxes another replica runs (see `crate::cluster`): the operations
//! that need a sandbox's runtime or files are sent to its owner, and the
//! owner runs the ones its peers send. And sandboxes on another machine of
//! this replica's own runtime (Kubernetes pods): how the server reaches
//! their agent and ports over the network.

use std::net::SocketAddr;
use std::sync::Arc;

use sandpit_api::SandboxStatus;
use sandpit_runtime::NetworkEndpoint;

use super::retention::Due;
use super::Sandboxes;
use crate::cluster::rpc::{self, PeerOp};
use crate::cluster::{Cluster, Owner};
use crate::error::ApiError;
use crate::gateway::upstream_pod::{self, SandboxNet};

/// A pod agent registered under a sandbox's agent socket path.
pub(super) struct PodRoute {
    socket: std::path::PathBuf,
    endpoint: NetworkEndpoint,
}

impl PodRoute {
    /// The pod ended: its socket path names nothing any more.
    pub(super) fn forget(&self) {
        let addr = SocketAddr::new(self.endpoint.ip, self.endpoint.agent_port);
        upstream_pod::forget_agent(&self.socket, addr, &self.endpoint.token);
    }
}

impl Sandboxes {
    /// For a sandbox of a remote runtime (a pod), makes its agent socket
    /// path name the pod's agent (every relay to the agent then goes
    /// there, with its credential). `None` for local sandboxes.
    pub(super) fn route_agent(&self, id: &str) -> Option<PodRoute> {
        let endpoint = self.runtime.network_endpoint(id)?;
        let socket = self.dirs.agent_socket(id);
        if !upstream_pod::register_agent(socket.clone(), &endpoint) {
            tracing::error!(sandbox = %id, "the pod agent's credential is not a header value");
            return None;
        }
        Some(PodRoute { socket, endpoint })
    }

    /// Where tenant `tenant_id`'s running sandbox `id` serves its own
    /// ports (service URLs, tunnels): its init's network namespace, or its
    /// pod IP.
    pub fn live_net(&self, tenant_id: &str, id: &str) -> Option<SandboxNet> {
        let pid = self.live.of_tenant(tenant_id, id)?.pid;
        if pid > 0 {
            return Some(SandboxNet::Netns(pid));
        }
        let endpoint = self.runtime.network_endpoint(id)?;
        Some(SandboxNet::Pod {
            ip: endpoint.ip,
            agent_port: endpoint.agent_port,
        })
    }
}

impl Sandboxes {
    /// Take part in a cluster (several replicas behind one database).
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Whether sandbox `id` runs on this node now (no database look-up).
    pub fn runs_here(&self, id: &str) -> bool {
        self.live.contains(id)
    }

    /// The owner of `id` when it is another node; `None`: this node
    /// handles it.
    pub(super) async fn remote_owner(&self, id: &str) -> Result<Option<Owner>, ApiError> {
        let Some(cluster) = self.cluster.as_ref() else {
            return Ok(None);
        };
        if self.runs_here(id) {
            return Ok(None);
        }
        match cluster.owner(id).await? {
            Owner::Local => Ok(None),
            other => Ok(Some(other)),
        }
    }

    /// Where a new sandbox is to run (this node without a cluster).
    pub(super) async fn place(&self) -> Result<Owner, ApiError> {
        match self.cluster.as_ref() {
            Some(cluster) => cluster.place().await,
            None => Ok(Owner::Local),
        }
    }

    /// Record a new sandbox's node (nothing without a cluster).
    pub(super) async fn record_owner(&self, id: &str, owner: &Owner) -> Result<(), ApiError> {
        match self.cluster.as_ref() {
            Some(cluster) => cluster.record_owner(id, owner).await,
            None => Ok(()),
        }
    }

    /// Run `op` on the owner `owner` of its sandbox.
    pub(super) async fn call_owner(&self, owner: &Owner, op: &PeerOp) -> Result<(), String> {
        let Some(cluster) = self.cluster.as_ref() else {
            return Err("not in a cluster".into());
        };
        match owner {
            Owner::Peer(node) => rpc::call(&node.url, &cluster.secret().rpc_token(), op).await,
            Owner::Down(name) => Err(format!(
                "The sandbox runs on replica '{name}', which is not answering"
            )),
            Owner::Local => Err("the sandbox is this replica's".into()),
        }
    }

    /// Whether this node looks after `id`'s runtime side, from the node
    /// map `nodes` (for recovery): its own and unrecorded sandboxes.
    pub(super) fn is_mine(
        &self,
        nodes: &std::collections::HashMap<String, String>,
        id: &str,
    ) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.is_mine(nodes.get(id)))
    }

    /// [`Sandboxes::destroy`] of a sandbox another node runs: the owner
    /// does it; if the owner is down, only the row goes (the owner removes
    /// the files of sandboxes without a row when it starts again).
    pub(super) async fn destroy_remote(&self, id: &str, owner: &Owner) -> Result<(), ApiError> {
        match owner {
            Owner::Down(node) => {
                tracing::info!(sandbox = %id, %node, "deleting the row of a sandbox whose node is down");
                Ok(self.store.delete_sandbox_row(id).await?)
            }
            _ => {
                let op = PeerOp::Destroy {
                    sandbox_id: id.to_owned(),
                };
                self.call_owner(owner, &op)
                    .await
                    .map_err(ApiError::Upstream)
            }
        }
    }

    /// [`Sandboxes::halt`] of a sandbox another node runs: the owner does
    /// it; if the owner is down, only the row changes (a sandbox found
    /// running but not `ready` is swept when the owner starts again).
    pub(super) async fn halt_remote(
        &self,
        id: &str,
        owner: &Owner,
        status: SandboxStatus,
        message: Option<&str>,
    ) -> Result<(), ApiError> {
        match owner {
            Owner::Down(_) => {
                let stopped_at = (status == SandboxStatus::Stopped).then(crate::store::now);
                Ok(self
                    .store
                    .mark_not_running(id, status, message, stopped_at.as_deref())
                    .await?)
            }
            _ => {
                let op = PeerOp::Halt {
                    sandbox_id: id.to_owned(),
                    status: status.as_str().to_owned(),
                    message: message.map(str::to_owned),
                };
                self.call_owner(owner, &op)
                    .await
                    .map_err(ApiError::Upstream)
            }
        }
    }

    /// Remove the files of sandboxes that no longer have a row (deleted
    /// through another replica while this node was down).
    pub(super) async fn sweep_orphan_files(&self) -> anyhow::Result<()> {
        let root = self.dirs.sandboxes();
        let names: Vec<String> = match std::fs::read_dir(&root) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| uuid::Uuid::parse_str(n).is_ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for name in names {
            if self.store.sandbox(&name).await?.is_some() {
                continue;
            }
            let dir = self.dirs.sandbox(&name);
            tracing::info!(sandbox = %name, "removing the files of a sandbox deleted elsewhere");
            // remove_dir_all does not follow symlinks a sandbox may have
            // left in its files.
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await??;
        }
        Ok(())
    }

    /// Run an operation a peer sent for a sandbox this node owns.
    pub async fn peer_op(self: &Arc<Self>, op: PeerOp) -> Result<(), String> {
        match op {
            PeerOp::Boot { sandbox_id } => self.clone().boot_locked(&sandbox_id).await,
            PeerOp::Halt {
                sandbox_id,
                status,
                message,
            } => {
                let status: SandboxStatus = status
                    .parse()
                    .map_err(|_| format!("unknown status {status:?}"))?;
                let guard = self.sandbox_lock(&sandbox_id);
                let _held = guard.lock().await;
                self.halt(&sandbox_id, status, message.as_deref())
                    .await
                    .map_err(|e| e.to_string())
            }
            PeerOp::Destroy { sandbox_id } => {
                let guard = self.sandbox_lock(&sandbox_id);
                let _held = guard.lock().await;
                self.destroy(&sandbox_id).await.map_err(|e| e.to_string())
            }
            PeerOp::Retire {
                sandbox_id,
                due,
                scale,
            } => {
                let due = Due::parse(&due).ok_or_else(|| format!("unknown action {due:?}"))?;
                self.retire(&sandbox_id, due, scale)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}
