//! Lifecycle wire types (`specs/sandbox-lifecycle.yml`) and the view of a
//! Sandpit sandbox row as an OpenSandbox `Sandbox`.
//!
//! One row, two APIs: OpenSandbox `metadata` is the row's `labels`, `env`
//! is `run_config.env_vars`, `timeout` is `ttl_seconds` (so `expiresAt` is
//! `createdAt + ttl_seconds`), and what only OpenSandbox has (the image
//! URI as given, the entrypoint) is kept under the row's extra field
//! [`EXTRA_KEY`].

use std::collections::BTreeMap;

use sandpit_api::SandboxStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::store::SandboxRow;

/// Key of the row's extra fields holding [`Extra`].
pub const EXTRA_KEY: &str = "opensandbox";

/// The entrypoint a sandbox gets when none is given (the SDK's default).
pub fn default_entrypoint() -> Vec<String> {
    ["tail", "-f", "/dev/null"].map(String::from).to_vec()
}

/// What OpenSandbox keeps on a row besides the shared columns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Extra {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
}

impl Extra {
    pub fn of(row: &SandboxRow) -> Option<Self> {
        let extra: serde_json::Map<String, Value> = serde_json::from_str(&row.extra).ok()?;
        serde_json::from_value(extra.get(EXTRA_KEY)?.clone()).ok()
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = OsImageSpec)]
pub struct ImageSpec {
    pub uri: String,
    #[serde(default)]
    pub auth: Option<Value>,
}

/// `POST /v1/sandboxes` body. Unknown fields are ignored (newer SDKs send
/// more); fields Sandpit does not implement are refused in `lifecycle`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = OsCreateSandboxRequest)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    pub image: Option<ImageSpec>,
    pub snapshot_id: Option<String>,
    pub template_id: Option<String>,
    /// Seconds; `null` or absent: no expiry.
    pub timeout: Option<i64>,
    pub resource_limits: Option<BTreeMap<String, String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub entrypoint: Option<Vec<String>>,
    pub network_policy: Option<Value>,
    pub volumes: Option<Vec<Value>>,
    pub extensions: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = OsRenewRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewRequest {
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OsRenewResponse)]
#[serde(rename_all = "camelCase")]
pub struct RenewResponse {
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OsSandboxStatus)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub last_transition_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OsImage)]
pub struct ImageView {
    pub uri: String,
}

/// `Sandbox` of the spec (GET, list); without the image it is the
/// spec's `CreateSandboxResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OsSandbox)]
#[serde(rename_all = "camelCase")]
pub struct SandboxView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageView>,
    pub status: StatusView,
    pub metadata: BTreeMap<String, String>,
    pub entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OsPagination)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub page: usize,
    pub page_size: usize,
    pub total_items: usize,
    pub total_pages: usize,
    pub has_next_page: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OsSandboxList)]
pub struct ListView {
    pub items: Vec<SandboxView>,
    pub pagination: Pagination,
}

/// The OpenSandbox state of a Sandpit status. A stopped sandbox is
/// `Paused` (pause is a stop, see `lifecycle`); rows are deleted, so
/// `Terminated` is never stored.
pub fn state_of(status: SandboxStatus) -> &'static str {
    match status {
        SandboxStatus::Provisioning => "Pending",
        SandboxStatus::Ready => "Running",
        SandboxStatus::Stopped => "Paused",
        SandboxStatus::Failed => "Failed",
        SandboxStatus::Deleting => "Stopping",
    }
}

/// The Sandpit statuses an OpenSandbox `state` filter value selects
/// (case-insensitive; states Sandpit never reports select nothing).
pub fn statuses_of(state: &str) -> Vec<SandboxStatus> {
    SandboxStatus::ALL
        .into_iter()
        .filter(|s| state_of(*s).eq_ignore_ascii_case(state.trim()))
        .collect()
}

fn reason_of(status: SandboxStatus) -> Option<&'static str> {
    match status {
        SandboxStatus::Failed => Some("runtime_error"),
        SandboxStatus::Deleting => Some("user_delete"),
        SandboxStatus::Stopped => Some("stopped"),
        _ => None,
    }
}

/// RFC 3339 with second precision and `Z`, as the spec's examples.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn reformat(stored: &str) -> String {
    crate::store::parse_time(stored)
        .map(rfc3339)
        .unwrap_or_else(|_| stored.to_owned())
}

/// `createdAt + ttl_seconds`, if the sandbox has a lifetime.
pub fn expires_at(row: &SandboxRow) -> Option<chrono::DateTime<chrono::Utc>> {
    let ttl = row.ttl_seconds.filter(|t| *t > 0)?;
    let created = crate::store::parse_time(&row.created_at).ok()?;
    Some(created + chrono::Duration::seconds(ttl))
}

fn status_view(row: &SandboxRow) -> StatusView {
    let status = row.status().unwrap_or(SandboxStatus::Failed);
    StatusView {
        state: state_of(status),
        reason: reason_of(status),
        message: row.status_message.clone(),
        last_transition_at: reformat(&row.updated_at),
    }
}

fn labels(row: &SandboxRow) -> BTreeMap<String, String> {
    serde_json::from_str(&row.labels).unwrap_or_default()
}

/// The image URI to show: as given to OpenSandbox, else what the row
/// boots (`host`, the snapshot id, or the template name).
fn image_uri(row: &SandboxRow, extra: Option<&Extra>) -> String {
    if let Some(uri) = extra.and_then(|e| e.image.clone()) {
        return uri;
    }
    row.snapshot_id
        .clone()
        .or_else(|| row.template_name.clone())
        .unwrap_or_else(|| row.image.clone())
}

pub fn sandbox_view(row: &SandboxRow) -> SandboxView {
    let extra = Extra::of(row);
    SandboxView {
        id: row.id.clone(),
        image: Some(ImageView {
            uri: image_uri(row, extra.as_ref()),
        }),
        status: status_view(row),
        metadata: labels(row),
        entrypoint: extra.map(|e| e.entrypoint).unwrap_or_default(),
        expires_at: expires_at(row).map(rfc3339),
        created_at: reformat(&row.created_at),
    }
}

pub fn create_view(row: &SandboxRow) -> SandboxView {
    SandboxView {
        image: None,
        ..sandbox_view(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_filters() {
        for status in SandboxStatus::ALL {
            assert_eq!(statuses_of(state_of(status)), vec![status]);
        }
        assert_eq!(statuses_of("running"), vec![SandboxStatus::Ready]);
        assert!(statuses_of("Terminated").is_empty());
    }
}
