"""`proxy_config.callbacks`: for matched hosts the egress proxy asks the
tenant's callback URL which headers to set, signs that call so the SDK's own
`SandboxTokenVerifier.verify_callback` accepts it, caches the answer for
`ttl_seconds` and asks again once it expires.

The server runs with `--test-time-scale 30`, so a 60 s TTL lasts 2 s.
"""

from __future__ import annotations

import time

import pytest
from langsmith.sandbox import SandboxClientError
from langsmith.sandbox._verify import CALLBACK_SIGNATURE_HEADER, SandboxTokenVerifier
from helpers import QuietHandler, egress_upstream_server, sdk_client_with_secret, serve_http
from helpers import transparent_curl as curl

UPSTREAMS = ["api.example.test", "full.example.test"]
CALLBACK_URL = "http://callback.example.test/cb"
EGRESS_PORTS = "28443,28080,28053"
CB_SECRET = "cb-auth-51e0c2"


class Upstream(QuietHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def _handle(self):
        body = self.read_body()
        Upstream.seen.append({"path": self.path, "headers": self.lower_headers(), "body": body})
        self.reply(200, b"ok\n")

    do_GET = do_POST = _handle


class CallbackHandler(QuietHandler):
    protocol_version = "HTTP/1.1"
    verifier: SandboxTokenVerifier | None = None
    calls: list[dict] = []
    fail = False

    def do_POST(self):  # noqa: N802
        body = self.read_body()
        try:
            callback = self.verifier.verify_callback(
                body=body, signature=self.headers.get(CALLBACK_SIGNATURE_HEADER, ""), aud=CALLBACK_URL)
        except Exception as err:  # noqa: BLE001 - any failure is a refusal
            return self.reply_json(401, {"error": str(err)})
        CallbackHandler.calls.append({"callback": callback, "auth": self.headers.get("X-Cb-Auth")})
        if CallbackHandler.fail:
            return self.reply_json(500, {"error": "down"})
        self.reply_json(200, {"headers": {"X-Cb-Token": f"tok-{len(CallbackHandler.calls)}"}})


@pytest.fixture(scope="module")
def cb_server():
    callbacks = serve_http(CallbackHandler)
    args = ["--test-time-scale", "30",
            "--egress-resolve", f"callback.example.test=127.0.0.1:{callbacks.server_address[1]}"]
    with egress_upstream_server(Upstream, UPSTREAMS, EGRESS_PORTS, "cb", args) as srv:
        CallbackHandler.verifier = SandboxTokenVerifier(api_url=srv.endpoint)
        yield srv
    callbacks.shutdown()


@pytest.fixture(scope="module")
def client(cb_server):
    with sdk_client_with_secret(cb_server, "CB_AUTH", CB_SECRET) as c:
        yield c


def token_at(path: str) -> str | None:
    hits = [s for s in Upstream.seen if s["path"] == path]
    assert hits, f"nothing reached the upstream for {path}"
    return hits[-1]["headers"].get("x-cb-token")


CALLBACKS = [
    {"url": CALLBACK_URL, "match_hosts": ["api.example.test"], "ttl_seconds": 60,
     "request_headers": [{"name": "X-Cb-Auth", "type": "workspace_secret", "value": "{CB_AUTH}"}]},
    {"url": CALLBACK_URL, "match_hosts": ["full.example.test"], "ttl_seconds": 60, "full_request": True},
]


def test_callbacks_are_called_signed_cached_and_expire(client):
    CallbackHandler.calls.clear()
    sb = client.create_sandbox(name="cb", proxy_config={"callbacks": CALLBACKS})
    try:
        assert curl(sb, "https://api.example.test/a")[0] == 0
        assert curl(sb, "https://api.example.test/b")[0] == 0
        assert token_at("/a") == token_at("/b") == "tok-1"
        assert len(CallbackHandler.calls) == 1
        call = CallbackHandler.calls[0]
        assert call["auth"] == CB_SECRET  # request_headers, secret resolved
        assert call["callback"].host == "api.example.test" and call["callback"].port == 443
        assert call["callback"].identity.sandbox_id == sb.id
        assert call["callback"].request is None
        time.sleep(2.5)  # the 60 s TTL at --test-time-scale 30
        assert curl(sb, "https://api.example.test/c")[0] == 0
        assert token_at("/c") == "tok-2"
        # The sandbox sees none of it: not the callback's secret, and the
        # proxy's header only on the wire to the upstream.
        probe = sb.run("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'", timeout=60)
        assert CB_SECRET not in probe.stdout
    finally:
        client.delete_sandbox("cb")


def test_full_request_callbacks_see_every_request(client):
    CallbackHandler.calls.clear()
    sb = client.create_sandbox(name="cb-full", proxy_config={"callbacks": CALLBACKS})
    try:
        for n in (1, 2):
            rc, out = curl(sb, f"-X POST -H 'X-Mine: m{n}' --data-binary 'payload-{n}' "
                               f"'https://full.example.test/p{n}?q={n}'")
            assert rc == 0, out
        assert len(CallbackHandler.calls) == 2  # never cached
        request = CallbackHandler.calls[1]["callback"].request
        assert (request.method, request.path, request.query) == ("POST", "/p2", "q=2")
        assert request.headers["x-mine"] == ["m2"]
        assert request.body == b"payload-2" and not request.body_truncated
        assert token_at("/p2?q=2") == "tok-2"
        assert [s["body"] for s in Upstream.seen if s["path"] == "/p2?q=2"][-1] == b"payload-2"
    finally:
        client.delete_sandbox("cb-full")


def test_a_failing_callback_fails_the_request(client):
    CallbackHandler.fail = True
    sb = client.create_sandbox(name="cb-down", proxy_config={"callbacks": CALLBACKS})
    try:
        rc, out = curl(sb, "-w '%{http_code}' https://api.example.test/down")
        assert rc == 0 and out.strip().endswith("502"), out
        assert not [s for s in Upstream.seen if s["path"] == "/down"]
    finally:
        CallbackHandler.fail = False
        client.delete_sandbox("cb-down")


@pytest.mark.parametrize("bad", [
    {"url": CALLBACK_URL, "match_hosts": ["a.test"], "ttl_seconds": 30},
    {"url": CALLBACK_URL, "match_hosts": ["a.test"], "ttl_seconds": 4000},
    {"url": CALLBACK_URL, "match_hosts": [], "ttl_seconds": 60},
    {"url": "ftp://x/cb", "match_hosts": ["a.test"], "ttl_seconds": 60},
])
def test_bad_callbacks_are_refused(client, bad):
    with pytest.raises(SandboxClientError) as err:
        client.create_sandbox(name="cb-bad", proxy_config={"callbacks": [bad]})
    assert "callbacks[0]" in str(err.value)
