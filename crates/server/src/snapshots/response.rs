//! Stored snapshot rows → the API's snapshot body.

use sandpit_api::sandbox::RunConfig;
use serde::Serialize;

use crate::store::SnapshotRow;

/// A snapshot as `langsmith.sandbox.Snapshot.from_dict` reads it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotResponse {
    pub id: String,
    pub name: String,
    pub status: String,
    pub status_message: Option<String>,
    pub fs_capacity_bytes: i64,
    pub fs_used_bytes: Option<i64>,
    pub docker_image: Option<String>,
    pub image_digest: Option<String>,
    pub source_sandbox_id: Option<String>,
    pub registry_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub tags: Vec<String>,
    pub run_config: Option<RunConfig>,
    /// Inherited, key by key under their own, by sandboxes created from it.
    pub labels: super::validate::Labels,
}

/// `created_by`: the id of the API key that created the snapshot.
pub fn snapshot_response(
    row: &SnapshotRow,
    tags: Vec<String>,
    labels: super::validate::Labels,
    created_by: Option<String>,
) -> SnapshotResponse {
    SnapshotResponse {
        id: row.id.clone(),
        name: row.name.clone(),
        status: row.status.clone(),
        status_message: row.status_message.clone(),
        fs_capacity_bytes: row.fs_capacity_bytes,
        fs_used_bytes: row.fs_used_bytes,
        docker_image: row.docker_image.clone(),
        image_digest: row.image_digest.clone(),
        source_sandbox_id: row.source_sandbox_id.clone(),
        registry_id: row.registry_id.clone(),
        created_by,
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        tags,
        run_config: row
            .run_config
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok()),
        labels,
    }
}
