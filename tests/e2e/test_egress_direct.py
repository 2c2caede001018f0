"""Direct routes: HTTPS the proxy would only pass through goes around it.

A sandbox whose policy lets it reach every name, asking for a host no rule
intercepts, gets an alias address from Sandpit's DNS and a NAT route from
that alias to the host's real address, so its TLS goes straight there. The
upstream tells which path a request took by the address it came from: the
sandbox's own (direct) or the host's (the proxy dialed it).

The upstream listens on 10.253.250.1, an address this module adds to the
host's `lo` (NAT from a veth cannot reach 127.0.0.0/8, so loopback targets
always go through the proxy, as every other egress test's do). A second,
"remote" upstream runs in a network namespace this module makes, reached
through the host by forwarding.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import checked_server
from langsmith.sandbox import SandboxClient
from test_egress_inject import Recorder, make_ca, serve_https

UPSTREAM_IP = "10.253.250.1"
HOSTS = ["direct.example.test", "api.example.test", "remote.example.test"]
# The remote upstream's namespace and veth (not spv*: no sandbox rules).
REMOTE_NS, REMOTE_VETH = "spdirect-remote", ("spdr0", "spdr1")
REMOTE_GW, REMOTE_IP, REMOTE_PORT = "10.253.249.1", "10.253.249.2", 8443
EGRESS_PORTS = "24443,24080,24053"
SENTINEL = "198.18.0.1"


def hit(path: str) -> dict | None:
    """The last request for `path` the upstream recorded (with its peer), if any."""
    hits = [s for s in Recorder.seen if s["path"] == path]
    return hits[-1] if hits else None


@pytest.fixture(scope="module")
def upstream():
    subprocess.run(["ip", "addr", "del", f"{UPSTREAM_IP}/32", "dev", "lo"], capture_output=True)  # a crashed run's
    subprocess.run(["ip", "addr", "add", f"{UPSTREAM_IP}/32", "dev", "lo"], check=True)
    work = Path(tempfile.mkdtemp(prefix="sp-direct-"))
    try:
        ca, cert, key = make_ca(work, HOSTS)
        server = serve_https(Recorder, cert, key, UPSTREAM_IP)
        yield {"ca": ca, "ca_pem": ca.read_text(), "port": server.server_address[1],
               "work": work, "cert": cert, "key": key}
        server.shutdown()
    finally:
        subprocess.run(["ip", "addr", "del", f"{UPSTREAM_IP}/32", "dev", "lo"], check=False)
        shutil.rmtree(work, ignore_errors=True)


REMOTE_SERVER = r"""
import http.server, ssl, sys
class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = f"ok {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Ok)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


@pytest.fixture(scope="module")
def remote(upstream):
    """An HTTPS upstream in its own network namespace, routed via the host."""
    subprocess.run(["ip", "netns", "del", REMOTE_NS], capture_output=True)
    ip("netns", "add", REMOTE_NS)
    server = None
    try:
        ip("link", "add", REMOTE_VETH[0], "type", "veth", "peer", "name", REMOTE_VETH[1], "netns", REMOTE_NS)
        ip("addr", "add", f"{REMOTE_GW}/30", "dev", REMOTE_VETH[0])
        ip("link", "set", REMOTE_VETH[0], "up")
        ip("-n", REMOTE_NS, "addr", "add", f"{REMOTE_IP}/30", "dev", REMOTE_VETH[1])
        ip("-n", REMOTE_NS, "link", "set", REMOTE_VETH[1], "up")
        # No default route: forwarded connections are masqueraded to
        # REMOTE_GW, on this link (and http.server's reverse lookup of its
        # address fails at once instead of waiting on a resolver).
        script = upstream["work"] / "remote.py"
        script.write_text(REMOTE_SERVER)
        log = upstream["work"] / "remote.log"
        with log.open("w") as out:
            server = subprocess.Popen(["ip", "netns", "exec", REMOTE_NS, sys.executable, str(script), REMOTE_IP,
                                       str(REMOTE_PORT), str(upstream["cert"]), str(upstream["key"])],
                                      stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: can_connect(REMOTE_IP, REMOTE_PORT) or server.poll() is not None, "the remote upstream")
        assert server.poll() is None, log.read_text()
        yield f"{REMOTE_IP}:{REMOTE_PORT}"
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", REMOTE_NS], capture_output=True)
        subprocess.run(["ip", "link", "del", REMOTE_VETH[0]], capture_output=True)


