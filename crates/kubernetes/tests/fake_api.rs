//! The Kubernetes runtime against an IN-PROCESS FAKE API server
//! (`common/fake_api.rs`), not a real cluster: no API server or kubelet can
//! run where these tests run. What is proved here is what the runtime asks
//! of the API (the manifests, the calls, the reactions to pod status); that
//! a real cluster runs those pods is what `scripts/e2e-kubernetes` checks.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::fake_api::Fake;
use sandpit_kubernetes::{KubeError, KubernetesConfig, KubernetesRuntime, SpecPlanner};
use sandpit_runtime::{Isolation, Limits, MountSpec, Runtime, SandboxSpec};
use serde_json::Value;

const ID: &str = "6f1c2b7e-1d2a-4c3b-9e8f-0123456789ab";

fn spec(id: &str, isolation: Isolation) -> SandboxSpec {
    SandboxSpec {
        id: id.into(),
        state_dir: PathBuf::from("/unused"),
        agent_log: false,
        layers: vec![],
        mounts: vec![MountSpec::Volume {
            image: "/data/volumes/tenant-1/cache.img".into(),
            size_bytes: 2 << 30,
            destination: "/cache".into(),
        }],
        agent_binary: PathBuf::from("/unused"),
        agent_args: ["agent", "--listen-fd", "3", "--workdir", "/home/user"]
            .map(String::from)
            .to_vec(),
        agent_socket: PathBuf::from("/unused"),
        env: vec![("LANG".into(), "C.UTF-8".into())],
        workdir: "/home/user".into(),
        hostname: "my-box".into(),
        limits: Limits {
            cpu_millis: 2000,
            memory_bytes: 512 << 20,
            pids: 1024,
        },
        fs_capacity_bytes: 8 << 30,
        net_slot: 0,
        userns_base: None,
        isolation,
    }
}

fn runtime(fake: &Fake) -> Arc<KubernetesRuntime> {
    let mut config = KubernetesConfig::new("sandboxes", "ghcr.example/sandpit:1.0");
    config.start_timeout = Duration::from_secs(10);
    let planner = SpecPlanner::new(Arc::new(|s: &SandboxSpec| {
        if s.id.starts_with("host") {
            Err(KubeError::Unsupported("the host image".into()))
        } else {
            Ok("python:3.12-slim".to_owned())
        }
    }));
    KubernetesRuntime::new(
        fake.client(),
        config,
        planner,
        tokio::runtime::Handle::current(),
    )
}

