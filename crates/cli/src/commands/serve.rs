//! `sandpit serve`: flags → `ServerConfig`, the runtime helper and the host
//! image → `sandpit_server::serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sandpit_runtime::{host_image, HelperRuntime};
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
    /// Keep each agent's stdout/stderr in DATA/sandboxes/<id>/agent.log.
    /// Debugging only: the file is unbounded and writable from inside.
    #[arg(long)]
    pub debug_agent_log: bool,
    /// How often the reconciler enforces retention deadlines, in ms.
    #[arg(long, default_value_t = 5000, hide = true)]
    pub reconcile_interval_ms: u64,
    /// Test only: divide every retention duration by this factor.
    #[arg(long, default_value_t = 1, hide = true)]
    pub test_time_scale: u32,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn config(args: ServeArgs) -> anyhow::Result<ServerConfig> {
    let data_dir = std::path::absolute(&args.data_dir).context("resolving --data-dir")?;
    let defaults = Defaults {
        vcpus: args.default_vcpus,
        mem_bytes: args.default_mem_bytes,
        idle_ttl_seconds: args.default_idle_ttl_seconds,
        delete_after_stop_seconds: args.default_delete_after_stop_seconds,
        pids_limit: args.pids_limit,
        ..Defaults::default()
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
    })
}

fn backend(config: &ServerConfig) -> anyhow::Result<Backend> {
    let image = host_image::prepare(&config.data_dir.join("images").join("host"))
        .context("preparing the built-in host image")?;
    let runtime = HelperRuntime::spawn(&config.helper_exe, config.data_dir.join("runtime"))
        .context("starting the runtime helper")?;
    Ok(Backend {
        runtime: Arc::new(runtime),
        host_image: ImageRootfs {
            name: "host".into(),
            layers: image.layers,
            mounts: image.mounts,
            env: image.env,
            workdir: image.workdir,
        },
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "sandpit serve must run as root: sandboxes need namespaces, cgroups and network devices"
    );
    let config = config(args)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let backend = backend(&config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(sandpit_server::serve(config, backend))
}

pub fn run(args: ServeArgs) -> ExitCode {
    init_tracing();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
