//! `sandpit serve`: flags → `ServerConfig`, the runtime helper and the host
//! image → `sandpit_server::serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sandpit_images::PullerConfig;
use sandpit_runtime::network::firewall::EgressPorts;
use sandpit_runtime::{host_image, HelperRuntime};
use sandpit_server::host_lock::{self, HostLock};
use sandpit_server::{Backend, Defaults, ImageRootfs, ServerConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SANDPIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding the database, images and sandbox files.
    #[arg(long, env = "SANDPIT_DATA_DIR", default_value = ".sandpit")]
    pub data_dir: PathBuf,
    /// URL clients reach this server at, used in `dataplane_url`
    /// (default: the Host header of each request).
    #[arg(long, env = "SANDPIT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Serve each sandbox port at `{sandbox-id}--{port}.DOMAIN` (wildcard
    /// DNS pointing here; may include `:port`). Without it, `service_url`
    /// is path-prefixed on this server's address.
    #[arg(long, env = "SANDPIT_SERVICE_DOMAIN")]
    pub service_domain: Option<String>,
    /// Largest request body (file upload) relayed to a sandbox, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_upload_bytes: u64,
    /// vCPUs of a sandbox created without `vcpus`.
    #[arg(long, default_value_t = 1)]
    pub default_vcpus: i64,
    /// Memory of a sandbox created without `mem_bytes`.
    #[arg(long, default_value_t = 1 << 30)]
    pub default_mem_bytes: i64,
    /// Idle stop of a sandbox created without `idle_ttl_seconds` (0 = never).
    #[arg(long, default_value_t = 600)]
    pub default_idle_ttl_seconds: i64,
    /// Deletion delay after stop when `delete_after_stop_seconds` is omitted
    /// (0 = never).
    #[arg(long, default_value_t = 14 * 24 * 3600)]
    pub default_delete_after_stop_seconds: i64,
    /// Maximum number of processes in one sandbox.
    #[arg(long, default_value_t = 1024)]
    pub pids_limit: u64,
    /// Refuse to create or start a sandbox (507) while the data dir's file
    /// system has less than this many bytes free.
    #[arg(long, default_value_t = 1 << 30)]
    pub min_free_disk_bytes: u64,
    /// Most vCPUs one sandbox may have (422 beyond; default: this host's
    /// CPUs).
    #[arg(long)]
    pub max_sandbox_vcpus: Option<i64>,
    /// Most memory one sandbox may have, in bytes (422 beyond; default:
    /// this host's memory).
    #[arg(long)]
    pub max_sandbox_mem_bytes: Option<i64>,
    /// Largest fs_capacity_bytes of one sandbox (422 beyond; default: 1 TiB).
    #[arg(long)]
    pub max_sandbox_fs_capacity_bytes: Option<i64>,
    /// Keep each agent's stdout/stderr in DATA/sandboxes/<id>/agent.log.
    /// Debugging only: the file is unbounded and writable from inside.
    #[arg(long)]
    pub debug_agent_log: bool,
    /// How often the reconciler enforces retention deadlines, in ms.
    #[arg(long, default_value_t = 5000, hide = true)]
    pub reconcile_interval_ms: u64,
    /// Host ports of the egress proxy, TLS,HTTP,DNS: sandbox HTTPS, HTTP and
    /// DNS are redirected there. One server per host.
    #[arg(long, default_value = "15443,15080,15053")]
    pub egress_ports: sandpit_runtime::network::firewall::EgressPorts,
    /// Turn the egress proxy off: sandboxes get no network at all.
    #[arg(long)]
    pub no_egress: bool,
    /// Send every HTTPS connection through the egress proxy, even where a
    /// direct route (NAT around the proxy, for hosts it would only pass
    /// through) would do. Routes to other machines need the host to forward
    /// IPv4 (net.ipv4.ip_forward=1, as on Docker or Kubernetes hosts);
    /// Sandpit does not turn that on, and without it they keep the proxy.
    #[arg(long)]
    pub no_egress_direct: bool,
    /// Where the egress proxy connects for HOST (repeatable), instead of
    /// resolving it: for tests and split-horizon setups.
    #[arg(long = "egress-resolve", value_name = "HOST=IP:PORT", value_parser = sandpit_egress::parse_resolve)]
    pub egress_resolve: Vec<(String, SocketAddr)>,
    /// A PEM file of extra root certificates the egress proxy trusts when it
    /// connects to hosts for intercepted requests (repeatable).
    #[arg(long = "egress-upstream-ca", value_name = "FILE")]
    pub egress_upstream_ca: Vec<PathBuf>,
    /// Registry (HOST:PORT) to pull from over plain HTTP, e.g. a loopback
    /// registry. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Credentials for a registry, as HOST=USER:PASSWORD. Repeatable.
    #[arg(
        long = "registry-auth",
        env = "SANDPIT_REGISTRY_AUTH",
        value_name = "HOST=USER:PASSWORD",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub registry_auth: Vec<String>,
    /// Keep the store in this PostgreSQL database (`postgres://...`)
    /// instead of SQLite in the data dir.
    #[arg(long, env = "SANDPIT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Run as one of several replicas behind one --database-url: a file
    /// holding a secret (32 bytes or more) that every replica shares. The
    /// service-token keys, the secrets key, the egress CA and the admin key
    /// are kept in the database sealed under it.
    #[arg(long, env = "SANDPIT_SHARED_SECRET_FILE", requires = "database_url")]
    pub shared_secret_file: Option<PathBuf>,
    /// This replica's name among the replicas (default: the host name).
    #[arg(long, env = "SANDPIT_NODE_NAME", requires = "shared_secret_file")]
    pub node_name: Option<String>,
    /// URL the other replicas reach this one's API at (default:
    /// http://LISTEN).
    #[arg(long, env = "SANDPIT_NODE_URL", requires = "shared_secret_file")]
    pub node_url: Option<String>,
    /// Run no sandboxes here: this replica answers the API and places
    /// sandboxes on the replicas that run them (no root, no host lock).
    #[arg(long, requires = "shared_secret_file")]
    pub no_sandboxes: bool,
    /// Also serve Prometheus metrics at http://ADDR/metrics without a key
    /// (on the API address they need the admin key). Bind it where only
    /// the monitoring system reaches.
    #[arg(long, env = "SANDPIT_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key). Send
    /// SIGHUP to read a renewed one. A wildcard certificate for
    /// --service-domain covers every service host.
    #[arg(
        long,
        env = "SANDPIT_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "SANDPIT_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Log lines as text (coloured only on a terminal) or JSON, one object
    /// per line.
    #[arg(long, env = "SANDPIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Garbage-collect the layer store every this many seconds: image
    /// layers no snapshot, template or sandbox uses (0: only `sandpit gc`).
    #[arg(long, env = "SANDPIT_GC_INTERVAL_SECONDS", default_value_t = 600)]
    pub gc_interval_seconds: u64,
    /// How long an image or layer must have been unused before garbage
    /// collection removes it (a pull in progress is never collected).
    #[arg(long, env = "SANDPIT_GC_GRACE_SECONDS", default_value_t = 3600)]
    pub gc_grace_seconds: u64,
    /// Test only: divide every retention duration by this factor.
    #[arg(long, default_value_t = 1, hide = true)]
    pub test_time_scale: u32,
    /// Give every sandbox its own user namespace (root inside is an
    /// unprivileged host id): `auto` where the host supports it (user
    /// namespaces and idmapped mounts), `on` to refuse to start without.
    #[arg(long, env = "SANDPIT_USERNS", value_enum, default_value_t = UsernsMode::DEFAULT)]
    pub userns: UsernsMode,
    /// First host id of the sandboxes' user namespaces: each running
    /// sandbox gets 65536 ids of its own from here.
    #[arg(long, default_value_t = sandpit_runtime::idmap::DEFAULT_BASE)]
    pub userns_base: u32,
    /// Isolation of sandboxes created without an `isolation` field:
    /// `namespaces`, or `gvisor` (runsc on PATH; refused without).
    #[arg(long, env = "SANDPIT_DEFAULT_ISOLATION", default_value = "namespaces")]
    pub default_isolation: sandpit_runtime::Isolation,
    #[command(flatten)]
    pub kubernetes: super::kubernetes::KubernetesServeArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UsernsMode {
    Off,
    On,
    Auto,
}

impl UsernsMode {
    const DEFAULT: Self = Self::Auto;
}

/// The user-namespace base sandboxes get, from `mode` and what the runtime
/// helper found the host supports.
fn userns_base(mode: UsernsMode, base: u32, supported: bool) -> anyhow::Result<Option<u32>> {
    match (mode, supported) {
        (UsernsMode::Off, _) => Ok(None),
        (UsernsMode::On, false) => anyhow::bail!(
            "--userns on: this host cannot give sandboxes user namespaces with idmapped mounts (see the runtime helper's warning)"
        ),
        (UsernsMode::Auto, false) => {
            tracing::warn!("user namespaces or idmapped mounts are unavailable: sandboxes run without a user namespace (root inside is root on the host)");
            Ok(None)
        }
        (_, true) => {
            anyhow::ensure!(
                base > 0
                    && sandpit_runtime::idmap::slot_base(base, sandpit_runtime::network::max_slot())
                        .is_ok(),
                "--userns-base {base}: must be above 0 and leave room for every slot's 65536 ids"
            );
            Ok(Some(base))
        }
    }
}

/// How `sandpit serve` writes its log lines (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line (fields, span fields such as request_id,
    /// target `audit` for admin actions).
    Json,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            // Colour codes only for a terminal: a log file or the journal
            // gets plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

pub(super) fn config(args: ServeArgs) -> anyhow::Result<ServerConfig> {
    let data_dir = std::path::absolute(&args.data_dir).context("resolving --data-dir")?;
    let host = Defaults::default();
    let defaults = Defaults {
        vcpus: args.default_vcpus,
        mem_bytes: args.default_mem_bytes,
        idle_ttl_seconds: args.default_idle_ttl_seconds,
        delete_after_stop_seconds: args.default_delete_after_stop_seconds,
        pids_limit: args.pids_limit,
        min_free_disk_bytes: args.min_free_disk_bytes,
        max_vcpus: args.max_sandbox_vcpus.unwrap_or(host.max_vcpus),
        max_mem_bytes: args.max_sandbox_mem_bytes.unwrap_or(host.max_mem_bytes),
        max_fs_capacity_bytes: args
            .max_sandbox_fs_capacity_bytes
            .unwrap_or(host.max_fs_capacity_bytes),
        ..host
    };
    for (what, default, max) in [
        ("vcpus", defaults.vcpus, defaults.max_vcpus),
        ("mem-bytes", defaults.mem_bytes, defaults.max_mem_bytes),
        (
            "fs-capacity-bytes",
            defaults.fs_capacity_bytes,
            defaults.max_fs_capacity_bytes,
        ),
    ] {
        anyhow::ensure!(
            default <= max,
            "the default {what} ({default}) is above --max-sandbox-{what} ({max})"
        );
    }
    let cluster = cluster(&args)?;
    let egress = match args.no_egress || args.no_sandboxes {
        true => None,
        false => Some(sandpit_egress::EgressConfig {
            ports: sandpit_egress::Ports {
                tls: args.egress_ports.tls,
                http: args.egress_ports.http,
                dns: args.egress_ports.dns,
            },
            resolve: args.egress_resolve.into_iter().collect(),
            direct: match args.no_egress_direct {
                true => None,
                false => Some(Arc::new(sandpit_server::egress::BackendRoutes)),
            },
            ca: Arc::new(
                sandpit_egress::Authority::load_or_create(&data_dir.join("egress"))
                    .context("loading the egress CA")?,
            ),
            upstream_ca: args.egress_upstream_ca,
            time_scale: args.test_time_scale,
        }),
    };
    Ok(ServerConfig {
        listen: args.listen,
        data_dir,
        admin_api_key: std::env::var("SANDPIT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        public_url: args.public_url,
        service_domain: args
            .service_domain
            .map(|d| d.trim_matches('.').to_ascii_lowercase()),
        agent_binary: crate::agent_binary::STATIC_AGENT,
        helper_exe: std::env::current_exe().context("locating the sandpit binary")?,
        defaults,
        max_upload_bytes: args.max_upload_bytes,
        agent_log: args.debug_agent_log,
        reconcile_interval: Duration::from_millis(args.reconcile_interval_ms.max(10)),
        time_scale: args.test_time_scale.max(1),
        egress,
        registries: registries(&args.insecure_registries, &args.registry_auth)?,
        database_url: args.database_url.filter(|u| !u.is_empty()),
        cluster,
        metrics_listen: args.metrics_listen,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(sandpit_server::tls::TlsFiles {
                cert: std::path::absolute(cert).context("resolving --tls-cert")?,
                key: std::path::absolute(key).context("resolving --tls-key")?,
            }),
            _ => None,
        },
        gc: sandpit_server::gc::GcConfig {
            interval: (args.gc_interval_seconds > 0)
                .then(|| Duration::from_secs(args.gc_interval_seconds)),
            grace: Duration::from_secs(args.gc_grace_seconds),
        },
    })
}

/// How this server takes part in a cluster of replicas, from its flags.
fn cluster(args: &ServeArgs) -> anyhow::Result<Option<sandpit_server::cluster::ClusterConfig>> {
    let Some(secret) = &args.shared_secret_file else {
        return Ok(None);
    };
    let node_name = match &args.node_name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name for --node-name")?
            .trim()
            .to_owned(),
    };
    anyhow::ensure!(
        !node_name.is_empty() && node_name.chars().all(|c| c.is_ascii_graphic()),
        "--node-name {node_name:?}: give a non-empty name without spaces"
    );
    let node_url = match &args.node_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            anyhow::ensure!(
                !args.listen.ip().is_unspecified() && args.listen.port() != 0,
                "--listen {}: give --node-url, the URL other replicas reach this one at",
                args.listen
            );
            format!("http://{}", args.listen)
        }
    };
    Ok(Some(sandpit_server::cluster::ClusterConfig {
        node_name,
        node_url,
        shared_secret_file: std::path::absolute(secret)
            .context("resolving --shared-secret-file")?,
        runs_sandboxes: !args.no_sandboxes,
    }))
}