/// Runs a synchronous `Runtime` call the way the server does.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_creates_a_hardened_pod_with_its_secret_policy_and_claim() {
    let fake = Fake::start().await;
    let rt = runtime(&fake);
    let r = rt.clone();
    let started = blocking(move || r.start(&spec(ID, Isolation::Gvisor)))
        .await
        .expect("started");
    assert_eq!(started.sandbox_ip, "10.244.0.1");
    assert_eq!(started.pid, 0, "no process on the server's host");

    let pods = fake.created("pods");
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    let spec = &pod["spec"];
    assert_eq!(pod["metadata"]["name"], format!("sandbox-{ID}"));
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["enableServiceLinks"], false);
    assert_eq!(spec["runtimeClassName"], "gvisor");
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["hostname"], "my-box");
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );

    let init = &spec["initContainers"][0];
    assert_eq!(init["image"], "ghcr.example/sandpit:1.0");
    assert_eq!(init["command"][2], "/.sandpit/sandpit");

    let sandbox = &spec["containers"][0];
    assert_eq!(sandbox["image"], "python:3.12-slim");
    assert_eq!(sandbox["command"][0], "/.sandpit/sandpit");
    let args: Vec<&str> = sandbox["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
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
    let resources = &sandbox["resources"];
    assert_eq!(resources["requests"], resources["limits"]);
    assert_eq!(resources["limits"]["cpu"], "2000m");
    assert_eq!(resources["limits"]["memory"], (512u64 << 20).to_string());
    assert_eq!(
        resources["limits"]["ephemeral-storage"],
        (8u64 << 30).to_string()
    );
    let security = &sandbox["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["privileged"], false);
    for cap in ["NET_RAW", "MKNOD", "AUDIT_WRITE"] {
        assert!(security["capabilities"]["drop"]
            .as_array()
            .expect("drop")
            .iter()
            .any(|c| c == cap));
    }
    let token_env = sandbox["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "SANDPIT_AGENT_TOKEN")
        .expect("token env");
    assert!(
        token_env.get("value").is_none(),
        "the token is never inline"
    );
    assert_eq!(
        token_env["valueFrom"]["secretKeyRef"]["name"],
        format!("sandbox-{ID}")
    );
    let mounts = sandbox["volumeMounts"].as_array().expect("mounts");
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == "/.sandpit" && m["readOnly"] == true));
    assert!(mounts.iter().any(|m| m["mountPath"] == "/cache"));

    let secrets = fake.created("secrets");
    let token = secrets[0]["stringData"]["agent-token"]
        .as_str()
        .expect("token");
    assert!(token.len() >= 43, "32 random bytes: {token}");
    let address = rt.address(ID).await.expect("address");
    assert_eq!(address.token, token);
    assert_eq!(address.ip.to_string(), "10.244.0.1");

    let claims = fake.created("persistentvolumeclaims");
    assert_eq!(claims.len(), 1);
    assert_eq!(
        claims[0]["spec"]["resources"]["requests"]["storage"],
        (2u64 << 30).to_string()
    );
    assert!(claims[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .starts_with("volume-cache-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_policy_admits_only_sandpit_and_lets_out_only_dns_and_the_proxy() {
    let fake = Fake::start().await;
    let rt = runtime(&fake);
    blocking(move || rt.start(&spec(ID, Isolation::Namespaces)))
        .await
        .expect("started");
    let policy = &fake.created("networkpolicies")[0]["spec"];
    assert_eq!(
        policy["podSelector"]["matchLabels"]["sandpit.dev/sandbox"],
        ID
    );
    assert_eq!(
        policy["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let ingress = policy["ingress"].as_array().expect("ingress");
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        ingress[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "server"
    );
    assert!(
        ingress[0]["from"][0].get("namespaceSelector").is_none(),
        "same namespace only"
    );
    let egress = policy["egress"].as_array().expect("egress");
    assert_eq!(egress.len(), 2, "{egress:?}");
    assert_eq!(
        egress[0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    let dns_ports: Vec<i64> = egress[0]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(dns_ports, [53, 53]);
    // The proxy is the server replicas' egress port, TCP only.
    assert_eq!(
        egress[1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "server"
    );
    assert_eq!(
        egress[1]["ports"],
        serde_json::json!([{"port": 15080, "protocol": "TCP"}])
    );
    // No rule without a `to`: that would mean anywhere.
    assert!(egress
        .iter()
        .all(|rule| rule["to"].as_array().is_some_and(|t| !t.is_empty())));
    // Namespace isolation: no runtimeClassName.
    assert!(fake.created("pods")[0]["spec"]
        .get("runtimeClassName")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_deletes_pod_secret_and_policy_but_keeps_the_volume() {
    let fake = Fake::start().await;
    let rt = runtime(&fake);
    let r = rt.clone();
    blocking(move || r.start(&spec(ID, Isolation::Namespaces)))
        .await
        .expect("started");
    let r = rt.clone();
    blocking(move || r.stop(ID)).await.expect("stopped");
    assert!(fake.live_names("pods").is_empty());
    assert!(fake.live_names("secrets").is_empty());
    assert!(fake.live_names("networkpolicies").is_empty());
    assert_eq!(fake.live_names("persistentvolumeclaims").len(), 1);
    // Stopping again (nothing left) succeeds; starting again works.
    let r = rt.clone();
    blocking(move || r.stop(ID)).await.expect("stopped twice");
    let r = rt.clone();
    blocking(move || r.start(&spec(ID, Isolation::Namespaces)))
        .await
        .expect("restarted");
    assert_eq!(fake.live_names("pods").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fails_to_start_is_an_error_naming_the_reason() {
    let fake = Fake::start().await;
    fake.objects.lock().expect("lock").fail_next_pod = Some("ErrImagePull".into());
    let rt = runtime(&fake);
    let err = blocking(move || rt.start(&spec(ID, Isolation::Namespaces)))
        .await
        .expect_err("failed");
    let message = err.to_string();
    assert!(message.contains("ErrImagePull"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_pod_cannot_do_is_refused_before_anything_is_created() {
    let fake = Fake::start().await;
    let mut config = KubernetesConfig::new("sandboxes", "sandpit:1");
    config.gvisor_runtime_class = None;
    let planner = SpecPlanner::new(Arc::new(|_: &SandboxSpec| Ok("img".to_owned())));
    let rt = KubernetesRuntime::new(
        fake.client(),
        config,
        planner,
        tokio::runtime::Handle::current(),
    );
    let r = rt.clone();
    let err = blocking(move || r.start(&spec(ID, Isolation::Gvisor)))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("RuntimeClass"), "{err}");

    let mut host = spec("host-1", Isolation::Namespaces);
    host.mounts = vec![MountSpec::Bind {
        source: "/usr".into(),
        destination: "/usr".into(),
        readonly: true,
    }];
    let r = rt.clone();
    let err = blocking(move || r.start(&host)).await.expect_err("refused");
    assert!(err.to_string().contains("host path"), "{err}");
    assert!(fake.created("pods").is_empty());
    assert!(fake.created("secrets").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_and_cleanup_follow_the_cluster() {
    let fake = Fake::start().await;
    let rt = runtime(&fake);
    let other = "0a0a0a0a-0000-4000-8000-000000000002";
    let r = rt.clone();
    blocking(move || {
        r.start(&spec(ID, Isolation::Namespaces))?;
        r.start(&spec(other, Isolation::Namespaces))
    })
    .await
    .expect("started");
    let r = rt.clone();
    let mut running: Vec<String> = blocking(move || r.running())
        .await
        .expect("running")
        .into_iter()
        .map(|r| r.id)
        .collect();
    running.sort();
    assert_eq!(running, [other.to_owned(), ID.to_owned()]);

    let r = rt.clone();
    let keep = vec![ID.to_owned()];
    let swept = blocking(move || r.cleanup(&keep)).await.expect("cleanup");
    assert_eq!(swept, [other.to_owned()]);
    assert_eq!(fake.live_names("pods"), [format!("sandbox-{ID}")]);
    assert_eq!(fake.live_names("secrets"), [format!("sandbox-{ID}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_watch_reports_a_sandbox_whose_pod_ended() {
    let fake = Fake::start().await;
    let rt = runtime(&fake);
    let r = rt.clone();
    blocking(move || r.start(&spec(ID, Isolation::Namespaces)))
        .await
        .expect("started");
    let mut exits = sandpit_kubernetes::watch::exits(fake.client(), "sandboxes");
    // Let the watch start, then the kubelet reports the agent dead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.set_phase(&format!("sandbox-{ID}"), "Failed");
    let exit = tokio::time::timeout(Duration::from_secs(5), exits.recv())
        .await
        .expect("in time")
        .expect("an exit");
    assert_eq!(exit.id, ID);
    assert_eq!(exit.how, "Failed");
}

/// With the fake API server: what the server's data plane asks of the
/// runtime. The pod's agent endpoint (IP, port, credential) is known from
/// the start without another API call, read back from the pod and its
/// Secret for a pod another server process started (adoption after a
/// restart), and gone after stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_the_agent_endpoint_is_known_from_start_and_from_a_running_pod() {
    let fake = Fake::start().await;
    let rt = runtime(&fake);
    let r = rt.clone();
    blocking(move || r.start(&spec(ID, Isolation::Namespaces)))
        .await
        .expect("started");
    let token = fake.created("secrets")[0]["stringData"]["agent-token"]
        .as_str()
        .expect("token")
        .to_owned();
    let endpoint = rt.network_endpoint(ID).expect("known after start");
    assert_eq!(endpoint.ip.to_string(), "10.244.0.1");
    assert_eq!(endpoint.agent_port, 7070);
    assert_eq!(endpoint.token, token);
    assert!(
        !format!("{endpoint:?}").contains(&token),
        "Debug never prints the credential"
    );

    // A new server process: nothing in memory until it lists what runs.
    let fresh = runtime(&fake);
    assert!(fresh.network_endpoint(ID).is_none());
    let f = fresh.clone();
    let running = blocking(move || f.running()).await.expect("running");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].started.pid, 0);
    assert_eq!(fresh.network_endpoint(ID), Some(endpoint));

    let r = rt.clone();
    blocking(move || r.stop(ID)).await.expect("stopped");
    assert!(rt.network_endpoint(ID).is_none());
}

/// With the fake API server: `Runtime::exited`, the server's crash watch
/// for pods, resolves when the kubelet reports the sandbox's pod ended, and
/// not for the end of an earlier pod of the same sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_exited_resolves_when_the_sandboxs_pod_ends() {
    let fake = Fake::start().await;
    let rt = runtime(&fake);
    let r = rt.clone();
    blocking(move || r.start(&spec(ID, Isolation::Namespaces)))
        .await
        .expect("started");
    let mut ended = rt.exited(ID).expect("pods are watched");
    // Still running: nothing resolves.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut ended)
            .await
            .is_err(),
        "resolved while the pod runs"
    );
    fake.set_phase(&format!("sandbox-{ID}"), "Failed");
    tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("resolved once the pod failed");

    // Restarted: the new pod's watch does not fire for the old pod's end.
    let r = rt.clone();
    blocking(move || {
        r.stop(ID)?;
        r.start(&spec(ID, Isolation::Namespaces))
    })
    .await
    .expect("restarted");
    let ended = rt.exited(ID).expect("watched");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), ended)
            .await
            .is_err(),
        "the new pod is running"
    );
}

/// With the fake API server: which sandbox the egress proxy serves, by
/// source pod IP. A pod this replica started is known without an API call;
/// another replica's is found by pod IP through the API (label selector
/// and `status.podIP`); an unknown address, or the IP of a pod that
/// ended, names nobody (the proxy refuses it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_server_egress_source_is_the_running_pod_with_that_ip() {
    use sandpit_runtime::EgressSource;
    let fake = Fake::start().await;
    let rt = runtime(&fake);
    let r = rt.clone();
    blocking(move || r.start(&spec(ID, Isolation::Namespaces)))
        .await
        .expect("started");
    let ip: std::net::IpAddr = "10.244.0.1".parse().expect("ip");
    let sandbox = Some(EgressSource::Sandbox(ID.to_owned()));
    assert_eq!(rt.egress_source(ip), sandbox);

    // Another replica: nothing in memory, the API answers.
    let other = runtime(&fake);
    assert!(other.network_endpoint(ID).is_none());
    assert_eq!(other.egress_source(ip), sandbox);
    assert_eq!(
        other.egress_source("10.244.0.99".parse().expect("ip")),
        None
    );
    assert_eq!(other.egress_source("127.0.0.1".parse().expect("ip")), None);

    // The pod ended: its IP names nobody any more.
    fake.set_phase(&format!("sandbox-{ID}"), "Failed");
    assert_eq!(other.egress_source(ip), None);
    let r = rt.clone();
    blocking(move || r.stop(ID)).await.expect("stopped");
    assert_eq!(rt.egress_source(ip), None);
}

/// With the fake API server: the trust bundle the server binds over the
/// image's goes into the pod through its Secret, and the local explicit
/// proxy address becomes the pod network's proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_server_pods_get_the_ca_bundle_and_the_proxy() {
    let fake = Fake::start().await;
    let dir = std::env::temp_dir().join(format!("sandpit-k8s-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bundle = dir.join("bundle.pem");
    std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\nSANDPIT\n").expect("bundle");
    let mut config = KubernetesConfig::new("sandboxes", "ghcr.example/sandpit:1.0");
    config.egress_proxy_url = Some("http://sandpit-egress.sandboxes.svc:15080".into());
    let planner = SpecPlanner::new(Arc::new(|_: &SandboxSpec| Ok("python:3.12".to_owned())));
    let rt = KubernetesRuntime::new(
        fake.client(),
        config,
        planner,
        tokio::runtime::Handle::current(),
    );
    let mut sandbox = spec(ID, Isolation::Namespaces);
    sandbox.mounts.push(sandpit_runtime::MountSpec::Bind {
        source: bundle,
        destination: "/etc/ssl/certs/ca-certificates.crt".into(),
        readonly: true,
    });
    sandbox
        .env
        .push(("HTTPS_PROXY".into(), "http://198.18.0.1:80".into()));
    blocking(move || rt.start(&sandbox)).await.expect("started");
    let _ = std::fs::remove_dir_all(&dir);
    let secret = &fake.created("secrets")[0];
    assert_eq!(
        secret["stringData"]["ca-certificates.crt"],
        "-----BEGIN CERTIFICATE-----\nSANDPIT\n"
    );
    let pod = &fake.created("pods")[0]["spec"];
    let env = pod["containers"][0]["env"].as_array().expect("env");
    assert!(env
        .iter()
        .any(|e| e["name"] == "HTTPS_PROXY"
            && e["value"] == "http://sandpit-egress.sandboxes.svc:15080"));
    let mounts = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts");
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == "/etc/ssl/certs/ca-certificates.crt" && m["readOnly"] == true));
}

/// With the fake API server: the node of a sandbox's pod is lost. The
/// node controller evicts the pod (being deleted, never confirmed): the
/// exit watch reports it, so the server halts the sandbox as `failed`;
/// stopping it deletes the pod by force after the grace, and starting it
/// again creates a new pod that mounts the same volume claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_server_a_pod_on_a_lost_node_ends_and_the_sandbox_starts_again() {
    let fake = Fake::start().await;
    let mut config = KubernetesConfig::new("sandboxes", "ghcr.example/sandpit:1.0");
    config.start_timeout = Duration::from_secs(10);
    config.stop_grace = Duration::from_millis(500);
    let planner = SpecPlanner::new(Arc::new(|_: &SandboxSpec| Ok("python:3.12".to_owned())));
    let rt = KubernetesRuntime::new(
        fake.client(),
        config,
        planner,
        tokio::runtime::Handle::current(),
    );
    let mut sandbox = spec(ID, Isolation::Namespaces);
    sandbox.mounts = vec![MountSpec::Volume {
        image: PathBuf::from("/data/volumes/data.img"),
        size_bytes: 1 << 30,
        destination: "/data".into(),
    }];
    let (r, s) = (rt.clone(), sandbox.clone());
    blocking(move || r.start(&s)).await.expect("started");
    let ended = rt.exited(ID).expect("watched");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pod = format!("sandbox-{ID}");
    fake.lose_node(&pod);
    tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the eviction ends the sandbox");

    // What the server's halt does: stop. The pod never goes by itself.
    let r = rt.clone();
    blocking(move || r.stop(ID))
        .await
        .expect("stopped by force");
    assert!(fake.live_names("pods").is_empty());
    assert!(fake.live_names("secrets").is_empty());

    let (r, s) = (rt.clone(), sandbox.clone());
    blocking(move || r.start(&s)).await.expect("started again");
    let pods = fake.created("pods");
    assert_eq!(pods.len(), 2, "a new pod");
    let claims = |pod: &Value| {
        pod["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(claims(&pods[0]), claims(&pods[1]));
    assert_eq!(claims(&pods[1]).len(), 1);
    assert_eq!(
        fake.created("persistentvolumeclaims").len(),
        1,
        "the claim is kept and reattached, not made again"
    );
    // The new pod runs and is watched anew.
    let again = rt.exited(ID).expect("watched");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), again)
            .await
            .is_err(),
        "the new pod is running"
    );
}
