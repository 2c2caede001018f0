//! `sandpit serve --runtime kubernetes` (each sandbox a Pod) and the dev
//! verb `sandpit kubernetes render`, which prints the objects the runtime
//! creates, for schema validation (tests/e2e/test_kubernetes_manifests.py).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use sandpit_kubernetes::{
    manifests, KubernetesConfig, KubernetesRuntime, LayerStoreImages, PodRequest, SpecPlanner,
    VolumeClaim,
};
use sandpit_runtime::Isolation;
use sandpit_server::{Backend, ImageRootfs};

use super::serve::ServeArgs;

/// Where sandboxes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Containers on this machine (namespaces, cgroups; needs root).
    #[default]
    Local,
    /// Pods in a Kubernetes namespace (needs --database-url).
    Kubernetes,
}

/// The Kubernetes runtime's flags of `sandpit serve`.
#[derive(Args, Clone, Debug)]
pub struct KubernetesServeArgs {
    /// Where sandboxes run: `local` or `kubernetes`.
    #[arg(long, env = "SANDPIT_RUNTIME", value_enum, default_value_t = RuntimeKind::Local)]
    pub runtime: RuntimeKind,
    /// Namespace of the sandbox pods (default: the server pod's own).
    #[arg(long, env = "SANDPIT_KUBERNETES_NAMESPACE")]
    pub kubernetes_namespace: Option<String>,
    /// Image the sandbox pods copy the static `sandpit` binary from (the
    /// server's image; it needs `cp`).
    #[arg(long, env = "SANDPIT_KUBERNETES_AGENT_IMAGE")]
    pub kubernetes_agent_image: Option<String>,
    /// RuntimeClass of gVisor sandboxes; empty refuses gVisor.
    #[arg(long, default_value = "gvisor")]
    pub kubernetes_gvisor_runtime_class: String,
    /// StorageClass of volume claims (default: the cluster's).
    #[arg(long)]
    pub kubernetes_storage_class: Option<String>,
    /// The egress proxy URL sandbox pods get as `HTTP(S)_PROXY`: the
    /// Service in front of the server replicas' proxy port (the Helm chart
    /// sets it). Not given: pods have DNS and no egress at all.
    #[arg(long, env = "SANDPIT_KUBERNETES_EGRESS_PROXY")]
    pub kubernetes_egress_proxy: Option<String>,
}

const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl KubernetesServeArgs {
    fn config(&self) -> anyhow::Result<KubernetesConfig> {
        let namespace = match &self.kubernetes_namespace {
            Some(ns) => ns.clone(),
            None => std::fs::read_to_string(NAMESPACE_FILE)
                .map(|s| s.trim().to_owned())
                .context("--kubernetes-namespace not given and not running in a pod")?,
        };
        let image = self.kubernetes_agent_image.clone().context(
            "--runtime kubernetes needs --kubernetes-agent-image (the sandpit server image)",
        )?;
        let mut config = KubernetesConfig::new(namespace, image);
        config.gvisor_runtime_class =
            Some(self.kubernetes_gvisor_runtime_class.clone()).filter(|c| !c.is_empty());
        config.storage_class = self.kubernetes_storage_class.clone();
        config.egress_proxy_url = self
            .kubernetes_egress_proxy
            .clone()
            .filter(|u| !u.is_empty());
        Ok(config)
    }
}

/// `sandpit serve --runtime kubernetes`.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.database_url.as_deref().is_some_and(|u| !u.is_empty()),
        "--runtime kubernetes needs --database-url postgres://...: sandboxes outlive a server pod, so their records must too"
    );
    let mut kube_config = args.kubernetes.config()?;
    // The NetworkPolicy lets pods reach the port the proxy listens on.
    kube_config.egress_proxy_ports = vec![args.egress_ports.http];
    let mut config = super::serve::config(args)?;
    config.defaults.gvisor_available = kube_config.gvisor_runtime_class.is_some();
    config.defaults.host_image_available = false;
    // Every replica serves the egress proxy on the pod network: pods use it
    // as an explicit proxy (`HTTP(S)_PROXY`, through a Service) and it
    // tells them apart by pod IP. No firewall here: no direct routes.
    match (&kube_config.egress_proxy_url, config.egress.as_mut()) {
        (Some(_), Some(egress)) => egress.direct = None,
        _ => config.egress = None,
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let images = LayerStoreImages::new(config.data_dir.join("oci"));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let client = sandpit_kubernetes::runtime::connect().await.context(
            "connecting to the Kubernetes API (in-cluster service account or kubeconfig)",
        )?;
        let backend = Backend {
            runtime: KubernetesRuntime::new(
                client,
                kube_config,
                SpecPlanner::new(Arc::new(images)),
                tokio::runtime::Handle::current(),
            ),
            host_image: ImageRootfs {
                name: "host".into(),
                layers: Vec::new(),
                mounts: Vec::new(),
                env: Vec::new(),
                workdir: "/".into(),
                user: None,
            },
            host_lock: None,
        };
        sandpit_server::serve(config, backend).await
    })
}

#[derive(Args)]
pub struct KubernetesArgs {
    #[command(subcommand)]
    command: KubernetesCommand,
}

#[derive(Subcommand)]
enum KubernetesCommand {
    /// Write the objects the Kubernetes runtime creates for example
    /// sandboxes (JSON lists, one file per sandbox) into DIR.
    Render {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "sandpit")]
        namespace: String,
        #[arg(long, default_value = "ghcr.io/example/sandpit:0.1.0")]
        agent_image: String,
    },
}

pub fn run(args: KubernetesArgs) -> anyhow::Result<()> {
    match args.command {
        KubernetesCommand::Render {
            out,
            namespace,
            agent_image,
        } => {
            let mut config = KubernetesConfig::new(namespace.clone(), agent_image);
            config.egress_proxy_url = Some(format!(
                "http://sandpit-egress.{namespace}.svc:{}",
                sandpit_kubernetes::config::EGRESS_PROXY_PORT
            ));
            render(&out, config)
        }
    }
}

fn render(out: &std::path::Path, config: KubernetesConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let plain = PodRequest {
        id: "0b6c6a9e-2f4d-4e8a-9c1b-6d2e8f0a1b2c".into(),
        image: "python@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .into(),
        agent_args: ["agent", "--workdir", "/home/user"]
            .map(String::from)
            .to_vec(),
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        hostname: Some("my-sandbox".into()),
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
        fs_capacity_bytes: 0,
        isolation: Isolation::Namespaces,
        volumes: Vec::new(),
        trust_bundle: None,
    };
    let gvisor = PodRequest {
        id: "5e1f3c2a-7b8d-4c9e-a0f1-2b3c4d5e6f70".into(),
        agent_args: ["agent", "--workdir", "/work", "--user", "1000:1000"]
            .map(String::from)
            .to_vec(),
        hostname: None,
        cpu_millis: 4000,
        memory_bytes: 8 << 30,
        fs_capacity_bytes: 20 << 30,
        isolation: Isolation::Gvisor,
        volumes: vec![VolumeClaim {
            claim: "volume-data-1a2b3c4d".into(),
            size_bytes: 10 << 30,
            destination: "/data".into(),
        }],
        trust_bundle: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        env: vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            (
                "HTTPS_PROXY".into(),
                sandpit_kubernetes::config::LOCAL_PROXY_URL.into(),
            ),
        ],
        ..plain.clone()
    };
    for (name, req) in [
        ("sandbox-namespaces", plain),
        ("sandbox-gvisor-volume", gvisor),
    ] {
        let objects = manifests::render(&config, &req, "example-credential")
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let path = out.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&objects)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
