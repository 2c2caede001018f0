//! Warm pools (the `langsmith==0.7.30` API): pre-started sandboxes of a
//! template, handed out by `create_sandbox` with that template.

use sandpit_api::pools::{CreatePoolRequest, PoolResponse};

use crate::escape::segment;
use crate::{Client, ClientError};

impl Client {
    /// Create a pool of `replicas` warm sandboxes of `template_name`.
    pub async fn create_pool(&self, req: &CreatePoolRequest) -> Result<PoolResponse, ClientError> {
        self.request(http::Method::POST, "/pools", Some(req)).await
    }

    pub async fn get_pool(&self, name: &str) -> Result<PoolResponse, ClientError> {
        let path = format!("/pools/{}", segment(name));
        self.request::<(), _>(http::Method::GET, &path, None).await
    }

    /// Delete a pool and its warm sandboxes.
    pub async fn delete_pool(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/pools/{}", segment(name));
        self.send::<()>(http::Method::DELETE, &path, None)
            .await
            .map(drop)
    }
}
