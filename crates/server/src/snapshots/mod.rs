//! Snapshots: images a sandbox boots from, built by pulling an OCI image
//! (`POST /snapshots`) and addressed by id or by `name:tag`.
//!
//! A build inserts a `building` row, pulls in the background through the
//! shared [`Puller`] (concurrent builds of one image share one pull) and
//! records `ready` with the image's manifest digest, or `failed` with why.
//! The layers themselves live in the layer store, keyed by digest, so every
//! sandbox of a snapshot shares them as overlay lower layers.

mod capture;
mod reference;
mod response;
pub mod validate;

use std::sync::Arc;

use sandpit_api::sandbox::RunConfig;
use sandpit_images::{Credentials, ImageConfig, ImageRecord, Puller};

pub use capture::{Capture, Freeze, Upper};
pub use reference::SnapshotRef;
pub use response::{snapshot_response, SnapshotResponse};
use validate::{CreateSnapshot, Labels};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::sandboxes::ImageRootfs;
use crate::store::{SnapshotRow, Store, StoreError};

/// Default `PATH` for images whose config sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Snapshots {
    store: Store,
    puller: Arc<Puller>,
}

fn not_found(reference: &str) -> ApiError {
    ApiError::NotFound {
        kind: "Snapshot",
        name: reference.to_owned(),
    }
}

impl Snapshots {
    pub fn new(store: Store, puller: Arc<Puller>) -> Self {
        Self { store, puller }
    }

    pub fn puller(&self) -> &Arc<Puller> {
        &self.puller
    }

    /// Snapshots a previous run left `building` can never finish.
    pub async fn recover(&self) -> Result<(), StoreError> {
        self.store
            .fail_building_snapshots("The server restarted while the snapshot was building")
            .await
    }

