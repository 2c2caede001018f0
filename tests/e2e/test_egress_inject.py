"""Egress interception: rules inject headers, and credentials never enter the sandbox.

A dedicated server runs with `--egress-resolve` (test host names reach HTTPS
and HTTP servers on the host's loopback) and `--egress-upstream-ca` (the
HTTPS upstream's own test CA, made here with `cryptography`). The upstreams
record every request's headers; the sandboxes trust only their system store
(where Sandpit's CA is), so an intercepted request verifies inside, and a
passed-through one shows the upstream's own certificate.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from conftest import checked_server
from langsmith import Langsmith
from langsmith.sandbox import SandboxClient, workspace_secret
from helpers import QuietHandler, curl, make_ca, serve_http, serve_https, transparent_curl

HOSTS = ["api.example.test", "other.example.test", "bypass.example.test", "plain.example.test"]
EGRESS_PORTS = "26443,26080,26053"
PLAIN_SECRET = "plain-3f9a1c"
OPAQUE_SECRET = "opaque-7be21d"
WORKSPACE_SECRET = "wsk-5d0c8e"
ALL_SECRETS = [PLAIN_SECRET, OPAQUE_SECRET, WORKSPACE_SECRET]


class Recorder(QuietHandler):
    """Answers `ok <path>` (never echoing headers) and records what came, and from where."""

    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def do_GET(self):  # noqa: N802
        Recorder.seen.append({"host": self.headers.get("Host"), "path": self.path, "peer": self.client_address[0],
                              "headers": self.lower_headers()})
        self.reply(200, f"ok {self.path}\n".encode())


def seen(path: str) -> dict:
    """Headers of the last request for `path` (fails if none arrived)."""
    hits = [s for s in Recorder.seen if s["path"] == path]
    assert hits, f"no request for {path} reached the upstream"
    return hits[-1]["headers"]


@pytest.fixture(scope="module")
def upstreams():
    work = Path(tempfile.mkdtemp(prefix="sp-inject-"))
    ca, cert, key = make_ca(work, HOSTS)
    https = serve_https(Recorder, cert, key)
    plain = serve_http(Recorder)
    yield {"ca": ca, "ca_pem": ca.read_text(), "https": https.server_address[1], "http": plain.server_address[1]}
    https.shutdown()
    plain.shutdown()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def inject_server(upstreams):
    data_dir = Path(tempfile.mkdtemp(prefix="sp-inject-srv-", dir="/tmp"))
    args = ["--egress-ports", EGRESS_PORTS, "--egress-upstream-ca", str(upstreams["ca"])]
    for host in HOSTS:
        port = upstreams["http"] if host.startswith("plain.") else upstreams["https"]
        args += ["--egress-resolve", f"{host}=127.0.0.1:{port}"]
    with checked_server(data_dir, api_key="k-inject", extra_args=args) as srv:
        yield srv
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def client(inject_server):
    with SandboxClient(api_endpoint=inject_server.api, api_key=inject_server.api_key) as c:
        yield c


@pytest.fixture(scope="module")
def workspace(inject_server):
    ls = Langsmith(api_key=inject_server.api_key, base_url=inject_server.endpoint)
    ls.workspace_secrets.upsert("UPSTREAM_TOKEN", value=WORKSPACE_SECRET)
    ls.workspace_secrets.upsert("PLAIN_PART", value=PLAIN_SECRET)
    yield ls
    for name in ("UPSTREAM_TOKEN", "PLAIN_PART"):
        ls.workspace_secrets.delete(name)


def rules() -> list[dict]:
    return [
        {"name": "api", "match_hosts": ["api.example.test"], "match_paths": ["/v1/*"], "headers": [
            {"name": "X-Plain", "type": "plaintext", "value": "Bearer ${PLAIN_PART}"},
            {"name": "X-Opaque", "type": "opaque", "value": OPAQUE_SECRET},
            {"name": "Authorization", "type": "workspace_secret", "value": workspace_secret("UPSTREAM_TOKEN")["value"]},
        ]},
        {"name": "glob", "match_hosts": ["*.example.test"], "headers": [
            {"name": "X-Glob", "type": "plaintext", "value": "glob"}]},
    ]


def via_proxy(sb, url: str, extra: str = "") -> tuple[int, str]:
    """curl with the proxy variables the sandbox has: the HTTP(S)_PROXY path."""
    return curl(sb, f"{extra} {url}")


def transparent(sb, url: str, extra: str = "") -> tuple[int, str]:
    """Without the proxy variables: the firewall's redirect path."""
    return transparent_curl(sb, f"{extra} {url}")


