"""Service URLs (LangSmith) and OpenSandbox endpoints, through the real SDK
and raw HTTP: the seed's two examples unchanged, the REST shape, signed
tokens and their JWKS, key rotation, cookie login, subdomain routing and the
documented errors."""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import start_server, stop_server
from helpers import new_tenant_key, wait_listening

TOKEN_HEADER = "X-Langsmith-Sandbox-Service-Token"

# A standard-library stand-in for the seed's FastAPI app, plus `/headers`,
# which echoes what the app received.
APP = r'''
import json, sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
items = []
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null")
    def do_GET(self):
        if self.path == "/items":
            return self._send(200, items)
        if self.path == "/stream":
            import time
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                data = f"data: {i}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(0.4)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/close":
            self.close_connection = True
            body = b"bye"
            self.send_response(200)
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/cookie":
            body = b"{}"
            self.send_response(200)
            self.send_header("Set-Cookie", "planted=1; Domain=localhost; Path=/")
            self.send_header("Set-Cookie", "own=2; Path=/; HttpOnly")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/headers"):
            seen = {k.lower(): v for k, v in self.headers.items()}
            return self._send(200, {"headers": seen, "path": self.path})
        self._send(404, {"detail": "not found"})
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "10")
        self.end_headers()
    def do_POST(self):
        item = self._body()
        items.append(item)
        self._send(200, item)
    def _echo(self):
        self._send(200, {"method": self.command, "path": self.path, "body": self._body()})
    do_PUT = do_PATCH = do_DELETE = _echo
    def log_message(self, *args):
        pass
host = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
ThreadingHTTPServer((host, int(sys.argv[1])), H).serve_forever()
'''


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _claims(token: str) -> dict:
    return json.loads(_b64(token.split(".")[1]))


# One server per host: starting this one stops the session server until it
# stops again, so it lives for its one test only (before `app_sb`).
@pytest.fixture
def domain_server():
    data_dir = Path(tempfile.mkdtemp(prefix="sp-svc-", dir="/tmp"))
    srv = start_server(
        data_dir,
        api_key="sp_e2e_" + secrets.token_urlsafe(16),
        extra_args=["--service-domain", "sandpit.test"],
    )
    yield srv
    code = stop_server(srv)
    shutil.rmtree(data_dir, ignore_errors=True)
    assert code == 0


def test_subdomain_routing_with_a_service_domain(domain_server):
    from langsmith.sandbox import SandboxClient

    with SandboxClient(api_endpoint=f"{domain_server.endpoint}/api/v2/sandboxes", api_key=domain_server.api_key) as c:
        with c.sandbox() as sb:
            sb.write("/app/app.py", APP)
            handle = sb.run("python3 /app/app.py 9000 127.0.0.1", timeout=0, wait=False)
            wait_listening(sb, 9000)
            svc = sb.service(port=9000)
            host = f"{sb.id}--9000.sandpit.test"
            assert svc.service_url == f"http://{host}/"
            assert svc.browser_url == f"http://{host}/_svc/auth?token={svc.token}"
            # No wildcard DNS here: send the Host header the DNS would lead to.
            with httpx.Client(base_url=domain_server.endpoint, headers={"Host": host}) as http:
                assert http.get("/items", headers={TOKEN_HEADER: svc.token}).json() == []
                login = http.get(f"/_svc/auth?token={svc.token}")
                assert login.status_code == 302
                cookie = login.headers["set-cookie"].split(";")[0]
                page = http.get("/headers", headers={"Cookie": cookie})
                assert page.json()["headers"]["host"] == host
                # The API is not reachable on a service host.
                assert http.get("/healthz", headers={"Cookie": cookie}).status_code == 404
            handle.kill()


# An app whose responses carry no `Date`: hyper adds one, the fast path
# relays the head as it is, so the header tells which relay answered.
BARE = r"""
import asyncio
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
async def handle(r, w):
    try:
        while True:
            await r.readuntil(b"\r\n\r\n")
            w.write(RESP)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", 9001)
    await server.serve_forever()
asyncio.run(main())
"""


