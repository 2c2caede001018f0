//! The Kubernetes runtime backend: each sandbox is a Pod.
//!
//! [`KubernetesRuntime`] implements [`sandpit_runtime::Runtime`] against the
//! Kubernetes API (the `kube` client; the trait is synchronous, so each call
//! blocks on the server's tokio runtime, the way the local backend blocks on
//! its helper process). A sandbox becomes, in one namespace:
//!
//! - a `Secret` `sandbox-<id>` holding the agent's bearer credential,
//! - a `NetworkPolicy` `sandbox-<id>`: ingress only from Sandpit's pods,
//!   egress only to cluster DNS and the egress proxy,
//! - a `PersistentVolumeClaim` `volume-<name>` per volume (kept on stop),
//! - the `Pod` `sandbox-<id>`: an init container copies the static `sandpit`
//!   binary out of the server image into an `emptyDir`, and the sandbox
//!   container runs it as PID 1 (`sandpit agent --listen tcp:0.0.0.0:PORT`).
//!
//! [`manifests`] builds those objects (pure functions, no I/O), [`plan`]
//! turns a [`sandpit_runtime::SandboxSpec`] into a [`manifests::PodRequest`],
//! [`watch`] follows pods through the watch API (the local backend's pidfd
//! watch's equivalent).
//!
//! Tested against an in-process fake API server (`tests/fake_api.rs`), not a
//! real cluster: no API server or kubelet can run where CI runs.
//! `scripts/e2e-kubernetes` runs the e2e suite on a real cluster.

pub mod config;
pub mod error;
pub mod images;
pub mod manifests;
pub mod plan;
pub mod runtime;
pub mod watch;

pub use config::KubernetesConfig;
pub use error::KubeError;
pub use images::LayerStoreImages;
pub use manifests::{PodRequest, VolumeClaim};
pub use plan::{ImageResolver, SpecPlanner};
pub use runtime::{KubernetesRuntime, PodAddress};