def test_headers_reach_upstream_and_never_the_sandbox(client, workspace, inject_server):
    config = {"rules": rules(), "no_proxy": ["bypass.example.test"]}
    sb = client.create_sandbox(name="inject", proxy_config=config)
    try:
        rc, body = transparent(sb, "https://api.example.test/v1/chat", "-v")
        assert rc == 0 and "ok /v1/chat" in body, body
        got = seen("/v1/chat")
        assert got["x-plain"] == f"Bearer {PLAIN_SECRET}"
        assert got["x-opaque"] == OPAQUE_SECRET
        assert got["authorization"] == WORKSPACE_SECRET
        assert got["x-glob"] == "glob"
        # The sandbox's own view: the request it sent and the certificate
        # it verified (Sandpit's CA, trusted through the system store).
        assert "Sandpit egress CA" in body
        for value in ALL_SECRETS:
            assert value not in body
        # Nothing in its environment, processes or files.
        probe = sb.run(
            "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
            "grep -rIl -e " + " -e ".join(ALL_SECRETS) + " /etc /tmp /root /home /var /run /.sandpit "
            "2>/dev/null; true",
            timeout=120,
        )
        for value in ALL_SECRETS:
            assert value not in probe.stdout, value
        # The API never returns the opaque value.
        shown = httpx.get(f"{inject_server.api}/boxes/inject", headers=inject_server.headers()).json()
        assert OPAQUE_SECRET not in str(shown)
        assert shown["proxy_config"]["rules"][0]["headers"][1]["is_set"] is True
    finally:
        client.delete_sandbox("inject")


def test_paths_globs_and_no_proxy_select_exactly(client, workspace, upstreams):
    config = {"rules": rules(), "no_proxy": ["bypass.example.test"]}
    sb = client.create_sandbox(name="select", proxy_config=config)
    try:
        assert transparent(sb, "https://api.example.test/v2/other")[0] == 0
        got = seen("/v2/other")
        assert "authorization" not in got and "x-opaque" not in got
        assert got["x-glob"] == "glob"
        assert transparent(sb, "https://other.example.test/o1")[0] == 0
        got = seen("/o1")
        assert got["x-glob"] == "glob" and "authorization" not in got
        # no_proxy: not intercepted, so the sandbox sees the upstream's own
        # certificate, which its trust store does not know...
        rc, body = transparent(sb, "https://bypass.example.test/b1", "-v")
        assert rc == 60 and "Sandpit" not in body, body
        # ...and trusting that CA explicitly, the request passes untouched.
        sb.write("/tmp/upstream-ca.pem", upstreams["ca_pem"])
        rc, body = transparent(sb, "https://bypass.example.test/b2", "--cacert /tmp/upstream-ca.pem -v")
        assert rc == 0 and "Upstream Test CA" in body, body
        assert "x-glob" not in seen("/b2")
        # Plain HTTP gets no rule header: it would cross in clear text.
        rc, body = transparent(sb, "http://plain.example.test/v9")
        assert rc == 0 and "ok /v9" in body
        assert "x-glob" not in seen("/v9")
    finally:
        client.delete_sandbox("select")


def test_explicit_proxy_variables_work(client, workspace, upstreams):
    sb = client.create_sandbox(name="explicit", proxy_config={"rules": rules(),
                                                            "no_proxy": ["bypass.example.test"]})
    try:
        env = sb.run("echo $HTTPS_PROXY $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $NODE_EXTRA_CA_CERTS").stdout
        assert "http://198.18.0.1:80" in env and "/etc/ssl/certs/ca-certificates.crt" in env
        # curl with HTTPS_PROXY (CONNECT), then Python's urllib (CONNECT),
        # then plain HTTP in absolute form.
        rc, body = via_proxy(sb, "https://api.example.test/v1/curl-proxy")
        assert rc == 0 and "ok /v1/curl-proxy" in body, body
        assert seen("/v1/curl-proxy")["authorization"] == WORKSPACE_SECRET
        out = sb.run("python3 -c \"import urllib.request as u; "
                     "print(u.urlopen('https://api.example.test/v1/py-proxy').read().decode())\"")
        assert "ok /v1/py-proxy" in out.stdout, out.stderr
        assert seen("/v1/py-proxy")["x-opaque"] == OPAQUE_SECRET
        # A host no rule intercepts: the tunnel is passed through (spliced),
        # with the upstream's own certificate.
        sb.write("/tmp/up-ca.pem", upstreams["ca_pem"])
        rc, body = via_proxy(sb, "https://bypass.example.test/connect-pass", "--cacert /tmp/up-ca.pem")
        assert rc == 0 and "ok /connect-pass" in body, body
        assert "x-glob" not in seen("/connect-pass")
        rc, body = via_proxy(sb, "http://plain.example.test/v1/abs")
        assert rc == 0 and "ok /v1/abs" in body
        assert "x-glob" not in seen("/v1/abs")
        # Through the proxy variables, reserved addresses are refused too:
        # plain HTTP with a 403 that says why, HTTPS with a TLS alert.
        rc, body = via_proxy(sb, "http://169.254.169.254/latest/meta-data/", "-w ' %{http_code}'")
        assert body.endswith(" 403") and "private or reserved" in body, body
        rc, body = via_proxy(sb, "https://169.254.169.254/")
        assert rc == 35 and "access denied" in body, body
    finally:
        client.delete_sandbox("explicit")


