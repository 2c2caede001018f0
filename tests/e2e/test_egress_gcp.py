"""`gcp_auth` rules: the egress proxy authorises a sandbox's Google API
requests with OAuth2 tokens it mints from a service account key that never
enters the sandbox.

One local HTTPS server plays Google (`--egress-resolve` sends
`oauth2.googleapis.com` and `storage.googleapis.com` to it,
`--egress-upstream-ca` makes the proxy trust its test CA):

- `oauth2.googleapis.com/token` checks each JWT-bearer grant on its own,
  with PyJWT and the public half of an RSA key this test generated: the
  RS256 signature, `iss` (the account's email), `aud` (the token URI),
  `scope`, a one-hour lifetime. It answers with a numbered token.
- every other request (`storage.googleapis.com`) is recorded with the
  `Authorization` header it arrived with; the reply never echoes it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from langsmith.sandbox import (
    SandboxClientError,
    gcp_auth,
    opaque_secret,
    proxy_config,
    workspace_secret,
)
from helpers import QuietHandler, egress_upstream_server, sdk_client_with_secret
from test_egress_inject import transparent, via_proxy

TOKEN_URI = "https://oauth2.googleapis.com/token"
HOSTS = ["oauth2.googleapis.com", "storage.googleapis.com", "api.example.test"]
EGRESS_PORTS = "29443,29080,29053"
SCOPES = [
    "https://www.googleapis.com/auth/devstorage.read_write",
    "https://www.googleapis.com/auth/cloud-platform.read-only",
]
DEFAULT_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def make_account(email: str) -> tuple[str, str, object]:
    """(service account JSON, its PEM private key, its public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    account = {
        "type": "service_account",
        "project_id": "sandpit-test",
        "private_key_id": "kid-" + email.split("@")[0],
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": TOKEN_URI,
    }
    return json.dumps(account, indent=2), pem, key.public_key()


ROBOT = "robot@sandpit-test.iam.gserviceaccount.com"
ROBOT_JSON, ROBOT_PEM, ROBOT_PUBLIC = make_account(ROBOT)
# Same email, another key: the token endpoint refuses its assertions.
IMPOSTOR_JSON, _, _ = make_account(ROBOT)
# The middle of the private key's base64: if it shows up, the key leaked.
KEY_PROBE = ROBOT_PEM.splitlines()[5]


def verify_grant(form: dict[str, list[str]]) -> dict:
    """The claims of a valid JWT-bearer grant; raises otherwise."""
    if form.get("grant_type") != [GRANT_TYPE]:
        raise ValueError(f"grant_type {form.get('grant_type')}")
    assertion = form["assertion"][0]
    header = jwt.get_unverified_header(assertion)
    if header.get("alg") != "RS256" or header.get("kid") != "kid-robot":
        raise ValueError(f"header {header}")
    claims = jwt.decode(assertion, ROBOT_PUBLIC, algorithms=["RS256"], audience=TOKEN_URI,
                        issuer=ROBOT, options={"require": ["iss", "aud", "iat", "exp", "scope"]})
    if claims["exp"] - claims["iat"] != 3600 or abs(claims["iat"] - time.time()) > 60:
        raise ValueError(f"lifetime {claims['iat']}..{claims['exp']}")
    return claims


class FakeGoogle(QuietHandler):
    protocol_version = "HTTP/1.1"
    grants: list[dict] = []
    refused: list[str] = []
    seen: list[dict] = []
    expires_in = 3599
    lock = threading.Lock()

    def _handle(self):
        body = self.read_body()
        host = (self.headers.get("Host") or "").split(":")[0]
        if host == "oauth2.googleapis.com" and self.path == "/token" and self.command == "POST":
            return self._token(body)
        with FakeGoogle.lock:
            FakeGoogle.seen.append({"host": host, "path": self.path,
                                    "authorization": self.headers.get("Authorization")})
        self.reply(200, f"ok {self.path}\n".encode(), "text/plain")

    def _token(self, body: bytes):
        try:
            claims = verify_grant(urllib.parse.parse_qs(body.decode()))
        except Exception as err:  # noqa: BLE001 - any failure is a refusal
            with FakeGoogle.lock:
                FakeGoogle.refused.append(repr(err))
            answer = {"error": "invalid_grant", "error_description": f"Invalid JWT: {type(err).__name__}"}
            return self.reply_json(400, answer)
        with FakeGoogle.lock:
            FakeGoogle.grants.append(claims)
            n = len(FakeGoogle.grants)
        answer = {"access_token": f"ya29.sandpit-{n}", "expires_in": FakeGoogle.expires_in,
                  "token_type": "Bearer"}
        self.reply_json(200, answer)

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture(autouse=True)
def fresh_google():
    FakeGoogle.grants.clear()
    FakeGoogle.refused.clear()
    FakeGoogle.seen.clear()
    FakeGoogle.expires_in = 3599
    yield


@pytest.fixture(scope="module")
def gcp_server():
    with egress_upstream_server(FakeGoogle, HOSTS, EGRESS_PORTS, "gcp") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(gcp_server):
    with sdk_client_with_secret(gcp_server, "GCP_SA", ROBOT_JSON) as c:
        yield c


STORAGE = "https://storage.googleapis.com/storage/v1/b/bkt/o"
FAKE_AUTH = "-H 'Authorization: Bearer sandbox-made-this-up'"


def test_google_requests_carry_a_token_minted_outside_the_sandbox(client, gcp_server):
    rules = [gcp_auth(service_account_json=workspace_secret("GCP_SA"), scopes=SCOPES,
                      env_vars={"GOOGLE_CLOUD_PROJECT": "sandpit-test"})]
    sb = client.create_sandbox(name="gcp", proxy_config=proxy_config(rules=rules))
    try:
        outputs = []
        for i in range(3):  # three connections (three curl processes)
            rc, out = transparent(sb, f"'{STORAGE}?i={i}'", f"-v {FAKE_AUTH}")
            assert rc == 0 and f"ok /storage/v1/b/bkt/o?i={i}" in out, out
            outputs.append(out)
        # And through HTTPS_PROXY (CONNECT), as Google's client libraries do.
        rc, out = via_proxy(sb, f"'{STORAGE}?via=connect'", f"-v {FAKE_AUTH}")
        assert rc == 0 and "ok /storage/v1/b/bkt/o?via=connect" in out, out
        outputs.append(out)
        # One token, minted once from an assertion Google would accept,
        # replaced the sandbox's own Authorization on every request.
        assert len(FakeGoogle.grants) == 1, (FakeGoogle.grants, FakeGoogle.refused)
        assert FakeGoogle.grants[0]["scope"] == " ".join(SCOPES)
        assert [s["authorization"] for s in FakeGoogle.seen] == ["Bearer ya29.sandpit-1"] * 4
        # The sandbox saw only what it sent, and Sandpit's certificate.
        for out in outputs:
            assert "Bearer sandbox-made-this-up" in out and "Sandpit egress CA" in out
            assert "ya29" not in out and KEY_PROBE not in out
        # A host no rule covers is not intercepted (the sandbox sees the
        # upstream's own certificate, which it does not trust) and mints nothing.
        rc, out = transparent(sb, "https://api.example.test/", FAKE_AUTH)
        assert rc == 60, out
        assert len(FakeGoogle.grants) == 1
        assert all(s["host"] == "storage.googleapis.com" for s in FakeGoogle.seen)
        # Neither the key nor the token is anywhere in the sandbox.
        probe = sb.run("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
                       f"grep -rIl -e '{KEY_PROBE}' -e ya29 -e {ROBOT} /etc /tmp /root /home /run /var "
                       "2>/dev/null; true", timeout=120)
        assert KEY_PROBE not in probe.stdout and "ya29" not in probe.stdout
        assert ROBOT not in probe.stdout
        # The rule's env_vars are set.
        assert "GOOGLE_CLOUD_PROJECT=sandpit-test" in probe.stdout.splitlines()
    finally:
        client.delete_sandbox("gcp")


def test_opaque_accounts_are_write_only_and_tokens_are_renewed(client, gcp_server):
    FakeGoogle.expires_in = 4  # used for 2 s
    # No scopes: the proxy asks for cloud-platform. (The SDK's
    # proxy_config() insists on scopes, so the config is built by hand.)
    rule = gcp_auth(service_account_json=opaque_secret(ROBOT_JSON))
    sb = client.create_sandbox(name="gcp-opaque", proxy_config={"rules": [rule]})
    try:
        twice = f"curl -sS --noproxy '*' {STORAGE}?n=1 && curl -sS --noproxy '*' {STORAGE}?n=2"
        assert sb.run(twice, timeout=30).exit_code == 0
        time.sleep(2.5)
        rc, out = transparent(sb, f"'{STORAGE}?n=3'")
        assert rc == 0, out
        assert [g["scope"] for g in FakeGoogle.grants] == [DEFAULT_SCOPE] * 2
        assert [s["authorization"] for s in FakeGoogle.seen] == [
            "Bearer ya29.sandpit-1", "Bearer ya29.sandpit-1", "Bearer ya29.sandpit-2"]
        # The API never shows the key; an update that sends the redacted
        # rule back keeps it.
        shown = httpx.get(f"{gcp_server.api}/boxes/gcp-opaque", headers=gcp_server.headers()).json()
        assert KEY_PROBE not in json.dumps(shown) and ROBOT not in json.dumps(shown)
        account = shown["proxy_config"]["rules"][0]["gcp"]["service_account_json"]
        assert account == {"type": "opaque", "is_set": True}
        client.update_sandbox("gcp-opaque", proxy_config=shown["proxy_config"])
        time.sleep(2.5)
        rc, out = transparent(sb, f"'{STORAGE}?n=4'")
        assert rc == 0, out
        assert FakeGoogle.seen[-1]["authorization"] == "Bearer ya29.sandpit-3"
    finally:
        client.delete_sandbox("gcp-opaque")


def test_token_failures_are_a_clear_502(client, gcp_server):
    rules = [gcp_auth(service_account_json=opaque_secret(IMPOSTOR_JSON), scopes=SCOPES, name="impostor")]
    sb = client.create_sandbox(name="gcp-fail", proxy_config=proxy_config(rules=rules))
    try:
        rc, out = transparent(sb, f"-w '%{{http_code}}' {STORAGE}")
        assert rc == 0 and out.endswith("502"), out
        assert "no Google access token" in out and "invalid_grant" in out, out
        assert "InvalidSignatureError" in FakeGoogle.refused[0]
        assert not FakeGoogle.seen and not FakeGoogle.grants
        assert "PRIVATE KEY" not in out
        # A workspace secret that is not set is named, not guessed at.
        missing = [gcp_auth(service_account_json=workspace_secret("GCP_NOT_SET"), scopes=SCOPES)]
        client.update_sandbox("gcp-fail", proxy_config=proxy_config(rules=missing))
        rc, out = transparent(sb, f"-w '%{{http_code}}' {STORAGE}")
        assert rc == 0 and out.endswith("502") and "workspace secret GCP_NOT_SET is not set" in out, out
        assert not FakeGoogle.seen
        # The secrets API takes a multi-line JSON; a header cannot carry it,
        # and the proxy says so instead of sending a broken header.
        header = {"name": "hdr", "match_hosts": ["storage.googleapis.com"],
                  "headers": [{"name": "X-Key", "type": "workspace_secret", "value": "GCP_SA"}]}
        client.update_sandbox("gcp-fail", proxy_config={"rules": [header]})
        rc, out = transparent(sb, f"-w '%{{http_code}}' {STORAGE}")
        assert out.endswith("502") and "GCP_SA cannot be sent in a header" in out, out
        assert KEY_PROBE not in out and not FakeGoogle.seen
    finally:
        client.delete_sandbox("gcp-fail")


def bad_rules() -> list[tuple[dict, str]]:
    sa = json.loads(ROBOT_JSON)

    def opaque(account) -> dict:
        text = account if isinstance(account, str) else json.dumps(account)
        return {"name": "gcp", "type": "gcp", "gcp": {"service_account_json": opaque_secret(text)}}

    no_key = {k: v for k, v in sa.items() if k != "private_key"}
    no_email = {k: v for k, v in sa.items() if k != "client_email"}
    bad_pem = dict(sa, private_key="-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    return [
        ({"name": "gcp", "type": "gcp", "gcp": {"service_account_json": {"type": "plaintext", "value": ROBOT_JSON}}},
         "plaintext"),
        (opaque("{\"type\": \"service_account\", "), "not a JSON object"),
        (opaque(no_key), "private_key"),
        (opaque(no_email), "client_email"),
        (opaque(bad_pem), "private_key"),
        ({"name": "gcp", "type": "gcp", "gcp": {"service_account_json": workspace_secret("GCP_SA"), "scopes": []}},
         "scopes"),
    ]


def test_bad_gcp_rules_are_refused_with_422(client, gcp_server):
    for rule, says in bad_rules():
        body = {"name": "gcp-bad", "proxy_config": {"rules": [rule]}}
        response = httpx.post(f"{gcp_server.api}/boxes", json=body, headers=gcp_server.headers())
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail["error"] == "ValidationError" and says in detail["message"], detail
        assert KEY_PROBE not in response.text
    # The SDK raises the server's message; an update is checked the same way.
    rule, _ = bad_rules()[0]
    with pytest.raises(SandboxClientError, match="plaintext"):
        client.create_sandbox(name="gcp-bad", proxy_config={"rules": [rule]})
    sb = client.create_sandbox(name="gcp-upd")
    try:
        for rule, says in bad_rules():
            with pytest.raises(SandboxClientError, match=says):
                client.update_sandbox("gcp-upd", proxy_config={"rules": [rule]})
    finally:
        client.delete_sandbox(sb.name)
