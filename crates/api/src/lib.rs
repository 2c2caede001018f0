//! Wire types shared by the Sandpit server, agent, client and CLI.
//!
//! Everything here is plain serde data: the shapes of the LangSmith-compatible
//! control API (`/api/v2/sandboxes/...`) and of its error body. Only `server`
//! knows HTTP; this crate only knows JSON.
#![forbid(unsafe_code)]

pub mod admin;
pub mod error;
pub mod exec;
pub mod json_path;
pub mod mount_config;
pub mod pools;
pub mod proxy_config;
pub mod sandbox;
pub mod service_url;
pub mod snapshot;
pub mod template;
pub mod volume;

pub use error::{ErrorBody, ErrorDetail};
pub use sandbox::{
    CreateSandboxRequest, ListSandboxesQuery, SandboxListResponse, SandboxResponse, SandboxStatus,
    StatusResponse, UpdateSandboxRequest,
};