KEPT_ALIVE = r"""
import http.client, json, os, select, ssl, sys, time
out = {}
i = http.client.HTTPSConnection("api.example.test", context=ssl.create_default_context())
p = http.client.HTTPSConnection("other.example.test", context=ssl.create_default_context(cafile="/tmp/up-ca.pem"))
h = http.client.HTTPConnection("plain.example.test")
def get(conn, path):
    before = conn.sock
    conn.request("GET", path)
    same = before is None or conn.sock is before
    r = conn.getresponse()
    return [r.status, r.read().decode(), same]
out["i1"], out["p1"], out["h1"] = get(i, "/v1/k1"), get(p, "/k1p"), get(h, "/k1h")
print(json.dumps(out), flush=True)
while not os.path.exists("/tmp/go"):
    time.sleep(0.05)
out["i2"], out["h2"] = get(i, "/v1/k2"), get(h, "/k2h")
# The passed-through stream: cut by the proxy, with no request sent.
deadline, out["p2"] = time.time() + 5, "open"
while time.time() < deadline and out["p2"] == "open":
    if select.select([p.sock], [], [], 0.1)[0]:
        try:
            out["p2"] = "cut" if p.sock.recv(1) == b"" else "data"
        except (ssl.SSLError, OSError) as e:
            out["p2"] = "cut"
print(json.dumps(out), flush=True)
"""


def test_open_connections_follow_a_policy_update(client, upstreams):
    """Kept-alive connections opened before an update obey it: an
    intercepted one injects the new headers, a plain HTTP one is refused
    once its host is denied, and a passed-through TLS stream is cut."""
    api_rule = {"name": "api", "match_hosts": ["api.example.test"],
                "headers": [{"name": "X-Phase", "type": "plaintext", "value": "before"}]}
    sb = client.create_sandbox(name="kept", proxy_config={"rules": [api_rule]})
    try:
        sb.write("/tmp/up-ca.pem", upstreams["ca_pem"])
        sb.write("/tmp/kept.py", KEPT_ALIVE)
        sb.run("nohup python3 /tmp/kept.py > /tmp/kept.out 2>&1 &", timeout=10)

        def lines() -> list[dict]:
            text = sb.run("cat /tmp/kept.out").stdout
            return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

        deadline = time.time() + 20
        while not lines() and time.time() < deadline:
            time.sleep(0.2)
        first = lines()[0]
        assert [first[k][0] for k in ("i1", "p1", "h1")] == [200, 200, 200], first
        assert seen("/v1/k1")["x-phase"] == "before"
        api_rule["headers"][0]["value"] = "after"
        client.update_sandbox("kept", proxy_config={
            "rules": [api_rule],
            "access_control": {"deny_list": ["other.example.test", "plain.example.test"]}})
        sb.write("/tmp/go", "")
        while len(lines()) < 2 and time.time() < deadline + 20:
            time.sleep(0.2)
        after = lines()[1]
        assert after["i2"][0] == 200 and after["i2"][2], after  # same connection
        assert seen("/v1/k2")["x-phase"] == "after"
        assert after["h2"][0] == 403 and "denied plain.example.test" in after["h2"][1], after
        assert after["h2"][2], after  # refused on the connection it was sent on
        assert not [s for s in Recorder.seen if s["path"] == "/k2h"]
        assert after["p2"] == "cut", after
    finally:
        client.delete_sandbox("kept")


