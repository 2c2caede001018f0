//! Templates (the `langsmith==0.7.30` API): an image with resource limits
//! and volume mounts that sandboxes are created from by name, and the
//! volumes they mount.

use sandpit_api::template::{CreateTemplateRequest, TemplateListResponse, TemplateResponse};
use sandpit_api::volume::{CreateVolumeRequest, VolumeListResponse, VolumeResponse};

use crate::escape::segment;
use crate::{Client, ClientError};

impl Client {
    pub async fn create_template(
        &self,
        req: &CreateTemplateRequest,
    ) -> Result<TemplateResponse, ClientError> {
        self.request(http::Method::POST, "/templates", Some(req))
            .await
    }

    pub async fn list_templates(&self) -> Result<Vec<TemplateResponse>, ClientError> {
        let list: TemplateListResponse = self
            .request::<(), _>(http::Method::GET, "/templates", None)
            .await?;
        Ok(list.templates)
    }

    pub async fn get_template(&self, name: &str) -> Result<TemplateResponse, ClientError> {
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

    /// Create a volume of `req.size` (a quantity such as `1Gi`).
    pub async fn create_volume(
        &self,
        req: &CreateVolumeRequest,
    ) -> Result<VolumeResponse, ClientError> {
        self.request(http::Method::POST, "/volumes", Some(req))
            .await
    }

    pub async fn list_volumes(&self) -> Result<Vec<VolumeResponse>, ClientError> {
        let list: VolumeListResponse = self
            .request::<(), _>(http::Method::GET, "/volumes", None)
            .await?;
        Ok(list.volumes)
    }

    /// Delete a volume and its files; 409 while a template mounts it.
    pub async fn delete_volume(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/volumes/{}", segment(name));
        self.send::<()>(http::Method::DELETE, &path, None)
            .await
            .map(drop)
    }
}
