//! Snapshots (`/snapshots`, langsmith 0.15): images a sandbox boots from,
//! built from a Docker image or captured from a running sandbox.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sandbox::RunConfig;

/// A snapshot's labels, inherited key by key by sandboxes created from it.
pub type Labels = BTreeMap<String, String>;

/// A snapshot as `langsmith.sandbox.Snapshot.from_dict` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    pub id: String,
    pub name: String,
    /// `building`, `ready` or `failed`.
    pub status: String,
    #[serde(default)]
    pub status_message: Option<String>,
    pub fs_capacity_bytes: i64,
    #[serde(default)]
    pub fs_used_bytes: Option<i64>,
    #[serde(default)]
    pub docker_image: Option<String>,
    #[serde(default)]
    pub image_digest: Option<String>,
    #[serde(default)]
    pub source_sandbox_id: Option<String>,
    #[serde(default)]
    pub registry_id: Option<String>,
    /// The id of the API key that created it.
    #[serde(default)]
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub run_config: Option<RunConfig>,
    #[serde(default)]
    pub labels: Labels,
}

impl SnapshotResponse {
    pub const READY: &'static str = "ready";
    pub const FAILED: &'static str = "failed";

    /// Still being pulled or copied.
    pub fn is_building(&self) -> bool {
        self.status != Self::READY && self.status != Self::FAILED
    }
}

/// `GET /snapshots` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotListResponse {
    pub snapshots: Vec<SnapshotResponse>,
    /// The offset of the first snapshot in `snapshots` (the request's).
    #[serde(default)]
    pub offset: i64,
}

/// `POST /snapshots`: build a snapshot from `docker_image`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotRequest {
    pub name: String,
    pub docker_image: String,
    /// Capacity of a sandbox's writable layer (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_capacity_bytes: Option<i64>,
    /// Default: `latest` and the image's own tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A registry of the tenant (`/registries`) to pull with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_config: Option<RunConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// `POST /boxes/{name}/snapshot`: capture a running sandbox's files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSnapshotRequest {
    pub name: String,
    /// Default `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Sent by `create_snapshot_from_dockerfile`; refused by Sandpit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// Default: the sandbox's capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_capacity_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_config: Option<RunConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// `GET /snapshots` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSnapshotsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// One tag of a snapshot name and the snapshot it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTag {
    pub tag: String,
    pub snapshot_id: String,
}

/// `GET /snapshots-by-name/{name}` response: the tags of a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTagsResponse {
    pub name: String,
    pub tags: Vec<SnapshotTag>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot() -> SnapshotResponse {
        SnapshotResponse {
            id: "id1".into(),
            name: "py".into(),
            status: "building".into(),
            status_message: None,
            fs_capacity_bytes: 1 << 30,
            fs_used_bytes: None,
            docker_image: Some("python:3.12".into()),
            image_digest: None,
            source_sandbox_id: None,
            registry_id: None,
            created_by: Some("key1".into()),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:01Z".into(),
            tags: vec!["latest".into()],
            run_config: None,
            labels: Labels::from([("team".into(), "a".into())]),
        }
    }

    /// The fields `Snapshot.from_dict` reads, with nulls kept (the SDK
    /// reads `status_message` etc. with `.get`).
    #[test]
    fn snapshot_has_the_sdk_field_names() {
        let value = serde_json::to_value(snapshot()).unwrap();
        assert_eq!(
            value,
            json!({
                "id": "id1", "name": "py", "status": "building",
                "status_message": null, "fs_capacity_bytes": 1073741824_i64,
                "fs_used_bytes": null, "docker_image": "python:3.12",
                "image_digest": null, "source_sandbox_id": null,
                "registry_id": null, "created_by": "key1",
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:01Z", "tags": ["latest"],
                "run_config": null, "labels": {"team": "a"},
            })
        );
        let back: SnapshotResponse = serde_json::from_value(value).unwrap();
        assert_eq!(back, snapshot());
        assert!(back.is_building());
    }

    #[test]
    fn list_round_trips() {
        let list = SnapshotListResponse {
            snapshots: vec![snapshot()],
            offset: 3,
        };
        let value = serde_json::to_value(&list).unwrap();
        assert_eq!(value["offset"], 3);
        assert_eq!(value["snapshots"][0]["name"], "py");
        assert_eq!(
            serde_json::from_value::<SnapshotListResponse>(value).unwrap(),
            list
        );
    }

    #[test]
    fn create_request_omits_what_is_unset_and_refuses_unknown_fields() {
        let req = CreateSnapshotRequest {
            name: "py".into(),
            docker_image: "python:3.12".into(),
            ..Default::default()
        };
        let value = serde_json::to_value(&req).unwrap();
        assert_eq!(value, json!({"name": "py", "docker_image": "python:3.12"}));
        assert_eq!(
            serde_json::from_value::<CreateSnapshotRequest>(value).unwrap(),
            req
        );
        let sdk = json!({"name": "py", "docker_image": "python:3.12",
            "fs_capacity_bytes": 1024, "tag": "v1", "registry_id": "r",
            "run_config": {"user": "root"}, "labels": {"a": "b"}});
        let parsed: CreateSnapshotRequest = serde_json::from_value(sdk.clone()).unwrap();
        assert_eq!(parsed.registry_id.as_deref(), Some("r"));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), sdk);
        let bogus = json!({"name": "py", "docker_image": "x", "vcpus": 2});
        assert!(serde_json::from_value::<CreateSnapshotRequest>(bogus).is_err());
    }

    #[test]
    fn capture_request_round_trips() {
        let sdk = json!({"name": "cap", "tag": "t", "fs_capacity_bytes": 4096,
            "run_config": {"work_dir": "/w"}, "labels": {}});
        let parsed: CaptureSnapshotRequest = serde_json::from_value(sdk.clone()).unwrap();
        assert_eq!(parsed.docker_image, None);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), sdk);
        assert!(serde_json::from_value::<CaptureSnapshotRequest>(json!({"tag": "t"})).is_err());
    }

    #[test]
    fn tags_response_shape() {
        let tags = SnapshotTagsResponse {
            name: "py".into(),
            tags: vec![SnapshotTag {
                tag: "latest".into(),
                snapshot_id: "id1".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(&tags).unwrap(),
            json!({"name": "py", "tags": [{"tag": "latest", "snapshot_id": "id1"}]})
        );
        let query = ListSnapshotsQuery {
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&query).unwrap(), json!({"limit": 5}));
    }
}
