//! A `run_config` update reaches a running sandbox's agent at once (`PUT
//! /_sandpit/run-config`, see `crates/agent/src/http/control.rs`), so the
//! next command uses it without a restart; a stopped sandbox gets it from
//! its row at its next boot.

use axum::body::Body;
use axum::http::{header, Request};

use super::Sandboxes;
use crate::gateway::relay::{self, Upstream};
use crate::store::SandboxRow;

/// The agent's control path (`sandpit_agent`'s `CONTROL_RUN_CONFIG`); the
/// data-plane relay refuses everything under `/_sandpit/`.
const CONTROL_RUN_CONFIG: &str = "/_sandpit/run-config";

impl Sandboxes {
    /// Hands `row`'s stored (merged) `run_config` to its agent if the
    /// sandbox is running. A failure is logged: the row is already updated
    /// and the next boot applies it.
    pub async fn push_run_config(&self, row: &SandboxRow) {
        let socket = self.live.get(&row.id).map(|live| live.socket);
        let Some(socket) = socket else { return };
        let body = row.run_config.clone().unwrap_or_else(|| "{}".into());
        let request = Request::put(CONTROL_RUN_CONFIG)
            .header(header::HOST, "sandbox")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body));
        let outcome = match request {
            Ok(request) => relay::forward(request, &Upstream::Unix(socket), CONTROL_RUN_CONFIG)
                .await
                .map(|response| response.status())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(status) if status.is_success() => {}
            Ok(status) => {
                tracing::warn!(sandbox = %row.id, %status, "the agent refused the new run_config")
            }
            Err(error) => {
                tracing::warn!(sandbox = %row.id, %error, "cannot hand the new run_config to the agent")
            }
        }
    }
}
