//! The agent as it runs in a Pod, for real: `sandpit agent --listen
//! tcp:IP:7070` with `$SANDPIT_AGENT_TOKEN`, inside a network namespace
//! this test makes (a veth pair to the host: the shape of a pod network),
//! called from the host with and without its credential. Needs root and the
//! `sandpit` binary (`$SANDPIT_BIN`, else the release build); run it under
//! `flock /tmp/sandpit-e2e.lock` like every test that makes network devices.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "k8s-test-credential-0123456789abcdef";

fn sandpit() -> PathBuf {
    if let Some(bin) = std::env::var_os("SANDPIT_BIN") {
        return bin.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("release/sandpit")
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// `ip ARGS`, for cleanup: whatever is already gone is fine.
fn quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
}

/// A network namespace with one veth to the host; removed on drop.
struct PodNet {
    ns: String,
    host_if: String,
    pod_ip: String,
    agent: Option<Child>,
}

impl PodNet {
    fn new() -> PodNet {
        let n = std::process::id() % 250;
        let net = PodNet {
            ns: format!("spk8s{n}"),
            host_if: format!("spk8h{n}"),
            pod_ip: format!("10.251.{n}.2"),
            agent: None,
        };
        quiet(&["netns", "del", &net.ns]);
        quiet(&["link", "del", &net.host_if]);
        let peer = format!("spk8p{n}");
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
            &format!("10.251.{n}.1/30"),
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

    /// `sandpit agent` in the namespace, listening on `listen`.
    fn agent(&self, listen: &str, token: Option<&str>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(sandpit());
        cmd.args(["agent", "--listen", listen, "--workdir", "/tmp"]);
        cmd.env_remove("SANDPIT_AGENT_TOKEN");
        if let Some(token) = token {
            cmd.env("SANDPIT_AGENT_TOKEN", token);
        }
        cmd
    }

    fn addr(&self) -> SocketAddr {
        format!("{}:7070", self.pod_ip).parse().expect("addr")
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        quiet(&["netns", "del", &self.ns]);
        quiet(&["link", "del", &self.host_if]);
    }
}

/// One HTTP/1.1 request over the veth: (status, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: sandbox\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(head.as_bytes()).expect("write");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "agent never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn agent_on_the_pod_network_demands_its_credential() {
    assert!(
        nix_is_root(),
        "this test makes a network namespace: run it as root"
    );
    assert!(
        sandpit().exists(),
        "no sandpit binary at {}",
        sandpit().display()
    );
    let mut net = PodNet::new();
    let listen = format!("tcp:{}:7070", net.pod_ip);

    // Without a credential it refuses to listen on the pod network at all.
    let refused = net
        .agent(&listen, None)
        .stderr(Stdio::piped())
        .output()
        .expect("run agent");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("without a credential"), "{stderr}");

    net.agent = Some(
        net.agent(&listen, Some(TOKEN))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn agent"),
    );
    let addr = net.addr();
    wait_listening(addr);

    assert_eq!(
        request(addr, "GET", "/healthz", None, "").0,
        401,
        "no credential"
    );
    assert_eq!(
        request(addr, "GET", "/healthz", Some("Bearer wrong"), "").0,
        401,
        "wrong credential"
    );
    let short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    assert_eq!(
        request(addr, "GET", "/healthz", Some(&short), "").0,
        401,
        "a prefix of it"
    );
    let exec = r#"{"command": "echo token=[$SANDPIT_AGENT_TOKEN]", "timeout": 10}"#;
    assert_eq!(
        request(addr, "POST", "/execute", None, exec).0,
        401,
        "exec without it"
    );

    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(request(addr, "GET", "/healthz", Some(&bearer), "").0, 200);
    let (status, body) = request(addr, "POST", "/execute", Some(&bearer), exec);
    assert_eq!(status, 200, "{body}");
    // Commands never inherit the credential.
    assert!(body.contains("token=[]"), "{body}");
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
