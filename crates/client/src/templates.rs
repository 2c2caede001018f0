//! Templates (the `langsmith==0.7.30` API): an image with resource limits
//! and volume mounts that sandboxes are created from by name.

use serde::{Deserialize, Serialize};

use crate::escape::segment;
use crate::{Client, ClientError};

/// Kubernetes-style quantities, as given (`"500m"`, `"512Mi"`, `"1Gi"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

/// A volume mounted into every sandbox of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub volume_name: String,
    pub mount_path: String,
}

/// A template as the server returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// `POST /templates` body; `None` resources take the server defaults
/// (`500m`, `512Mi`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateTemplate {
    pub name: String,
    /// An image reference, or `host` for the built-in image.
    pub image: String,
    pub resources: Resources,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

#[derive(Deserialize)]
struct TemplateList {
    templates: Vec<Template>,
}

impl Client {
    pub async fn create_template(&self, req: &CreateTemplate) -> Result<Template, ClientError> {
        self.request(http::Method::POST, "/templates", Some(req))
            .await
    }

    pub async fn list_templates(&self) -> Result<Vec<Template>, ClientError> {
        let list: TemplateList = self
            .request::<(), _>(http::Method::GET, "/templates", None)
            .await?;
        Ok(list.templates)
    }

    pub async fn get_template(&self, name: &str) -> Result<Template, ClientError> {
        let path = format!("/templates/{}", segment(name));
        self.request::<(), _>(http::Method::GET, &path, None).await
    }

    /// Delete a template; 409 while sandboxes or pools use it.
    pub async fn delete_template(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/templates/{}", segment(name));
        self.send::<()>(http::Method::DELETE, &path, None)
            .await
            .map(drop)
    }
}
