//! Service URLs: a signed link to an HTTP port inside a sandbox
//! (`POST /boxes/{name}/service-url`).

use serde::{Deserialize, Serialize};

use crate::escape::segment;
use crate::{Client, ClientError};

/// A service URL as the server returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUrl {
    /// Opens the service in a browser: sets the token as a cookie, then
    /// redirects to the service's root. Anyone holding it gets in until
    /// `expires_at`.
    pub browser_url: String,
    /// For programs: send `token` in the `X-Langsmith-Sandbox-Service-Token`
    /// header (or use `browser_url`).
    pub service_url: String,
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Serialize)]
struct Request {
    port: u16,
    expires_in_seconds: i64,
}

impl Client {
    /// A service URL for `port` of sandbox `name`, valid for
    /// `expires_in_seconds` (1 s to 24 h; the server checks).
    pub async fn service_url(
        &self,
        name: &str,
        port: u16,
        expires_in_seconds: i64,
    ) -> Result<ServiceUrl, ClientError> {
        let body = Request {
            port,
            expires_in_seconds,
        };
        let path = format!("/boxes/{}/service-url", segment(name));
        self.request(http::Method::POST, &path, Some(&body)).await
    }
}
