//! Everything that can go wrong in the local backend, and how it becomes a
//! [`RuntimeError`].

use std::io;

use libcontainer::error::LibcontainerError;
use thiserror::Error;

use crate::agent_socket::AgentSocketError;
use crate::error::{chain, RuntimeError};
use crate::idmap::IdmapError;
use crate::mount_ns::MountNsError;
use crate::network::NetworkError;
use crate::oci::OciError;
use crate::overlay::OverlayError;
use crate::rootfs::RootfsError;

#[derive(Debug, Error)]
pub enum LocalError {
    #[error("{0}")]
    Invalid(String),
    #[error("sandbox {0} is already running")]
    AlreadyRunning(String),
    #[error("failed to access the runtime state")]
    State(#[source] io::Error),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    AgentSocket(#[from] AgentSocketError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("libcontainer failed")]
    Container(#[from] LibcontainerError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("network slot {slot} is in use by sandbox {owner}")]
    SlotTaken { slot: u32, owner: String },
    #[error("the init process did not exit after SIGKILL")]
    InitSurvived,
    #[error("the init process vanished while starting")]
    InitVanished,
    #[error("failed to remove the cgroup")]
    Cgroup(#[source] io::Error),
    #[error(transparent)]
    Idmap(#[from] IdmapError),
    #[error("this host cannot give sandboxes user namespaces (idmapped mounts)")]
    NoUserNs,
    #[error(transparent)]
    MountNs(#[from] MountNsError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Runsc(#[from] crate::gvisor::runsc::RunscError),
}

impl LocalError {
    /// Which part of the sandbox the error is about.
    fn stage(&self) -> &'static str {
        match self {
            Self::Invalid(_) | Self::AlreadyRunning(_) => "spec",
            Self::State(_) => "runtime state",
            Self::Overlay(_) => "overlay root",
            Self::Rootfs(_) => "root filesystem",
            Self::AgentSocket(_) => "agent socket",
            Self::Oci(_) => "OCI spec",
            Self::Container(_) => "container",
            Self::Network(_) | Self::SlotTaken { .. } => "network",
            Self::InitSurvived | Self::InitVanished => "init process",
            Self::Cgroup(_) => "cgroup",
            Self::Idmap(_) | Self::NoUserNs => "user namespace",
            Self::Runsc(_) => "gVisor",
            Self::MountNs(_) => "mount namespace",
            Self::Seccomp(_) => "seccomp",
        }
    }

    /// As a `start` failure.
    pub fn setup(self) -> RuntimeError {
        match self {
            Self::Invalid(m) => RuntimeError::InvalidSpec(m),
            Self::AlreadyRunning(id) => RuntimeError::AlreadyRunning(id),
            other => RuntimeError::Setup {
                stage: other.stage().into(),
                message: other.message(),
            },
        }
    }

    /// As a `stop` or `cleanup` failure.
    pub fn teardown(self) -> RuntimeError {
        match self {
            Self::Invalid(m) => RuntimeError::InvalidSpec(m),
            other => RuntimeError::Teardown {
                stage: other.stage().into(),
                message: other.message(),
            },
        }
    }

    /// libcontainer's `CreateContainerError` shows its cause only in its
    /// `Debug` form (it has no `source`), so that form is added.
    fn message(&self) -> String {
        match self {
            Self::Container(inner) => format!("{} ({inner:?})", chain(self)),
            _ => chain(self),
        }
    }
}
