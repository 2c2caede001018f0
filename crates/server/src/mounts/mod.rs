//! Sandbox mounts (`mount_config`): Git repositories and S3/GCS buckets
//! the host fetches or mounts and binds into the sandbox, with credentials
//! that never enter it.
//!
//! - `config.rs` checks `mount_config`, parsed into its wire type
//!   (`sandpit_api::mount_config`), into the mounts below (422 naming the
//!   field);
//! - `git.rs` clones and refreshes Git mounts with the host's `git`;
//! - `fuse.rs` runs one `rclone mount` per bucket mount in the runtime
//!   helper's mount namespace;
//! - `proxy.rs` is the `CONNECT` proxy both go out through, which dials
//!   like the egress proxy (no loopback, private or metadata addresses).
//!
//! [`Mounts::prepare`] runs before the runtime starts a sandbox (every
//! boot: create, start, auto-start) and returns the binds to add to its
//! spec; [`Mounts::release`] runs after the runtime stopped it (stop,
//! delete, crash, failed boot, shutdown).

pub mod config;
mod fuse;
mod git;
mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sandpit_api::proxy_config::ProxyConfig;
use sandpit_egress::dial::Dialer;
use sandpit_egress::Policy;
use sandpit_runtime::MountSpec;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::secrets::Secrets;
use crate::store::SandboxRow;
use config::{MountConfig, MountKind, SecretRef, Store};

/// Where the host's trusted roots come from.
const HOST_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Check a create request's `mount_config` (`None` or `null`: no mounts).
pub fn validate(
    mount_config: Option<&Value>,
    proxy_config: Option<&Value>,
) -> Result<(), ApiError> {
    match mount_config {
        None => Ok(()),
        Some(value) => {
            // A proxy_config that does not parse is refused by its own check.
            let proxy_config = proxy_config.and_then(|v| ProxyConfig::from_value(v).ok());
            config::parse(value, proxy_config.as_ref())
                .map(drop)
                .map_err(|e| ApiError::Validation(e.0))
        }
    }
}

/// A sandbox row's `extra` fields as the API shows them: opaque mount
/// credentials without their values.
pub fn redact_extra(extra: &mut serde_json::Map<String, Value>) {
    if let Some(config) = extra.get_mut("mount_config") {
        config::redact(config);
    }
}

/// Whether a row asks for mounts.
pub fn has_mounts(extra: &serde_json::Map<String, Value>) -> bool {
    extra.get("mount_config").is_some_and(|v| !v.is_null())
}

/// What one running sandbox's mounts hold on the host.
struct Active {
    proxy: proxy::MountProxy,
    fuse: Vec<fuse::FuseMount>,
    refreshers: Vec<JoinHandle<()>>,
}

pub struct Mounts {
    secrets: Arc<Secrets>,
    dialer: Arc<Dialer>,
    ca_bundle: PathBuf,
    active: tokio::sync::Mutex<HashMap<String, Active>>,
}

/// The host-side context of one sandbox's mounts.
pub struct MountTarget<'a> {
    pub row: &'a SandboxRow,
    pub state_dir: &'a Path,
    /// The runtime's mount namespace (see `Runtime::mount_namespace_pid`).
    pub namespace_pid: Option<u32>,
    /// Host id of the sandbox's root.
    pub owner: u32,
}

fn dir_of(state_dir: &Path) -> PathBuf {
    state_dir.join("mounts")
}

impl Mounts {
    /// `resolve` and `upstream_ca` are the egress proxy's
    /// (`--egress-resolve`, `--egress-upstream-ca`); the trust bundle of
    /// mount clients (host roots plus those CAs) is written to `ca_bundle`.
    pub fn new(
        secrets: Arc<Secrets>,
        resolve: HashMap<String, SocketAddr>,
        upstream_ca: &[PathBuf],
        ca_bundle: PathBuf,
    ) -> std::io::Result<Self> {
        let mut pem = std::fs::read(HOST_ROOTS).unwrap_or_default();
        for extra in upstream_ca {
            pem.push(b'\n');
            pem.extend(std::fs::read(extra)?);
        }
        std::fs::write(&ca_bundle, pem)?;
        Ok(Self {
            secrets,
            dialer: Arc::new(Dialer::new(resolve)),
            ca_bundle,
            active: tokio::sync::Mutex::default(),
        })
    }

