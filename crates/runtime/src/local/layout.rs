//! Where the local backend keeps things on disk.

use std::path::{Path, PathBuf};

/// The helper's own state directory.
#[derive(Debug, Clone)]
pub struct StateDirs {
    /// libcontainer's root: one directory of container state per sandbox.
    pub containers: PathBuf,
    /// One OCI bundle (config.json) per sandbox.
    pub bundles: PathBuf,
    /// One [`super::record::Record`] per sandbox.
    pub records: PathBuf,
    /// Pre-formatted disk images that new disks are copied from.
    pub blanks: PathBuf,
    /// New sandboxes' state directories, made ahead (see
    /// [`super::spares`]).
    pub spares: PathBuf,
    /// runsc's root: its state of gVisor sandboxes.
    pub runsc: PathBuf,
    /// The sandboxes' agent sockets ([`crate::agent_socket::dir_in`]).
    pub sockets: PathBuf,
}

impl StateDirs {
    /// What describes running processes only is in `root/run`, a tmpfs
    /// while a [`super::run_dir::RunDir`] holds it; the blanks and runsc's
    /// state are on disk.
    pub fn new(root: &Path) -> Self {
        let run = super::run_dir::path(root);
        Self {
            containers: run.join("containers"),
            bundles: run.join("bundles"),
            records: run.join("records"),
            blanks: root.join("blanks"),
            spares: root.join("spares"),
            runsc: root.join("runsc"),
            sockets: crate::agent_socket::dir_in(root),
        }
    }

    pub fn all(&self) -> [&Path; 7] {
        [
            &self.containers,
            &self.bundles,
            &self.records,
            &self.sockets,
            &self.blanks,
            &self.spares,
            &self.runsc,
        ]
    }

    pub fn container(&self, id: &str) -> PathBuf {
        self.containers.join(id)
    }

    pub fn bundle(&self, id: &str) -> PathBuf {
        self.bundles.join(id)
    }

    pub fn record(&self, id: &str) -> PathBuf {
        self.records.join(format!("{id}.json"))
    }
}

/// Paths under one sandbox's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPaths {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub rootfs: PathBuf,
    /// Parent of the helper-side read-only overlays.
    pub mnt: PathBuf,
    pub etc: PathBuf,
    pub agent_log: PathBuf,
    /// The capacity-limited filesystem image of the writable layer, and
    /// where it is mounted (see `SandboxSpec::fs_capacity_bytes`).
    pub disk_image: PathBuf,
    pub disk: PathBuf,
}

impl SandboxPaths {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            upper: state_dir.join("upper"),
            work: state_dir.join("work"),
            rootfs: state_dir.join("rootfs"),
            mnt: state_dir.join("mnt"),
            etc: state_dir.join("etc"),
            agent_log: state_dir.join("agent.log"),
            disk_image: state_dir.join("disk.img"),
            disk: state_dir.join("disk"),
        }
    }

    /// The paths of a start that mounts in a namespace of its own (see
    /// [`crate::mount_ns`]): the mount points live in `scratch`, a tmpfs of
    /// that namespace, so a start creates and a stop removes no directory
    /// on the host's disk (on a journal-less ext4 each new inode costs
    /// about 0.2 ms of CPU in a burst, see docs/benchmarks.md). The disk
    /// image, the legacy upper and the agent's log stay in `state_dir`.
    pub fn in_scratch(state_dir: &Path, scratch: &Path) -> Self {
        Self {
            rootfs: scratch.join("rootfs"),
            mnt: scratch.join("mnt"),
            etc: scratch.join("etc"),
            disk: scratch.join("disk"),
            ..Self::new(state_dir)
        }
    }

    /// Under gVisor: the tmpfs the agent binds its socket in (see
    /// [`crate::gvisor::relay`]).
    pub fn agent_dir(&self) -> PathBuf {
        self.mnt.join("agent")
    }

    /// Mount point of the `n`th read-only overlay.
    pub fn overlay(&self, n: usize) -> PathBuf {
        self.mnt.join(n.to_string())
    }
}
