//! Rust client for Sandpit's LangSmith-compatible API, usable on its own.
//!
//! One [`Client`] talks to one server with one API key. It covers the
//! control plane (sandboxes, [snapshots](Client::create_snapshot),
//! [templates](Client::create_template), [volumes](Client::create_volume),
//! [service URLs](Client::service_url), and the admin API) and, through a [`SandboxHandle`], the data plane:
//! commands ([`SandboxHandle::run`], streaming and interactive variants) and
//! files ([`SandboxHandle::upload`], [`SandboxHandle::download`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use sandpit_client::{Client, CreateOptions, CreateSnapshotRequest};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new("http://127.0.0.1:8080", "sp_...")?;
//!
//! // A sandbox from the built-in image: run a command, move a file.
//! let sandbox = client.create_sandbox(&CreateOptions::default()).await?;
//! let handle = client.sandbox(&sandbox);
//! let result = handle.run("echo hello").await?;
//! assert_eq!((result.stdout.as_str(), result.exit_code), ("hello\n", 0));
//! handle.upload("/tmp/in.txt", b"data").await?;
//! assert_eq!(&handle.download("/tmp/in.txt").await?[..], b"data");
//!
//! // A link to a web server listening on port 8000 inside it.
//! let url = client.service_url(&sandbox.name, 8000, 600).await?;
//! println!("open {}", url.browser_url);
//! client.delete_sandbox(&sandbox.name).await?;
//!
//! // A snapshot from a registry image; builds run in the background.
//! let started = client
//!     .create_snapshot(&CreateSnapshotRequest {
//!         name: "py".into(),
//!         docker_image: "python:3.12-slim".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! let ready = client
//!     .wait_for_snapshot(&started.id, Duration::from_secs(1), Duration::from_secs(300), |_| {})
//!     .await?;
//! let options = CreateOptions { snapshot: Some(ready.id), ..Default::default() };
//! let from_image = client.create_sandbox(&options).await?;
//! client.delete_sandbox(&from_image.name).await?;
//! # Ok(()) }
//! ```
//!
//! `examples/hello.rs` is the same as a program:
//! `cargo run -p sandpit-client --example hello -- http://127.0.0.1:8080 KEY`.
//!
//! Control-plane calls go over HTTP/1.1 (`/api/v2/sandboxes/...`); commands
//! run over the data plane's WebSocket (`{dataplane_url}/execute/ws`), the
//! same protocol the Python SDK speaks. Errors the server answers carry its
//! status and message ([`ClientError::Api`]). Only `http://` endpoints are
//! supported. Request and response bodies are the server's own types, from
//! `sandpit-api` (re-exported as [`api`]).
#![forbid(unsafe_code)]

mod escape;
mod exec;
mod files;
mod gc;
mod http_client;
mod pools;
mod service_url;
mod snapshots;
mod templates;

use std::collections::BTreeMap;

use sandpit_api::admin::{
    CreateKeyRequest, CreateTenantRequest, CreatedKeyResponse, KeyListResponse, KeyResponse,
    TenantListResponse, TenantResponse, UpdateTenantRequest,
};
use sandpit_api::{ErrorBody, SandboxListResponse, SandboxResponse};
use serde::Serialize;

pub use exec::{ExecOptions, ExecResult, Input, SandboxHandle, Stream};
pub use sandpit_api as api;
pub use sandpit_api::service_url::ServiceUrlResponse;
pub use sandpit_api::snapshot::{CaptureSnapshotRequest, CreateSnapshotRequest, SnapshotResponse};
pub use sandpit_api::template::{
    CreateTemplateRequest, Resources, ResourcesRequest, TemplateResponse, VolumeMount,
};
pub use sandpit_api::volume::{CreateVolumeRequest, VolumeResponse};
pub use snapshots::WaitError;

/// Errors from the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid endpoint URL: {0}")]
    Endpoint(String),
    #[error("request failed")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server answered with an error body.
    #[error("{status}: {error}: {message}")]
    Api {
        status: u16,
        error: String,
        message: String,
    },
    #[error("unexpected response: {0}")]
    Protocol(String),
    #[error("command failed: {error_type}: {message}")]
    Command { error_type: String, message: String },
}

impl ClientError {
    pub(crate) fn transport(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        ClientError::Transport(Box::new(err))
    }

    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn from_body(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => ClientError::Api {
                status,
                error: b.detail.error,
                message: b.detail.message,
            },
            Err(_) => ClientError::Api {
                status,
                error: "Unknown".into(),
                message: String::from_utf8_lossy(body).into_owned(),
            },
        }
    }
}

/// Options of `create_sandbox`; `None` means the server default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// A template's name (the `langsmith==0.7.30` way to pick an image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_ttl_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_after_stop_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Seconds to wait for `ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// Marks a path of the admin API in `Client::send`.
const ADMIN: &str = "admin:";
/// Marks a path of the workspace API (`/api/v1/workspaces/current`).
const WORKSPACE: &str = "workspace:";

/// A client for one Sandpit server.
#[derive(Clone)]
pub struct Client {
    http: http_client::HttpClient,
    /// `{base}/api/v2/sandboxes`
    api: String,
    /// `{base}/api/v1/admin`
    admin: String,
    api_key: String,
}

