"""Helpers the end-to-end tests share: commands run inside a sandbox, tenants
and SDK clients for a server, its metrics, browser tests, and the loopback
upstreams egress tests send to (a test CA, HTTP(S) servers, a server whose
egress proxy reaches them). Fixtures live in conftest.py."""

from __future__ import annotations

import contextlib
import datetime
import http.server
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest


def curl(sb, args: str, max_time: int = 8) -> tuple[int, str]:
    """curl inside the sandbox: (exit code, stdout and stderr together)."""
    out = sb.run(f"curl -sS --max-time {max_time} {args} 2>&1; echo rc=$?", timeout=max_time + 22)
    text, _, rc = out.stdout.rpartition("rc=")
    return int(rc.strip()), text


def transparent_curl(sb, args: str) -> tuple[int, str]:
    """curl inside the sandbox without its proxy variables: the firewall's
    redirect (transparent) egress path."""
    return curl(sb, f"--noproxy '*' {args}")


def wait_listening(sb, port: int, timeout: float = 15) -> None:
    """Waits until something accepts connections on the sandbox's 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 1)\""
    while time.monotonic() < deadline:
        if sb.run(probe, timeout=10).exit_code == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} in the sandbox")


def serve_in(sb, path: str, source: str, *args) -> object:
    """Writes a Python program into the sandbox and starts it in the
    background with `args`; returns the command handle (kill it when done)."""
    sb.write(path, source)
    return sb.run(" ".join(["python3", path, *map(str, args)]), timeout=0, wait=False)


def new_tenant(server, prefix: str = "t", **quotas) -> tuple[str, str]:
    """A fresh tenant (with optional quotas) and a key for it: (name, key)."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    admin = f"{server.endpoint}/api/v1/admin"
    resp = httpx.post(f"{admin}/tenants", headers=server.headers(), json={"name": name, **quotas})
    assert resp.status_code == 201, resp.text
    resp = httpx.post(f"{admin}/keys", headers=server.headers(), json={"tenant": name, "name": "e2e"})
    assert resp.status_code == 201, resp.text
    return name, resp.json()["key"]


def new_tenant_key(server, prefix: str = "t") -> str:
    """A key of a fresh tenant."""
    return new_tenant(server, prefix)[1]


def sdk_client(srv):
    """The langsmith SDK's SandboxClient for a server (a context manager)."""
    from langsmith.sandbox import SandboxClient

    return SandboxClient(api_endpoint=srv.api, api_key=srv.api_key)


@contextlib.contextmanager
def sdk_client_with_secret(srv, name: str, value: str):
    """The SDK's SandboxClient for a server while its workspace secret `name`
    holds `value` (deleted after)."""
    from langsmith import Langsmith
    from langsmith.sandbox import SandboxClient

    ls = Langsmith(api_key=srv.api_key, base_url=srv.endpoint)
    ls.workspace_secrets.upsert(name, value=value)
    with SandboxClient(api_endpoint=srv.api, api_key=srv.api_key) as c:
        yield c
    ls.workspace_secrets.delete(name)


def scrape(srv) -> str:
    """The server's Prometheus metrics (OpenMetrics text), with its key."""
    resp = httpx.get(f"{srv.endpoint}/metrics", headers=srv.headers())
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    return resp.text


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# Browser tests: tests/browser/*.test.mjs, run by node, drive Debian's
# headless chromium through playwright-core.
BROWSER_TESTS = Path(__file__).resolve().parents[1] / "browser"
CHROMIUM = shutil.which("chromium")
NODE = shutil.which("node")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or NODE is None, reason="needs chromium and node (scripts/install-deps)"
)


def run_browser_test(script: str, **env: str) -> None:
    """Runs tests/browser/`script` with `env` added to ours; it must exit 0
    and print `ok` last."""
    if not (BROWSER_TESTS / "node_modules" / "playwright-core").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_TESTS, check=True)
    out = subprocess.run([NODE, str(BROWSER_TESTS / script)], env=dict(os.environ, **env),
                         capture_output=True, text=True, timeout=300)
    print(out.stdout)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert out.stdout.rstrip().endswith("ok")


def page_server(body: str) -> str:
    """A Python program for a sandbox that answers every GET on
    127.0.0.1:argv[1] with an HTML page; `body` is a Python expression for
    the page's bytes (it may use `sys.argv`)."""
    return _PAGE_SERVER.replace("@BODY@", body)


def hostile_page(report: str) -> str:
    """A page server (see `page_server`) whose page tries to read the
    console's API key from its own sessionStorage and from its opener's and
    shows what it got as JSON in `#loot`; `report` is JavaScript that adds
    more to `out` (e.g. `out.cookie = document.cookie;`)."""
    return page_server('''b"""<!doctype html><title>hostile</title><pre id="loot">running</pre><script>
const KEY = 'sandpit.apiKey', out = {};
try { out.own = sessionStorage.getItem(KEY); } catch (e) { out.own = 'blocked: ' + e.name; }
try { out.opener = window.opener ? window.opener.sessionStorage.getItem(KEY) : 'none'; }
catch (e) { out.opener = 'blocked: ' + e.name; }
@REPORT@
document.getElementById('loot').textContent = JSON.stringify(out);
</script>"""'''.replace("@REPORT@", report))


_PAGE_SERVER = r'''
import sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
BODY = @BODY@
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A loopback upstream's request handler: no access log, and `reply`
    sends a whole answer with its Content-Length."""

    def reply(self, status: int, body: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: int, answer: dict) -> None:
        self.reply(status, json.dumps(answer).encode(), "application/json")

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def log_message(self, *args):
        pass


def serve_http(handler, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A threaded HTTP server on `host` (loopback), already serving."""
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_https(handler, cert: Path, key: Path, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A threaded HTTPS server on `host` (loopback) with `cert`, already serving."""
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_ca(work: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """A test CA and a leaf certificate (and its key) for `hosts`, in `work`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Upstream Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream.example.test")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = work / "ca.pem", work / "cert.pem", work / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


@contextlib.contextmanager
def egress_upstream_server(handler, hosts: list[str], egress_ports: str, name: str, extra_args=()):
    """A server whose egress proxy sends `hosts` to `handler`, served over
    HTTPS on loopback with a certificate from a test CA the proxy trusts
    (`--egress-upstream-ca`). Its key is `k-<name>`."""
    from conftest import checked_server

    work = Path(tempfile.mkdtemp(prefix=f"sp-{name}-"))
    ca, cert, key = make_ca(work, hosts)
    upstream = serve_https(handler, cert, key)
    args = ["--egress-ports", egress_ports, "--egress-upstream-ca", str(ca), *extra_args]
    for host in hosts:
        args += ["--egress-resolve", f"{host}=127.0.0.1:{upstream.server_address[1]}"]
    data_dir = Path(tempfile.mkdtemp(prefix=f"sp-{name}-srv-", dir="/tmp"))
    try:
        with checked_server(data_dir, api_key=f"k-{name}", extra_args=args) as srv:
            yield srv
    finally:
        upstream.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