def test_the_fast_path_takes_a_new_server_s_first_connections(domain_server):
    """Issue 19 (a regression the ingress benchmark found): until the server
    had read its login grants, which only the full HTTP stack did, the fast
    path took no request, and every connection it handed over stayed with
    hyper: a benchmark opening its 32 connections at once ran at hyper's
    speed throughout."""
    from langsmith.sandbox import SandboxClient

    with SandboxClient(api_endpoint=f"{domain_server.endpoint}/api/v2/sandboxes", api_key=domain_server.api_key) as c:
        with c.sandbox() as sb:
            sb.write("/app/bare.py", BARE)
            handle = sb.run("python3 /app/bare.py", timeout=0, wait=False)
            wait_listening(sb, 9001)
            svc = sb.service(port=9001)
            raw = Raw(domain_server.endpoint)
            raw.host = urlsplit(svc.service_url).netloc
            try:
                # The first service request this server sees.
                raw.send(raw.request("GET", "/", {TOKEN_HEADER: svc.token}))
                status, headers, body = raw.response()
                assert (status, body) == (200, b"ok")
                assert "date" not in headers, "hyper answered, not the fast path"
                # The same request through hyper (an `Upgrade` header hands
                # the connection over) does get one: the check can fail.
                raw.send(raw.request("GET", "/", {TOKEN_HEADER: svc.token, "Upgrade": "nothing"}))
                status, headers, body = raw.response()
                assert (status, body) == (200, b"ok") and "date" in headers
            finally:
                raw.close()
                handle.kill()


@pytest.fixture(scope="module")
def app_sb(server):
    """One sandbox running the items app on 8000 (all interfaces) and on
    8001 (its 127.0.0.1 only)."""
    from langsmith.sandbox import SandboxClient

    with SandboxClient() as client, client.sandbox() as sb:
        sb.write("/app/app.py", APP)
        handles = [
            sb.run("python3 /app/app.py 8000", timeout=0, wait=False),
            sb.run("python3 /app/app.py 8001 127.0.0.1", timeout=0, wait=False),
        ]
        wait_listening(sb, 8000)
        wait_listening(sb, 8001)
        yield sb
        for handle in handles:
            handle.kill()


def test_quick_start_runs_unchanged(client):
    # The seed's Quick start, with the default image instead of a template.
    with client.sandbox() as sb:
        handle = sb.run("python -m http.server 8000", timeout=0, wait=False)
        wait_listening(sb, 8000)

        svc = sb.service(port=8000)

        # Open in a browser
        print(svc.browser_url)

        # Or make requests programmatically
        resp = svc.get("/")
        print(resp.status_code)
        assert resp.status_code == 200
        assert "Directory listing" in resp.text

        handle.kill()


def test_items_api_example(client):
    # The seed's FastAPI example, served by the standard library.
    with client.sandbox() as sb:
        sb.write("/app/main.py", APP)
        handle = sb.run("python3 /app/main.py 8000", timeout=0, wait=False, env={"PYTHONPATH": "/app"})
        wait_listening(sb, 8000)

        svc = sb.service(port=8000)

        svc.post("/items", json={"name": "widget", "price": 9.99})
        svc.post("/items", json={"name": "gadget", "price": 24.99})

        resp = svc.get("/items")
        print(resp.json())
        assert resp.json() == [{"name": "widget", "price": 9.99}, {"name": "gadget", "price": 24.99}]
        print(svc.browser_url)
        handle.kill()


def test_http_helpers_reach_the_app(app_sb):
    svc = app_sb.service(port=8000)
    assert svc.put("/items/1", json={"name": "updated"}).json() == {
        "method": "PUT",
        "path": "/items/1",
        "body": {"name": "updated"},
    }
    assert svc.patch("/items/1", json={"status": "active"}).json()["method"] == "PATCH"
    assert svc.delete("/items/1").json()["method"] == "DELETE"
    # The raw-URL form from the seed's "Use your own HTTP client".
    resp = httpx.get(svc.service_url + "headers?x=1", headers={TOKEN_HEADER: svc.token})
    assert resp.status_code == 200
    assert resp.json()["path"] == "/headers?x=1"
    assert TOKEN_HEADER.lower() not in resp.json()["headers"]
    assert "x-api-key" not in resp.json()["headers"]