def can_connect(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def client(upstream, remote):
    data_dir = Path(tempfile.mkdtemp(prefix="sp-direct-srv-", dir="/tmp"))
    args = ["--egress-ports", EGRESS_PORTS, "--egress-upstream-ca", str(upstream["ca"])]
    for host in HOSTS:
        target = remote if host.startswith("remote.") else f"{UPSTREAM_IP}:{upstream['port']}"
        args += ["--egress-resolve", f"{host}={target}"]
    with checked_server(data_dir, api_key="k-direct", extra_args=args) as srv:
        with SandboxClient(api_endpoint=srv.api, api_key=srv.api_key) as c:
            yield c
    shutil.rmtree(data_dir, ignore_errors=True)


# Resolves a host, GETs a path over TLS (trusting the system store, where
# Sandpit's CA is, and the upstream's own CA), prints what it saw.
GET = r"""
import http.client, json, socket, ssl, sys
host, path = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context()
ctx.load_verify_locations(cafile="/tmp/up-ca.pem")
conn = http.client.HTTPSConnection(host, context=ctx, timeout=10)
try:
    conn.request("GET", path)
    r = conn.getresponse()
    out = {"status": r.status, "body": r.read().decode(), "local": conn.sock.getsockname()[0],
           "address": socket.gethostbyname(host)}
except Exception as e:
    out = {"error": repr(e)}
print(json.dumps(out))
"""


def get(sb, host: str, path: str) -> dict:
    out = sb.run(f"python3 /tmp/get.py {host} {path}", timeout=30)
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def prepare(sb, upstream) -> None:
    sb.write("/tmp/up-ca.pem", upstream["ca_pem"])
    sb.write("/tmp/get.py", GET)


def routes() -> str:
    """The firewall's direct routes, as `nft` lists them."""
    return subprocess.run(["nft", "list", "set", "inet", "sandpit", "direct_keys"],
                          capture_output=True, text=True, check=True).stdout


def wait_until(check, what: str, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_an_open_policy_goes_direct_and_a_listed_one_through_the_proxy(client, upstream):
    open_sb = client.create_sandbox(name="direct-open")
    listed = client.create_sandbox(name="direct-listed", proxy_config={
        "access_control": {"deny_list": ["direct.example.test"]}})
    try:
        prepare(open_sb, upstream)
        prepare(listed, upstream)
        got = get(open_sb, "direct.example.test", "/open")
        assert got.get("status") == 200 and got["body"] == "ok /open\n", got
        alias = got["address"]
        assert alias.startswith("198.1") and alias != SENTINEL, got
        # The upstream saw the sandbox itself: no proxy in between.
        assert hit("/open")["peer"] == got["local"] != UPSTREAM_IP
        assert f"{got['local']} . {alias}" in routes()

        # A deny list gives the proxy something to check: the sentinel, and
        # the request (for a name it allows) arrives from the host.
        ok = get(listed, "api.example.test", "/listed")
        assert ok.get("status") == 200 and ok["address"] == SENTINEL, ok
        assert hit("/listed")["peer"] != ok["local"]
        # Another sandbox's alias is no way around its own policy: without
        # a route of its own it reaches the proxy, which reads the SNI.
        out = listed.run(f"curl -sS --max-time 8 --cacert /tmp/up-ca.pem --resolve "
                         f"direct.example.test:443:{alias} https://direct.example.test/sneak; echo rc=$?")
        assert "rc=0" not in out.stdout and hit("/sneak") is None, out.stdout
    finally:
        client.delete_sandbox("direct-open")
        client.delete_sandbox("direct-listed")
    # Deleting the sandbox drops its routes.
    wait_until(lambda: f"{got['local']} . " not in routes(), "the deleted sandbox's routes to go")


# Keeps one TLS connection open across a policy update, then tries it again
# and opens a new one.
KEPT = r"""
import http.client, json, os, ssl, time
ctx = ssl.create_default_context()
ctx.load_verify_locations(cafile="/tmp/up-ca.pem")
conn = http.client.HTTPSConnection("direct.example.test", context=ctx, timeout=10)
def get(c, path):
    try:
        c.request("GET", path)
        r = c.getresponse()
        return [r.status, r.read().decode(), c.sock.getsockname()[0]]
    except Exception as e:
        return ["cut", repr(e)]
print(json.dumps({"before": get(conn, "/k1")}), flush=True)
while not os.path.exists("/tmp/go"):
    time.sleep(0.05)
fresh = http.client.HTTPSConnection("direct.example.test", context=ctx, timeout=10)
print(json.dumps({"kept": get(conn, "/k2"), "fresh": get(fresh, "/k3")}), flush=True)
"""


def test_a_policy_update_cuts_direct_connections_and_new_ones_obey_it(client, upstream):
    sb = client.create_sandbox(name="direct-moved")
    try:
        prepare(sb, upstream)
        sb.write("/tmp/kept.py", KEPT)
        sb.run("nohup python3 /tmp/kept.py > /tmp/kept.out 2>&1 &", timeout=10)

        def lines() -> list[dict]:
            text = sb.run("cat /tmp/kept.out").stdout
            return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

        wait_until(lambda: lines(), "the first request", 20)
        before = lines()[0]["before"]
        assert before[0] == 200 and hit("/k1")["peer"] == before[2], before
        assert f"{before[2]} . " in routes()
        # A rule for the host: the proxy has headers to add now.
        rule = {"name": "d", "match_hosts": ["direct.example.test"],
                "headers": [{"name": "X-Direct", "type": "plaintext", "value": "on"}]}
        client.update_sandbox("direct-moved", proxy_config={"rules": [rule]})
        wait_until(lambda: f"{before[2]} . " not in routes(), "the route to go")
        sb.write("/tmp/go", "")
        wait_until(lambda: len(lines()) > 1, "the requests after the update", 20)
        after = lines()[1]
        # The open connection was reset, with the request never delivered.
        assert after["kept"][0] == "cut", after
        assert hit("/k2") is None
        # A new connection is intercepted: the header arrives, from the host.
        assert after["fresh"][0] == 200, after
        assert hit("/k3")["headers"].get("x-direct") == "on"
        assert hit("/k3")["peer"] != after["fresh"][2]
    finally:
        client.delete_sandbox("direct-moved")


def test_a_remote_target_takes_a_route_only_when_the_host_forwards(client, upstream):
    """NAT to another host needs its replies forwarded back to the veth:
    without IPv4 forwarding the name keeps the sentinel (the proxy relays);
    with it, the route is made and the connection goes through the host's
    forward path (masqueraded)."""
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    was = forward.read_text().strip()
    sb = client.create_sandbox(name="direct-remote")
    try:
        prepare(sb, upstream)
        forward.write_text("0")
        relayed = get(sb, "remote.example.test", "/relayed")
        assert relayed.get("status") == 200 and relayed["address"] == SENTINEL, relayed
        forward.write_text("1")
        routed = get(sb, "remote.example.test", "/routed")
        assert routed.get("status") == 200 and routed["body"] == "ok /routed\n", routed
        alias = routed["address"]
        assert alias != SENTINEL and f"{routed['local']} . {alias}" in routes(), routed
    finally:
        forward.write_text(was)
        client.delete_sandbox("direct-remote")
