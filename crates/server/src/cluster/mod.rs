//! Several `sandpit serve` replicas behind one PostgreSQL database.
//!
//! Every replica is a *node* with a name and a URL its peers reach it at,
//! recorded with a heartbeat in the `nodes` table. A sandbox runs on one
//! node (its *owner*, `sandbox_nodes`): its processes, network and files
//! are there. Any replica answers any API call:
//!
//! - control-plane reads and writes are answered from the database;
//! - operations that need the sandbox's runtime or files (boot, stop,
//!   delete, retention) are sent to the owner over the internal API
//!   ([`rpc`]), authenticated with a token derived from the shared secret;
//! - data-plane requests (`/dataplane/{id}/...`, exec streams, tunnels,
//!   files, the console terminal) are proxied byte for byte to the owner
//!   ([`forward`]), which authenticates the caller itself.
//!
//! What must be the same on every replica — the service-token keys and
//! revocation epochs, the secrets key, the egress CA, the admin key and
//! console terminal tickets — lives in the database (the keys sealed under
//! `--shared-secret-file`, [`keys`]). Quotas are admitted under a database
//! lock (`Store::lock_tenant`). Work that must run once (retention, pool
//! refill) runs on the leader ([`leader`]): the replica holding a
//! PostgreSQL advisory lock on a dedicated connection.

pub mod forward;
pub mod keys;
pub mod layers;
pub mod leader;
pub mod rpc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ApiError;
use crate::store::{NodeRow, Store};

/// How often a node records its heartbeat (and syncs shared keys).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node whose heartbeat is older than this is down.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// How this replica takes part in a cluster (from `serve`'s flags).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's name (unique among the replicas).
    pub node_name: String,
    /// The URL peers reach this node's API at (`http://host:port`).
    pub node_url: String,
    /// The file holding the secret every replica shares.
    pub shared_secret_file: PathBuf,
    /// False for a replica without a runtime: it answers the API and
    /// places sandboxes on nodes that run them.
    pub runs_sandboxes: bool,
}

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read the shared secret file {path}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the shared secret file {0} must hold at least 32 bytes")]
    ShortSecret(PathBuf),
    #[error("several replicas need PostgreSQL (--database-url postgres://...)")]
    NeedsPostgres,
    #[error("--node-url {0:?} is not an http://host:port URL")]
    BadNodeUrl(String),
    #[error(
        "a shared key could not be unsealed (is the shared secret the same on every replica?)"
    )]
    Unseal,
    #[error("database error")]
    Store(#[from] crate::store::StoreError),
    #[error("shared key files")]
    Io(#[from] std::io::Error),
    #[error("a shared key is malformed: {0}")]
    Corrupt(String),
}

/// Who runs a sandbox, from this node's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This node (or no node recorded: a standalone server's sandbox).
    Local,
    /// Another node, up.
    Peer(NodeRow),
    /// Another node whose heartbeat stopped.
    Down(String),
}

