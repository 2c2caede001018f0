//! Image references for pods, from the server's layer store.
//!
//! The server pulls an image into its layer store (`DATA/oci`) before a
//! sandbox starts, and hands the backend the unpacked layer directories. A
//! kubelet pulls by reference instead: [`LayerStoreImages`] finds the image
//! record whose layers are the spec's and pins its reference to the
//! manifest digest (`repo@sha256:...`), so the pod runs exactly the image
//! the server resolved. Images that exist only on this server — the
//! built-in `host` image, snapshots captured from sandboxes — are refused.

use std::path::PathBuf;

use sandpit_runtime::SandboxSpec;
use serde::Deserialize;

use crate::error::KubeError;
use crate::plan::ImageResolver;

/// The message for the `host` image (also the server's 422).
pub const HOST_IMAGE_REFUSED: &str =
    "the built-in host image is this machine's own file system and cannot run on Kubernetes; give an OCI image";

/// Resolves specs against the layer store at `root` (`DATA/oci`).
#[derive(Debug, Clone)]
pub struct LayerStoreImages {
    root: PathBuf,
}

#[derive(Deserialize)]
struct Record {
    reference: String,
    digest: String,
    layers: Vec<String>,
}

impl LayerStoreImages {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn layer_dir(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        Some(self.root.join("layers").join(format!("sha256-{hex}")))
    }

    fn records(&self) -> Result<Vec<Record>, KubeError> {
        let dir = self.root.join("images");
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| KubeError::Config(format!("reading {}: {e}", dir.display())))?;
        Ok(entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect())
    }

    /// Whether `record`'s layers, topmost first, are `layers`.
    fn matches(&self, record: &Record, layers: &[PathBuf]) -> bool {
        record.layers.len() == layers.len()
            && record
                .layers
                .iter()
                .rev()
                .zip(layers)
                .all(|(digest, dir)| self.layer_dir(digest).as_deref() == Some(dir.as_path()))
    }
}

impl ImageResolver for LayerStoreImages {
    fn image_of(&self, spec: &SandboxSpec) -> Result<String, KubeError> {
        let from_store = spec
            .layers
            .first()
            .is_some_and(|l| l.starts_with(self.root.join("layers")));
        if !from_store {
            return Err(KubeError::Unsupported(HOST_IMAGE_REFUSED.into()));
        }
        self.records()?
            .iter()
            .find(|r| self.matches(r, &spec.layers))
            .map(|r| pinned(&r.reference, &r.digest))
            .ok_or_else(|| {
                KubeError::Unsupported(
                    "this image exists only in this server's layer store (a snapshot captured from a sandbox); on Kubernetes, start from a registry image"
                        .into(),
                )
            })
    }
}

/// `repo[:tag][@digest]` → `repo@digest`.
pub fn pinned(reference: &str, digest: &str) -> String {
    let repo = reference.split('@').next().unwrap_or(reference);
    let name_start = repo.rfind('/').map_or(0, |i| i + 1);
    let repo = match repo[name_start..].rfind(':') {
        Some(colon) => &repo[..name_start + colon],
        None => repo,
    };
    format!("{repo}@{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn references_are_pinned_to_the_digest() {
        assert_eq!(pinned("python:3.12-slim", D), format!("python@{D}"));
        assert_eq!(
            pinned("localhost:5000/team/app:v1", D),
            format!("localhost:5000/team/app@{D}")
        );
        assert_eq!(
            pinned("localhost:5000/app", D),
            format!("localhost:5000/app@{D}")
        );
        assert_eq!(pinned(&format!("ubuntu@{D}"), D), format!("ubuntu@{D}"));
    }

    #[test]
    fn store_images_resolve_others_are_refused() {
        let root = std::env::temp_dir().join(format!("sandpit-k8s-images-{}", std::process::id()));
        std::fs::create_dir_all(root.join("images")).expect("mkdir");
        let l1 = format!("sha256:{}", "1".repeat(64));
        let l2 = format!("sha256:{}", "2".repeat(64));
        let record = serde_json::json!({"reference": "python:3.12", "digest": D, "layers": [l1, l2], "config": {}});
        std::fs::write(root.join("images/sha256-a.json"), record.to_string()).expect("write");
        let images = LayerStoreImages::new(&root);
        let mut spec = crate::plan::tests_support::spec();
        spec.layers = vec![
            images.layer_dir(&l2).expect("dir"),
            images.layer_dir(&l1).expect("dir"),
        ];
        assert_eq!(
            images.image_of(&spec).expect("resolved"),
            format!("python@{D}")
        );
        spec.layers.reverse();
        assert!(matches!(
            images.image_of(&spec),
            Err(KubeError::Unsupported(_))
        ));
        spec.layers = vec!["/data/images/host/usr".into()];
        let err = images.image_of(&spec).expect_err("host image");
        assert!(err.to_string().contains("host image"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
