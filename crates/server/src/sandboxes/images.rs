//! Which root filesystem a sandbox boots — the built-in `host` image, a
//! snapshot's OCI image, or a template's — and what a template adds at boot
//! (its CPU quantity and volume mounts).

use std::sync::Arc;

use sandpit_runtime::{MountSpec, SandboxSpec};

use super::validate::{CreateSpec, ImageRef};
use super::{ImageRootfs, Sandboxes};

/// What a capture copies, from where.
pub struct CaptureSource {
    pub row: SandboxRow,
    /// Manifest digest of the image the sandbox runs; `None` for the
    /// built-in `host` image (never copied: the snapshot boots over it).
    pub base_digest: Option<String>,
    /// The `run_config` of the snapshot the sandbox came from.
    pub base_run_config: Option<String>,
    /// The sandbox's writable layer: a directory, or (in a disk image) the
    /// sandbox's state dir.
    pub upper: crate::snapshots::Upper,
    /// Holds a running sandbox still for the copy.
    pub freeze: Option<Freeze>,
}
use crate::auth::Caller;
use crate::error::ApiError;
use crate::snapshots::{Freeze, Snapshots};
use crate::store::{SandboxRow, TemplateRow, VolumeRow};
use crate::templates::{self, HOST_IMAGE};

/// `sandboxes.image` of a sandbox booting an OCI image: `oci:<digest>`.
const OCI_PREFIX: &str = "oci:";

/// Image columns of a new sandbox.
pub(super) struct ImageChoice {
    pub image: String,
    pub snapshot_id: Option<String>,
    pub template_name: Option<String>,
}

