//! Sandbox resources of the LangSmith v2 API (`/api/v2/sandboxes/boxes`).
//!
//! Request types keep numeric fields signed and optional so that the server can
//! answer "must be >= 0" instead of a serde type error. A create request keeps
//! the fields it does not name in `extra`, so the server can refuse them by
//! name (it never stores and echoes a field it does not implement).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// Lifecycle status of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxStatus {
    Provisioning,
    Ready,
    Failed,
    Stopped,
    Deleting,
}

impl SandboxStatus {
    pub const ALL: [SandboxStatus; 5] = [
        SandboxStatus::Provisioning,
        SandboxStatus::Ready,
        SandboxStatus::Failed,
        SandboxStatus::Stopped,
        SandboxStatus::Deleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxStatus::Provisioning => "provisioning",
            SandboxStatus::Ready => "ready",
            SandboxStatus::Failed => "failed",
            SandboxStatus::Stopped => "stopped",
            SandboxStatus::Deleting => "deleting",
        }
    }
}

impl fmt::Display for SandboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandboxStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!("status must be one of provisioning, ready, failed, stopped, deleting; got '{s}'")
            })
    }
}

/// User, working directory and environment commands run with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
}

/// `POST /boxes` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CreateSandboxRequest {
    pub name: Option<String>,
    pub wait_for_ready: Option<bool>,
    /// Seconds to wait for `ready` when `wait_for_ready` is true.
    pub timeout: Option<i64>,
    pub snapshot_id: Option<String>,
    pub snapshot: Option<String>,
    pub snapshot_name: Option<String>,
    pub template_name: Option<String>,
    pub vcpus: Option<i64>,
    pub mem_bytes: Option<i64>,
    pub fs_capacity_bytes: Option<i64>,
    pub idle_ttl_seconds: Option<i64>,
    pub delete_after_stop_seconds: Option<i64>,
    /// Hard lifetime of the template-era SDK (`langsmith==0.7.30`).
    pub ttl_seconds: Option<i64>,
    pub persistent: Option<bool>,
    pub proxy_config: Option<Value>,
    pub run_config: Option<RunConfig>,
    pub labels: Option<BTreeMap<String, String>>,
    /// `"namespaces"` or `"gvisor"` (default: the server's
    /// `--default-isolation`); returned as `isolation`.
    pub isolation: Option<String>,
    /// Governed LangSmith tag value ids: stored and returned like labels,
    /// with no other meaning here.
    pub tag_value_ids: Option<Vec<String>>,
    /// Memory suspension on stop: not implemented, only `false` is accepted.
    pub preserve_memory_on_stop: Option<bool>,
    /// Resuming a snapshot's memory: not implemented, only `false` is
    /// accepted.
    pub restore_memory: Option<bool>,
    /// API access for code in the sandbox, as the creator:
    /// `{"mode": "EXPLICIT", "permissions": ["sandboxes:read", ...]}`
    /// (validated by the server, which names what is wrong; returned as
    /// stored).
    pub access_delegation: Option<Value>,
    /// Every other field. The `/boxes` route refuses those it does not
    /// implement (422 naming the field); internal callers use it to store
    /// their own data with the sandbox.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `PATCH /boxes/{name}` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSandboxRequest {
    pub name: Option<String>,
    pub idle_ttl_seconds: Option<i64>,
    pub delete_after_stop_seconds: Option<i64>,
    pub ttl_seconds: Option<i64>,
    pub proxy_config: Option<Value>,
    pub run_config: Option<RunConfig>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// `GET /boxes` query string, as in the seed's OpenAPI document.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSandboxesQuery {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub name_contains: Option<String>,
    pub status: Option<String>,
    pub sort_by: Option<String>,
    pub sort_direction: Option<String>,
}

/// One sandbox as every endpoint returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxResponse {
    pub id: String,
    pub name: String,
    pub status: SandboxStatus,
    pub status_message: Option<String>,
    pub dataplane_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
    pub vcpus: i64,
    pub mem_bytes: i64,
    pub fs_capacity_bytes: i64,
    pub idle_ttl_seconds: i64,
    pub delete_after_stop_seconds: i64,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<String>,
    pub stopped_at: Option<String>,
    /// Last exec, file or other data-plane call (drives the idle stop).
    pub last_activity_at: String,
    pub snapshot_id: Option<String>,
    pub template_name: Option<String>,
    pub image: String,
    pub persistent: bool,
    pub proxy_config: Option<Value>,
    pub run_config: Option<RunConfig>,
    pub labels: BTreeMap<String, String>,
    /// Accepted-and-stored request fields, echoed back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /boxes` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxListResponse {
    pub sandboxes: Vec<SandboxResponse>,
    /// The offset of the first sandbox in `sandboxes` (the request's offset).
    pub offset: i64,
}

/// `GET /boxes/{name}/status` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    pub status: SandboxStatus,
    pub status_message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_name() {
        for status in SandboxStatus::ALL {
            assert_eq!(status.as_str().parse::<SandboxStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                Value::String(status.as_str().into())
            );
        }
        assert!("running".parse::<SandboxStatus>().is_err());
    }

    #[test]
    fn create_request_keeps_unknown_fields() {
        let req: CreateSandboxRequest =
            serde_json::from_str(r#"{"name":"a","vcpus":2,"size_class":"small"}"#).unwrap();
        assert_eq!(req.vcpus, Some(2));
        assert_eq!(req.extra.get("size_class"), Some(&Value::from("small")));
    }

    #[test]
    fn create_request_rejects_wrong_types() {
        assert!(serde_json::from_str::<CreateSandboxRequest>(r#"{"vcpus":"two"}"#).is_err());
    }
}
