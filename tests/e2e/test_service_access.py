"""Login-gated service URLs (`access="restricted"`/`"workspace"`) and
embedding (`embed_origins`), through the langsmith SDK and raw HTTP: the
login-mode answer, 409 for token mode while a grant is in place, the
sign-in hop (console page -> ticket -> session cookie on the service host),
tenant isolation, revocation, embed-origin validation and the
`frame-ancestors` policy."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from helpers import (
    hostile_page,
    needs_browser,
    new_tenant_key,
    run_browser_test,
    serve_in,
    wait_listening,
)

LOGINS = "/api/v1/console/service-logins"

# Echoes what it received; says it would refuse framing, so the test can see
# the gateway decide framing for URLs with embed origins.
APP = r'''
import json, sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        seen = {k.lower(): v for k, v in self.headers.items()}
        body = json.dumps({"app": True, "path": self.path, "headers": seen}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
'''


def _claims(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.fixture(scope="module")
def app_sb(server):
    """One sandbox running the echo app on 8000, 8001 and 8002."""
    from langsmith.sandbox import SandboxClient

    with SandboxClient() as client, client.sandbox() as sb:
        handles = [serve_in(sb, "/app/app.py", APP, port) for port in (8000, 8001, 8002)]
        for port in (8000, 8001, 8002):
            wait_listening(sb, port)
        yield sb
        for handle in handles:
            handle.kill()


def _post(server, sb, key=None, **body):
    return httpx.post(
        f"{server.api}/boxes/{sb.name}/service-url",
        headers={"X-Api-Key": key or server.api_key},
        json=body,
    )


def _host_client(server, url: str) -> tuple[httpx.Client, str]:
    """An HTTP client that sends the service host of `url` (a browser would
    resolve `*.localhost`), and the path and query of `url`."""
    parts = urlsplit(url)
    http = httpx.Client(base_url=server.endpoint, headers={"Host": parts.netloc})
    return http, parts.path + (f"?{parts.query}" if parts.query else "")


def _pair(set_cookie: str) -> dict[str, str]:
    """The `Cookie` header a browser sends back for `set_cookie` (httpx's
    jar keeps `Secure` cookies off plain http; browsers send them to
    `*.localhost`)."""
    return {"Cookie": set_cookie.split(";")[0]}


def _sign_in(server, url: str, key: str, next_path: str = "/") -> tuple[httpx.Client, str]:
    """The sign-in hop as the console's page does it: a ticket with the key,
    redeemed on the service host. Returns the client holding the session
    and the session's Set-Cookie."""
    label = urlsplit(url).hostname.split(".")[0]
    ticket = httpx.post(f"{server.endpoint}{LOGINS}", headers={"X-Api-Key": key},
                        json={"service": label, "next": next_path})
    assert ticket.status_code == 200, ticket.text
    http, path = _host_client(server, ticket.json()["login_url"])
    login = http.get(path)
    assert login.status_code == 302, login.text
    assert login.headers["location"] == next_path
    assert login.headers["referrer-policy"] == "no-referrer"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "domain" not in cookie.lower()
    # Single use: the same ticket again is refused.
    assert http.get(path).status_code == 401
    return http, cookie


def test_login_mode_answers_and_token_mode_is_refused(server, client, app_sb):
    from langsmith.sandbox import ServiceLoginURL
    from langsmith.sandbox._exceptions import SandboxClientError

    token_before = app_sb.service(port=8000)
    login = client.service(app_sb.name, 8000, access="workspace")
    assert isinstance(login, ServiceLoginURL)
    assert login.access == "workspace" and login.embed_origins == []
    url = urlsplit(login.url)
    assert url.hostname == f"{app_sb.id}--8000.localhost" and url.path == "/"
    raw = _post(server, app_sb, port=8000, access="restricted").json()
    assert set(raw) == {"browser_url", "service_url", "access", "embed_origins", "embed_url"}
    assert raw["access"] == "restricted" and "token" not in raw
    # Token mode on that port: 409 while the grant is in place.
    refused = _post(server, app_sb, port=8000)
    assert refused.status_code == 409, refused.text
    assert "login grant" in refused.json()["detail"]["message"]
    with pytest.raises(SandboxClientError):
        app_sb.service(port=8000)
    # A token made before the grant no longer opens the gated port.
    assert token_before.get("/x").status_code == 401
    # Other ports keep token mode.
    assert app_sb.service(port=8001).get("/x").json()["app"] is True
    # Revoking removes the grant: token mode works again.
    revoke = httpx.post(f"{server.api}/boxes/{app_sb.name}/service-url/revoke", headers=server.headers())
    assert revoke.json()["grants_removed"] == 1
    assert app_sb.service(port=8000).get("/x").json()["app"] is True


