//! The Kubernetes objects of one sandbox, built without I/O so tests and
//! `sandpit kubernetes render` see exactly what the runtime sends.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
    SecretKeySelector, SecretVolumeSource, SecurityContext, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sandpit_runtime::Isolation;

use crate::config::{
    KubernetesConfig, AGENT_TOKEN_ENV, AGENT_TOKEN_KEY, LOCAL_PROXY_URL, MANAGED_BY,
    MANAGED_BY_LABEL, SANDBOX_LABEL, TRUST_BUNDLE_KEY, TRUST_STORE,
};

/// Where the agent binary is inside the sandbox container.
pub const AGENT_DIR: &str = "/.sandpit";
pub const AGENT_PATH: &str = "/.sandpit/sandpit";
/// The container running the sandbox (the agent as PID 1).
pub const SANDBOX_CONTAINER: &str = "sandbox";

/// One sandbox, as the Kubernetes backend needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRequest {
    /// Sandbox id (a UUID: lower-case hex and dashes, a valid DNS label).
    pub id: String,
    /// The image reference the kubelet pulls.
    pub image: String,
    /// Arguments of `sandpit` (`agent ...`), without any listen flag.
    pub agent_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The pod's host name, when it is a valid DNS label.
    pub hostname: Option<String>,
    /// CPU in thousandths of a CPU; 0: none given.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Ephemeral storage (the writable layer, logs, emptyDirs); 0: none.
    pub fs_capacity_bytes: u64,
    pub isolation: Isolation,
    pub volumes: Vec<VolumeClaim>,
    /// The system roots plus Sandpit's egress CA (PEM), mounted read-only
    /// over the image's trust bundle; `None`: the image's own.
    pub trust_bundle: Option<String>,
}

/// A volume: a PersistentVolumeClaim mounted at `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeClaim {
    /// The claim's name (`volume-<volume name>`).
    pub claim: String,
    pub size_bytes: u64,
    pub destination: String,
}

/// `sandbox-<id>`: the name of the pod, its Secret and its NetworkPolicy.
pub fn object_name(id: &str) -> String {
    format!("sandbox-{id}")
}

/// The sandbox id an object was made for, from its labels.
pub fn sandbox_id(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get(SANDBOX_LABEL).map(String::as_str)
}

/// The label selector matching every object the backend made.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{SANDBOX_LABEL}")
}

fn labels(id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (SANDBOX_LABEL.to_owned(), id.to_owned()),
    ])
}

fn meta(name: String, id: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels(id)),
        ..Default::default()
    }
}

/// The Secret holding the agent's bearer credential (and the trust
/// bundle, when the sandbox gets one).
pub fn secret(config: &KubernetesConfig, req: &PodRequest, token: &str) -> Secret {
    let mut data = BTreeMap::from([(AGENT_TOKEN_KEY.to_owned(), token.to_owned())]);
    if let Some(bundle) = &req.trust_bundle {
        data.insert(TRUST_BUNDLE_KEY.to_owned(), bundle.clone());
    }
    Secret {
        metadata: meta(object_name(&req.id), &req.id, &config.namespace),
        type_: Some("Opaque".into()),
        string_data: Some(data),
        immutable: Some(true),
        ..Default::default()
    }
}