def test_client_service_by_name_and_auto_refresh(client, app_sb):
    svc = client.service(app_sb.name, port=8000, expires_in_seconds=31)
    first = svc._token
    time.sleep(1.1)
    # Within the SDK's 30 s refresh margin: every access fetches a new token.
    assert svc.get("/items").status_code == 200
    assert svc._token != first


def test_rest_shape_and_validation(server, app_sb):
    url = f"{server.api}/boxes/{app_sb.name}/service-url"
    resp = httpx.post(url, headers=server.headers(), json={"port": 8000})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"browser_url", "service_url", "token", "expires_at"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expires_at"])
    claims = _claims(body["token"])
    assert claims["sub"] == app_sb.id and claims["port"] == 8000 and claims["tid"]
    assert 595 <= claims["exp"] - time.time() <= 601
    assert body["browser_url"].endswith("/_svc/auth?token=" + body["token"])
    assert urlsplit(body["browser_url"]).hostname == f"{app_sb.id}--8000.localhost"
    assert body["service_url"] == f"{server.endpoint}/svc/{app_sb.id}--8000/"
    for bad in ({"port": 0}, {"port": 65536}, {"port": 8000, "expires_in_seconds": 0},
                {"port": 8000, "expires_in_seconds": 86401}, {"port": "x"}):
        assert httpx.post(url, headers=server.headers(), json=bad).status_code == 422, bad
    long = httpx.post(url, headers=server.headers(), json={"port": 8000, "expires_in_seconds": 86400})
    assert long.status_code == 200
    missing = httpx.post(f"{server.api}/boxes/nope/service-url", headers=server.headers(), json={"port": 1})
    assert missing.status_code == 404
    assert httpx.post(url, json={"port": 8000}).status_code == 401


def test_tokens_verify_against_the_jwks(server, app_sb):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    token = app_sb.service(port=8000).token
    header = json.loads(_b64(token.split(".")[0]))
    assert header["alg"] == "EdDSA"
    jwks = httpx.get(f"{server.endpoint}/.well-known/jwks.json").json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
    signing_input, signature = token.rsplit(".", 1)
    Ed25519PublicKey.from_public_bytes(_b64(key["x"])).verify(_b64(signature), signing_input.encode())


def test_rotation_keeps_unexpired_tokens_valid(server, app_sb):
    old = app_sb.service(port=8000)
    rotated = httpx.post(f"{server.endpoint}/api/v1/admin/service-keys/rotate", headers=server.headers())
    assert rotated.status_code == 200, rotated.text
    new = app_sb.service(port=8000)
    kid = lambda t: json.loads(_b64(t.split(".")[0]))["kid"]  # noqa: E731
    assert kid(new.token) == rotated.json()["kid"] != kid(old.token)
    kids = {k["kid"] for k in httpx.get(f"{server.endpoint}/.well-known/jwks.json").json()["keys"]}
    assert {kid(old.token), kid(new.token)} <= kids
    assert old.get("/items").status_code == 200
    assert new.get("/items").status_code == 200


def _detail(resp: httpx.Response) -> str:
    return resp.json()["detail"]["message"]


def test_documented_errors(client, app_sb):
    svc = app_sb.service(port=8000)
    base = svc.service_url
    none = httpx.get(base + "items")
    assert (none.status_code, _detail(none)) == (401, "Authentication required")

    short = app_sb.service(port=8000, expires_in_seconds=1)
    token = short._token
    time.sleep(2.1)
    expired = httpx.get(base + "items", headers={TOKEN_HEADER: token})
    assert (expired.status_code, _detail(expired)) == (401, "Service link has expired")

    forged = svc.token[:-4] + ("AAAA" if not svc.token.endswith("AAAA") else "BBBB")
    assert httpx.get(base + "items", headers={TOKEN_HEADER: forged}).status_code == 401

    other_port = app_sb.service(port=8001).token
    refused = httpx.get(base + "items", headers={TOKEN_HEADER: other_port})
    assert refused.status_code == 403
    with client.sandbox() as other:
        elsewhere = other.service(port=8000).token
        assert httpx.get(base + "items", headers={TOKEN_HEADER: elsewhere}).status_code == 403
        silent = other.service(port=8000)
        dead = silent.get("/")
        assert (dead.status_code, _detail(dead)) == (502, "Service is not reachable")