impl Client {
    /// `endpoint` is the server's base URL, e.g. `http://127.0.0.1:8080`
    /// (a trailing `/api` as in `LANGSMITH_ENDPOINT` is accepted too).
    pub fn new(endpoint: &str, api_key: &str) -> Result<Self, ClientError> {
        let base = endpoint.trim_end_matches('/').trim_end_matches("/api");
        if !base.starts_with("http://") {
            return Err(ClientError::Endpoint(format!(
                "{endpoint}: only http:// is supported"
            )));
        }
        Ok(Self {
            http: http_client::HttpClient::new(),
            api: format!("{base}/api/v2/sandboxes"),
            admin: format!("{base}/api/v1/admin"),
            api_key: api_key.to_owned(),
        })
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    pub async fn create_sandbox(
        &self,
        options: &CreateOptions,
    ) -> Result<SandboxResponse, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            wait_for_ready: bool,
            #[serde(flatten)]
            options: &'a CreateOptions,
        }
        let body = Body {
            wait_for_ready: true,
            options,
        };
        self.request(http::Method::POST, "/boxes", Some(&body))
            .await
    }

    pub async fn get_sandbox(&self, name: &str) -> Result<SandboxResponse, ClientError> {
        self.request::<(), _>(
            http::Method::GET,
            &format!("/boxes/{}", escape::segment(name)),
            None,
        )
        .await
    }

    pub async fn list_sandboxes(&self) -> Result<Vec<SandboxResponse>, ClientError> {
        let list: SandboxListResponse = self
            .request::<(), _>(http::Method::GET, "/boxes?limit=500", None)
            .await?;
        Ok(list.sandboxes)
    }

    pub async fn delete_sandbox(&self, name: &str) -> Result<(), ClientError> {
        self.send::<()>(
            http::Method::DELETE,
            &format!("/boxes/{}", escape::segment(name)),
            None,
        )
        .await
        .map(drop)
    }

    pub async fn stop_sandbox(&self, name: &str) -> Result<SandboxResponse, ClientError> {
        self.request::<(), _>(
            http::Method::POST,
            &format!("/boxes/{}/stop", escape::segment(name)),
            None,
        )
        .await
    }

    pub async fn start_sandbox(&self, name: &str) -> Result<SandboxResponse, ClientError> {
        self.request::<(), _>(
            http::Method::POST,
            &format!("/boxes/{}/start", escape::segment(name)),
            None,
        )
        .await
    }

    /// Admin: create a tenant (with optional quotas).
    pub async fn create_tenant(
        &self,
        req: &CreateTenantRequest,
    ) -> Result<TenantResponse, ClientError> {
        self.request(http::Method::POST, &format!("{ADMIN}/tenants"), Some(req))
            .await
    }

    /// Admin: every tenant with its quotas and usage.
    pub async fn list_tenants(&self) -> Result<Vec<TenantResponse>, ClientError> {
        let list: TenantListResponse = self
            .request::<(), _>(http::Method::GET, &format!("{ADMIN}/tenants"), None)
            .await?;
        Ok(list.tenants)
    }

    /// Admin: change a tenant's quotas (`null` = unlimited).
    pub async fn update_tenant(
        &self,
        tenant: &str,
        req: &UpdateTenantRequest,
    ) -> Result<TenantResponse, ClientError> {
        self.request(
            http::Method::PATCH,
            &format!("{ADMIN}/tenants/{tenant}"),
            Some(req),
        )
        .await
    }

    /// Admin: create an API key; the response is the only time it is shown.
    pub async fn create_key(
        &self,
        req: &CreateKeyRequest,
    ) -> Result<CreatedKeyResponse, ClientError> {
        self.request(http::Method::POST, &format!("{ADMIN}/keys"), Some(req))
            .await
    }

    /// Admin: keys (without their secrets), optionally of one tenant.
    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyResponse>, ClientError> {
        let path = match tenant {
            Some(t) => format!("{ADMIN}/keys?tenant={t}"),
            None => format!("{ADMIN}/keys"),
        };
        let list: KeyListResponse = self
            .request::<(), _>(http::Method::GET, &path, None)
            .await?;
        Ok(list.keys)
    }

    /// Admin: revoke a key by id.
    pub async fn revoke_key(&self, id: &str) -> Result<(), ClientError> {
        self.send::<()>(http::Method::DELETE, &format!("{ADMIN}/keys/{id}"), None)
            .await
            .map(drop)
    }

    /// Set a workspace secret of the caller's tenant.
    pub async fn set_secret(&self, name: &str, value: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "value": value });
        let path = format!("{WORKSPACE}/secrets/{name}");
        self.send(http::Method::PUT, &path, Some(&body))
            .await
            .map(drop)
    }

    /// The names of the caller's tenant's workspace secrets (never values).
    pub async fn list_secrets(&self) -> Result<Vec<String>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Secret {
            key: String,
        }
        let list: Vec<Secret> = self
            .request::<(), _>(http::Method::GET, &format!("{WORKSPACE}/secrets"), None)
            .await?;
        Ok(list.into_iter().map(|s| s.key).collect())
    }

    /// Delete a workspace secret (a missing one is not an error).
    pub async fn delete_secret(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("{WORKSPACE}/secrets/{name}");
        self.send::<()>(http::Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    /// A handle for data-plane operations on `sandbox`.
    pub fn sandbox(&self, sandbox: &SandboxResponse) -> SandboxHandle {
        SandboxHandle::new(self.clone(), sandbox)
    }

    async fn send<B: Serialize>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<bytes::Bytes, ClientError> {
        let url = match (path.strip_prefix(ADMIN), path.strip_prefix(WORKSPACE)) {
            (Some(rest), _) => format!("{}{rest}", self.admin),
            (_, Some(rest)) => format!(
                "{}/workspaces/current{rest}",
                self.admin.trim_end_matches("/admin")
            ),
            _ => format!("{}{path}", self.api),
        };
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(ClientError::transport)?;
        let (status, bytes) = self.http.send(method, &url, &self.api_key, body).await?;
        if status >= 400 {
            return Err(ClientError::from_body(status, &bytes));
        }
        Ok(bytes)
    }

    async fn request<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