    /// Insert a `building` snapshot and pull its image in the background.
    pub async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        req: CreateSnapshot,
    ) -> Result<SnapshotRow, ApiError> {
        self.create_with(caller, req, None).await
    }

    /// [`Snapshots::create`] pulling with `credentials` (the tenant's
    /// registry named by `registry_id`).
    pub async fn create_with(
        self: &Arc<Self>,
        caller: &Caller,
        req: CreateSnapshot,
        credentials: Option<Credentials>,
    ) -> Result<SnapshotRow, ApiError> {
        let now = crate::store::now();
        let row = SnapshotRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: caller.tenant_id.clone(),
            name: req.name.clone(),
            status: "building".into(),
            status_message: None,
            docker_image: Some(req.docker_image.clone()),
            image_digest: None,
            source_sandbox_id: None,
            fs_capacity_bytes: req.fs_capacity_bytes,
            fs_used_bytes: None,
            run_config: None,
            registry_id: req.registry_id.clone(),
            created_at: now.clone(),
            updated_at: now,
        };
        let labels = labels_json(&req.labels)?;
        self.store
            .insert_snapshot_with(&row, &req.tags, labels.as_deref(), Some(&caller.key_id))
            .await?;
        let this = self.clone();
        let id = row.id.clone();
        tokio::spawn(async move { this.build(&id, req, credentials).await });
        Ok(row)
    }

    async fn build(&self, id: &str, req: CreateSnapshot, credentials: Option<Credentials>) {
        let pulled = self
            .puller
            .pull_with(&req.docker_image, credentials.as_ref())
            .await;
        crate::metrics::global().image_pull(pulled.is_ok());
        let outcome = match pulled {
            Ok(record) => {
                let run_config = merged_run_config(&record.config, req.run_config.as_ref());
                let text = serde_json::to_string(&run_config).ok();
                let used = self.used_bytes(&record).await;
                self.store
                    .finish_snapshot(id, Ok((&record.digest, text.as_deref(), used)))
                    .await
            }
            Err(err) => {
                tracing::warn!(snapshot = %id, error = %err, "snapshot build failed");
                self.store.finish_snapshot(id, Err(&err.to_string())).await
            }
        };
        if let Err(err) = outcome {
            tracing::error!(snapshot = %id, error = ?err, "recording a snapshot build failed");
        }
    }

    async fn used_bytes(&self, record: &ImageRecord) -> i64 {
        let dirs = self.puller.store().lower_dirs(record).unwrap_or_default();
        tokio::task::spawn_blocking(move || dirs.iter().map(|d| du(d)).sum::<u64>())
            .await
            .map(|b| b as i64)
            .unwrap_or(0)
    }

    /// A caller's snapshot by id, `name:tag` or bare name (`name:latest`,
    /// else the newest ready untagged snapshot of that name, as the SDKs
    /// document; a build without a tag is published as `latest`).
    pub async fn get(&self, caller: &Caller, reference: &str) -> Result<SnapshotRow, ApiError> {
        let tenant = &caller.tenant_id;
        let found = match SnapshotRef::parse(reference) {
            SnapshotRef::Id(id) => self.store.snapshot(tenant, &id).await?,
            SnapshotRef::Tagged { name, tag } => {
                self.store.snapshot_by_tag(tenant, &name, &tag).await?
            }
            SnapshotRef::Name(name) => {
                match self.store.snapshot_by_tag(tenant, &name, "latest").await? {
                    Some(row) => Some(row),
                    None => self.store.newest_ready_snapshot(tenant, &name).await?,
                }
            }
        };
        found.ok_or_else(|| not_found(reference))
    }

    pub async fn list(
        &self,
        caller: &Caller,
        name_contains: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<SnapshotRow>, ApiError> {
        Ok(self
            .store
            .list_snapshots(&caller.tenant_id, name_contains, limit, offset)
            .await?)
    }

    pub async fn tags_of(&self, id: &str) -> Result<Vec<String>, ApiError> {
        Ok(self.store.snapshot_tags_of(id).await?)
    }

    /// Labels and creator (the creating API key's id) of snapshot `id`.
    pub async fn meta_of(&self, id: &str) -> Result<(Labels, Option<String>), ApiError> {
        let (labels, created_by) = self.store.snapshot_meta(id).await?;
        let labels = labels
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        Ok((labels, created_by))
    }

    pub async fn tags_by_name(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Vec<(String, String)>, ApiError> {
        self.store
            .snapshot_tags_by_name(&caller.tenant_id, name)
            .await?
            .ok_or_else(|| ApiError::NotFound {
                kind: "Snapshot name",
                name: name.to_owned(),
            })
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        let row = self.get(caller, id).await?;
        if !self
            .store
            .delete_snapshot(&caller.tenant_id, &row.id)
            .await?
        {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// The ready snapshot a new sandbox boots from.
    pub async fn for_boot(
        &self,
        caller: &Caller,
        reference: &str,
    ) -> Result<SnapshotRow, ApiError> {
        let row = self.get(caller, reference).await?;
        match row.status.as_str() {
            "ready" => Ok(row),
            "failed" => Err(ApiError::Validation(format!(
                "Snapshot '{reference}' failed to build: {}",
                row.status_message.as_deref().unwrap_or("unknown error")
            ))),
            _ => Err(ApiError::NotReady(format!(
                "Snapshot '{reference}' is still building"
            ))),
        }
    }

    /// Whether image `digest` is a capture over the built-in `host` image.
    pub fn on_host_base(&self, digest: &str) -> bool {
        matches!(self.puller.store().image(digest), Ok(Some(r)) if on_host_base(&r))
    }

    /// The root filesystem of a ready snapshot's image; a capture of a
    /// `host`-image sandbox is its captured layers over `host`.
    pub fn rootfs(
        &self,
        digest: &str,
        run_config: Option<&str>,
        host: &ImageRootfs,
    ) -> Result<ImageRootfs, String> {
        let store = self.puller.store();
        let record = store
            .image(digest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("image {digest} is missing from the layer store"))?;
        let mut layers = store.lower_dirs(&record).map_err(|e| e.to_string())?;
        let run_config: RunConfig = run_config
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_else(|| merged_run_config(&record.config, None));
        let over = run_config.env_vars.unwrap_or_default();
        let (mut env, mounts, workdir) = if on_host_base(&record) {
            if host.layers.is_empty() {
                return Err("this snapshot is a capture over the built-in host image, \
                     which this server cannot run"
                    .into());
            }
            layers.extend(host.layers.iter().cloned());
            (host.env.clone(), host.mounts.clone(), host.workdir.clone())
        } else {
            (Vec::new(), Vec::new(), "/".to_owned())
        };
        env.retain(|(k, _)| !over.contains_key(k));
        env.extend(over);
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        Ok(ImageRootfs {
            name: format!("oci:{digest}"),
            layers,
            mounts,
            env,
            workdir: run_config.work_dir.unwrap_or(workdir),
            user: run_config.user.filter(|u| !u.is_empty()),
        })
    }
}

/// `ImageRecord::reference` prefix of a capture over the built-in `host`
/// image: the record holds only the captured layers, and a sandbox boots
/// them over `host` (whose files never enter a snapshot).
pub const HOST_BASE_PREFIX: &str = "host+";

fn on_host_base(record: &ImageRecord) -> bool {
    record.reference.starts_with(HOST_BASE_PREFIX)
}

/// Labels as stored (a JSON object), `None` when there are none.
fn labels_json(labels: &Labels) -> Result<Option<String>, ApiError> {
    if labels.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(labels)
        .map(Some)
        .map_err(|e| ApiError::Internal(e.into()))
}

/// The image's `User`, `WorkingDir` and `Env`, overridden by `over`
/// (`user`, `work_dir` replace; `env_vars` merge key by key).
pub fn merged_run_config(image: &ImageConfig, over: Option<&RunConfig>) -> RunConfig {
    let mut env: std::collections::BTreeMap<String, String> = image.env.iter().cloned().collect();
    if let Some(extra) = over.and_then(|o| o.env_vars.as_ref()) {
        env.extend(extra.clone());
    }
    RunConfig {
        user: over
            .and_then(|o| o.user.clone())
            .or_else(|| image.user.clone()),
        work_dir: over
            .and_then(|o| o.work_dir.clone())
            .or_else(|| image.working_dir.clone()),
        env_vars: Some(env),
    }
}

/// Bytes used by the files under `dir` (apparent sizes, not following links).
fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}
