"""Operability: probes, Prometheus metrics, logs (no colour codes off a
terminal, request ids, the audit log) and per-sandbox usage.

A server of the module's own runs with `--metrics-listen` and an egress
resolve override so that one allowed host reaches an HTTP server on the
host's loopback.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from conftest import checked_server
from helpers import QuietHandler, curl, metric, new_tenant_key, scrape, sdk_client, serve_http, wait_listening

EGRESS_PORTS = "26443,26080,26053"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hello(QuietHandler):
    def do_GET(self):  # noqa: N802
        self.reply(200, b"hello from upstream\n")


@pytest.fixture(scope="module")
def upstream():
    server = serve_http(Hello)
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def srv(upstream):
    data_dir = Path(tempfile.mkdtemp(prefix="sp-ops-", dir="/tmp"))
    metrics_port = free_port()
    args = [
        "--metrics-listen", f"127.0.0.1:{metrics_port}",
        "--egress-ports", EGRESS_PORTS,
        "--egress-resolve", f"plain.example.test=127.0.0.1:{upstream}",
    ]
    with checked_server(data_dir, api_key="sp_ops_" + "k" * 20, extra_args=args) as server:
        server.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        yield server
    shutil.rmtree(data_dir, ignore_errors=True)


def test_probes_need_no_key(srv):
    resp = httpx.get(f"{srv.endpoint}/healthz")
    assert resp.status_code == 200 and resp.text == "ok"
    resp = httpx.get(f"{srv.endpoint}/readyz")
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["status"] == "ready" and body["failed"] == []
    assert set(body["checks"]) == {"database", "runtime", "egress"}
    assert all(c["ok"] for c in body["checks"].values()), body


def test_metrics_need_the_admin_key(srv):
    assert httpx.get(f"{srv.endpoint}/metrics").status_code == 401
    tenant_key = new_tenant_key(srv, "ops")
    resp = httpx.get(f"{srv.endpoint}/metrics", headers={"X-Api-Key": tenant_key})
    assert resp.status_code == 403, resp.text
    # The metrics address needs no key.
    resp = httpx.get(srv.metrics_url)
    assert resp.status_code == 200
    assert "sandpit_process_open_fds" in resp.text
    assert metric(resp.text, "sandpit_process_resident_memory_bytes") > 1 << 20


def test_counters_move_with_work(srv):
    before = scrape(srv)
    with sdk_client(srv) as client:
        sb = client.create_sandbox(
            name="ops-work",
            proxy_config={"rules": [], "access_control": {"allow_list": ["plain.example.test"]}},
        )
        try:
            assert sb.run("echo hi").stdout == "hi\n"
            during = scrape(srv)
            assert metric(during, "sandpit_sandboxes", status="ready", tenant="default") >= 1
            # A service URL request.
            sb.run("python3 -m http.server 8000", timeout=0, wait=False)
            wait_listening(sb, 8000)
            assert sb.service(port=8000).get("/").status_code == 200
            # Egress: allowed, then denied.
            rc, body = curl(sb, "--noproxy '*' http://plain.example.test/")
            assert rc == 0 and "hello from upstream" in body, body
            rc, body = curl(sb, "--noproxy '*' --resolve denied.test:80:198.18.0.1 http://denied.test/")
            assert "denied" in body, body
        finally:
            client.delete_sandbox("ops-work")
    after = scrape(srv)

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("sandpit_sandbox_operations_total", operation="create", outcome="ok") == 1
    assert moved("sandpit_sandbox_operations_total", operation="delete", outcome="ok") == 1
    assert moved("sandpit_sandbox_operation_seconds_count", operation="create") == 1
    assert moved("sandpit_execs_total") >= 3
    assert moved("sandpit_exec_seconds_count") >= 3
    assert moved("sandpit_gateway_requests_total", kind="dataplane") >= 3
    assert moved("sandpit_gateway_requests_total", kind="service") >= 1
    assert moved("sandpit_gateway_bytes_total", kind="service", direction="out") > 0
    assert moved("sandpit_egress_connections_total", verdict="allowed") >= 1
    assert moved("sandpit_egress_connections_total", verdict="denied") >= 1
    assert moved("sandpit_database_query_seconds_count") >= 1


def test_usage_reads_the_cgroup_and_keeps_tenants_apart(srv):
    with sdk_client(srv) as client:
        sb = client.create_sandbox(name="ops-usage")
        try:
            # Some CPU time and ~64 MiB held while the usage is read.
            sb.run(
                "python3 -c \"import time; b = bytearray(64 << 20); sum(range(3_000_000)); time.sleep(30)\"",
                timeout=0,
                wait=False,
            )
            deadline = time.monotonic() + 20
            while True:
                resp = httpx.get(f"{srv.api}/boxes/ops-usage/usage", headers=srv.headers())
                assert resp.status_code == 200, resp.text
                usage = resp.json()
                if usage["memory_bytes"] > 64 << 20 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert usage["running"] is True
            assert usage["memory_bytes"] > 64 << 20, usage
            assert usage["memory_peak_bytes"] >= usage["memory_bytes"]
            assert usage["cpu_seconds"] > 0.05, usage
            assert usage["processes"] >= 2, usage
            assert usage["disk_bytes"] is None or usage["disk_bytes"] > 0
            assert usage["memory_limit_bytes"] > 0
            other = new_tenant_key(srv, "ops-other")
            resp = httpx.get(f"{srv.api}/boxes/ops-usage/usage", headers={"X-Api-Key": other})
            assert resp.status_code == 404, resp.text
            assert httpx.get(f"{srv.api}/boxes/ops-usage/usage").status_code == 401
        finally:
            client.delete_sandbox("ops-usage")


def test_logs_have_no_colour_codes_off_a_terminal(srv):
    # Regression: the server's log went to a file or pipe with ANSI escapes.
    assert srv.log, "no log captured"
    coloured = [line for line in srv.log if "\x1b[" in line]
    assert not coloured, coloured[:3]


def test_request_ids_are_echoed_logged_and_in_error_bodies(srv):
    resp = httpx.get(f"{srv.api}/boxes/no-such-box", headers={**srv.headers(), "x-request-id": "op-req-1"})
    assert resp.status_code == 404
    assert resp.headers["x-request-id"] == "op-req-1"
    detail = resp.json()["detail"]
    assert detail["request_id"] == "op-req-1" and detail["error"] == "NotFound"
    # Generated when absent.
    resp = httpx.get(f"{srv.endpoint}/healthz")
    assert re.fullmatch(r"[0-9a-f-]{36}", resp.headers["x-request-id"])


def test_admin_actions_are_audited_without_secret_values(srv):
    headers = {**srv.headers(), "x-request-id": "op-audit-1"}
    resp = httpx.put(
        f"{srv.endpoint}/api/v1/workspaces/current/secrets/OPS_TOKEN",
        headers=headers,
        json={"value": "s3cr3t-value-never-logged"},
    )
    assert resp.status_code == 200, resp.text
    name = "ops-audited"
    resp = httpx.post(f"{srv.endpoint}/api/v1/admin/tenants", headers=headers, json={"name": name})
    assert resp.status_code == 201, resp.text
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        audit = [line for line in srv.log if "audit" in line and "op-audit-1" in line]
        if len(audit) >= 2:
            break
        time.sleep(0.1)
    assert any("secret.upsert" in line and "OPS_TOKEN" in line for line in audit), audit
    assert any("tenant.create" in line for line in audit), audit
    assert all(srv.api_key[:8] in line for line in audit), audit
    assert not [line for line in srv.log if "s3cr3t-value-never-logged" in line]


def test_json_log_format():
    data_dir = Path(tempfile.mkdtemp(prefix="sp-json-", dir="/tmp"))
    with checked_server(data_dir, api_key="sp_json_" + "k" * 20, extra_args=["--log-format", "json", "--no-egress"]) as server:
        httpx.post(
            f"{server.endpoint}/api/v1/admin/tenants",
            headers={**server.headers(), "x-request-id": "op-json-1"},
            json={"name": "json-audited"},
        )
        time.sleep(0.3)
        events = []
        for line in server.log:
            if line.startswith("{"):
                events.append(json.loads(line))
        assert events, server.log[-20:]
        audit = [e for e in events if e.get("target") == "audit"]
        assert audit, events[-5:]
        assert audit[0]["fields"]["action"] == "tenant.create"
        assert audit[0]["span"]["request_id"] == "op-json-1"
    shutil.rmtree(data_dir, ignore_errors=True)


def make_cert(directory: Path, serial: int) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, 127.0.0.1 and *.svc.test."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandpit-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("*.svc.test"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def served_serial(port: int, server_name: str) -> int:
    """The serial number of the certificate the server presents."""
    import ssl

    from cryptography import x509

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_tls_serves_the_api_and_wildcard_service_hosts_and_reloads_on_sighup(monkeypatch):
    import signal
    import ssl

    work = Path(tempfile.mkdtemp(prefix="sp-tls-", dir="/tmp"))
    cert, key = make_cert(work, serial=1001)
    args = ["--tls-cert", str(cert), "--tls-key", str(key), "--service-domain", "svc.test", "--no-egress"]
    with checked_server(work / "d", api_key="sp_tls_" + "k" * 20, extra_args=args) as server:
        port = int(server.endpoint.rsplit(":", 1)[1])
        https = f"https://127.0.0.1:{port}"
        # Plain HTTP on the TLS port gets nothing useful.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert httpx.get(f"{https}/healthz", verify=str(cert)).text == "ok"
        from langsmith.sandbox import SandboxClient

        ctx = ssl.create_default_context(cafile=str(cert))
        # The SDK's HTTP client trusts the test certificate.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with SandboxClient(api_endpoint=f"{https}/api/v2/sandboxes", api_key=server.api_key) as client:
            sb = None
            try:
                sb = client.create_sandbox(name="tls-box")
                assert sb.dataplane_url.startswith("https://"), sb.dataplane_url
                resp = httpx.get(f"{https}/api/v2/sandboxes/boxes/tls-box", headers=server.headers(), verify=ctx)
                assert resp.status_code == 200
                # A service host under the wildcard verifies by its own name.
                resp = httpx.post(
                    f"{https}/api/v2/sandboxes/boxes/tls-box/service-url",
                    headers=server.headers(), json={"port": 8000}, verify=ctx,
                )
                assert resp.status_code in (200, 201), resp.text
                token = resp.json()["token"]
                sid = resp.json()["service_url"].split("//", 1)[1].split("--", 1)[0]
                host = f"{sid}--8000.svc.test"
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                    with ctx.wrap_socket(raw, server_hostname=host) as tls:
                        tls.sendall(
                            f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Langsmith-Sandbox-Service-Token: {token}\r\n"
                            "Connection: close\r\n\r\n".encode()
                        )
                        head = tls.recv(4096).decode(errors="replace")
                # Nothing listens on 8000: the gateway itself answers 502.
                assert head.startswith("HTTP/1.1 502"), head
            finally:
                if sb is not None:
                    httpx.delete(f"{https}/api/v2/sandboxes/boxes/tls-box", headers=server.headers(), verify=ctx)
        assert served_serial(port, "x--1.svc.test") == 1001
        make_cert(work, serial=2002)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while served_serial(port, "localhost") != 2002:
            assert time.monotonic() < deadline, "the certificate was not reloaded"
            time.sleep(0.2)
        assert server.proc.poll() is None, "SIGHUP stopped the server"
    shutil.rmtree(work, ignore_errors=True)