def test_policy_update_changes_injection_on_a_running_sandbox(client, workspace):
    sb = client.create_sandbox(name="updated", proxy_config={"rules": rules()})
    try:
        assert transparent(sb, "https://api.example.test/v1/before")[0] == 0
        assert seen("/v1/before")["x-opaque"] == OPAQUE_SECRET
        # Rotate the opaque header without re-sending the other one's value:
        # the update carries the stored opaque value over.
        new_rules = rules()
        new_rules[0]["headers"][1] = {"name": "X-Opaque", "type": "opaque"}
        new_rules[1]["headers"] = [{"name": "X-Glob", "type": "plaintext", "value": "glob-2"}]
        client.update_sandbox("updated", proxy_config={"rules": new_rules})
        assert transparent(sb, "https://api.example.test/v1/after")[0] == 0
        got = seen("/v1/after")
        assert got["x-glob"] == "glob-2" and got["x-opaque"] == OPAQUE_SECRET
        # Dropping the rules stops interception altogether.
        client.update_sandbox("updated", proxy_config={"rules": []})
        rc, body = transparent(sb, "https://api.example.test/v1/none", "-v")
        assert rc == 60, body  # the upstream's own certificate now
        # A changed workspace secret applies to the next request.
        client.update_sandbox("updated", proxy_config={"rules": rules()})
        workspace.workspace_secrets.upsert("UPSTREAM_TOKEN", value="rotated-1")
        assert transparent(sb, "https://api.example.test/v1/rotated")[0] == 0
        assert seen("/v1/rotated")["authorization"] == "rotated-1"
        workspace.workspace_secrets.upsert("UPSTREAM_TOKEN", value=WORKSPACE_SECRET)
    finally:
        client.delete_sandbox("updated")


def test_missing_secret_is_a_clear_502(client, workspace):
    config = {"rules": [{"name": "m", "match_hosts": ["api.example.test"], "headers": [
        {"name": "X-Missing", "type": "workspace_secret", "value": "{NOT_SET_ANYWHERE}"}]}]}
    sb = client.create_sandbox(name="missing", proxy_config=config)
    try:
        rc, body = transparent(sb, "https://api.example.test/m", "-w ' %{http_code}'")
        assert rc == 0 and "NOT_SET_ANYWHERE is not set" in body and body.endswith(" 502"), body
        assert not [s for s in Recorder.seen if s["path"] == "/m"]
    finally:
        client.delete_sandbox("missing")


def test_secrets_api_and_cli_list_names_only_per_tenant(inject_server, client, workspace):
    import subprocess

    from conftest import sandpit_binary

    admin = {"X-Api-Key": inject_server.api_key}
    base = inject_server.endpoint
    listed = workspace.workspace_secrets.list()
    assert sorted(s.key for s in listed) == ["PLAIN_PART", "UPSTREAM_TOKEN"]
    raw = httpx.get(f"{base}/api/v1/workspaces/current/secrets", headers=admin).text
    assert WORKSPACE_SECRET not in raw and PLAIN_SECRET not in raw
    # Bad names and empty values are refused in the API's error shape.
    bad = httpx.put(f"{base}/api/v1/workspaces/current/secrets/bad-name", headers=admin, json={"value": "x"})
    assert bad.status_code == 422 and "secret name" in bad.json()["detail"]["message"]
    new = httpx.put(f"{base}/api/v1/workspaces/current/secrets/NEW_ONE", headers=admin, json={})
    assert new.status_code == 422 and "value is required" in new.json()["detail"]["message"]
    # The CLI: set from stdin, list, delete.
    cli = [sandpit_binary(), "secrets", "--endpoint", base, "--api-key", inject_server.api_key]
    subprocess.run(cli + ["set", "CLI_SECRET"], input="cli-value-91\n", text=True, check=True)
    names = subprocess.run(cli + ["list"], capture_output=True, text=True, check=True).stdout.split()
    assert "CLI_SECRET" in names and "cli-value-91" not in " ".join(names)
    subprocess.run(cli + ["delete", "CLI_SECRET"], check=True, capture_output=True)
    assert "CLI_SECRET" not in subprocess.run(cli + ["list"], capture_output=True, text=True).stdout
    # Another tenant sees none of them, and its sandbox cannot use them.
    httpx.post(f"{base}/api/v1/admin/tenants", headers=admin, json={"name": "other-team"}).raise_for_status()
    key = httpx.post(f"{base}/api/v1/admin/keys", headers=admin, json={"tenant": "other-team"}).json()["key"]
    other = Langsmith(api_key=key, base_url=base)
    assert other.workspace_secrets.list() == []
    with SandboxClient(api_endpoint=inject_server.api, api_key=key) as theirs:
        sb = theirs.create_sandbox(name="theirs", proxy_config={"rules": rules()})
        try:
            rc, body = transparent(sb, "https://api.example.test/v1/theirs", "-w ' %{http_code}'")
            assert body.endswith(" 502") and "is not set" in body, body
            assert not [s for s in Recorder.seen if s["path"] == "/v1/theirs"]
        finally:
            theirs.delete_sandbox("theirs")
