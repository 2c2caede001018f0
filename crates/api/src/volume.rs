//! Volumes (`/volumes`, langsmith 0.7): storage of a fixed size that
//! templates mount into their sandboxes.

use serde::{Deserialize, Serialize};

/// The only storage class: an ext4 image on the server's disk.
pub const STORAGE_CLASS: &str = "local";

/// A volume as every endpoint returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeResponse {
    pub id: String,
    pub name: String,
    /// The size as given (`"1Gi"`).
    pub size: String,
    pub storage_class: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /volumes` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeListResponse {
    pub volumes: Vec<VolumeResponse>,
}

/// `POST /volumes` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVolumeRequest {
    pub name: String,
    /// A quantity of at least `1Mi`.
    pub size: String,
    /// Accepted for the SDK; a volume is ready when created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_ready: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// `PATCH /volumes/{name}` body: rename, or grow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateVolumeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The fields langsmith 0.7's `Volume.from_dict` reads.
    #[test]
    fn volume_has_the_sdk_field_names() {
        let volume = VolumeResponse {
            id: "v1".into(),
            name: "data".into(),
            size: "1Gi".into(),
            storage_class: STORAGE_CLASS.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        };
        let list = VolumeListResponse {
            volumes: vec![volume],
        };
        let value = serde_json::to_value(&list).unwrap();
        assert_eq!(
            value,
            json!({"volumes": [{
                "id": "v1", "name": "data", "size": "1Gi", "storage_class": "local",
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            }]})
        );
        assert_eq!(
            serde_json::from_value::<VolumeListResponse>(value).unwrap(),
            list
        );
    }

    #[test]
    fn requests_round_trip_the_sdk_bodies() {
        let sdk = json!({"name": "data", "size": "1Gi", "wait_for_ready": true, "timeout": 60});
        let req: CreateVolumeRequest = serde_json::from_value(sdk.clone()).unwrap();
        assert_eq!(req.size, "1Gi");
        assert_eq!(serde_json::to_value(&req).unwrap(), sdk);
        let update = UpdateVolumeRequest {
            size: Some("2Gi".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&update).unwrap(),
            json!({"size": "2Gi"})
        );
    }
}
