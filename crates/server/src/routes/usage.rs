//! `GET /boxes/{name}/usage`: what a sandbox uses now, from its cgroup (CPU
//! time, memory current and peak, processes) and its writable layer's disk
//! image (bytes allocated). The console polls it for its charts. Tenant
//! rules as for every box route: another tenant's sandbox is 404.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::{Extension, Json};
use serde::Serialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::health::Probes;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct UsageResponse {
    pub name: String,
    pub status: String,
    /// False when the sandbox has no cgroup (stopped): the numbers are 0.
    pub running: bool,
    /// CPU time of every process in the sandbox since it started.
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    /// Highest memory since the sandbox started (`null` where the kernel
    /// does not keep it).
    pub memory_peak_bytes: Option<u64>,
    pub memory_limit_bytes: i64,
    pub vcpus: i64,
    pub processes: u64,
    /// Bytes the writable layer takes on the host's disk (`null` for a
    /// sandbox without a disk image).
    pub disk_bytes: Option<u64>,
    pub fs_capacity_bytes: i64,
    /// When this was read (RFC 3339).
    pub sampled_at: String,
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(name): UrlPath<String>,
    probes: Option<Extension<Arc<Probes>>>,
) -> Result<Json<UsageResponse>, ApiError> {
    let row = state.sandboxes.find(&caller, &name).await?;
    let Some(Extension(probes)) = probes else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "no runtime is installed for usage"
        )));
    };
    let runtime = probes.runtime.clone();
    let id = row.id.clone();
    let usage = tokio::task::spawn_blocking(move || runtime.usage(&id))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))?;
    let disk = disk_bytes(&state.config.data_dir.join("sandboxes").join(&row.id));
    let usage_or_zero = usage.unwrap_or_default();
    Ok(Json(UsageResponse {
        running: usage.is_some(),
        cpu_seconds: usage_or_zero.cpu_usec as f64 / 1e6,
        memory_bytes: usage_or_zero.memory_bytes,
        memory_peak_bytes: usage_or_zero.memory_peak_bytes,
        memory_limit_bytes: row.mem_bytes,
        vcpus: row.vcpus,
        processes: usage_or_zero.processes,
        disk_bytes: disk,
        fs_capacity_bytes: row.fs_capacity_bytes,
        sampled_at: crate::store::now(),
        name: row.name,
        status: row.status,
    }))
}

/// Bytes allocated to the sandbox's disk image (sparse: what it really
/// takes). The image is the host's file, outside the sandbox's reach; its
/// contents are not read.
fn disk_bytes(sandbox_dir: &Path) -> Option<u64> {
    let meta = std::fs::symlink_metadata(sandbox_dir.join("disk.img")).ok()?;
    meta.file_type().is_file().then(|| meta.blocks() * 512)
}
