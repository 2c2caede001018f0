"""The web console served at `/`: its pages and headers, the terminal
tickets, and a real browser (Debian's headless `chromium` driven by
`playwright-core`, tests/browser/console.test.mjs) that signs in, lists and
filters sandboxes, opens one, uses Open service and Share Link, runs a
command in the terminal and stops and starts a sandbox."""

from __future__ import annotations

import os
import uuid

import httpx
from helpers import hostile_page, needs_browser, page_server, run_browser_test, serve_in, wait_listening

PAGE_SERVER = page_server(
    '("<!doctype html><title>in the sandbox</title><h1>%s</h1>" % sys.argv[2]).encode()'
)


def test_console_page_and_assets(server):
    page = httpx.get(server.endpoint + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/js/app.js">' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    script = httpx.get(server.endpoint + "/console/vendor/xterm/xterm.mjs")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    again = httpx.get(server.endpoint + "/console/vendor/xterm/xterm.mjs",
                      headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    missing = httpx.get(server.endpoint + "/console/../Cargo.toml")
    assert missing.status_code == 404
    assert httpx.get(server.endpoint + "/console/nope.js").json()["detail"]["error"] == "NotFound"
    # The API is untouched next to it.
    assert httpx.get(server.api + "/boxes").status_code == 401


def test_terminal_tickets_are_authenticated_single_use_and_bound(server, client):
    tickets = server.endpoint + "/api/v1/console/terminal-tickets"
    assert httpx.post(tickets, json={"sandbox": "x"}).status_code == 401
    missing = httpx.post(tickets, json={"sandbox": "no-such-box"}, headers=server.headers())
    assert missing.status_code == 404
    with client.sandbox() as sb, client.sandbox() as other:
        issued = httpx.post(tickets, json={"sandbox": sb.name}, headers=server.headers()).json()
        assert issued["sandbox_id"] == sb.id and issued["expires_in_seconds"] == 30
        url = f"{server.endpoint}/console-terminal/{{}}?ticket={issued['ticket']}"
        # Bound to its sandbox: refused for another, and spent by the try.
        assert httpx.get(url.format(other.id)).status_code == 401
        assert httpx.get(url.format(sb.id)).status_code == 401
        fresh = httpx.post(tickets, json={"sandbox": sb.name}, headers=server.headers()).json()
        url = f"{server.endpoint}/console-terminal/{sb.id}?ticket={fresh['ticket']}"
        first = httpx.get(url)  # redeemed (not a WebSocket upgrade, so the agent refuses it)
        assert first.status_code != 401, first.text
        second = httpx.get(url)
        assert second.status_code == 401
        no_ticket = httpx.get(f"{server.endpoint}/console-terminal/{sb.id}")
        assert no_ticket.status_code == 400 and "ticket" in no_ticket.json()["detail"]["message"]
        assert second.json()["detail"]["message"] == "Invalid or expired terminal ticket"


@needs_browser
def test_console_in_a_real_browser(server, client):
    suffix = uuid.uuid4().hex[:6]
    marker = f"served-from-the-sandbox-{suffix}"
    port = 8000
    with client.sandbox(name=f"console-web-{suffix}") as sb, \
            client.sandbox(name=f"console-zz-{suffix}") as other:
        serve_in(sb, "/app/page.py", PAGE_SERVER, port, marker)
        wait_listening(sb, port)
        stopped = httpx.post(f"{server.api}/boxes/{other.name}/stop", headers=server.headers())
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
        run_browser_test("console.test.mjs",
                         SANDPIT_URL=server.endpoint, SANDPIT_KEY=server.api_key,
                         SANDBOX=sb.name, OTHER_SANDBOX=other.name,
                         MARKER=marker, SERVICE_PORT=str(port),
                         SCREENSHOTS=os.environ.get("SANDPIT_SCREENSHOTS", ""))


# A hostile service page: it tries to read the console's API key from its
# own sessionStorage and from its opener's, and reports what it got.
HOSTILE_PAGE = hostile_page("out.origin = window.origin;")


@needs_browser
def test_a_service_page_cannot_read_the_console_key(server, client):
    """Issue 14 H1, in Chromium: the console on a non-loopback name without
    --service-domain refuses Open and Share Link (409) instead of loading the
    service on its own origin; the old path-form login no longer renders the
    page; a path-form page rendered anyway runs in an opaque origin; on
    loopback the service tab opens on `*.localhost` with no opener."""
    port = 8000
    with client.sandbox(name=f"console-hostile-{uuid.uuid4().hex[:6]}") as sb:
        serve_in(sb, "/app/hostile.py", HOSTILE_PAGE, port)
        wait_listening(sb, port)
        run_browser_test("service_isolation.test.mjs",
                         SANDPIT_URL=server.endpoint, SANDPIT_KEY=server.api_key,
                         SANDBOX=sb.name, SANDBOX_ID=sb.id, SERVICE_PORT=str(port))