/// The backend of a replica that runs no sandboxes.
fn no_sandboxes_backend() -> Backend {
    Backend {
        runtime: Arc::new(sandpit_server::cluster::NoRuntime),
        host_image: ImageRootfs {
            name: "host".into(),
            layers: Vec::new(),
            mounts: Vec::new(),
            env: Vec::new(),
            workdir: "/".into(),
            user: None,
        },
        host_lock: None,
    }
}

fn registries(insecure: &[String], auth: &[String]) -> anyhow::Result<PullerConfig> {
    let mut credentials = std::collections::HashMap::new();
    for entry in auth {
        let (host, login) = entry
            .split_once('=')
            .context("--registry-auth takes HOST=USER:PASSWORD")?;
        let (user, password) = login
            .split_once(':')
            .context("--registry-auth takes HOST=USER:PASSWORD")?;
        credentials.insert(host.to_owned(), (user.to_owned(), password.to_owned()));
    }
    Ok(PullerConfig {
        insecure_registries: insecure.to_vec(),
        credentials,
    })
}

/// The backend, and whether its runtime can give sandboxes user namespaces.
fn backend(config: &ServerConfig, host_lock: HostLock) -> anyhow::Result<(Backend, bool)> {
    let image = host_image::prepare(&config.data_dir.join("images").join("host"))
        .context("preparing the built-in host image")?;
    let egress = config.egress.as_ref().map(|e| EgressPorts {
        tls: e.ports.tls,
        http: e.ports.http,
        dns: e.ports.dns,
    });
    let runtime = HelperRuntime::spawn_with_egress(
        &config.helper_exe,
        config.data_dir.join("runtime"),
        egress,
    )
    .context("starting the runtime helper")?;
    let userns = runtime.userns_supported();
    let runtime = Arc::new(runtime);
    // The other helpers start now, in the background, rather than in the
    // first burst of creates.
    let ahead = runtime.clone();
    std::thread::Builder::new()
        .name("helper-launch".into())
        .spawn(move || ahead.launch_all())
        .context("starting the helper launcher")?;
    let backend = Backend {
        runtime,
        host_image: ImageRootfs {
            name: "host".into(),
            layers: image.layers,
            mounts: image.mounts,
            env: image.env,
            workdir: image.workdir,
            user: None,
        },
        host_lock: Some(host_lock),
    };
    Ok((backend, userns))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.kubernetes.runtime == super::kubernetes::RuntimeKind::Kubernetes {
        return super::kubernetes::serve(args);
    }
    if args.no_sandboxes {
        // Nothing host-wide: no runtime, cgroups, links or firewall.
        let config = config(args)?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(sandpit_server::serve(config, no_sandboxes_backend()));
    }
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "sandpit serve must run as root: sandboxes need namespaces, cgroups and network devices"
    );
    // Before anything else (the data dir, the runtime helper's sweep,
    // cgroups, links, the firewall): a second server would tear down the
    // first one's.
    let host_lock = HostLock::acquire(
        Path::new(host_lock::DEFAULT_PATH),
        &std::path::absolute(&args.data_dir).context("resolving --data-dir")?,
        &args.listen.to_string(),
    )?;
    let (userns, base) = (args.userns, args.userns_base);
    let default_isolation = args.default_isolation;
    let mut config = config(args)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let (backend, supported) = backend(&config, host_lock)?;
    config.defaults.userns_base = userns_base(userns, base, supported)?;
    config.defaults.isolation = default_isolation;
    config.defaults.gvisor_available = gvisor_available(default_isolation)?;
    if let Some(base) = config.defaults.userns_base {
        tracing::info!(base, "sandboxes get user namespaces");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(sandpit_server::serve(config, backend))
}

