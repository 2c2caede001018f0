//! `sandpit serve`: the control API, auth, store, lifecycle controller and
//! the gateway that relays data-plane traffic to each sandbox's agent.
//!
//! Architecture invariants: control-API errors become HTTP status codes in one
//! place (`error`); the database is the source of truth and the runtime is
//! reconciled to it (`sandboxes::Sandboxes::recover`); a caller's key is never
//! relayed into a sandbox (`gateway::relay`).

pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod console;
pub mod delegation;
pub mod egress;
pub mod error;
pub mod gateway;
pub mod gc;
pub mod health;
pub mod host_lock;
pub mod key_file;
pub mod metrics;
pub mod mounts;
pub mod openapi;
pub mod opensandbox;
pub mod paths;
pub mod proxy_config;
pub mod request_id;
pub mod routes;
pub mod sandboxes;
pub mod secrets;
pub mod snapshots;
pub mod state;
pub mod store;
pub mod templates;
pub mod tenants;
pub mod tls;

use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use anyhow::Context;
use sandpit_runtime::Runtime;

pub use config::{Defaults, ServerConfig};
pub use paths::DataDirs;
pub use routes::app;
pub use sandboxes::ImageRootfs;

use crate::auth::{generate_key, hash_key, key_prefix, ClientAddr, Keys, DEFAULT_TENANT};
use crate::host_lock::HostLock;
use crate::sandboxes::{Sandboxes, SandboxesConfig};
use crate::state::AppState;
use crate::store::Store;

/// The runtime backend and the built-in image, built by the caller (the CLI
/// owns process layout: it knows how to spawn the runtime helper).
pub struct Backend {
    pub runtime: Arc<dyn Runtime>,
    pub host_image: ImageRootfs,
    /// The host-wide lock taken before the runtime was started; `serve`
    /// records the bound address in it and holds it until it returns.
    pub host_lock: Option<HostLock>,
}

/// The admin key: `SANDPIT_API_KEY` if given, else generated once and kept
/// in the data dir.
fn admin_key(config: &ServerConfig, dirs: &DataDirs) -> anyhow::Result<String> {
    if let Some(key) = &config.admin_api_key {
        return Ok(key.clone());
    }
    let path = dirs.admin_key_file();
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.to_owned());
        }
    }
    let key = generate_key();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{key}\n").as_bytes())?;
    Ok(key)
}

