//! Warm pools (`/pools`, langsmith 0.7.x): pre-started sandboxes of a
//! template, handed out by `create` with that template.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolResponse {
    pub id: String,
    pub name: String,
    pub template_name: String,
    /// Desired number of warm sandboxes.
    pub replicas: i64,
    /// Warm sandboxes ready to be handed out now.
    pub ready_replicas: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolListResponse {
    pub pools: Vec<PoolResponse>,
}

/// `POST /pools`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolRequest {
    pub name: String,
    pub template_name: String,
    pub replicas: i64,
    #[serde(default)]
    pub wait_for_ready: bool,
    /// Seconds to wait for the replicas when `wait_for_ready` (10–600).
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// `PATCH /pools/{name}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePoolRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
}
