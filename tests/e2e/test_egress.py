"""Egress: a sandbox's only way out is Sandpit's proxy.

A dedicated server runs with `--egress-resolve` so that test host names
reach HTTPS and HTTP servers on the host's loopback (with their own
self-signed certificate); the sandboxes resolve names through Sandpit's DNS,
and the proxy enforces each sandbox's `access_control` by SNI (HTTPS, passed
through untouched) and by Host (HTTP), and refuses private addresses. The
upstream servers record what reached them.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import checked_server
from langsmith.sandbox import SandboxClient
from helpers import QuietHandler, serve_http, serve_https
from helpers import curl as sandbox_curl


HOSTS = ["api.example.test", "other.example.test", "x.blocked.test", "plain.example.test"]
EGRESS_PORTS = "25443,25080,25053"


class Recorder(QuietHandler):
    seen: list[dict] = []

    def do_GET(self):  # noqa: N802
        Recorder.seen.append({"host": self.headers.get("Host"), "path": self.path})
        self.reply(200, f"upstream saw {self.headers.get('Host')} {self.path}\n".encode())


def self_signed(work: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for `hosts`; the first is the CN."""
    cert, key = work / "cert.pem", work / "key.pem"
    san = ",".join(f"DNS:{h}" for h in hosts)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={hosts[0]}", "-addext", f"subjectAltName={san}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def https_recorder(cert: Path, key: Path) -> http.server.HTTPServer:
    """A running HTTPS `Recorder` on a free loopback port."""
    return serve_https(Recorder, cert, key)


@pytest.fixture(scope="module")
def upstreams():
    work = Path(tempfile.mkdtemp(prefix="sp-egress-"))
    cert, key = self_signed(work, HOSTS)
    https = https_recorder(cert, key)
    plain = serve_http(Recorder)
    yield {"cert": cert.read_text(), "https": https.server_address[1], "http": plain.server_address[1]}
    https.shutdown()
    plain.shutdown()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def egress_server(upstreams):
    data_dir = Path(tempfile.mkdtemp(prefix="sp-egress-srv-", dir="/tmp"))
    resolve = []
    for host in HOSTS:
        port = upstreams["http"] if host.startswith("plain.") else upstreams["https"]
        resolve += ["--egress-resolve", f"{host}=127.0.0.1:{port}"]
    with checked_server(data_dir, api_key="k-egress", extra_args=["--egress-ports", EGRESS_PORTS, *resolve]) as srv:
        yield srv
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def client(egress_server):
    with SandboxClient(api_endpoint=egress_server.api, api_key=egress_server.api_key) as c:
        yield c


def boxed(client, name, upstreams, access_control=None):
    config = {"rules": []}
    if access_control is not None:
        config["access_control"] = access_control
    sb = client.create_sandbox(name=name, proxy_config=config)
    sb.write("/tmp/ca.pem", upstreams["cert"])
    return sb


def curl(sb, url: str, extra: str = "") -> tuple[int, str]:
    # --noproxy: these tests exercise the transparent (redirected) path; the
    # HTTP(S)_PROXY path is tested in test_egress_inject.py.
    return sandbox_curl(sb, f"--noproxy '*' --cacert /tmp/ca.pem {extra} {url}")


def test_dns_and_default_policy_reach_public_names(client, upstreams):
    sb = boxed(client, "open", upstreams)
    try:
        assert sb.run("getent hosts api.example.test").stdout.split()[0] == "198.18.0.1"
        rc, body = curl(sb, "https://api.example.test/hello")
        assert rc == 0 and body == "upstream saw api.example.test /hello\n", body
        rc, body = curl(sb, "http://plain.example.test/plain")
        assert rc == 0 and body == "upstream saw plain.example.test /plain\n", body
        # TLS is passed through untouched: the sandbox sees the upstream's
        # own certificate, verified against the upstream's CA.
        rc, body = curl(sb, "https://api.example.test/", "-v")
        assert "CN=api.example.test" in body
    finally:
        client.delete_sandbox("open")


