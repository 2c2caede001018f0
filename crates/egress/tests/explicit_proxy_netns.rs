//! The egress proxy as sandbox pods use it on Kubernetes, for real: an
//! explicit proxy (`http_proxy`) reached over TCP from a network namespace
//! this test makes (a veth pair to the host: the shape a pod has on its
//! node), which tells the sandbox by its source address. Allowed and
//! denied by policy, and a source no sandbox has refused. The upstream is
//! on loopback (an `--egress-resolve` override). Needs root and `curl`;
//! run it under `flock /tmp/sandpit-e2e.lock` like every test that makes
//! network devices.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;

use sandpit_egress::{Authority, EgressConfig, Lookup, Policy, Ports};

/// Policies by source address (the server's lookup asks the runtime which
/// sandbox has the address, then reads its policy).
struct BySource(HashMap<IpAddr, Policy>);

impl Lookup for BySource {
    async fn policy(&self, source: IpAddr) -> Option<Policy> {
        self.0.get(&source).cloned()
    }
    async fn secret(&self, _tenant: &str, _name: &str) -> Option<String> {
        None
    }
    fn sign_callback(&self, _aud: &str, _body_sha256: &str) -> Option<String> {
        None
    }
    fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

fn quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
}

/// A network namespace with one veth to the host; removed on drop.
struct PodNet {
    ns: String,
    host_if: String,
    host_ip: String,
    pod_ip: String,
}

impl PodNet {
    fn new() -> PodNet {
        let n = std::process::id() % 250;
        let net = PodNet {
            ns: format!("speg{n}"),
            host_if: format!("spegh{n}"),
            host_ip: format!("10.252.{n}.1"),
            pod_ip: format!("10.252.{n}.2"),
        };
        quiet(&["netns", "del", &net.ns]);
        quiet(&["link", "del", &net.host_if]);
        let peer = format!("spegp{n}");
        ip(&["netns", "add", &net.ns]);
        ip(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &net.ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", net.host_ip),
            "dev",
            &net.host_if,
        ]);
        ip(&["link", "set", &net.host_if, "up"]);
        ip(&[
            "-n",
            &net.ns,
            "addr",
            "add",
            &format!("{}/30", net.pod_ip),
            "dev",
            &peer,
        ]);
        ip(&["-n", &net.ns, "link", "set", &peer, "up"]);
        ip(&["-n", &net.ns, "link", "set", "lo", "up"]);
        net
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        quiet(&["netns", "del", &self.ns]);
        quiet(&["link", "del", &self.host_if]);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// An HTTP server on loopback answering every request with `upstream-ok`.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nupstream-ok",
            );
        }
    });
    addr
}

/// `curl` with `http_proxy`/`https_proxy` set, in namespace `ns` (the
/// host's when `None`): (HTTP status or CONNECT status, body).
fn curl(ns: Option<&str>, proxy: &str, url: &str) -> (String, String) {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "curl"]);
            c
        }
        None => Command::new("curl"),
    };
    cmd.args([
        "-s",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code} %{http_connect}",
        url,
    ])
    .env("http_proxy", proxy)
    .env("https_proxy", proxy)
    .env_remove("no_proxy")
    .env_remove("NO_PROXY");
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, codes) = text.rsplit_once('\n').unwrap_or(("", &text));
    (codes.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_uses_the_proxy_explicitly_and_is_told_by_its_source_address() {
    assert!(
        is_root(),
        "this test makes a network namespace: run it as root"
    );
    let net = PodNet::new();
    let upstream = upstream();
    let policy = Policy::from_proxy_config(Some(&serde_json::json!({
        "access_control": {"allow_list": ["allowed.test"]}
    })))
    .expect("policy");
    let pod_ip: IpAddr = net.pod_ip.parse().expect("ip");
    let lookup = Arc::new(BySource(HashMap::from([(pod_ip, policy)])));
    let dir = std::env::temp_dir().join(format!("sandpit-explicit-proxy-{}", std::process::id()));
    let ca = Authority::load_or_create(&dir).expect("ca");
    let _ = std::fs::remove_dir_all(&dir);
    let http_port = free_port();
    let config = EgressConfig {
        ports: Ports {
            tls: free_port(),
            http: http_port,
            dns: free_port(),
        },
        resolve: HashMap::from([
            ("allowed.test".to_owned(), upstream),
            ("denied.test".to_owned(), upstream),
        ]),
        ca: Arc::new(ca),
        upstream_ca: Vec::new(),
        time_scale: 1,
        direct: None,
    };
    let _proxy = sandpit_egress::start(config, lookup).await.expect("proxy");
    let proxy = format!("http://{}:{http_port}", net.host_ip);
    let ns = net.ns.clone();
    let run = move |ns: Option<String>, url: &'static str, proxy: String| {
        tokio::task::spawn_blocking(move || curl(ns.as_deref(), &proxy, url))
    };

    // Allowed: through the proxy to the upstream, on port 80 (the
    // absolute URI names none; not the proxy's own port).
    let (codes, body) = run(Some(ns.clone()), "http://allowed.test/", proxy.clone())
        .await
        .expect("curl");
    assert!(codes.starts_with("200"), "{codes} {body}");
    assert_eq!(body, "upstream-ok");

    // Denied by the policy: 403, naming the host.
    let (codes, body) = run(Some(ns.clone()), "http://denied.test/x", proxy.clone())
        .await
        .expect("curl");
    assert!(codes.starts_with("403"), "{codes} {body}");
    assert!(body.contains("denied.test"), "{body}");
    // HTTPS through CONNECT is checked the same way.
    let (codes, _) = run(Some(ns.clone()), "https://denied.test/", proxy.clone())
        .await
        .expect("curl");
    assert!(codes.ends_with("403"), "CONNECT: {codes}");

    // A source no sandbox has (the host itself) gets nothing.
    let (codes, body) = run(None, "http://allowed.test/", proxy)
        .await
        .expect("curl");
    assert!(codes.starts_with("000"), "{codes} {body}");
    assert!(!body.contains("upstream-ok"));
}

extern "C" {
    fn geteuid() -> u32;
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}
