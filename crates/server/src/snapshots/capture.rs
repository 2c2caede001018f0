//! `POST /boxes/{name}/snapshot`: a sandbox's writable layer becomes a new
//! top layer over its image's layers.
//!
//! The sandbox's upper directory is copied (`cp -a`: no symlink is followed,
//! overlay whiteouts, modes, owners and xattrs are kept) into a new layer,
//! without `/tmp`. The sandbox keeps running; a capture sees its files as
//! they are while the copy runs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{merged_run_config, Snapshots};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::SnapshotRow;
use sandpit_images::ImageRecord;

/// What to capture.
pub struct Capture {
    pub name: String,
    pub tag: String,
    pub fs_capacity_bytes: i64,
    pub run_config: Option<sandpit_api::sandbox::RunConfig>,
    pub source_sandbox_id: String,
    /// Manifest digest of the image the sandbox runs.
    pub base_digest: String,
    /// The snapshot the sandbox was created from (its `run_config` is kept).
    pub base_run_config: Option<String>,
    pub upper: PathBuf,
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
        let base = self
            .puller
            .store()
            .image(&capture.base_digest)
            .ok()
            .flatten()
            .ok_or_else(|| {
                ApiError::Validation("The sandbox's image is no longer stored".into())
            })?;
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
        self.store.insert_snapshot(&row, &capture.tag).await?;
        let this = self.clone();
        let id = row.id.clone();
        tokio::spawn(async move { this.finish_capture(&id, base, capture).await });
        Ok(row)
    }

    async fn finish_capture(&self, id: &str, base: ImageRecord, capture: Capture) {
        let store = self.puller.store().clone();
        let layer_digest = sha256(id.as_bytes());
        let staging = store.temp_path("capture");
        let upper = capture.upper.clone();
        let digest = layer_digest.clone();
        let copied = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            std::fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
            let status = Command::new("cp")
                .arg("-a")
                .arg("--no-target-directory")
                .arg(&upper)
                .arg(&staging)
                .status()
                .map_err(|e| format!("running cp: {e}"))?;
            if !status.success() {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(format!("copying the writable layer failed ({status})"));
            }
            let _ = std::fs::remove_dir_all(staging.join("tmp"));
            let used = super::du(&staging);
            store
                .adopt_layer(&digest, &staging)
                .map_err(|e| e.to_string())?;
            Ok(used)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let outcome = match copied {
            Ok(used) => {
                let mut layers = base.layers.clone();
                layers.push(layer_digest);
                let record = ImageRecord {
                    reference: format!("capture:{id}"),
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
