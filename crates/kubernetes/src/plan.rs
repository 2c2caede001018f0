//! From the server's [`SandboxSpec`] (made for the local backend) to a
//! [`PodRequest`]: what carries over, and what a Pod cannot have.

use std::path::Path;
use std::sync::Arc;

use sandpit_runtime::{MountSpec, SandboxSpec};

use crate::config::TRUST_STORE;
use crate::error::KubeError;
use crate::manifests::{PodRequest, VolumeClaim};

/// Says which image reference a kubelet pulls for a sandbox. The local
/// backend gets unpacked layers; a Pod needs the registry reference.
pub trait ImageResolver: Send + Sync {
    /// `Err(KubeError::Unsupported)` for images that only exist on one
    /// machine (the built-in `host` image).
    fn image_of(&self, spec: &SandboxSpec) -> Result<String, KubeError>;
}

/// A resolver from a function (tests, one fixed image).
impl<F> ImageResolver for F
where
    F: Fn(&SandboxSpec) -> Result<String, KubeError> + Send + Sync,
{
    fn image_of(&self, spec: &SandboxSpec) -> Result<String, KubeError> {
        self(spec)
    }
}

/// Turns specs into pod requests.
#[derive(Clone)]
pub struct SpecPlanner {
    images: Arc<dyn ImageResolver>,
}

impl SpecPlanner {
    pub fn new(images: Arc<dyn ImageResolver>) -> Self {
        Self { images }
    }

    /// The pod request for `spec`. Host mounts (binds, overlays, FUSE)
    /// cannot reach a Pod and are refused; volumes become claims.
    pub fn plan(&self, spec: &SandboxSpec) -> Result<PodRequest, KubeError> {
        let image = self.images.image_of(spec)?;
        let mut trust_bundle = None;
        let mut volumes = Vec::new();
        for mount in &spec.mounts {
            match trust_bundle_of(mount)? {
                Some(bundle) => trust_bundle = Some(bundle),
                None => volumes.push(volume_of(mount)?),
            }
        }
        Ok(PodRequest {
            id: spec.id.clone(),
            image,
            agent_args: spec.agent_args.clone(),
            env: spec.env.clone(),
            hostname: Some(spec.hostname.clone()).filter(|h| is_dns_label(h)),
            cpu_millis: spec.limits.cpu_millis,
            memory_bytes: spec.limits.memory_bytes,
            fs_capacity_bytes: spec.fs_capacity_bytes,
            isolation: spec.isolation,
            volumes,
            trust_bundle,
        })
    }
}

/// Longest trust bundle carried into a pod (in its Secret, whose whole
/// size Kubernetes caps at 1 MiB).
const MAX_TRUST_BUNDLE: u64 = 768 << 10;

/// The trust bundle the server binds read-only over the image's
/// ([`TRUST_STORE`]): a file of the server's (never a sandbox's), which a
/// pod gets through its Secret instead. `None` for any other mount.
fn trust_bundle_of(mount: &MountSpec) -> Result<Option<String>, KubeError> {
    let MountSpec::Bind {
        source,
        destination,
        readonly: true,
    } = mount
    else {
        return Ok(None);
    };
    if destination != TRUST_STORE {
        return Ok(None);
    }
    let unreadable = |why: String| {
        KubeError::Unsupported(format!("the trust bundle {}: {why}", source.display()))
    };
    let size = std::fs::metadata(source)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    if size > MAX_TRUST_BUNDLE {
        return Err(unreadable(format!(
            "{size} bytes is too large for a Secret"
        )));
    }
    std::fs::read_to_string(source)
        .map(Some)
        .map_err(|e| unreadable(e.to_string()))
}

fn volume_of(mount: &MountSpec) -> Result<VolumeClaim, KubeError> {
    match mount {
        MountSpec::Volume {
            image,
            size_bytes,
            destination,
        } => Ok(VolumeClaim {
            claim: claim_name(image)?,
            size_bytes: *size_bytes,
            destination: destination.clone(),
        }),
        MountSpec::Bind { destination, .. }
        | MountSpec::ReadOnlyOverlay { destination, .. }
        | MountSpec::Fuse { destination, .. } => Err(KubeError::Unsupported(format!(
            "the mount at {destination} is a host path, which a Pod cannot mount"
        ))),
    }
}

/// `volume-<name>-<hash>`, from the volume's image file (`<name>.img`).
fn claim_name(image: &Path) -> Result<String, KubeError> {
    let stem = image
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| s.to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| KubeError::Unsupported(format!("volume image {}", image.display())))?;
    // Two tenants may both have a volume `data`: the path's hash tells
    // their claims apart.
    let name = format!(
        "volume-{stem}-{:08x}",
        fnv1a(image.as_os_str().as_encoded_bytes())
    );
    if name.len() > 253 || !name.split('.').all(is_dns_label) {
        return Err(KubeError::Unsupported(format!(
            "volume {stem:?} is not a valid Kubernetes object name"
        )));
    }
    Ok(name)
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// RFC 1123 label: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
pub(crate) mod tests_support {
    use sandpit_runtime::{Isolation, Limits, SandboxSpec};

    pub fn spec() -> SandboxSpec {
        SandboxSpec {
            id: "00000000-0000-4000-8000-000000000000".into(),
            state_dir: "/unused".into(),
            agent_log: false,
            layers: vec![],
            mounts: vec![],
            agent_binary: "/unused".into(),
            agent_args: vec!["agent".into()],
            agent_socket: "/unused".into(),
            env: vec![],
            workdir: "/".into(),
            hostname: "box".into(),
            limits: Limits {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
                pids: 1024,
            },
            fs_capacity_bytes: 0,
            net_slot: 0,
            userns_base: None,
            isolation: Isolation::Namespaces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("my-box-1"));
        assert!(!is_dns_label("My_Box"));
        assert!(!is_dns_label("-x"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn host_mounts_are_refused_volumes_become_claims() {
        let bind = MountSpec::Bind {
            source: "/etc".into(),
            destination: "/host".into(),
            readonly: true,
        };
        assert!(matches!(volume_of(&bind), Err(KubeError::Unsupported(_))));
        let volume = MountSpec::Volume {
            image: "/data/volumes/t1/Data.img".into(),
            size_bytes: 5,
            destination: "/data".into(),
        };
        let claim = volume_of(&volume).expect("claim").claim;
        assert!(claim.starts_with("volume-data-"), "{claim}");
        let other = MountSpec::Volume {
            image: "/data/volumes/t2/data.img".into(),
            size_bytes: 5,
            destination: "/data".into(),
        };
        assert_ne!(volume_of(&other).expect("claim").claim, claim);
    }
}