def test_service_on_sandbox_loopback_is_reachable(app_sb):
    svc = app_sb.service(port=8001)
    assert svc.post("/items", json={"n": 1}).json() == {"n": 1}
    assert svc.get("/items").json() == [{"n": 1}]


def test_browser_login_sets_a_host_cookie(server, app_sb):
    svc = app_sb.service(port=8000)
    browser = urlsplit(svc.browser_url)
    host = browser.netloc  # {id}--8000.localhost:PORT (resolved by browsers)
    with httpx.Client(base_url=server.endpoint, headers={"Host": host}) as http:
        login = http.get(f"{browser.path}?{browser.query}")
        assert login.status_code == 302
        assert login.headers["location"] == "/"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Path=/;" in cookie and "domain" not in cookie.lower()
        name, value = cookie.split(";")[0].split("=", 1)
        assert value == svc.token
        page = http.get("/headers", headers={"Cookie": f"theme=dark; {name}={value}"})
        assert page.status_code == 200
        seen = page.json()["headers"]
        assert seen.get("cookie") == "theme=dark"
        assert seen["host"] == host
        http.cookies.clear()  # httpx kept the cookie, as a browser would
        assert http.get("/headers").status_code == 401
        bad = http.get("/_svc/auth?token=nope")
        assert bad.status_code == 401
    # Issue 14 H1: the path form shares the console's origin, so it has no
    # browser login and takes no cookie: only the token header.
    prefix = urlsplit(svc.service_url).path
    login = httpx.get(f"{server.endpoint}{prefix}_svc/auth?token={svc.token}")
    assert login.status_code == 401 and "set-cookie" not in login.headers
    cookie = httpx.get(f"{server.endpoint}{prefix}headers", headers={"Cookie": f"sandpit_svc_token={svc.token}"})
    assert cookie.status_code == 401


def test_other_tenants_get_404(server, app_sb):
    key = new_tenant_key(server, "svc")
    resp = httpx.post(
        f"{server.api}/boxes/{app_sb.name}/service-url", headers={"X-Api-Key": key}, json={"port": 8000}
    )
    assert resp.status_code == 404
    resp = httpx.get(
        f"{server.endpoint}/v1/sandboxes/{app_sb.id}/endpoints/8000", headers={"OPEN-SANDBOX-API-KEY": key}
    )
    assert resp.status_code == 404


def test_opensandbox_endpoint(server, app_sb):
    url = f"{server.endpoint}/v1/sandboxes/{app_sb.id}/endpoints/8000"
    key = {"OPEN-SANDBOX-API-KEY": server.api_key}
    for query in ("", "?use_server_proxy=true"):
        resp = httpx.get(url + query, headers=key)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"endpoint", "headers"}
        assert resp.headers["x-request-id"]
        host = urlsplit(server.endpoint).netloc
        assert body["endpoint"] == f"{host}/sandboxes/{app_sb.id}/port/8000"
        through = httpx.get(f"http://{body['endpoint']}/headers", headers=body["headers"])
        assert through.status_code == 200
        assert "x-sandbox-token" not in through.json()["headers"]
    assert httpx.get(f"http://{body['endpoint']}/items").status_code == 401
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"OPEN-SANDBOX-API-KEY": "sp_wrong"}).status_code == 401
    foreign = new_tenant_key(server, "svc")
    assert httpx.get(url, headers={"OPEN-SANDBOX-API-KEY": foreign, "X-Tenant-Id": "default"}).status_code == 403
    assert httpx.get(
        f"{server.endpoint}/v1/sandboxes/nope/endpoints/8000", headers=key
    ).status_code == 404
    # A token for another port is refused; LangSmith tokens are not endpoint tokens.
    other = httpx.get(f"{server.endpoint}/v1/sandboxes/{app_sb.id}/endpoints/8001", headers=key).json()
    wrong_port = httpx.get(f"http://{body['endpoint']}/items", headers=other["headers"])
    assert wrong_port.status_code == 403
    svc_token = app_sb.service(port=8000).token
    assert httpx.get(f"http://{body['endpoint']}/items", headers={"X-Sandbox-Token": svc_token}).status_code == 401