def test_unauthenticated_browser_gets_the_sign_in_page(server, client, app_sb):
    login = client.service(app_sb.name, 8002, access="restricted")
    http, _ = _host_client(server, login.url)
    with http:
        page = http.get("/secret?a=1")
        assert page.status_code == 302
        assert b'"app"' not in page.content
        target = urlsplit(page.headers["location"])
        assert f"{target.scheme}://{target.netloc}" == server.endpoint
        assert target.path == "/service-sign-in"
        query = parse_qs(target.query)
        assert query == {"service": [f"{app_sb.id}--8002"], "next": ["/secret?a=1"]}
        # Code (no navigation) gets the error, never the app.
        assert http.post("/secret").status_code == 401
        # A token cookie or header is not a session.
        assert http.get("/", headers={"X-Langsmith-Sandbox-Service-Token": "x"}).status_code == 302
    sign_in = httpx.get(page.headers["location"])
    assert sign_in.status_code == 200 and "Sign in" in sign_in.text
    assert sign_in.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in sign_in.headers["content-security-policy"]
    assert sign_in.headers["cross-origin-opener-policy"] == "same-origin"
    # The path form (the console's origin) never serves a gated port.
    path_form = httpx.get(f"{server.endpoint}/svc/{app_sb.id}--8002/")
    assert path_form.status_code == 401


def test_console_session_of_the_same_tenant_reaches_the_app(server, client, app_sb):
    login = client.service(app_sb.name, 8002, access="workspace")
    http, cookie = _sign_in(server, login.url, server.api_key, "/page?q=1")
    assert "SameSite=Lax" in cookie and "Path=/;" in cookie
    try:
        page = http.get("/page?q=1")
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["app"] is True and body["path"] == "/page?q=1"
        # The app sees none of Sandpit's credentials.
        seen = body["headers"]
        assert "sandpit_svc_token" not in seen.get("cookie", "")
        assert "x-api-key" not in seen
        # Without embed origins nobody may frame a gated page.
        assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert "x-frame-options" not in page.headers
        # The session is bound to its service: it is no token for another
        # port (httpx sends it to every Host of this address).
        port = urlsplit(server.endpoint).port
        other = http.get("/", headers={"Host": f"{app_sb.id}--8001.localhost:{port}"})
        assert other.status_code == 401
        # Revoking ends the session.
        httpx.post(f"{server.api}/boxes/{app_sb.name}/service-url/revoke", headers=server.headers())
        assert http.get("/page").status_code == 401  # no grant: token mode again
    finally:
        http.close()


def test_a_session_of_another_tenant_does_not_reach_the_app(server, client, app_sb):
    login = client.service(app_sb.name, 8002, access="workspace")
    label = f"{app_sb.id}--8002"
    foreign = new_tenant_key(server, "acc")
    refused = httpx.post(f"{server.endpoint}{LOGINS}", headers={"X-Api-Key": foreign},
                         json={"service": label})
    assert refused.status_code == 404, refused.text
    assert httpx.post(f"{server.endpoint}{LOGINS}", json={"service": label}).status_code == 401
    # A session the other tenant got for its own gated service does not open
    # this one.
    from langsmith.sandbox import SandboxClient

    with SandboxClient(api_endpoint=server.api, api_key=foreign) as other, other.sandbox() as sb:
        handle = serve_in(sb, "/app/app.py", APP, 8002)
        wait_listening(sb, 8002)
        theirs = other.service(sb.name, 8002, access="workspace")
        http, set_cookie = _sign_in(server, theirs.url, foreign)
        assert http.get("/").json()["app"] is True
        http.close()
        handle.kill()
    mine, _ = _host_client(server, login.url)
    with mine:
        assert mine.get("/", headers=_pair(set_cookie)).status_code == 302
    httpx.post(f"{server.api}/boxes/{app_sb.name}/service-url/revoke", headers=server.headers())