/// The pod of sandbox `req`. Its Secret must exist first.
pub fn pod(config: &KubernetesConfig, req: &PodRequest) -> Result<Pod, String> {
    let runtime_class = config.runtime_class(req.isolation)?;
    let mut volumes = vec![Volume {
        name: "agent".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("256Mi".into())),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "agent".into(),
        mount_path: AGENT_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }];
    for (i, volume) in req.volumes.iter().enumerate() {
        let name = format!("volume-{i}");
        volumes.push(Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: volume.claim.clone(),
                read_only: Some(false),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: volume.destination.clone(),
            ..Default::default()
        });
    }
    if req.trust_bundle.is_some() {
        // Only the bundle's key: the agent's credential never becomes a
        // file in the sandbox.
        volumes.push(Volume {
            name: "trust".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(object_name(&req.id)),
                items: Some(vec![KeyToPath {
                    key: TRUST_BUNDLE_KEY.into(),
                    path: TRUST_BUNDLE_KEY.into(),
                    mode: Some(0o444),
                }]),
                default_mode: Some(0o444),
                optional: Some(false),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "trust".into(),
            mount_path: TRUST_STORE.into(),
            sub_path: Some(TRUST_BUNDLE_KEY.into()),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let install = Container {
        name: "install-agent".into(),
        image: Some(config.agent_image.clone()),
        command: Some(vec![
            "cp".into(),
            config.agent_image_binary.clone(),
            AGENT_PATH.into(),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: "agent".into(),
            mount_path: AGENT_DIR.into(),
            ..Default::default()
        }]),
        resources: Some(resources(100, 64 << 20, 0)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65534),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..hardened()
        }),
        ..Default::default()
    };
    let sandbox = Container {
        name: SANDBOX_CONTAINER.into(),
        image: Some(req.image.clone()),
        command: Some(vec![AGENT_PATH.into()]),
        args: Some(agent_args(config, req)),
        env: Some(env(config, req)),
        ports: Some(vec![ContainerPort {
            name: Some("agent".into()),
            container_port: i32::from(config.agent_port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(config.agent_port)),
                ..Default::default()
            }),
            period_seconds: Some(1),
            ..Default::default()
        }),
        resources: Some(resources(
            req.cpu_millis,
            req.memory_bytes,
            req.fs_capacity_bytes,
        )),
        security_context: Some(SecurityContext {
            // Docker's default set minus what the local backend drops too.
            capabilities: Some(Capabilities {
                drop: Some(vec!["NET_RAW".into(), "MKNOD".into(), "AUDIT_WRITE".into()]),
                ..Default::default()
            }),
            ..hardened()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    Ok(Pod {
        metadata: meta(object_name(&req.id), &req.id, &config.namespace),
        spec: Some(PodSpec {
            init_containers: Some(vec![install]),
            containers: vec![sandbox],
            volumes: Some(volumes),
            runtime_class_name: runtime_class,
            hostname: req.hostname.clone(),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(5),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            share_process_namespace: Some(false),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(runtime_default_seccomp()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

fn hardened() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// `sandpit agent --listen tcp:0.0.0.0:PORT ...`, dropping any listen flag
/// the spec carried for the local backend.
fn agent_args(config: &KubernetesConfig, req: &PodRequest) -> Vec<String> {
    let mut args = Vec::with_capacity(req.agent_args.len() + 2);
    let mut given = req.agent_args.iter();
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--listen-fd" | "--listen" => {
                given.next();
            }
            a if a.starts_with("--listen-fd=") || a.starts_with("--listen=") => {}
            _ => args.push(arg.clone()),
        }
    }
    let at = usize::from(args.first().is_some_and(|a| a == "agent"));
    args.splice(
        at..at,
        [
            "--listen".to_owned(),
            format!("tcp:0.0.0.0:{}", config.agent_port),
        ],
    );
    args
}

/// The sandbox's variables. The local backend's explicit-proxy address
/// becomes the pod network's proxy (or goes, when pods have no egress);
/// a value a caller set stays.
fn env(config: &KubernetesConfig, req: &PodRequest) -> Vec<EnvVar> {
    let mut env: Vec<EnvVar> = req
        .env
        .iter()
        .filter(|(name, _)| name != AGENT_TOKEN_ENV)
        .filter_map(|(name, value)| {
            let value = match (value.as_str(), &config.egress_proxy_url) {
                (LOCAL_PROXY_URL, Some(url)) => url.clone(),
                (LOCAL_PROXY_URL, None) => return None,
                _ => value.clone(),
            };
            Some(EnvVar {
                name: name.clone(),
                value: Some(value),
                ..Default::default()
            })
        })
        .collect();
    env.push(EnvVar {
        name: AGENT_TOKEN_ENV.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: object_name(&req.id),
                key: AGENT_TOKEN_KEY.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    env
}

/// Requests equal to limits (the Guaranteed QoS class when CPU and memory
/// are both given). Zero means not given.
fn resources(cpu_millis: u64, memory_bytes: u64, storage_bytes: u64) -> ResourceRequirements {
    let mut amounts = BTreeMap::new();
    if cpu_millis > 0 {
        amounts.insert("cpu".to_owned(), Quantity(format!("{cpu_millis}m")));
    }
    if memory_bytes > 0 {
        amounts.insert("memory".to_owned(), Quantity(memory_bytes.to_string()));
    }
    if storage_bytes > 0 {
        amounts.insert(
            "ephemeral-storage".to_owned(),
            Quantity(storage_bytes.to_string()),
        );
    }
    ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..Default::default()
    }
}

fn selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        ..Default::default()
    }
}

fn port(protocol: &str, port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(i32::from(port))),
        ..Default::default()
    }
}

/// Ingress only from Sandpit's server pods; egress only to the cluster's
/// DNS and the egress proxy's port on the server pods (TCP: an explicit
/// proxy; the pods resolve names through it, not DNS, for anything else).
pub fn network_policy(config: &KubernetesConfig, id: &str) -> NetworkPolicy {
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(selector(&config.dns_namespace_labels)),
            pod_selector: Some(selector(&config.dns_pod_labels)),
            ..Default::default()
        }]),
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    };
    let proxy_ports: Vec<NetworkPolicyPort> = config
        .egress_proxy_ports
        .iter()
        .map(|p| port("TCP", *p))
        .collect();
    let proxy = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(selector(&config.egress_proxy_labels)),
            ..Default::default()
        }]),
        ports: Some(proxy_ports),
    };
    NetworkPolicy {
        metadata: meta(object_name(id), id, &config.namespace),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&labels(id))),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(selector(&config.server_pod_labels)),
                    ..Default::default()
                }]),
                ports: None,
            }]),
            egress: Some(vec![dns, proxy]),
        }),
    }
}