def test_opensandbox_sdk_gets_a_working_endpoint(server, app_sb):
    import asyncio

    from opensandbox.adapters.sandboxes_adapter import SandboxesAdapter
    from opensandbox.config.connection import ConnectionConfig

    async def fetch():
        config = ConnectionConfig(domain=server.endpoint, api_key=server.api_key)
        return await SandboxesAdapter(config).get_sandbox_endpoint(app_sb.id, 8000, use_server_proxy=True)

    endpoint = asyncio.run(fetch())
    assert endpoint.endpoint.endswith(f"/sandboxes/{app_sb.id}/port/8000")
    resp = httpx.get(f"http://{endpoint.endpoint}/items", headers=endpoint.headers)
    assert resp.status_code == 200, resp.text


def test_streamed_responses_arrive_as_they_are_sent(app_sb):
    svc = app_sb.service(port=8000)
    arrivals = []
    with httpx.stream("GET", svc.service_url + "stream", headers={TOKEN_HEADER: svc.token}) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_raw():
            arrivals.append((time.monotonic(), chunk))
    body = b"".join(c for _, c in arrivals)
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    # The first event came long before the last was written (0.8 s later).
    assert arrivals[-1][0] - arrivals[0][0] > 0.5


def test_service_traffic_counts_as_activity(server, app_sb):
    def last_activity() -> str:
        resp = httpx.get(f"{server.api}/boxes/{app_sb.name}", headers=server.headers())
        return resp.json()["last_activity_at"]

    svc = app_sb.service(port=8000)
    before = last_activity()
    time.sleep(1.2)
    assert svc.get("/items").status_code == 200
    time.sleep(0.2)
    assert last_activity() > before


def test_http2_clients_reach_an_http1_app(app_sb):
    """A client speaking HTTP/2 (cleartext, prior knowledge) gets HTTP/2
    from Sandpit while the app in the sandbox sees HTTP/1.1 with a Host
    header and no token."""
    svc = app_sb.service(port=8000)

    def curl(*args: str) -> tuple[str, str]:
        out = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-H", f"{TOKEN_HEADER}: {svc.token}",
             "-w", "\n%{http_version} %{http_code}", *args],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        body, _, status = out.rpartition("\n")
        return body, status

    body, status = curl(svc.service_url + "headers?h2=1")
    assert status == "2 200"
    seen = json.loads(body)
    assert seen["path"] == "/headers?h2=1"
    assert seen["headers"]["host"].startswith("127.0.0.1:")
    assert TOKEN_HEADER.lower() not in seen["headers"]
    body, status = curl("-X", "PUT", "--json", '{"n": 2}', svc.service_url + "items/9")
    assert status == "2 200"
    assert json.loads(body) == {"method": "PUT", "path": "/items/9", "body": {"n": 2}}


# Raw HTTP/1.1 on one connection: keep-alive and pipelined requests relayed
# by the gateway's fast path, and the hand-over to the full HTTP stack in
# the middle of a connection.


