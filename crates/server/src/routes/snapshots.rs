//! `/snapshots` handlers: parse, call the snapshot controller, render.

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandpit_api::snapshot::{SnapshotListResponse, SnapshotTag, SnapshotTagsResponse};

use super::extract::{Body, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::snapshots::validate::{
    self, CaptureSnapshotRequest, CreateSnapshotRequest, ListSnapshotsQuery,
};
use crate::snapshots::{snapshot_response, Capture, SnapshotResponse, Snapshots};
use crate::state::AppState;
use crate::store::SnapshotRow;

async fn render(snapshots: &Snapshots, row: &SnapshotRow) -> Result<SnapshotResponse, ApiError> {
    let tags = snapshots.tags_of(&row.id).await?;
    let (labels, created_by) = snapshots.meta_of(&row.id).await?;
    Ok(snapshot_response(row, tags, labels, created_by))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateSnapshotRequest>,
) -> Result<Response, ApiError> {
    let snapshots = state.snapshots()?;
    let spec = validate::create_snapshot(req, state.sandboxes.defaults().fs_capacity_bytes)?;
    let credentials = match &spec.registry_id {
        Some(id) => {
            super::registries::credentials_for(&state, &caller, id, &spec.docker_image).await?
        }
        None => None,
    };
    let row = snapshots.create_with(&caller, spec, credentials).await?;
    let body = render(snapshots, &row).await?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListSnapshotsQuery>,
) -> Result<Response, ApiError> {
    let snapshots = state.snapshots()?;
    let (limit, offset) = validate::list_window(&query)?;
    let rows = snapshots
        .list(&caller, query.name_contains.as_deref(), limit, offset)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(render(snapshots, row).await?);
    }
    let list = SnapshotListResponse {
        snapshots: out,
        offset,
    };
    Ok(Json(list).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<SnapshotResponse>, ApiError> {
    let snapshots = state.snapshots()?;
    let row = snapshots.get(&caller, &reference).await?;
    Ok(Json(render(snapshots, &row).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.snapshots()?.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tags_by_name(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if name.contains(':') {
        return Err(ApiError::Validation(format!(
            "'{name}' carries a tag; pass the snapshot name only"
        )));
    }
    let tags = state.snapshots()?.tags_by_name(&caller, &name).await?;
    let tags = tags
        .into_iter()
        .map(|(tag, snapshot_id)| SnapshotTag { tag, snapshot_id })
        .collect();
    Ok(Json(SnapshotTagsResponse { name, tags }).into_response())
}

/// A capture copies the sandbox's files, so it runs on the replica that
/// runs the sandbox (`cluster::forward::to_owner`).
pub async fn capture(
    State(state): State<AppState>,
    caller: Caller,
    Path(sandbox): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let row = state.sandboxes.find(&caller, &sandbox).await?;
    let request = match crate::cluster::forward::to_owner(&state, &row.id, request).await? {
        Ok(proxied) => return Ok(proxied),
        Err(request) => request,
    };
    let Body(req) = Body::<CaptureSnapshotRequest>::from_request(request, &state).await?;
    let snapshots = state.snapshots()?;
    let (name, tag) = validate::capture_names(&req)?;
    let source = state.sandboxes.capture_source(&caller, &sandbox).await?;
    let capture = Capture {
        name,
        tag,
        fs_capacity_bytes: req
            .fs_capacity_bytes
            .unwrap_or(source.row.fs_capacity_bytes),
        run_config: req.run_config,
        source_sandbox_id: source.row.id,
        base_digest: source.base_digest,
        labels: req.labels.unwrap_or_default(),
        base_run_config: source.base_run_config,
        upper: source.upper,
        freeze: source.freeze,
    };
    let snapshot = snapshots.capture(&caller, capture).await?;
    let body = render(snapshots, &snapshot).await?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