/// Open the data dir and database, install the agent and the admin key.
pub async fn prepare(
    config: &ServerConfig,
) -> anyhow::Result<(DataDirs, Store, String, std::path::PathBuf)> {
    let dirs = DataDirs::create(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let probe_socket = dirs.agent_socket(&uuid::Uuid::nil().to_string());
    anyhow::ensure!(
        probe_socket.as_os_str().len() < 100,
        "data dir path {} is too long for unix sockets; choose a shorter --data-dir",
        dirs.root().display()
    );
    let store = match &config.database_url {
        Some(url) => Store::open(url).await,
        None => Store::open_sqlite(&dirs.database()).await,
    }
    .context("opening the database")?;
    if let Some(cluster) = &config.cluster {
        // Before anything opens a key file: make them the cluster's.
        let secret = cluster::keys::Secret::from_file(&cluster.shared_secret_file)?;
        cluster::keys::share_keys(&store, &secret, dirs.root())
            .await
            .context("sharing keys with the other replicas")?;
    }
    let key = admin_key(config, &dirs)?;
    let tenant = store.ensure_tenant(DEFAULT_TENANT).await?;
    store
        .set_named_key(
            &tenant.id,
            "admin",
            &hash_key(&key),
            &key_prefix(&key),
            true,
        )
        .await?;
    let agent = dirs
        .install_agent(config.agent_binary)
        .context("installing the agent binary")?;
    Ok((dirs, store, key, agent))
}

/// Run the server until SIGINT/SIGTERM, then stop every sandbox and exit.
pub async fn serve(mut config: ServerConfig, backend: Backend) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives during start-up must still mean
    // "shut down cleanly", not the default "die".
    let shutdown = shutdown_signal()?;
    // The API and the egress proxy's connections share the descriptors.
    match sandpit_egress::limits::raise_nofile_limit() {
        Ok((soft, _)) => tracing::debug!(soft, "open-file limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
    let (dirs, store, key, agent) = prepare(&config).await?;
    let cluster = match &config.cluster {
        Some(settings) => {
            let secret = cluster::keys::Secret::from_file(&settings.shared_secret_file)?;
            let joined = cluster::Cluster::join(store.clone(), settings.clone(), secret)?;
            joined.heartbeat().await.context("recording this node")?;
            // The CA was loaded before `prepare` made its files the
            // cluster's: load the shared one.
            if let Some(egress) = config.egress.as_mut() {
                egress.ca = Arc::new(
                    sandpit_egress::Authority::load_or_create(&dirs.root().join("egress"))
                        .context("loading the shared egress CA")?,
                );
            }
            tracing::info!(node = joined.node_name(), "joined the cluster");
            Some(joined)
        }
        None => None,
    };
    let layers_dir = dirs.root().join("oci");
    let layers =
        Arc::new(sandpit_images::LayerStore::open(&layers_dir).context("opening the layer store")?);
    let puller = Arc::new(sandpit_images::Puller::new(
        layers.clone(),
        config.registries.clone(),
    ));
    let snapshots = Arc::new(snapshots::Snapshots::new(store.clone(), puller));
    snapshots.recover().await.context("recovering snapshots")?;
    let service_keys = Arc::new(
        gateway::tokens::ServiceKeys::open(&dirs.service_keys())
            .context("loading the service-token keys")?,
    );
    let secrets = Arc::new(secrets::Secrets::new(
        store.clone(),
        secrets::Vault::open(&dirs.secrets_key()).context("opening the secrets key")?,
    ));
    let ca_bundle = match &config.egress {
        Some(egress) => Some(write_ca_bundle(&dirs, egress.ca.cert_pem())?),
        None => None,
    };
    let mounts = mounts_of(&config, secrets.clone(), dirs.root())?;
    let controller = SandboxesConfig {
        ca_bundle,
        dirs,
        host_image: backend.host_image,
        agent_binary: agent,
        defaults: config.defaults,
        agent_log: config.agent_log,
    };
    let probes = Arc::new(health::Probes {
        runtime: backend.runtime.clone(),
        egress: config
            .egress
            .as_ref()
            .map(|e| std::net::SocketAddr::from(([127, 0, 0, 1], e.ports.http))),
    });
    let scrape = Arc::new(metrics::ScrapeSources {
        runtime: backend.runtime.clone(),
        layers: layers_dir,
    });
    // In dependency order: the controller uses the snapshots, mounts and
    // cluster, none of which knows the controller.
    let sandboxes = Arc::new(
        Sandboxes::new(store.clone(), backend.runtime, controller)
            .with_snapshots(snapshots.clone())
            .with_mounts(mounts)
            .with_cluster(cluster.clone()),
    );
    sandboxes.recover().await.context("recovering sandboxes")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let state = AppState {
        config: Arc::new(config),
        store: store.clone(),
        keys: Arc::new(Keys::default()),
        sandboxes: sandboxes.clone(),
        service_keys,
        secrets: secrets.clone(),
        cluster: cluster.clone(),
        snapshots: Some(snapshots),
    };
    let endpoint = state
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| match state.config.tls {
            Some(_) => format!("https://{addr}"),
            None => format!("http://{addr}"),
        });
    let mut host_lock = backend.host_lock;
    if let Some(lock) = host_lock.as_mut() {
        if let Err(err) = lock.record(&state.config.data_dir, &addr.to_string()) {
            tracing::warn!(error = %err, "cannot record the listen address in the host lock");
        }
    }
    println!("Sandpit is listening on {addr}. To use it with the LangSmith SDK:\n");
    println!(
        "export LANGSMITH_ENDPOINT={}/api",
        endpoint.trim_end_matches('/')
    );
    println!(
        "{}",
        key_line(
            &key,
            state.config.admin_api_key.is_some(),
            &state.config.data_dir.join("admin-api-key"),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        )
    );
    tracing::info!(%addr, "listening");

    let _egress = match state.config.egress.clone() {
        Some(egress) => {
            let ports = egress.ports;
            match sandpit_egress::start(
                egress::bind_direct_routes(egress, sandboxes.runtime()),
                Arc::new(egress::EgressLookup(
                    sandboxes.clone(),
                    secrets,
                    state.service_keys.clone(),
                    Arc::new(delegation::Minter::new(
                        state.store.clone(),
                        state.config.data_dir.clone(),
                        addr,
                        state.config.tls.is_some(),
                    )),
                )),
            )
            .await
            {
                Ok(running) => Some(running),
                Err(err) => {
                    // Fail closed: the firewall still sends sandbox traffic
                    // to these ports, and nothing there will let it out.
                    tracing::error!(?ports, error = %err, "egress proxy not started; sandboxes have no network");
                    None
                }
            }
        }
        None => None,
    };
    let node = cluster
        .as_ref()
        .map(|c| tokio::spawn(cluster::run(c.clone(), state.service_keys.clone())));
    let pools = tokio::spawn(refill_pools(
        sandboxes.clone(),
        state.config.reconcile_interval,
        cluster.clone(),
    ));
    let collector = tokio::spawn(gc::periodic(store.clone(), layers.clone(), state.config.gc));
    let reconciler = tokio::spawn(reconcile(
        sandboxes.clone(),
        state.config.reconcile_interval,
        state.config.time_scale,
        cluster.clone(),
    ));
    let metrics_server = match state.config.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, state.clone(), scrape.clone()).await?),
        None => None,
    };
    let tls = match &state.config.tls {
        Some(files) => {
            let acceptor = Arc::new(
                tls::Acceptor::load(files.clone()).context("loading --tls-cert and --tls-key")?,
            );
            tls::reload_on_sighup(acceptor.clone()).context("installing the SIGHUP handler")?;
            Some(acceptor)
        }
        None => None,
    };
    let (listener, accept) =
        gateway::fastpath::listen(listener, state.clone(), tls).context("listening")?;
    let (stopping, stop_requested) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        app(state)
            .layer(axum::Extension(probes))
            .layer(axum::Extension(scrape))
            .into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    tokio::select! {
        served = server => served.context("serving")?,
        _ = drain_deadline(stop_requested) => {
            tracing::info!(
                after = ?DRAIN_TIMEOUT,
                "connections still open (streams of running commands); closing them"
            );
        }
    }
    accept.abort();
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    reconciler.abort();
    collector.abort();
    pools.abort();
    if let Some(node) = node {
        node.abort();
    }
    tracing::info!("shutting down: stopping sandboxes");
    sandboxes.shutdown().await;
    store.close().await;
    drop(host_lock);
    Ok(())
}