/// Whether runsc is installed; `--default-isolation gvisor` requires it.
fn gvisor_available(default: sandpit_runtime::Isolation) -> anyhow::Result<bool> {
    match sandpit_runtime::gvisor::runsc::Runsc::version() {
        Ok(version) => {
            tracing::info!(%version, "gVisor available: sandboxes may ask for isolation \"gvisor\"");
            Ok(true)
        }
        Err(err) if default == sandpit_runtime::Isolation::Gvisor => {
            anyhow::bail!("--default-isolation gvisor: {err}")
        }
        Err(err) => {
            tracing::info!(error = %err, "gVisor unavailable: isolation \"gvisor\" is refused");
            Ok(false)
        }
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    init_tracing(args.log_format);
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userns_mode_decides_the_base() {
        assert_eq!(userns_base(UsernsMode::Off, 100_000, true).unwrap(), None);
        assert_eq!(
            userns_base(UsernsMode::Auto, 100_000, true).unwrap(),
            Some(100_000)
        );
        assert_eq!(userns_base(UsernsMode::Auto, 100_000, false).unwrap(), None);
        assert_eq!(
            userns_base(UsernsMode::On, 100_000, true).unwrap(),
            Some(100_000)
        );
        assert!(userns_base(UsernsMode::On, 100_000, false).is_err());
        assert!(userns_base(UsernsMode::On, 0, true).is_err());
        assert!(userns_base(UsernsMode::Auto, u32::MAX - 1000, true).is_err());
    }
}