class Raw:
    """One client connection to the server, speaking HTTP/1.1 by hand."""

    def __init__(self, base: str):
        url = urlsplit(base)
        self.host = url.netloc
        self.sock = socket.create_connection((url.hostname, url.port), timeout=15)
        self.file = self.sock.makefile("rb")

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))

    def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        status = int(self.file.readline().split()[1])
        headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if head or status in (204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self.file.readline().split(b";")[0], 16):
                body += self.file.read(size)
                self.file.readline()
            while self.file.readline() not in (b"\r\n", b""):
                pass
            return status, headers, body
        if "content-length" in headers:
            return status, headers, self.file.read(int(headers["content-length"]))
        return status, headers, self.file.read()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_pipelined_service_and_api_requests_on_one_connection(server, app_sb):
    """Six requests written at once on one connection: service requests
    (with a body, HEAD, a chunked stream) relayed in order, then an API call
    that hands the connection to the full HTTP stack, which serves the last
    service request too."""
    svc = app_sb.service(port=8000)
    prefix = urlsplit(svc.service_url).path
    auth = {TOKEN_HEADER: svc.token, "Cookie": "theme=dark; sandpit_svc_token=x; lang=en"}
    raw = Raw(svc.service_url)
    try:
        raw.send(
            raw.request("GET", prefix + "headers?n=1", auth),
            raw.request("POST", prefix + "items", auth, b'{"pipelined": 1}'),
            raw.request("HEAD", prefix + "items", auth),
            raw.request("GET", prefix + "stream", auth),
            raw.request("GET", "/api/v2/sandboxes/boxes/" + app_sb.name, server.headers()),
            raw.request("GET", prefix + "items", auth),
        )
        status, _, body = raw.response()
        seen = json.loads(body)
        assert (status, seen["path"]) == (200, "/headers?n=1")
        assert TOKEN_HEADER.lower() not in seen["headers"]
        assert seen["headers"]["cookie"] == "theme=dark; lang=en"
        assert "x-api-key" not in seen["headers"]
        status, _, body = raw.response()
        assert (status, json.loads(body)) == (200, {"pipelined": 1})
        status, headers, body = raw.response(head=True)
        assert (status, body) == (200, b"")
        assert int(headers["content-length"]) > 0
        status, headers, body = raw.response()
        assert (status, headers["transfer-encoding"]) == (200, "chunked")
        assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        status, _, body = raw.response()
        assert (status, json.loads(body)["name"]) == (200, app_sb.name)
        status, _, body = raw.response()
        assert status == 200 and {"pipelined": 1} in json.loads(body)
    finally:
        raw.close()


def test_a_service_closing_its_connection_does_not_end_the_clients(app_sb):
    svc = app_sb.service(port=8000)
    prefix = urlsplit(svc.service_url).path
    auth = {TOKEN_HEADER: svc.token}
    raw = Raw(svc.service_url)
    try:
        for _ in range(3):
            raw.send(raw.request("GET", prefix + "close", auth))
            status, headers, body = raw.response()
            assert (status, body) == (200, b"bye")
            assert "connection" not in headers
            raw.send(raw.request("GET", prefix + "items", auth))
            assert raw.response()[0] == 200
    finally:
        raw.close()


