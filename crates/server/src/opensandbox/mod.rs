//! OpenSandbox compatibility: the lifecycle API
//! (`alibaba/OpenSandbox` `specs/sandbox-lifecycle.yml`) and execd
//! (`specs/execd-api.yaml`), so the unmodified `opensandbox` SDKs work
//! against `sandpit serve`.
//!
//! Nothing here is a second implementation of sandboxes: lifecycle calls go
//! to the same controller (`crate::sandboxes`) as the LangSmith API, on the
//! same rows, and execd calls are translated to the agent's data-plane
//! protocol (`agent`). The HTTP handlers live in
//! `routes/opensandbox_lifecycle.rs` and `routes/opensandbox_execd.rs`.

pub mod agent;
pub mod auth;
pub mod code;
pub mod error;
pub mod execd;
pub mod lifecycle;
pub mod model;
pub mod sweeper;

/// execd's port: the SDK asks for the endpoint of this port and finds
/// Sandpit's execd translation there.
pub const EXECD_PORT: u16 = 44772;

/// Path of sandbox `id`'s execd, relative to the server's base URL.
pub fn execd_path(id: &str) -> String {
    format!("/v1/sandboxes/{id}/execd")
}