/// This node's view of the cluster.
pub struct Cluster {
    store: Store,
    config: ClusterConfig,
    secret: keys::Secret,
    leader: tokio::sync::watch::Receiver<bool>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Cluster {
    /// Join: check the configuration and start competing for leadership.
    pub fn join(
        store: Store,
        config: ClusterConfig,
        secret: keys::Secret,
    ) -> Result<Arc<Self>, ClusterError> {
        if !store.is_postgres() {
            return Err(ClusterError::NeedsPostgres);
        }
        rpc::authority(&config.node_url)?;
        let leader = leader::spawn(store.url().to_owned(), config.node_name.clone());
        Ok(Arc::new(Self {
            store,
            config,
            secret,
            leader,
        }))
    }

    pub fn node_name(&self) -> &str {
        &self.config.node_name
    }

    pub fn runs_sandboxes(&self) -> bool {
        self.config.runs_sandboxes
    }

    /// Whether this node holds the leader lock now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Record this node's heartbeat.
    pub async fn heartbeat(&self) -> Result<(), ClusterError> {
        self.store
            .heartbeat(&NodeRow {
                name: self.config.node_name.clone(),
                url: self.config.node_url.clone(),
                runs_sandboxes: i64::from(self.config.runs_sandboxes),
                heartbeat_ms: now_ms(),
            })
            .await?;
        Ok(())
    }

    fn alive(node: &NodeRow) -> bool {
        now_ms() - node.heartbeat_ms < NODE_TIMEOUT.as_millis() as i64
    }

    /// Who runs sandbox `id`.
    pub async fn owner(&self, id: &str) -> Result<Owner, ApiError> {
        let Some(name) = self.store.sandbox_node(id).await? else {
            return Ok(Owner::Local);
        };
        if name == self.config.node_name {
            return Ok(Owner::Local);
        }
        Ok(match self.store.node(&name).await? {
            Some(node) if Self::alive(&node) => Owner::Peer(node),
            _ => Owner::Down(name),
        })
    }

    /// Where a new sandbox runs: here if this node runs sandboxes, else the
    /// live node that runs the fewest.
    pub async fn place(&self) -> Result<Owner, ApiError> {
        if self.config.runs_sandboxes {
            return Ok(Owner::Local);
        }
        let counts = self.store.sandboxes_per_node().await?;
        self.store
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.runs_sandboxes == 1 && Self::alive(n))
            .min_by_key(|n| (counts.get(&n.name).copied().unwrap_or(0), n.name.clone()))
            .map(Owner::Peer)
            .ok_or_else(|| {
                ApiError::Upstream("No replica that runs sandboxes is up; try again".into())
            })
    }

    /// The other nodes that are up.
    pub async fn live_peers(&self) -> Result<Vec<NodeRow>, crate::store::StoreError> {
        let mut nodes = self.store.nodes().await?;
        nodes.retain(|n| n.name != self.config.node_name && Self::alive(n));
        Ok(nodes)
    }

    /// Record that sandbox `id` runs on `owner`.
    pub async fn record_owner(&self, id: &str, owner: &Owner) -> Result<(), ApiError> {
        let node = match owner {
            Owner::Local => self.config.node_name.as_str(),
            Owner::Peer(node) => node.name.as_str(),
            Owner::Down(name) => name.as_str(),
        };
        Ok(self.store.set_sandbox_node(id, node).await?)
    }

    /// Whether this node looks after sandbox `node_of` (from the
    /// `sandbox_nodes` map): its own, or unrecorded ones.
    pub fn is_mine(&self, node_of: Option<&String>) -> bool {
        node_of.is_none_or(|n| n == &self.config.node_name)
    }

    pub fn secret(&self) -> &keys::Secret {
        &self.secret
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The node's background work: heartbeat and key sync every [`HEARTBEAT`].
pub async fn run(cluster: Arc<Cluster>, service_keys: Arc<crate::gateway::tokens::ServiceKeys>) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = cluster.heartbeat().await {
            tracing::warn!(error = %err, "cluster heartbeat failed");
        }
        if let Err(err) = keys::sync_service_keys(&cluster, &service_keys).await {
            tracing::warn!(
                error = format!("{err:#}"),
                "syncing service-token keys failed"
            );
        }
    }
}

/// The runtime of a replica that runs no sandboxes (`serve
/// --no-sandboxes`): it places every sandbox on a node that runs them, so
/// nothing ever reaches this except by mistake, which it refuses.
pub struct NoRuntime;

impl sandpit_runtime::Runtime for NoRuntime {
    fn start(
        &self,
        _spec: &sandpit_runtime::SandboxSpec,
    ) -> Result<sandpit_runtime::Started, sandpit_runtime::RuntimeError> {
        Err(sandpit_runtime::RuntimeError::Helper(
            "this replica runs no sandboxes (--no-sandboxes)".into(),
        ))
    }

    fn stop(&self, _id: &str) -> Result<(), sandpit_runtime::RuntimeError> {
        Ok(())
    }

    fn running(
        &self,
    ) -> Result<Vec<sandpit_runtime::RunningSandbox>, sandpit_runtime::RuntimeError> {
        Ok(Vec::new())
    }

    fn cleanup(&self, _keep_ids: &[String]) -> Result<Vec<String>, sandpit_runtime::RuntimeError> {
        Ok(Vec::new())
    }
}
