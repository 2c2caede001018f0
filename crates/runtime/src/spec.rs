//! What the server hands a runtime backend, and what it gets back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything needed to start one sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Sandbox id (a UUID); names the cgroup, the state and the devices.
    pub id: String,
    /// Host directory owned by this sandbox. The backend keeps the writable
    /// layer in `state_dir/upper` (and `state_dir/work`), so files survive a
    /// stop, and, when `agent_log` is set, the agent's stdout and stderr in
    /// `state_dir/agent.log` (truncated at each start). While the sandbox runs, the overlay root is
    /// mounted at `state_dir/rootfs` and extra overlays under `state_dir/mnt`,
    /// in the runtime helper's private mount namespace only; per-sandbox
    /// `hosts`, `hostname` and `resolv.conf` live in `state_dir/etc`.
    /// Deleting the sandbox's files is the caller's job.
    pub state_dir: PathBuf,
    /// Keep the agent's stdout and stderr in `state_dir/agent.log` instead of
    /// discarding them. For debugging only: sandboxed code can write to the
    /// agent's stdout (`/proc/1/fd/1`), and nothing bounds the file's size.
    #[serde(default)]
    pub agent_log: bool,
    /// Read-only overlay lower layers, topmost first.
    pub layers: Vec<PathBuf>,
    /// Extra mounts applied on top of the root, in order.
    pub mounts: Vec<MountSpec>,
    /// Host path of the static agent binary; bind-mounted read-only at
    /// `/.sandpit/sandpit` and run as PID 1 with `agent_args`.
    pub agent_binary: PathBuf,
    pub agent_args: Vec<String>,
    /// Host path where the backend binds the agent's listening unix socket.
    /// The listener is passed to the agent as fd 3; the path is never visible
    /// inside the sandbox.
    pub agent_socket: PathBuf,
    /// Environment of the init process (and so the default for commands).
    pub env: Vec<(String, String)>,
    /// Working directory of the init process.
    pub workdir: String,
    pub hostname: String,
    pub limits: Limits,
    /// Bytes the writable layer may hold; 0 means no limit. When set, the
    /// writable layer lives in `state_dir/disk.img`, a sparse ext4 image of
    /// this size created on first start and loop-mounted at `state_dir/disk`
    /// while the sandbox runs (in the helper's mount namespace), so writing
    /// past it fails with ENOSPC inside and never fills the host disk.
    #[serde(default)]
    pub fs_capacity_bytes: u64,
    /// Index of the sandbox's network slot, unique among running sandboxes;
    /// picks the veth names and the /30 the pair is addressed from.
    pub net_slot: u32,
    /// With a user namespace: the host id that is uid and gid 0 inside
    /// (ids `0..idmap::IDS_PER_SANDBOX` map from it; see [`crate::idmap`]).
    /// Ranges of running sandboxes must not overlap. `None`: no user
    /// namespace, root inside is root on the host.
    #[serde(default)]
    pub userns_base: Option<u32>,
    /// How the sandbox is isolated from the host kernel (see
    /// [`crate::gvisor`]). Under gVisor `userns_base` is ignored: gVisor has
    /// its own user namespaces and its Sentry runs as nobody.
    #[serde(default)]
    pub isolation: crate::gvisor::Isolation,
}

/// Resource limits enforced through the cgroup. A zero means "no limit" for
/// that resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU quota in thousandths of a CPU (1000 = one full CPU).
    pub cpu_millis: u64,
    /// Memory (and, where the kernel accounts swap, memory plus swap).
    pub memory_bytes: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids: u64,
}

/// A mount inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountSpec {
    /// Bind-mount a host path.
    Bind {
        source: PathBuf,
        destination: String,
        readonly: bool,
    },
    /// A read-only overlay of host directories (topmost first), e.g. the
    /// host's `/usr` with a small layer of additions on top.
    ReadOnlyOverlay {
        layers: Vec<PathBuf>,
        destination: String,
    },
    /// A volume: `image`, an ext4 file system image of `size_bytes`, is
    /// created on first use (grown when `size_bytes` grew), loop-mounted in
    /// the helper's mount namespace and bound read-write at `destination`,
    /// so writing past the size fails with ENOSPC inside the sandbox.
    /// Sandboxes mounting one volume at once share one loop device and one
    /// file system.
    Volume {
        image: PathBuf,
        size_bytes: u64,
        destination: String,
    },
    /// A FUSE file system the caller mounted at `source` in the backend's
    /// mount namespace (see [`crate::Runtime::mount_namespace_pid`]), bound
    /// as it is: never idmapped (FUSE refuses idmapped mounts), so its
    /// files must already show the owners the sandbox should see.
    Fuse {
        source: PathBuf,
        destination: String,
        readonly: bool,
    },
}

/// What `start` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Host pid of the sandbox's init (the agent); 0 when it has none on
    /// this host (see [`crate::Runtime::network_endpoint`]).
    pub pid: i32,
    /// Its start time in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`), so a recycled pid is never mistaken for it.
    pub start_time: u64,
    /// Address of the sandbox end of its veth pair.
    pub sandbox_ip: String,
    /// Address of the host end.
    pub host_ip: String,
    /// The agent's socket was listening before `start` returned: it was
    /// bound on the host and handed to the agent, so a connection made now
    /// waits in its backlog until the agent accepts it, and no readiness
    /// probe has to come first. False where something else stands between
    /// (gVisor's relay, a pod's network).
    #[serde(default)]
    pub agent_listening: bool,
}

/// A sandbox found running, e.g. after a server restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningSandbox {
    pub id: String,
    pub started: Started,
}
