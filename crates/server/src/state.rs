//! Shared server state handed to every handler.

use std::sync::Arc;

use crate::auth::Keys;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::gateway::tokens::ServiceKeys;
use crate::sandboxes::Sandboxes;
use crate::snapshots::Snapshots;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub keys: Arc<Keys>,
    pub sandboxes: Arc<Sandboxes>,
    /// Keys that sign service and endpoint tokens.
    pub service_keys: Arc<ServiceKeys>,
    /// Workspace secrets (sealed at rest).
    pub secrets: Arc<crate::secrets::Secrets>,
    /// The other replicas, when there are (`crate::cluster`).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Snapshots and OCI images; `None`: not enabled (see
    /// [`AppState::snapshots`]).
    pub snapshots: Option<Arc<Snapshots>>,
}

impl AppState {
    /// The snapshots, or 400 where this server has none.
    pub fn snapshots(&self) -> Result<&Arc<Snapshots>, ApiError> {
        self.snapshots
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("Images are not enabled on this server".into()))
    }

    /// Base URL clients reach this server at: `--public-url`, else the
    /// request's `Host` (`https` with `--tls-cert`).
    pub fn base_url(&self, headers: &http::HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
            .map(str::to_owned)
            .unwrap_or_else(|| self.config.listen.to_string());
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}")
    }
}
