//! Sandbox runtime backends.
//!
//! [`Runtime`] is what the server asks of a backend: start a sandbox from a
//! [`SandboxSpec`], stop it, and say which sandboxes are still running (for
//! crash recovery). The `local` backend builds each sandbox from Linux
//! namespaces, a cgroup, an overlay root and a veth pair. It is synchronous
//! and must be driven from a single-threaded process (see `helper`): it forks.
//!
//! Architecture invariant: this crate never depends on tokio and never speaks
//! HTTP; it knows processes, mounts, cgroups and network devices.

pub mod spec;

pub use spec::{Limits, MountSpec, RunningSandbox, SandboxSpec, Started};

use thiserror::Error;

/// Errors a runtime backend reports. They cross the helper-process boundary as
/// data, so they carry strings rather than source errors.
#[derive(Debug, Error, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RuntimeError {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("sandbox {0} is already running")]
    AlreadyRunning(String),
    #[error("sandbox {0} is not running")]
    NotRunning(String),
    #[error("failed to set up {stage}: {message}")]
    Setup { stage: String, message: String },
    #[error("failed to tear down {stage}: {message}")]
    Teardown { stage: String, message: String },
    #[error("runtime helper failed: {0}")]
    Helper(String),
}

/// A sandbox backend.
pub trait Runtime: Send + Sync {
    /// Start the sandbox's init (the agent) and return once it is running.
    fn start(&self, spec: &SandboxSpec) -> Result<Started, RuntimeError>;
    /// Kill every process of the sandbox and release its kernel objects
    /// (cgroup, network namespace and devices, mounts). Files under the
    /// sandbox's state directory are kept. Stopping a sandbox that is not
    /// running succeeds.
    fn stop(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sandboxes whose init is still alive.
    fn running(&self) -> Result<Vec<RunningSandbox>, RuntimeError>;
}
