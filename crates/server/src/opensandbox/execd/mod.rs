//! execd (`specs/execd-api.yaml`) translated to the agent's data-plane
//! protocol. The SDK reaches it through the endpoint of port
//! [`super::EXECD_PORT`], which points at `/v1/sandboxes/{id}/execd` on
//! this server (`super::execd_path`); see `routes/opensandbox_execd.rs`.
//!
//! - `commands`: `POST /command` (SSE; foreground and background), status,
//!   logs and interrupt, on the agent's SSE exec sessions.
//! - `executions`: the bounded in-memory table of those commands.
//! - `files`: files and directories, through the agent's `/upload`,
//!   `/download` and `/glob` and small POSIX `sh` scripts (`stat`, `rm`,
//!   `mv`, `chmod`, `chown`, `mkdir`, `find`) run with `/execute`, so an
//!   image needs `/bin/sh` with coreutils or busybox for them.
//! - `metrics`: the sandbox's cgroup (CPU, memory) read the same way.

pub mod commands;
pub mod executions;
pub mod files;
pub mod metrics;

/// Milliseconds since the epoch, as execd's events carry them.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