    /// Fetch and mount everything `target.row` asks for; the binds to add
    /// to its spec. On failure nothing is left running.
    pub async fn prepare(&self, target: &MountTarget<'_>) -> Result<Vec<MountSpec>, String> {
        let row = target.row;
        let Some(config) = parsed(row)? else {
            return Ok(Vec::new());
        };
        let dir = dir_of(target.state_dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let proxy = self.start_proxy(row, &dir, false).await?;
        let mut active = Active {
            proxy,
            fuse: Vec::new(),
            refreshers: Vec::new(),
        };
        let mut specs = Vec::new();
        for (n, mount) in config.mounts.iter().enumerate() {
            let spec = self
                .mount_one(target, &config, n, mount, &dir, &mut active)
                .await
                .map_err(|e| format!("mount '{}' ({}): {e}", mount.id, mount.path));
            match spec {
                Ok(spec) => specs.push(spec),
                Err(message) => {
                    shut(&mut active, target.namespace_pid).await;
                    return Err(message);
                }
            }
        }
        self.active.lock().await.insert(row.id.clone(), active);
        Ok(specs)
    }

    async fn start_proxy(
        &self,
        row: &SandboxRow,
        dir: &Path,
        same_port: bool,
    ) -> Result<proxy::MountProxy, String> {
        let proxy_config: Option<Value> = row
            .proxy_config
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        let policy = Policy::from_proxy_config(proxy_config.as_ref())
            .map_err(|e| format!("the sandbox's proxy_config: {e}"))?
            .for_tenant(&row.tenant_id)
            .for_sandbox(&row.id);
        let port_file = dir.join("proxy.port");
        let port = match same_port {
            true => std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok()),
            false => None,
        };
        let proxy = proxy::MountProxy::start(self.dialer.clone(), policy, port)
            .await
            .map_err(|e| format!("starting the mount proxy: {e}"))?;
        let _ = std::fs::write(&port_file, proxy.port.to_string());
        Ok(proxy)
    }

    async fn mount_one(
        &self,
        target: &MountTarget<'_>,
        config: &MountConfig,
        n: usize,
        mount: &config::Mount,
        dir: &Path,
        active: &mut Active,
    ) -> Result<MountSpec, String> {
        match &mount.kind {
            MountKind::Git(git_mount) => {
                let place = git::place(dir, n, &self.ca_bundle, active.proxy.url());
                git::sync(&place, git_mount).await?;
                if let Some(seconds) = git_mount.refresh_interval_seconds {
                    active
                        .refreshers
                        .push(refresher(place.clone(), git_mount.clone(), seconds));
                }
                Ok(MountSpec::Bind {
                    source: place.work_tree,
                    destination: mount.path.clone(),
                    readonly: true,
                })
            }
            MountKind::Bucket(bucket) => {
                let credentials = self
                    .credentials(&target.row.tenant_id, config, &bucket.store)
                    .await?;
                let proxy_url = active.proxy.url();
                let cx = fuse::FuseContext {
                    namespace_pid: target.namespace_pid,
                    owner: target.owner,
                    ca_bundle: &self.ca_bundle,
                    proxy_url: &proxy_url,
                };
                let mounted = fuse::mount(dir, n, bucket, credentials, &cx).await?;
                let spec = MountSpec::Fuse {
                    source: mounted.mountpoint.clone(),
                    destination: mount.path.clone(),
                    readonly: bucket.read_only,
                };
                active.fuse.push(mounted);
                Ok(spec)
            }
        }
    }

