//! Service URLs: a signed link to an HTTP port inside a sandbox
//! (`POST /boxes/{name}/service-url`).

use sandpit_api::service_url::{ServiceUrlRequest, ServiceUrlResponse};

use crate::escape::segment;
use crate::{Client, ClientError};

impl Client {
    /// A service URL for `port` of sandbox `name`, valid for
    /// `expires_in_seconds` (1 s to 24 h; the server checks).
    pub async fn service_url(
        &self,
        name: &str,
        port: u16,
        expires_in_seconds: i64,
    ) -> Result<ServiceUrlResponse, ClientError> {
        let body = ServiceUrlRequest {
            port: port.into(),
            expires_in_seconds: Some(expires_in_seconds),
            ..Default::default()
        };
        let path = format!("/boxes/{}/service-url", segment(name));
        self.request(http::Method::POST, &path, Some(&body)).await
    }
}