impl Sandboxes {
    /// Enable snapshots (and so OCI images) on this controller (at
    /// construction: the snapshots do not depend on the controller).
    pub fn with_snapshots(mut self, snapshots: Arc<Snapshots>) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    fn snapshots(&self) -> Result<&Arc<Snapshots>, ApiError> {
        self.snapshots
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("Images are not enabled on this server".into()))
    }

    /// Resolve the image of a new sandbox; a template also sets its
    /// resources.
    pub(super) async fn image_of(
        &self,
        caller: &Caller,
        spec: &mut CreateSpec,
    ) -> Result<ImageChoice, ApiError> {
        match &spec.image_ref {
            ImageRef::Host => self.host_image_allowed().map(|()| ImageChoice {
                image: self.boot.host_image.name.clone(),
                snapshot_id: None,
                template_name: None,
            }),
            ImageRef::Snapshot(reference) => {
                let snapshots = self.snapshots()?;
                let snapshot = snapshots.for_boot(caller, reference).await?;
                spec.fs_capacity_bytes = snapshot_capacity(spec, snapshot.fs_capacity_bytes)?;
                let digest = snapshot.image_digest.clone().unwrap_or_default();
                if snapshots.on_host_base(&digest) {
                    self.host_image_allowed()?;
                }
                inherit_labels(&mut spec.labels, snapshots.meta_of(&snapshot.id).await?.0);
                Ok(ImageChoice {
                    image: format!("{OCI_PREFIX}{digest}"),
                    snapshot_id: Some(snapshot.id),
                    template_name: None,
                })
            }
            ImageRef::Template(name) => {
                let template = templates::get_template(&self.store, caller, name).await?;
                let resources = templates::resources(&template)?;
                spec.vcpus = resources.cpu_millis().div_ceil(1000) as i64;
                spec.mem_bytes = resources.memory_bytes() as i64;
                if let Some(storage) = resources.storage_bytes() {
                    spec.fs_capacity_bytes = storage as i64;
                }
                Ok(ImageChoice {
                    image: self.template_image(&template).await?,
                    snapshot_id: None,
                    template_name: Some(template.name),
                })
            }
        }
    }

    /// 422 where the built-in `host` image cannot run (the Kubernetes runtime).
    fn host_image_allowed(&self) -> Result<(), ApiError> {
        if self.defaults.host_image_available {
            return Ok(());
        }
        Err(ApiError::Validation(
            "the built-in host image cannot run on this server's Kubernetes runtime (a sandbox \
             there is a Pod of a registry image): create it from a template or snapshot with an \
             OCI image"
                .into(),
        ))
    }

    /// `host`, or `oci:<digest>` of the template's image, pulled on first use.
    async fn template_image(&self, template: &TemplateRow) -> Result<String, ApiError> {
        if template.image == HOST_IMAGE {
            self.host_image_allowed()?;
            return Ok(self.boot.host_image.name.clone());
        }
        let puller = self.snapshots()?.puller();
        if let Some(digest) = &template.image_digest {
            if matches!(puller.store().image(digest), Ok(Some(_))) {
                return Ok(format!("{OCI_PREFIX}{digest}"));
            }
        }
        let record = puller
            .pull(&template.image)
            .await
            .map_err(|e| ApiError::CreationFailed(e.to_string()))?;
        self.store
            .set_template_digest(&template.id, &record.digest)
            .await?;
        Ok(format!("{OCI_PREFIX}{}", record.digest))
    }

    /// The root filesystem `row` boots.
    pub(super) async fn rootfs_of(&self, row: &SandboxRow) -> Result<ImageRootfs, String> {
        let Some(digest) = row.image.strip_prefix(OCI_PREFIX) else {
            return Ok(self.boot.host_image.clone());
        };
        let snapshots = self.snapshots().map_err(|e| e.to_string())?;
        if let Some(cluster) = self.cluster() {
            // Pulled or captured on another replica: its layers come here.
            crate::cluster::layers::ensure(cluster, snapshots.puller().store(), digest)
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut run_config = None;
        if let Some(id) = &row.snapshot_id {
            if let Ok(Some(snapshot)) = self.store.snapshot(&row.tenant_id, id).await {
                run_config = snapshot.run_config;
            }
        }
        snapshots.rootfs(digest, run_config.as_deref(), &self.boot.host_image)
    }

    /// What a capture of sandbox `name` copies: the sandbox, its image digest,
    /// the `run_config` of the snapshot it came from, its upper dir, and the
    /// freezer that holds a running sandbox still while it is copied.
    pub async fn capture_source(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<CaptureSource, ApiError> {
        let row = self.find(caller, name).await?;
        let status = row.status()?;
        if !matches!(
            status,
            sandpit_api::SandboxStatus::Ready | sandpit_api::SandboxStatus::Stopped
        ) {
            return Err(ApiError::NotReady(format!(
                "Sandbox '{name}' is {status} and cannot be captured"
            )));
        }
        if row.persistent == 0 {
            return Err(ApiError::Validation(format!(
                "Sandbox '{name}' is not persistent (persistent: false): its files are discarded \
                 at every stop, so it cannot be captured"
            )));
        }
        // `None`: the built-in host image, which the capture boots over.
        let digest = row.image.strip_prefix(OCI_PREFIX).map(str::to_owned);
        let mut base_rc = None;
        if let Some(id) = &row.snapshot_id {
            if let Some(snapshot) = self.store.snapshot(&row.tenant_id, id).await? {
                base_rc = snapshot.run_config;
            }
        }
        let state = self.dirs.sandbox(&row.id);
        let upper = if state.join("disk.img").exists() {
            if status != sandpit_api::SandboxStatus::Ready {
                return Err(ApiError::NotReady(format!(
                    "Sandbox '{name}' is stopped; start it before capturing it"
                )));
            }
            crate::snapshots::Upper::InDisk(state)
        } else {
            crate::snapshots::Upper::Dir(state.join("upper"))
        };
        let freeze = (status == sandpit_api::SandboxStatus::Ready).then(|| Freeze {
            runtime: self.runtime.clone(),
            sandbox_id: row.id.clone(),
        });
        Ok(CaptureSource {
            row,
            base_digest: digest,
            base_run_config: base_rc,
            upper,
            freeze,
        })
    }

    /// A template's exact CPU quantity and its volumes.
    pub(super) async fn apply_template(
        &self,
        row: &SandboxRow,
        spec: &mut SandboxSpec,
    ) -> Result<(), String> {
        let Some(name) = &row.template_name else {
            return Ok(());
        };
        let template = self
            .store
            .template(&row.tenant_id, name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("template '{name}' no longer exists"))?;
        let resources = templates::resources(&template).map_err(|e| e.to_string())?;
        spec.limits.cpu_millis = resources.cpu_millis();
        for mount in templates::volume_mounts(&template).map_err(|e| e.to_string())? {
            let volume = self
                .store
                .volume(&row.tenant_id, &mount.volume_name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("volume '{}' no longer exists", mount.volume_name))?;
            spec.mounts
                .push(volume_mount(self.dirs.root(), &volume, mount.mount_path));
        }
        Ok(())
    }
}

/// A volume's mount: its ext4 image, or, for a volume created before sizes
/// were enforced, its plain directory.
fn volume_mount(data_dir: &std::path::Path, volume: &VolumeRow, destination: String) -> MountSpec {
    let legacy = templates::volume_dir(data_dir, &volume.id);
    if legacy.is_dir() {
        return MountSpec::Bind {
            source: legacy,
            destination,
            readonly: false,
        };
    }
    MountSpec::Volume {
        image: templates::volume_image(data_dir, &volume.id),
        size_bytes: volume.size_bytes.max(0) as u64,
        destination,
    }
}

/// A snapshot's labels under the new sandbox's own: key by key, the
/// sandbox's win ("Labels from the source snapshot are inherited unless
/// overridden here").
fn inherit_labels(
    labels: &mut std::collections::BTreeMap<String, String>,
    inherited: std::collections::BTreeMap<String, String>,
) {
    for (key, value) in inherited {
        labels.entry(key).or_insert(value);
    }
}

/// The disk of a sandbox booted from a snapshot of `snapshot_bytes`: the
/// snapshot's capacity unless the request named one, which may not be
/// smaller (LangSmith: "defaults to the snapshot's and cannot be smaller").
fn snapshot_capacity(spec: &CreateSpec, snapshot_bytes: i64) -> Result<i64, ApiError> {
    if !spec.fs_capacity_given {
        return Ok(snapshot_bytes);
    }
    if spec.fs_capacity_bytes < snapshot_bytes {
        return Err(ApiError::Validation(format!(
            "fs_capacity_bytes must be at least the snapshot's {snapshot_bytes}, got {}",
            spec.fs_capacity_bytes
        )));
    }
    Ok(spec.fs_capacity_bytes)
}
