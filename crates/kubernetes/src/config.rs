//! What the Kubernetes backend needs to know about its cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use sandpit_runtime::Isolation;

/// The label every object the backend creates carries, with the sandbox id.
pub const SANDBOX_LABEL: &str = "sandpit.dev/sandbox";
/// The label saying Sandpit manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "sandpit";
/// The environment variable the agent reads its bearer credential from.
pub const AGENT_TOKEN_ENV: &str = "SANDPIT_AGENT_TOKEN";
/// The key of the credential in the sandbox's Secret.
pub const AGENT_TOKEN_KEY: &str = "agent-token";
/// The key of the trust bundle (the system roots plus Sandpit's egress
/// CA) in the sandbox's Secret.
pub const TRUST_BUNDLE_KEY: &str = "ca-certificates.crt";
/// Where images keep their system trust bundle (Debian, Ubuntu, Alpine);
/// the server binds its bundle with Sandpit's CA there.
pub const TRUST_STORE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The explicit proxy the server points sandboxes at on the local backend
/// (the sentinel address, which the host firewall redirects to the proxy);
/// pods get [`KubernetesConfig::egress_proxy_url`] in its place.
pub const LOCAL_PROXY_URL: &str = "http://198.18.0.1:80";
/// The egress proxy's port on the server pods (its HTTP listener, which
/// serves `CONNECT` and absolute-URI requests from explicit-proxy clients).
pub const EGRESS_PROXY_PORT: u16 = 15080;

/// Settings of the Kubernetes backend (`sandpit serve --runtime kubernetes`).
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// The namespace sandboxes live in (the server's own, normally).
    pub namespace: String,
    /// An image holding the static `sandpit` binary and `cp` (the server's
    /// image); its init container copies the binary into the pod.
    pub agent_image: String,
    /// Where the binary is in `agent_image`.
    pub agent_image_binary: String,
    /// The TCP port the agent listens on inside the pod.
    pub agent_port: u16,
    /// `runtimeClassName` of gVisor sandboxes (`None`: gVisor is refused).
    pub gvisor_runtime_class: Option<String>,
    /// Labels of Sandpit's server pods: the only ingress a sandbox accepts.
    pub server_pod_labels: BTreeMap<String, String>,
    /// Labels of the egress proxy's pods (the server replicas, which serve
    /// it), and the ports sandboxes may reach them on: with DNS, the only
    /// egress a sandbox has.
    pub egress_proxy_labels: BTreeMap<String, String>,
    pub egress_proxy_ports: Vec<u16>,
    /// The explicit proxy URL pods get as `HTTP(S)_PROXY` (the Service in
    /// front of the server replicas' proxy port); `None`: pods have no
    /// egress (only DNS).
    pub egress_proxy_url: Option<String>,
    /// The cluster DNS pods (namespace labels and pod labels).
    pub dns_namespace_labels: BTreeMap<String, String>,
    pub dns_pod_labels: BTreeMap<String, String>,
    /// `storageClassName` of volume claims (`None`: the cluster default).
    pub storage_class: Option<String>,
    /// How long a pod has to be scheduled, pull its image and get ready.
    pub start_timeout: Duration,
    /// How long a stopped pod may take to go before it is deleted by force
    /// (its node is lost: no kubelet will ever confirm it ended).
    pub stop_grace: Duration,
}

impl KubernetesConfig {
    /// The defaults the Helm chart matches, in `namespace`, with sandboxes'
    /// agent copied from `agent_image`.
    pub fn new(namespace: impl Into<String>, agent_image: impl Into<String>) -> Self {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Self {
            namespace: namespace.into(),
            agent_image: agent_image.into(),
            agent_image_binary: "/usr/local/bin/sandpit".into(),
            agent_port: 7070,
            gvisor_runtime_class: Some("gvisor".into()),
            server_pod_labels: labels(&[
                ("app.kubernetes.io/name", "sandpit"),
                ("app.kubernetes.io/component", "server"),
            ]),
            egress_proxy_labels: labels(&[
                ("app.kubernetes.io/name", "sandpit"),
                ("app.kubernetes.io/component", "server"),
            ]),
            egress_proxy_ports: vec![EGRESS_PROXY_PORT],
            egress_proxy_url: None,
            dns_namespace_labels: labels(&[("kubernetes.io/metadata.name", "kube-system")]),
            dns_pod_labels: labels(&[("k8s-app", "kube-dns")]),
            storage_class: None,
            start_timeout: Duration::from_secs(120),
            stop_grace: Duration::from_secs(30),
        }
    }

    /// The `runtimeClassName` for `isolation`; `Err` when the cluster has
    /// none configured for it.
    pub fn runtime_class(&self, isolation: Isolation) -> Result<Option<String>, String> {
        match isolation {
            Isolation::Namespaces => Ok(None),
            Isolation::Gvisor => self.gvisor_runtime_class.clone().map(Some).ok_or_else(|| {
                "gVisor isolation needs a RuntimeClass (--kubernetes-gvisor-runtime-class)".into()
            }),
        }
    }
}