@pytest.mark.parametrize(
    "origins, needle",
    [
        ([f"https://a{i}.example" for i in range(6)], "at most 5"),
        (["http://app.example.com"], "http is allowed only for localhost"),
        (["not a url"], "embed_origins"),
        (["https://app.example.com/path"], "embed_origins"),
        ([42], "embed_origins"),
        ("https://app.example.com", "embed_origins"),
    ],
)
def test_bad_embed_origins_are_422(server, app_sb, origins, needle):
    for extra in ({}, {"access": "restricted"}):
        resp = _post(server, app_sb, port=8001, embed_origins=origins, **extra)
        assert resp.status_code == 422, resp.text
        assert needle in resp.json()["detail"]["message"]


def test_bad_access_and_fields_are_422(server, app_sb):
    for body, field in [
        ({"access": "public"}, "access"),
        ({"access": "workspace", "expires_in_seconds": 60}, "expires_in_seconds"),
    ]:
        resp = _post(server, app_sb, port=8001, **body)
        assert resp.status_code == 422, resp.text
        assert field in resp.json()["detail"]["message"]


def test_embed_origins_set_frame_ancestors(server, client, app_sb):
    origins = ["HTTPS://App.Example.com:443/", "http://localhost:3000"]
    svc = app_sb.service(port=8001, embed_origins=origins)
    normal = ["https://app.example.com", "http://localhost:3000"]
    assert svc.embed_origins == normal and svc.embed_url
    assert _claims(svc.token)["eo"] == normal
    http, path = _host_client(server, svc.embed_url)
    with http:
        login = http.get(path)
        assert login.status_code == 302
        assert "SameSite=None; Secure; Partitioned" in login.headers["set-cookie"]
        page = http.get("/x", headers=_pair(login.headers["set-cookie"]))
        assert page.status_code == 200 and page.json()["app"] is True
        assert page.headers["content-security-policy"] == f"frame-ancestors {' '.join(normal)}"
        assert "x-frame-options" not in page.headers
    # Without embed origins the app's own framing answer stands.
    plain = app_sb.service(port=8001)
    assert plain.embed_url == ""
    page = plain.get("/x")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors" not in page.headers.get("content-security-policy", "")
    # Login mode: stored on the grant, each call replaces the list.
    first = client.service(app_sb.name, 8002, access="restricted", embed_origins=origins)
    assert first.embed_origins == normal
    second = client.service(app_sb.name, 8002, access="restricted", embed_origins=["https://b.example"])
    assert second.embed_origins == ["https://b.example"]
    session, cookie = _sign_in(server, second.url, server.api_key)
    assert "SameSite=None; Secure" in cookie
    assert session.get("/").status_code == 302  # the jar held it back
    page = session.get("/", headers=_pair(cookie))
    session.close()
    assert page.headers["content-security-policy"] == "frame-ancestors https://b.example"
    assert "x-frame-options" not in page.headers
    httpx.post(f"{server.api}/boxes/{app_sb.name}/service-url/revoke", headers=server.headers())


# What a hostile service page can reach after the sign-in hop (run by
# tests/browser/service_login.test.mjs).
HOSTILE_PAGE = hostile_page("out.cookie = document.cookie;")


@needs_browser
def test_chromium_signs_in_to_a_login_url(server, client):
    with client.sandbox() as sb:
        handle = serve_in(sb, "/app/hostile.py", HOSTILE_PAGE, 8000)
        wait_listening(sb, 8000)
        login = client.service(sb.name, 8000, access="workspace")
        run_browser_test("service_login.test.mjs", LOGIN_URL=login.url, SANDPIT_KEY=server.api_key,
                         OTHER_KEY=new_tenant_key(server, "acc"))
        handle.kill()