    async fn credentials(
        &self,
        tenant: &str,
        config: &MountConfig,
        store: &Store,
    ) -> Result<fuse::Credentials, String> {
        match store {
            Store::S3 { .. } => {
                let aws = config.aws.as_ref().ok_or("no aws auth")?;
                Ok(fuse::Credentials::Aws {
                    key_id: self.secret(tenant, &aws.access_key_id).await?,
                    secret: self.secret(tenant, &aws.secret_access_key).await?,
                })
            }
            Store::Gcs { .. } => {
                let gcp = config.gcp.as_ref().ok_or("no gcp auth")?;
                let json = self.secret(tenant, gcp).await?;
                sandpit_egress::gcp::ServiceAccount::from_json(&json)
                    .map_err(|e| format!("the gcp service account is not usable: {e}"))?;
                Ok(fuse::Credentials::Gcp {
                    service_account_json: json,
                })
            }
        }
    }

    async fn secret(&self, tenant: &str, secret: &SecretRef) -> Result<String, String> {
        match secret {
            SecretRef::Opaque(value) => Ok(value.clone()),
            SecretRef::Workspace(name) => self
                .secrets
                .value(tenant, name)
                .await
                .ok_or_else(|| format!("workspace secret {name} is not set")),
        }
    }

    /// After a server restart, a sandbox found running: take over the
    /// rclones an earlier server started (their proxy comes back on the
    /// same port) and resume the Git refreshes.
    pub async fn adopt(&self, target: &MountTarget<'_>) {
        let Ok(Some(config)) = parsed(target.row) else {
            return;
        };
        let dir = dir_of(target.state_dir);
        let proxy = match self.start_proxy(target.row, &dir, true).await {
            Ok(proxy) => proxy,
            Err(message) => {
                tracing::warn!(sandbox = %target.row.id, %message, "mounts not adopted");
                return;
            }
        };
        let mut active = Active {
            fuse: fuse::leftovers(&dir),
            refreshers: Vec::new(),
            proxy,
        };
        for (n, mount) in config.mounts.iter().enumerate() {
            if let MountKind::Git(git_mount) = &mount.kind {
                if let Some(seconds) = git_mount.refresh_interval_seconds {
                    let place = git::place(&dir, n, &self.ca_bundle, active.proxy.url());
                    active
                        .refreshers
                        .push(refresher(place, git_mount.clone(), seconds));
                }
            }
        }
        self.active
            .lock()
            .await
            .insert(target.row.id.clone(), active);
    }

    /// Stop everything the sandbox's mounts run: refreshes, rclones (and
    /// their mounts), the proxy; also rclones an earlier server left.
    pub async fn release(&self, id: &str, state_dir: &Path, namespace_pid: Option<u32>) {
        let taken = self.active.lock().await.remove(id);
        if let Some(mut active) = taken {
            shut(&mut active, namespace_pid).await;
        }
        for mut left in fuse::leftovers(&dir_of(state_dir)) {
            fuse::stop(&mut left, namespace_pid).await;
            fuse::forget(&left);
        }
    }
}

fn parsed(row: &SandboxRow) -> Result<Option<MountConfig>, String> {
    let extra: serde_json::Map<String, Value> =
        serde_json::from_str(&row.extra).unwrap_or_default();
    let Some(value) = extra.get("mount_config") else {
        return Ok(None);
    };
    let proxy_config: Option<ProxyConfig> = row
        .proxy_config
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok());
    config::parse(value, proxy_config.as_ref()).map_err(|e| e.0)
}

async fn shut(active: &mut Active, namespace_pid: Option<u32>) {
    for task in active.refreshers.drain(..) {
        task.abort();
        let _ = task.await;
    }
    for mut mounted in active.fuse.drain(..) {
        fuse::stop(&mut mounted, namespace_pid).await;
        fuse::forget(&mounted);
    }
}

/// Fetch `mount` every `seconds` for as long as the task lives.
fn refresher(place: git::GitPlace, mount: config::GitMount, seconds: u64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(seconds));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(message) = git::sync(&place, &mount).await {
                tracing::warn!(remote = %mount.remote_url, %message, "refreshing a git mount failed");
            }
        }
    })
}
