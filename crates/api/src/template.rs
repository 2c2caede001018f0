//! Templates (`/templates`, langsmith 0.7): an image with resource limits
//! and volume mounts that sandboxes are created from by name.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A template's resources as returned: Kubernetes-style quantities, as
/// given (`"500m"`, `"512Mi"`, `"1Gi"`), defaults filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: String,
    pub memory: String,
    #[serde(default)]
    pub storage: Option<String>,
}

/// A template's resources as requested; `None` takes the server default
/// (`500m`, `512Mi`, no storage limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

/// A volume mounted into every sandbox of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    pub volume_name: String,
    pub mount_path: String,
}

/// A template as every endpoint returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateResponse {
    pub id: String,
    pub name: String,
    /// An image reference, or `host` for the built-in image.
    pub image: String,
    pub resources: Resources,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    /// Egress rules of its sandboxes, secrets redacted.
    #[serde(default)]
    pub proxy_config: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /templates` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateListResponse {
    pub templates: Vec<TemplateResponse>,
}

/// `POST /templates` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateTemplateRequest {
    pub name: String,
    /// An image reference, or `host` for the built-in image.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_config: Option<Value>,
}

/// `PATCH /templates/{name}` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateTemplateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template() -> TemplateResponse {
        TemplateResponse {
            id: "t1".into(),
            name: "py".into(),
            image: "python:3.12".into(),
            resources: Resources {
                cpu: "500m".into(),
                memory: "512Mi".into(),
                storage: None,
            },
            volume_mounts: vec![VolumeMount {
                volume_name: "data".into(),
                mount_path: "/data".into(),
            }],
            proxy_config: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    /// The fields langsmith 0.7's `SandboxTemplate.from_dict` reads.
    #[test]
    fn template_has_the_sdk_field_names() {
        let value = serde_json::to_value(template()).unwrap();
        assert_eq!(
            value,
            json!({
                "id": "t1", "name": "py", "image": "python:3.12",
                "resources": {"cpu": "500m", "memory": "512Mi", "storage": null},
                "volume_mounts": [{"volume_name": "data", "mount_path": "/data"}],
                "proxy_config": null,
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            })
        );
        let list = TemplateListResponse {
            templates: vec![serde_json::from_value(value).unwrap()],
        };
        assert_eq!(list.templates[0], template());
        let list_value = serde_json::to_value(&list).unwrap();
        assert_eq!(list_value["templates"][0]["resources"]["cpu"], "500m");
    }

    #[test]
    fn create_request_round_trips_the_sdk_body() {
        let sdk = json!({
            "name": "py", "image": "python:3.12",
            "resources": {"cpu": "1", "memory": "1Gi"},
            "volume_mounts": [{"volume_name": "data", "mount_path": "/data"}],
        });
        let req: CreateTemplateRequest = serde_json::from_value(sdk.clone()).unwrap();
        assert_eq!(
            req.resources.as_ref().and_then(|r| r.memory.as_deref()),
            Some("1Gi")
        );
        assert_eq!(serde_json::to_value(&req).unwrap(), sdk);
        let minimal = CreateTemplateRequest {
            name: "a".into(),
            image: "host".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&minimal).unwrap(),
            json!({"name": "a", "image": "host"})
        );
    }

    #[test]
    fn volume_mounts_refuse_unknown_fields() {
        let bad = json!({"volume_name": "d", "mount_path": "/d", "read_only": true});
        assert!(serde_json::from_value::<VolumeMount>(bad).is_err());
    }
}