def test_expect_continue_and_errors_keep_their_full_handling(app_sb):
    svc = app_sb.service(port=8000)
    # `Expect: 100-continue` is answered by the full HTTP stack.
    out = subprocess.run(
        ["curl", "-sS", "-H", f"{TOKEN_HEADER}: {svc.token}", "-H", "Expect: 100-continue",
         "-H", "Content-Type: application/json", "--data-binary", '{"expect": 1}',
         svc.service_url + "items"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    assert json.loads(out) == {"expect": 1}
    # A bad token on a kept-alive connection gets the documented error.
    prefix = urlsplit(svc.service_url).path
    raw = Raw(svc.service_url)
    try:
        raw.send(
            raw.request("GET", prefix + "items", {TOKEN_HEADER: svc.token}),
            raw.request("GET", prefix + "items", {TOKEN_HEADER: "nope"}),
        )
        assert raw.response()[0] == 200
        status, _, body = raw.response()
        assert (status, json.loads(body)["detail"]["message"]) == (401, "Invalid service token")
    finally:
        raw.close()


GARBAGE = r"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8002))
s.listen(8)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"SSH-2.0-not-http\r\n\r\n")
    c.close()
"""


def test_a_service_answering_garbage_gets_a_502(app_sb):
    app_sb.write("/app/garbage.py", GARBAGE)
    handle = app_sb.run("python3 /app/garbage.py", timeout=0, wait=False)
    try:
        wait_listening(app_sb, 8002)
        svc = app_sb.service(port=8002)
        resp = httpx.get(svc.service_url, headers={TOKEN_HEADER: svc.token})
        assert (resp.status_code, _detail(resp)) == (502, "Service is not reachable")
    finally:
        handle.kill()


def test_no_browser_url_on_the_console_s_origin(server, app_sb):
    """Issue 14 H1: reached by a name that is not loopback and without
    --service-domain, the server has no origin for a service but its own
    (the console's), so it refuses a browser_url and says what to do."""
    url = f"{server.api}/boxes/{app_sb.name}/service-url"
    port = urlsplit(server.endpoint).port
    for host in (f"sandpit.example:{port}", f"10.9.8.7:{port}", "sandpit.example"):
        resp = httpx.post(url, headers={**server.headers(), "Host": host}, json={"port": 8000})
        assert resp.status_code == 409, (host, resp.text)
        message = resp.json()["detail"]["message"]
        assert "--service-domain" in message and "console" in message
    assert httpx.post(url, headers={**server.headers(), "Host": f"localhost:{port}"},
                      json={"port": 8000}).status_code == 200


# Both relays: the fast path takes a plain GET; an `Upgrade` header (without
# `Connection: upgrade`) sends the same request to hyper instead.
RELAYS = {"fast": {}, "hyper": {"Upgrade": "nothing"}}


@pytest.mark.parametrize("relay", sorted(RELAYS))
def test_path_form_pages_get_an_opaque_origin(app_sb, relay):
    """Issue 14 H1, defence in depth: a page served on a path form would share
    the console's origin, so it is served with a CSP sandbox (an opaque
    origin: no access to the console's storage or windows) on both relays;
    a service host is its own origin and gets none."""
    svc = app_sb.service(port=8000)
    resp = httpx.get(svc.service_url + "headers", headers={TOKEN_HEADER: svc.token, **RELAYS[relay]})
    assert resp.status_code == 200
    csp = resp.headers.get("content-security-policy", "")
    assert csp.startswith("sandbox allow-scripts") and "allow-same-origin" not in csp
    host = urlsplit(svc.browser_url).netloc
    base = svc.service_url.split("/svc/")[0]
    own = httpx.get(f"{base}/headers", headers={"Host": host, TOKEN_HEADER: svc.token, **RELAYS[relay]})
    assert own.status_code == 200 and "content-security-policy" not in own.headers


@pytest.mark.parametrize("relay", sorted(RELAYS))
def test_set_cookie_domain_is_stripped(app_sb, relay):
    """Issue 14 (info): a service cannot plant cookies for its siblings (or
    the console) under a shared parent domain: `Domain=` goes, on both
    relays; the service's host-only cookies stay."""
    svc = app_sb.service(port=8000)
    resp = httpx.get(svc.service_url + "cookie", headers={TOKEN_HEADER: svc.token, **RELAYS[relay]})
    assert resp.status_code == 200
    cookies = resp.headers.get_list("set-cookie")
    assert cookies == ["planted=1; Path=/", "own=2; Path=/; HttpOnly"], cookies


@pytest.mark.parametrize("relay", sorted(RELAYS))
def test_service_tokens_can_be_revoked(server, app_sb, relay):
    """Issue 14 (info): POST .../service-url/revoke bumps the sandbox's token
    epoch: every token signed before is refused (both relays, cookie login
    too), URLs made afterwards work; another tenant gets 404."""
    old = app_sb.service(port=8000)
    assert httpx.get(old.service_url + "items", headers={TOKEN_HEADER: old.token}).status_code == 200
    revoke = f"{server.api}/boxes/{app_sb.name}/service-url/revoke"
    assert httpx.post(revoke, headers={"X-Api-Key": new_tenant_key(server, "svc")}).status_code == 404
    assert httpx.post(revoke).status_code == 401
    resp = httpx.post(revoke, headers=server.headers())
    assert resp.status_code == 200, resp.text
    refused = httpx.get(old.service_url + "items", headers={TOKEN_HEADER: old.token, **RELAYS[relay]})
    assert refused.status_code == 401 and "revoked" in _detail(refused)
    host = urlsplit(old.browser_url).netloc
    login = httpx.get(f"{server.endpoint}/_svc/auth?token={old.token}", headers={"Host": host})
    assert login.status_code == 401
    new = app_sb.service(port=8000)
    fresh = httpx.get(new.service_url + "items", headers={TOKEN_HEADER: new.token, **RELAYS[relay]})
    assert fresh.status_code == 200
