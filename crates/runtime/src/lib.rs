//! Sandbox runtime backends.
//!
//! [`Runtime`] is what the server asks of a backend: start a sandbox from a
//! [`SandboxSpec`], stop it, say which sandboxes are still running, and sweep
//! what a crash left behind. The local backend ([`local`]) builds each
//! sandbox with libcontainer from Linux namespaces, a cgroup, seccomp, an
//! overlay root and a veth pair. It forks and changes process-wide state, so
//! it runs in a single-threaded helper process; the server uses it through
//! [`helper::HelperRuntime`]. [`host_image`] builds the built-in `host` image.
//!
//! Architecture invariant: this crate never depends on tokio and never speaks
//! HTTP; it knows processes, mounts, cgroups and network devices.

pub mod agent_socket;
pub mod cgroup;
pub mod error;
pub mod gvisor;
pub mod helper;
pub mod host_image;
pub mod idmap;
pub mod local;
pub mod mount_ns;
pub mod mountinfo;
pub mod network;
pub mod oci;
pub mod overlay;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod tree_copy;
pub mod usage;

pub use error::{chain as error_chain, RuntimeError};
pub use gvisor::Isolation;
pub use helper::HelperRuntime;
pub use spec::{Limits, MountSpec, RunningSandbox, SandboxSpec, Started};
pub use usage::Usage;

/// A sandbox backend.
pub trait Runtime: Send + Sync {
    /// Start the sandbox's init (the agent) and return once it is running.
    fn start(&self, spec: &SandboxSpec) -> Result<Started, RuntimeError>;
    /// Kill every process of the sandbox and release its kernel objects
    /// (cgroup, network namespace and devices, mounts). Files under the
    /// sandbox's state directory are kept. Stopping a sandbox that is not
    /// running succeeds.
    fn stop(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sandboxes whose init is still alive.
    fn running(&self) -> Result<Vec<RunningSandbox>, RuntimeError>;
    /// After a crash: stop and remove everything of sandboxes whose id is not
    /// in `keep_ids` (processes, cgroups, network devices, mounts, backend
    /// state). Sandboxes in `keep_ids` are left alone. Returns the ids
    /// something was removed for.
    fn cleanup(&self, keep_ids: &[String]) -> Result<Vec<String>, RuntimeError>;
    /// Freezes every process of running sandbox `id` (`frozen`) or thaws
    /// it. Host-side work over the sandbox's files (a capture) runs while it
    /// is frozen, so nothing in the sandbox changes them meanwhile. Backends
    /// that cannot freeze say so.
    fn set_frozen(&self, id: &str, frozen: bool) -> Result<(), RuntimeError> {
        let _ = (id, frozen);
        Err(RuntimeError::Helper(
            "this runtime cannot freeze sandboxes".into(),
        ))
    }
    /// The server is exiting: finish releasing what stopped sandboxes held.
    /// Running sandboxes are left alone.
    fn shutdown(&self) {}
    /// A process in whose mount namespace the backend makes its shared
    /// mounts (the runtime helpers' holder), for the caller's own mounts that a sandbox
    /// binds ([`MountSpec::Fuse`]); `None`: the caller's namespace.
    fn mount_namespace_pid(&self) -> Option<u32> {
        None
    }
    /// Calls waiting for or being served by the backend (the runtime
    /// helper serves one at a time); `None`: the backend does not queue.
    fn queue_depth(&self) -> Option<usize> {
        None
    }
    /// What running sandbox `id` uses now (`None`: it is not running).
    /// Backends that cannot tell say so.
    fn usage(&self, id: &str) -> Result<Option<Usage>, RuntimeError> {
        let _ = id;
        Err(RuntimeError::Helper(
            "this runtime cannot report usage".into(),
        ))
    }
    /// Where the server reaches running sandbox `id` over the network, for
    /// backends whose sandboxes have neither an agent socket nor a process
    /// on this host (Kubernetes pods: [`Started::pid`] is 0); `None`: the
    /// agent socket and the init's network namespace.
    fn network_endpoint(&self, id: &str) -> Option<NetworkEndpoint> {
        let _ = id;
        None
    }
    /// Resolves once running sandbox `id` ended, for the backends of
    /// [`Runtime::network_endpoint`]; `None`: the caller watches the init
    /// pid.
    fn exited(&self, id: &str) -> Option<Exited> {
        let _ = id;
        None
    }
    /// Which sandbox traffic reaching the egress proxy from `source` comes
    /// from, told by its address (each sandbox has its own). `None`: no
    /// sandbox of this backend's; the proxy then refuses it (fail closed).
    fn egress_source(&self, source: std::net::IpAddr) -> Option<EgressSource> {
        let _ = source;
        None
    }
    /// Adds and removes the egress proxy's direct routes (HTTPS a sandbox
    /// sends around the proxy, by NAT), in one transaction. Backends
    /// without them say so; the proxy then keeps that traffic.
    fn update_direct_routes(
        &self,
        add: &[network::firewall::DirectRoute],
        remove: &[network::firewall::DirectRoute],
    ) -> Result<(), RuntimeError> {
        let _ = (add, remove);
        Err(RuntimeError::Helper(
            "this runtime has no direct egress routes".into(),
        ))
    }
}

/// A sandbox as the egress proxy's source address names it
/// ([`Runtime::egress_source`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressSource {
    /// The sandbox on network slot `n` of this host (the local backend:
    /// the server knows which sandbox runs on which slot).
    Slot(u32),
    /// Sandbox `id` (a pod, whichever server replica started it).
    Sandbox(String),
}

/// A future resolving once a sandbox ended ([`Runtime::exited`]).
pub type Exited = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A sandbox's agent on the network: `ip:agent_port`, which answers only
/// requests bearing `token`; the sandbox's own ports are on `ip` too.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkEndpoint {
    pub ip: std::net::IpAddr,
    pub agent_port: u16,
    pub token: String,
}

impl std::fmt::Debug for NetworkEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkEndpoint")
            .field("ip", &self.ip)
            .field("agent_port", &self.agent_port)
            .finish_non_exhaustive()
    }
}
