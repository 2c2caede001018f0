//! `POST /boxes/{name}/snapshot`: a sandbox's writable layer becomes a new
//! top layer over its image's layers.
//!
//! The sandbox's upper directory is copied into a new layer, without `/tmp`,
//! by `sandpit_runtime::tree_copy`: one component at a time from directory
//! descriptors with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | ...)`,
//! so no link the sandbox made (even one swapped in while the copy runs)
//! is ever followed on the host. A running sandbox is frozen (cgroup
//! freezer) for the copy, so the layer is one consistent picture and
//! nothing in the sandbox runs meanwhile; it is thawed however the copy
//! ends.
//!
//! A sandbox on the built-in `host` image is captured the same way: the
//! new image record holds only the copied layer and is marked
//! [`super::HOST_BASE_PREFIX`], so its sandboxes boot it over `host`; no
//! host file is ever copied into a snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{merged_run_config, Snapshots};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::SnapshotRow;
use sandpit_images::ImageRecord;
use sandpit_runtime::tree_copy::copy_tree;
use sandpit_runtime::Runtime;

/// What to capture.
pub struct Capture {
    pub name: String,
    pub tag: String,
    pub fs_capacity_bytes: i64,
    pub run_config: Option<sandpit_api::sandbox::RunConfig>,
    pub source_sandbox_id: String,
    /// Manifest digest of the image the sandbox runs; `None` for the
    /// built-in `host` image, whose files are never copied: the snapshot
    /// holds the sandbox's layer and boots it over `host`.
    pub base_digest: Option<String>,
    /// Labels sandboxes created from the snapshot inherit.
    pub labels: super::validate::Labels,
    /// The snapshot the sandbox was created from (its `run_config` is kept).
    pub base_run_config: Option<String>,
    pub upper: Upper,
    /// Holds a running sandbox still for the copy; `None` when stopped.
    pub freeze: Option<Freeze>,
}

/// Where a sandbox's writable layer is.
pub enum Upper {
    /// A directory the server sees.
    Dir(PathBuf),
    /// In the disk image of the running sandbox with this state dir,
    /// mounted for the copy (see `sandpit_runtime::local::with_writable_layer`).
    InDisk(PathBuf),
}

impl Upper {
    /// Runs `f` on the layer's directory.
    fn with_dir<T: Send>(&self, f: impl FnOnce(&Path) -> T + Send) -> std::io::Result<T> {
        match self {
            Self::Dir(dir) => Ok(f(dir)),
            Self::InDisk(state_dir) => sandpit_runtime::local::with_writable_layer(state_dir, f),
        }
    }
}

/// The sandbox a capture freezes while it copies.
pub struct Freeze {
    pub runtime: Arc<dyn Runtime>,
    pub sandbox_id: String,
}

impl Freeze {
    /// Freezes the sandbox until the guard is dropped.
    fn hold(&self) -> Result<Frozen<'_>, String> {
        self.runtime
            .set_frozen(&self.sandbox_id, true)
            .map_err(|e| format!("freezing the sandbox for the copy failed: {e}"))?;
        Ok(Frozen(self))
    }
}

/// Thaws the sandbox when dropped, whatever the copy did.
struct Frozen<'a>(&'a Freeze);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.0.runtime.set_frozen(&self.0.sandbox_id, false) {
            tracing::error!(sandbox = %self.0.sandbox_id, error = %err, "thawing a sandbox after a capture failed");
        }
    }
}

/// The base of a capture of a `host`-image sandbox: no layers (the host's
/// files stay out of the snapshot), booted over `host`.
fn host_base() -> ImageRecord {
    ImageRecord {
        reference: format!("{}host", super::HOST_BASE_PREFIX),
        digest: String::new(),
        layers: Vec::new(),
        config: sandpit_images::ImageConfig::default(),
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Snapshots {
    pub async fn capture(
        self: &Arc<Self>,
        caller: &Caller,
        capture: Capture,
    ) -> Result<SnapshotRow, ApiError> {
        let base = match &capture.base_digest {
            Some(digest) => self
                .puller
                .store()
                .image(digest)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    ApiError::Validation("The sandbox's image is no longer stored".into())
                })?,
            None => host_base(),
        };
        let now = crate::store::now();
        let row = SnapshotRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: caller.tenant_id.clone(),
            name: capture.name.clone(),
            status: "building".into(),
            status_message: None,
            docker_image: None,
            image_digest: None,
            source_sandbox_id: Some(capture.source_sandbox_id.clone()),
            fs_capacity_bytes: capture.fs_capacity_bytes,
            fs_used_bytes: None,
            run_config: None,
            registry_id: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let labels = super::labels_json(&capture.labels)?;
        self.store
            .insert_snapshot_with(
                &row,
                std::slice::from_ref(&capture.tag),
                labels.as_deref(),
                Some(&caller.key_id),
            )
            .await?;
        let this = self.clone();
        let id = row.id.clone();
        tokio::spawn(async move { this.finish_capture(&id, base, capture).await });
        Ok(row)
    }

    async fn finish_capture(&self, id: &str, base: ImageRecord, mut capture: Capture) {
        let store = self.puller.store().clone();
        let layer_digest = sha256(id.as_bytes());
        let staging = store.temp_path("capture");
        let upper = std::mem::replace(&mut capture.upper, Upper::Dir(PathBuf::new()));
        let digest = layer_digest.clone();
        let freeze = capture.freeze.take();
        let copied = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            if let Some(parent) = staging.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let frozen = freeze.as_ref().map(Freeze::hold).transpose()?;
            let copied = upper
                .with_dir(|dir| copy_tree(dir, &staging, &["tmp"]))
                .map_err(|e| format!("mounting the writable layer failed: {e}"))?;
            drop(frozen);
            let stats = copied.map_err(|e| {
                let _ = std::fs::remove_dir_all(&staging);
                format!("copying the writable layer failed: {e}")
            })?;
            store
                .adopt_layer(&digest, &staging)
                .map_err(|e| e.to_string())?;
            Ok(stats.bytes)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let outcome = match copied {
            Ok(used) => {
                let mut layers = base.layers.clone();
                layers.push(layer_digest);
                let prefix = if super::on_host_base(&base) {
                    super::HOST_BASE_PREFIX
                } else {
                    ""
                };
                let record = ImageRecord {
                    reference: format!("{prefix}capture:{id}"),
                    digest: sha256(layers.join("\n").as_bytes()),
                    layers,
                    config: base.config.clone(),
                };
                let base_rc = capture
                    .base_run_config
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or_else(|| merged_run_config(&base.config, None));
                let rc = merged_run_config(
                    &sandpit_images::ImageConfig {
                        env: base_rc
                            .env_vars
                            .clone()
                            .unwrap_or_default()
                            .into_iter()
                            .collect(),
                        user: base_rc.user.clone(),
                        working_dir: base_rc.work_dir.clone(),
                        ..Default::default()
                    },
                    capture.run_config.as_ref(),
                );
                let text = serde_json::to_string(&rc).ok();
                let base_used = self.used_bytes(&base).await;
                match self.puller.store().put_image(&record) {
                    Ok(()) => {
                        self.store
                            .finish_snapshot(
                                id,
                                Ok((&record.digest, text.as_deref(), base_used + used as i64)),
                            )
                            .await
                    }
                    Err(e) => self.store.finish_snapshot(id, Err(&e.to_string())).await,
                }
            }
            Err(message) => self.store.finish_snapshot(id, Err(&message)).await,
        };
        if let Err(err) = outcome {
            tracing::error!(snapshot = %id, error = ?err, "recording a capture failed");
        }
    }
}