/// Serve `GET /metrics` without a key on `addr` (`--metrics-listen`).
async fn serve_metrics(
    addr: std::net::SocketAddr,
    state: AppState,
    scrape: Arc<metrics::ScrapeSources>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-listen {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving metrics");
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics::scrape))
        .layer(axum::Extension(scrape))
        .with_state(state);
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "the metrics listener failed");
        }
    }))
}

/// How long, after SIGTERM/SIGINT, requests in flight may finish before
/// their connections are closed. Streams that last as long as a command
/// (SSE exec) would otherwise hold the shutdown until the command ends.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Resolves [`DRAIN_TIMEOUT`] after a stop was requested.
async fn drain_deadline(mut stop_requested: tokio::sync::watch::Receiver<bool>) {
    if stop_requested.wait_for(|stop| *stop).await.is_err() {
        // The server ended first (the sender went with it).
        return std::future::pending().await;
    }
    tokio::time::sleep(DRAIN_TIMEOUT).await;
}

/// The line that tells the user the admin key. The key itself goes only to
/// a terminal: anywhere else (a log file, the journal, a pipe) the line
/// names where it is instead, so logs never hold it.
fn key_line(key: &str, from_env: bool, file: &std::path::Path, terminal: bool) -> String {
    match (terminal, from_env) {
        (true, _) => format!("export LANGSMITH_API_KEY={key}"),
        (false, true) => "export LANGSMITH_API_KEY=\"$SANDPIT_API_KEY\"  # the key you set".into(),
        (false, false) => format!(
            "export LANGSMITH_API_KEY=$(cat {})  # the admin key (0600); printed only on a terminal",
            file.display()
        ),
    }
}

/// Write the trust bundle sandboxes get: the host's roots (if any) and
/// Sandpit's egress CA, so intercepted TLS verifies inside.
/// Sandbox mounts dial like the egress proxy: its `--egress-resolve`
/// overrides and `--egress-upstream-ca` roots.
fn mounts_of(
    config: &ServerConfig,
    secrets: Arc<secrets::Secrets>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<mounts::Mounts>> {
    let (resolve, upstream_ca) = match &config.egress {
        Some(egress) => (egress.resolve.clone(), egress.upstream_ca.clone()),
        None => Default::default(),
    };
    let bundle = data_dir.join("mounts-ca.crt");
    let mounts = mounts::Mounts::new(secrets, resolve, &upstream_ca, bundle)
        .context("writing the mounts' trust bundle")?;
    Ok(Arc::new(mounts))
}

fn write_ca_bundle(dirs: &DataDirs, ca_pem: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dirs.sandbox_ca_bundle();
    let mut bundle =
        std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(ca_pem);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bundle).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Whether this server runs the work that must run once: always when it is
/// alone, only while it is the leader among replicas.
fn leads(cluster: &Option<Arc<cluster::Cluster>>) -> bool {
    cluster.as_ref().is_none_or(|c| c.is_leader())
}

/// The reconciler: enforces retention deadlines every `interval` (on the
/// leader, for every replica's sandboxes).
async fn reconcile(
    sandboxes: Arc<Sandboxes>,
    interval: std::time::Duration,
    time_scale: u32,
    cluster: Option<Arc<cluster::Cluster>>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !leads(&cluster) {
            continue;
        }
        if let Err(err) = sandboxes.enforce_retention(time_scale).await {
            tracing::warn!(error = format!("{err:#}"), "reconciler pass failed");
        }
    }
}

/// The pool refill task: runs when woken (a claim, a pool change) or every
/// `interval` (on the leader).
async fn refill_pools(
    sandboxes: Arc<Sandboxes>,
    interval: std::time::Duration,
    cluster: Option<Arc<cluster::Cluster>>,
) {
    loop {
        if leads(&cluster) {
            sandboxes.reconcile_pools().await;
        }
        sandboxes.pools_idle(interval).await;
    }
}

/// Resolves on SIGTERM or SIGINT; the handlers are installed when this is
/// called, not when the future is first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