def test_allow_list_entries_hold_for_https_http_and_dns(client, upstreams):
    sb = boxed(client, "allowed", upstreams, {"allow_list": ["api.example.test", "~^plain\\.example\\.test$"]})
    try:
        assert curl(sb, "https://api.example.test/ok")[0] == 0
        assert curl(sb, "http://plain.example.test/ok")[0] == 0
        # The name does not resolve...
        rc, body = curl(sb, "https://other.example.test/")
        assert rc == 6 and "resolve" in body, body
        assert sb.run("getent hosts other.example.test >/dev/null; echo $?").stdout.strip() != "0"
        # ...and bypassing DNS does not help: the proxy reads the SNI and
        # answers with a TLS alert.
        rc, body = curl(sb, "https://other.example.test/", "--resolve other.example.test:443:198.18.0.1")
        assert rc == 35 and "alert" in body.lower(), body
        # Plain HTTP to a name off the list gets a 403 that says why.
        rc, body = curl(sb, "http://other.example.test/", "--resolve other.example.test:80:198.18.0.1")
        assert rc == 0 and "denied other.example.test" in body and "allow list" in body
    finally:
        client.delete_sandbox("allowed")


def test_deny_list_globs_and_updates_apply_to_a_running_sandbox(client, upstreams):
    sb = boxed(client, "denied", upstreams, {"deny_list": ["*.blocked.test"]})
    try:
        assert curl(sb, "https://api.example.test/")[0] == 0
        rc, _ = curl(sb, "https://x.blocked.test/", "--resolve x.blocked.test:443:198.18.0.1")
        assert rc != 0
        before = len(Recorder.seen)
        # Deny api.example.test too, on the running sandbox.
        client.update_sandbox("denied", proxy_config={"rules": [], "access_control": {"deny_list": ["*.blocked.test", "api.example.test"]}})
        rc, _ = curl(sb, "https://api.example.test/after-update", "--resolve api.example.test:443:198.18.0.1")
        assert rc != 0
        assert not [s for s in Recorder.seen[before:] if s["path"] == "/after-update"]
    finally:
        client.delete_sandbox("denied")


def test_bad_policies_are_rejected(client, egress_server):
    import httpx

    for bad in ("~(unclosed", "10.0.0.0/33", "not a host!"):
        r = httpx.post(
            f"{egress_server.api}/boxes",
            headers=egress_server.headers(),
            json={"name": "bad", "proxy_config": {"access_control": {"allow_list": [bad]}}},
            timeout=30,
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"]["error"] == "ValidationError" and bad in r.json()["detail"]["message"]
    assert [s.name for s in client.list_sandboxes() if s.name == "bad"] == []


def test_no_way_to_the_host_metadata_or_other_sandboxes(client, upstreams, egress_server):
    a = boxed(client, "prober", upstreams)
    b = boxed(client, "target", upstreams)
    try:
        b.run("nohup python3 -m http.server 8000 >/dev/null 2>&1 &")
        # It serves (inside b), so a failure from a is the network's doing.
        assert b.run("for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8000/ && break; sleep 0.1; done; curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/").stdout == "200"
        b_ip = b.run("hostname -I").stdout.split()[0]
        gateway = a.run("ip route 2>/dev/null | awk '/default/ {print $3}' || true").stdout.strip()
        if not gateway:
            gateway = a.run("awk '/nameserver/ {print $2}' /etc/resolv.conf").stdout.strip()
        server_port = egress_server.endpoint.rsplit(":", 1)[1]
        probes = {
            "other sandbox": f"http://{b_ip}:8000/",
            "host service on the veth address": f"http://{gateway}:{server_port}/healthz",
            "cloud metadata": "http://169.254.169.254/latest/meta-data/",
            "host via port 80 redirect": f"http://{gateway}/",
            "upstream by loopback address": f"http://127.0.0.1:{upstreams['http']}/",
        }
        for what, url in probes.items():
            rc, body = curl(a, url, "--connect-timeout 3")
            assert rc != 0 or "denied" in body, f"{what}: {url} answered: {body}"
            assert "upstream saw" not in body, what
        # Raw TCP to any other port goes nowhere, and fails fast.
        out = a.run(
            f"timeout 5 bash -c 'exec 3<>/dev/tcp/{gateway}/22' 2>&1; echo rc=$?; "
            "timeout 5 bash -c 'exec 3<>/dev/tcp/198.18.0.1/5432' 2>&1; echo rc=$?"
        ).stdout
        assert out.count("rc=0") == 0, out
    finally:
        client.delete_sandbox("prober")
        client.delete_sandbox("target")
