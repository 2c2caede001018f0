//! Errors of the Kubernetes backend.

use sandpit_runtime::RuntimeError;

/// Why a Kubernetes call failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API server answered with an error, or could not be reached.
    #[error("Kubernetes API")]
    Api(#[from] kube::Error),
    /// The cluster cannot do what the sandbox asks (e.g. the `host` image,
    /// host bind mounts).
    #[error("not possible on Kubernetes: {0}")]
    Unsupported(String),
    /// The pod did not become ready in time, or failed.
    #[error("pod {pod}: {message}")]
    Pod { pod: String, message: String },
    /// Something the API server returned is missing a field we need.
    #[error("pod {0} has no IP address yet")]
    NoAddress(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<KubeError> for RuntimeError {
    fn from(err: KubeError) -> Self {
        RuntimeError::Helper(sandpit_runtime::error_chain(&err))
    }
}