/// The claim of `volume`, made on first use and kept when sandboxes stop.
pub fn volume_claim(config: &KubernetesConfig, volume: &VolumeClaim) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(volume.claim.clone()),
            namespace: Some(config.namespace.clone()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: config.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(volume.size_bytes.to_string()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Every object of sandbox `req` as JSON, in creation order (claims,
/// Secret, NetworkPolicy, Pod) — what `sandpit kubernetes render` prints.
pub fn render(
    config: &KubernetesConfig,
    req: &PodRequest,
    token: &str,
) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    let json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| e.to_string());
    for volume in &req.volumes {
        out.push(json(serde_json::to_value(volume_claim(config, volume)))?);
    }
    out.push(json(serde_json::to_value(secret(config, req, token)))?);
    out.push(json(serde_json::to_value(network_policy(config, &req.id)))?);
    out.push(json(serde_json::to_value(pod(config, req)?))?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PodRequest {
        PodRequest {
            id: "0b6c6a9e-0000-4000-8000-000000000001".into(),
            image: "python:3.12-slim".into(),
            agent_args: ["agent", "--listen-fd", "3", "--workdir", "/home/user"]
                .map(String::from)
                .to_vec(),
            env: vec![
                ("PATH".into(), "/usr/bin".into()),
                (AGENT_TOKEN_ENV.into(), "smuggled".into()),
            ],
            hostname: Some("box".into()),
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            fs_capacity_bytes: 4 << 30,
            isolation: Isolation::Gvisor,
            volumes: vec![VolumeClaim {
                claim: "volume-data".into(),
                size_bytes: 1 << 30,
                destination: "/data".into(),
            }],
            trust_bundle: Some("-----BEGIN CERTIFICATE-----\n".into()),
        }
    }

    #[test]
    fn the_local_proxy_address_becomes_the_pod_networks_proxy() {
        let mut config = KubernetesConfig::new("sandpit", "sandpit:dev");
        let mut req = request();
        req.env.push(("HTTPS_PROXY".into(), LOCAL_PROXY_URL.into()));
        req.env.push(("MY_PROXY".into(), "http://mine:1".into()));
        let value = |env: &[EnvVar], name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        // No egress on the pod network: the variable goes.
        let without = env(&config, &req);
        assert_eq!(value(&without, "HTTPS_PROXY"), None);
        config.egress_proxy_url = Some("http://sandpit-egress.sandpit.svc:15080".into());
        let with = env(&config, &req);
        assert_eq!(
            value(&with, "HTTPS_PROXY").as_deref(),
            Some("http://sandpit-egress.sandpit.svc:15080")
        );
        assert_eq!(value(&with, "MY_PROXY").as_deref(), Some("http://mine:1"));
    }

    #[test]
    fn the_trust_bundle_is_mounted_from_the_secret_without_the_credential() {
        let config = KubernetesConfig::new("sandpit", "sandpit:dev");
        let req = request();
        let secret = secret(&config, &req, "tok");
        let data = secret.string_data.expect("data");
        assert_eq!(data[TRUST_BUNDLE_KEY], "-----BEGIN CERTIFICATE-----\n");
        let pod = serde_json::to_value(pod(&config, &req).expect("pod")).expect("json");
        let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
        let trust = volumes
            .iter()
            .find(|v| v["name"] == "trust")
            .expect("trust volume");
        assert_eq!(trust["secret"]["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(trust["secret"]["items"][0]["key"], TRUST_BUNDLE_KEY);
        let mounts = pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts");
        let mount = mounts
            .iter()
            .find(|m| m["name"] == "trust")
            .expect("mounted");
        assert_eq!(mount["mountPath"], TRUST_STORE);
        assert_eq!(mount["readOnly"], true);
    }

    #[test]
    fn listen_flag_is_replaced_by_tcp() {
        let config = KubernetesConfig::new("sandpit", "sandpit:dev");
        let args = agent_args(&config, &request());
        assert_eq!(
            args,
            [
                "agent",
                "--listen",
                "tcp:0.0.0.0:7070",
                "--workdir",
                "/home/user"
            ]
        );
    }

    #[test]
    fn token_comes_only_from_the_secret() {
        let config = KubernetesConfig::new("sandpit", "sandpit:dev");
        let env = env(&config, &request());
        let token: Vec<_> = env.iter().filter(|e| e.name == AGENT_TOKEN_ENV).collect();
        assert_eq!(token.len(), 1);
        assert!(token[0].value.is_none());
        assert!(token[0].value_from.is_some());
    }

    #[test]
    fn gvisor_without_runtime_class_is_refused() {
        let mut config = KubernetesConfig::new("sandpit", "sandpit:dev");
        config.gvisor_runtime_class = None;
        assert!(pod(&config, &request()).is_err());
    }
}
