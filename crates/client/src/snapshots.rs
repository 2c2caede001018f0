//! Snapshots (the `langsmith==0.15.0` API): build one from a Docker image,
//! capture one from a running sandbox, list, get, delete, and wait for a
//! build to finish.

use std::time::{Duration, Instant};

use sandpit_api::snapshot::{
    CaptureSnapshotRequest, CreateSnapshotRequest, SnapshotListResponse, SnapshotResponse,
};

use crate::escape::segment;
use crate::{Client, ClientError};

/// Why [`Client::wait_for_snapshot`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The build failed; the message names the cause (missing image,
    /// unreachable registry, digest mismatch...).
    #[error("snapshot {name} failed: {message}")]
    Failed { name: String, message: String },
    #[error("snapshot {name} is still {status} after {waited:?}")]
    Timeout {
        name: String,
        status: String,
        waited: Duration,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Client {
    /// Start building a snapshot; it comes back `building` (see
    /// [`Client::wait_for_snapshot`]).
    pub async fn create_snapshot(
        &self,
        req: &CreateSnapshotRequest,
    ) -> Result<SnapshotResponse, ClientError> {
        self.request(http::Method::POST, "/snapshots", Some(req))
            .await
    }

    /// Start capturing sandbox `sandbox`'s files as a new snapshot.
    pub async fn capture_snapshot(
        &self,
        sandbox: &str,
        req: &CaptureSnapshotRequest,
    ) -> Result<SnapshotResponse, ClientError> {
        let path = format!("/boxes/{}/snapshot", segment(sandbox));
        self.request(http::Method::POST, &path, Some(req)).await
    }

    /// One snapshot by id, `name:tag` or bare name (its `latest`).
    pub async fn get_snapshot(&self, reference: &str) -> Result<SnapshotResponse, ClientError> {
        let path = format!("/snapshots/{}", segment(reference));
        self.request::<(), _>(http::Method::GET, &path, None).await
    }

    /// One page of snapshots, newest first; `name_contains` filters names
    /// (case-insensitive), `limit` is 1–500 (server default 50).
    pub async fn list_snapshots(
        &self,
        name_contains: Option<&str>,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<Vec<SnapshotResponse>, ClientError> {
        let mut query = Vec::new();
        if let Some(name) = name_contains {
            query.push(format!("name_contains={}", segment(name)));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(offset) = offset {
            query.push(format!("offset={offset}"));
        }
        let path = match query.is_empty() {
            true => "/snapshots".to_owned(),
            false => format!("/snapshots?{}", query.join("&")),
        };
        let list: SnapshotListResponse = self
            .request::<(), _>(http::Method::GET, &path, None)
            .await?;
        Ok(list.snapshots)
    }

    /// Delete a snapshot (id or reference). Sandboxes booted from it keep
    /// working.
    pub async fn delete_snapshot(&self, reference: &str) -> Result<(), ClientError> {
        let path = format!("/snapshots/{}", segment(reference));
        self.send::<()>(http::Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    /// Poll snapshot `id` every `interval` until it is `ready` (returned)
    /// or `failed` (an error carrying the server's message), giving up
    /// after `timeout`. `on_poll` sees every state read, for progress.
    pub async fn wait_for_snapshot(
        &self,
        id: &str,
        interval: Duration,
        timeout: Duration,
        mut on_poll: impl FnMut(&SnapshotResponse),
    ) -> Result<SnapshotResponse, WaitError> {
        let started = Instant::now();
        loop {
            let snapshot = self.get_snapshot(id).await?;
            on_poll(&snapshot);
            match snapshot.status.as_str() {
                SnapshotResponse::READY => return Ok(snapshot),
                SnapshotResponse::FAILED => {
                    return Err(WaitError::Failed {
                        message: snapshot
                            .status_message
                            .unwrap_or_else(|| "no reason given".into()),
                        name: snapshot.name,
                    })
                }
                _ if started.elapsed() >= timeout => {
                    return Err(WaitError::Timeout {
                        name: snapshot.name,
                        status: snapshot.status,
                        waited: started.elapsed(),
                    })
                }
                _ => tokio::time::sleep(interval).await,
            }
        }
    }
}
