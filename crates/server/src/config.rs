//! Validated server configuration (built by the CLI from flags and env).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Server-wide defaults applied to sandboxes created without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub vcpus: i64,
    pub mem_bytes: i64,
    pub fs_capacity_bytes: i64,
    pub idle_ttl_seconds: i64,
    pub delete_after_stop_seconds: i64,
    pub pids_limit: u64,
    /// Sandboxes are not created or started while the data dir's file
    /// system has less than this free (disk images are sparse, so their
    /// capacities overcommit the disk).
    pub min_free_disk_bytes: u64,
    /// The most one sandbox may ask for (422 beyond): by default the host's
    /// CPUs, the host's memory and 1 TiB.
    pub max_vcpus: i64,
    pub max_mem_bytes: i64,
    pub max_fs_capacity_bytes: i64,
    /// With user namespaces: the host id of uid 0 in the sandbox of network
    /// slot 0 (slot `n` gets the 65536 ids from `base + n * 65536`; see
    /// `sandpit_runtime::idmap`). `None`: no user namespace.
    pub userns_base: Option<u32>,
    /// Isolation of sandboxes created without one (`--default-isolation`).
    pub isolation: sandpit_runtime::Isolation,
    /// `runsc` was found: `gvisor` sandboxes can run here.
    pub gvisor_available: bool,
    /// The built-in `host` image can run here. Not on Kubernetes, where a
    /// sandbox is a Pod of a registry image: asking for it is a 422 there.
    pub host_image_available: bool,
}

/// The default `max_fs_capacity_bytes`: 1 TiB (disk images are sparse).
pub const DEFAULT_MAX_FS_CAPACITY_BYTES: i64 = 1 << 40;

/// CPUs this host has (at least 1).
pub fn host_cpus() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i64)
}

/// Bytes of memory this host has (`MemTotal`), or `i64::MAX` when unknown.
pub fn host_memory_bytes() -> i64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(i64::MAX, |kib| kib.saturating_mul(1024))
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            vcpus: 1,
            mem_bytes: 1 << 30,
            fs_capacity_bytes: 10 << 30,
            idle_ttl_seconds: 600,
            delete_after_stop_seconds: 14 * 24 * 3600,
            pids_limit: 1024,
            min_free_disk_bytes: 1 << 30,
            max_vcpus: host_cpus(),
            max_mem_bytes: host_memory_bytes(),
            max_fs_capacity_bytes: DEFAULT_MAX_FS_CAPACITY_BYTES,
            userns_base: None,
            isolation: sandpit_runtime::Isolation::Namespaces,
            gvisor_available: false,
            host_image_available: true,
        }
    }
}

/// Everything `sandpit serve` needs to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Absolute path of the data directory.
    pub data_dir: PathBuf,
    /// Admin key from `SANDPIT_API_KEY`; `None` means generate-once.
    pub admin_api_key: Option<String>,
    /// Base URL clients use to reach this server (for `dataplane_url`);
    /// `None` means "derive from the request's Host header".
    pub public_url: Option<String>,
    /// Domain under which each service gets a host `{id}--{port}.{domain}`
    /// (wildcard DNS, may carry `:port`); `None` is the zero-config local
    /// mode (path-prefixed `service_url`, `*.localhost` `browser_url`).
    pub service_domain: Option<String>,
    /// Bytes of the static agent binary to install into the data dir.
    pub agent_binary: &'static [u8],
    /// Executable to run as `runtime-helper` (normally `current_exe()`).
    pub helper_exe: PathBuf,
    pub defaults: Defaults,
    pub max_upload_bytes: u64,
    /// Keep each agent's stdout/stderr in `DATA/sandboxes/<id>/agent.log`
    /// (debugging only: unbounded, and writable from inside the sandbox).
    pub agent_log: bool,
    /// How often the reconciler runs.
    pub reconcile_interval: std::time::Duration,
    /// Divides every retention duration (idle stop, delete after stop,
    /// lifetime). 1 in production; tests raise it to run the same logic fast.
    pub time_scale: u32,
    /// The egress proxy (`None`: sandboxes have no way out at all).
    pub egress: Option<sandpit_egress::EgressConfig>,
    /// Registries reached over plain HTTP, and registry credentials.
    pub registries: sandpit_images::PullerConfig,
    /// `postgres://...` to keep the store in PostgreSQL; `None`: SQLite in
    /// the data dir.
    pub database_url: Option<String>,
    /// Several replicas behind one PostgreSQL database (`None`: this
    /// server is alone).
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Serve `GET /metrics` without a key on this address too.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate and key (reloaded on SIGHUP).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Garbage collection of the layer store.
    pub gc: crate::gc::GcConfig,
}

impl Default for ServerConfig {
    /// Test-friendly defaults: an ephemeral port, a relative data dir, no
    /// agent bytes. `sandpit serve` always sets every field from its flags.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::from(".sandpit"),
            admin_api_key: None,
            public_url: None,
            service_domain: None,
            agent_binary: b"",
            helper_exe: PathBuf::from("sandpit"),
            defaults: Defaults::default(),
            max_upload_bytes: 1 << 30,
            agent_log: false,
            reconcile_interval: std::time::Duration::from_secs(5),
            time_scale: 1,
            egress: None,
            registries: sandpit_images::PullerConfig::default(),
            database_url: None,
            cluster: None,
            metrics_listen: None,
            tls: None,
            gc: crate::gc::GcConfig::default(),
        }
    }
}
