//! Stored snapshot rows → the API's snapshot body.

pub use sandpit_api::snapshot::SnapshotResponse;

use crate::store::SnapshotRow;

/// `created_by`: the id of the API key that created the snapshot.
pub fn snapshot_response(
    row: &SnapshotRow,
    tags: Vec<String>,
    labels: sandpit_api::snapshot::Labels,
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
