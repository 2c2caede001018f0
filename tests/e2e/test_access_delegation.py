"""access_delegation: code in a sandbox calls Sandpit's API as its creator.

A sandbox created with `access_delegation={"mode": "EXPLICIT", "permissions":
[...]}` gets `LANGSMITH_ENDPOINT=http://sandpit.internal` and no key; the
egress proxy answers that name only for sandboxes with a grant and adds a
short-lived credential on the way to the API, which checks the grant, the
creating key and the permission on every request.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from langsmith.sandbox import SandboxClient

READ = {"mode": "EXPLICIT", "permissions": ["sandboxes:read"]}

# Runs inside the sandbox with its python3: one request to the delegated
# endpoint (through the sandbox's HTTP_PROXY, as any HTTP client would),
# printed as JSON {status, body, headers}.
CALL = r'''
import json, os, sys, urllib.request, urllib.error
method, path = sys.argv[1], sys.argv[2]
body = (sys.argv[3].encode() or None) if len(sys.argv) > 3 else None
extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
url = os.environ.get("LANGSMITH_ENDPOINT", "http://sandpit.internal") + path
req = urllib.request.Request(url, data=body, method=method,
                             headers={"Content-Type": "application/json", **extra})
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        out = {"status": r.status, "body": r.read().decode(), "headers": dict(r.headers)}
except urllib.error.HTTPError as e:
    out = {"status": e.code, "body": e.read().decode(), "headers": dict(e.headers)}
except Exception as e:
    out = {"status": 0, "body": repr(e), "headers": {}}
print(json.dumps(out))
'''


def new_key(srv, tenant: str | None = None) -> tuple[str, str, str]:
    """A fresh tenant's key: (tenant name, key, key id)."""
    admin = f"{srv.endpoint}/api/v1/admin"
    if tenant is None:
        tenant = f"deleg-{secrets.token_hex(4)}"
        r = httpx.post(f"{admin}/tenants", headers=srv.headers(), json={"name": tenant})
        assert r.status_code == 201, r.text
    r = httpx.post(f"{admin}/keys", headers=srv.headers(), json={"tenant": tenant, "name": "e2e"})
    assert r.status_code == 201, r.text
    return tenant, r.json()["key"], r.json()["id"]


def call(sb, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> dict:
    sb.write("/tmp/call.py", CALL)
    args = [method, path, json.dumps(body) if body is not None else ""]
    if headers:
        args.append(json.dumps(headers))
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in args if a != "" or headers)
    out = sb.run(f"python3 /tmp/call.py {quoted}", timeout=60)
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tenant(srv):
    return new_key(srv)


@pytest.fixture(scope="module")
def tclient(srv, tenant):
    with SandboxClient(api_endpoint=srv.api, api_key=tenant[1]) as c:
        yield c


@pytest.fixture(scope="module")
def granted(tclient):
    sb = tclient.create_sandbox(name="deleg-read", access_delegation=READ)
    yield sb
    tclient.delete_sandbox("deleg-read")


def test_the_grant_is_echoed_and_bad_grants_are_refused(srv, tenant, granted, tclient):
    assert granted.access_delegation == READ
    assert tclient.get_sandbox("deleg-read").access_delegation == READ
    headers = {"X-Api-Key": tenant[1]}
    for grant, says in [
        ({"mode": "INHERIT"}, "INHERIT"),
        ({"mode": "EXPLICIT", "permissions": ["sandboxes:admin"]}, "sandboxes:admin"),
        ({"mode": "EXPLICIT", "permissions": []}, "at least one"),
        ({"mode": "EXPLICIT"}, "permissions"),
    ]:
        r = httpx.post(f"{srv.api}/boxes", headers=headers, json={"name": "bad-grant", "access_delegation": grant})
        assert r.status_code == 422, r.text
        message = r.json()["detail"]["message"]
        assert "access_delegation" in message and says in message, message
    assert httpx.get(f"{srv.api}/boxes/bad-grant", headers=headers).status_code == 404


def test_delegated_calls_are_capped_to_the_permissions(granted, tclient):
    # The SDK's variable points at the API name; there is no key inside.
    env = granted.run("env").stdout
    assert "LANGSMITH_ENDPOINT=http://sandpit.internal" in env
    assert "API_KEY" not in env
    listed = call(granted, "GET", "/api/v2/sandboxes/boxes")
    assert listed["status"] == 200, listed
    names = [b["name"] for b in json.loads(listed["body"])["sandboxes"]]
    assert names == ["deleg-read"], names
    got = call(granted, "GET", "/api/v2/sandboxes/boxes/deleg-read")
    assert got["status"] == 200 and json.loads(got["body"])["access_delegation"] == READ, got
    # Beyond the grant: 403 in the API's error shape, naming the permission.
    for method, path, body, needed in [
        ("POST", "/api/v2/sandboxes/boxes", {"name": "made-inside"}, "sandboxes:create"),
        ("DELETE", "/api/v2/sandboxes/boxes/deleg-read", None, "sandboxes:delete"),
        ("POST", "/api/v2/sandboxes/boxes/deleg-read/stop", None, "sandboxes:update"),
    ]:
        r = call(granted, method, path, body)
        assert r["status"] == 403, r
        detail = json.loads(r["body"])["detail"]
        assert detail["error"] == "Forbidden" and needed in detail["message"], detail
    # Never admin, secrets or registries, whatever the sandbox sends.
    for method, path in [
        ("GET", "/api/v1/admin/keys"),
        ("GET", "/api/v1/admin/tenants"),
        ("GET", "/api/v1/workspaces/current/secrets"),
        ("GET", "/api/v2/sandboxes/registries"),
    ]:
        r = call(granted, method, path, headers={"X-Tenant-Id": "default", "X-Api-Key": "guess"})
        assert r["status"] == 403, (path, r)
    # Still there: nothing above took effect.
    assert tclient.get_sandbox("deleg-read").status == "ready"
    assert [s.name for s in tclient.list_sandboxes()] == ["deleg-read"]


def test_the_credential_never_enters_the_sandbox(granted):
    r = call(granted, "GET", "/api/v2/sandboxes/boxes", headers={"X-Sandpit-Delegation": "forged"})
    # A forged header is replaced by the proxy's own, so the call works...
    assert r["status"] == 200, r
    # ...and the answer does not carry the credential back.
    assert not any(k.lower().startswith("x-sandpit-delegation") for k in r["headers"]), r["headers"]
    assert "eyJ" not in json.dumps(r["headers"])
    # Nowhere in the sandbox: environment, files, processes' environments.
    # A token is base64url of {"sub":...}: it would contain "eyJzdWIi".
    probe = granted.run(
        "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
        "grep -rIl -e eyJzdWIi -e x-sandpit-delegation /tmp /root /home /etc /var /run "
        "2>/dev/null | grep -v '^/tmp/call.py$'; true",
        timeout=120,
    ).stdout
    assert "eyJzdWIi" not in probe
    assert "sandpit-delegation" not in probe.lower(), probe[-2000:]


def test_a_sandbox_without_a_grant_cannot_reach_the_api(tclient):
    sb = tclient.create_sandbox(name="deleg-none")
    try:
        assert "sandpit.internal" not in sb.run("env").stdout
        r = call(sb, "GET", "/api/v2/sandboxes/boxes")
        assert r["status"] == 403 and "access_delegation" in r["body"], r
        # Not through the firewall's redirect (DNS) either.
        out = sb.run("getent hosts sandpit.internal; echo rc=$?").stdout
        assert "198.18.0.1" not in out and "rc=2" in out, out
    finally:
        tclient.delete_sandbox("deleg-none")


def test_revoking_the_creators_key_ends_the_delegation(srv, tenant):
    _, key, key_id = new_key(srv, tenant[0])
    with SandboxClient(api_endpoint=srv.api, api_key=key) as c:
        c.create_sandbox(name="deleg-revoke", access_delegation=READ)
    # Commands run with the tenant's other key; the grant is the revoked one's.
    with SandboxClient(api_endpoint=srv.api, api_key=tenant[1]) as other:
        sb = other.get_sandbox("deleg-revoke")
        try:
            assert call(sb, "GET", "/api/v2/sandboxes/boxes/deleg-revoke")["status"] == 200
            r = httpx.delete(f"{srv.endpoint}/api/v1/admin/keys/{key_id}", headers=srv.headers())
            assert r.status_code in (200, 204), r.text
            after = call(sb, "GET", "/api/v2/sandboxes/boxes/deleg-revoke")
            assert after["status"] == 401 and "revoked" in after["body"], after
        finally:
            other.delete_sandbox("deleg-revoke")


# The langsmith SDK inside the sandbox: `SandboxClient()` with no key.
SDK_SCRIPT = r'''
import json
from langsmith.sandbox import SandboxClient
out = {}
with SandboxClient() as c:
    out["listed"] = [s.name for s in c.list_sandboxes()]
    try:
        c.create_sandbox(name="made-by-sdk-inside")
        out["create"] = "created"
    except Exception as e:
        out["create"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
'''


def sdk_tarball() -> bytes:
    """The langsmith SDK and its required distributions (the closure of
    `Requires-Dist` without extras), from this test's own venv. Not what
    this process has imported: under the whole suite that is every test
    module's imports, far over the upload limit."""
    import io
    import re
    import sys
    import tarfile
    from importlib import metadata
    from pathlib import Path

    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    tops: set[str] = set()
    seen: set[str] = set()
    todo = ["langsmith"]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another Python or platform
        for req in dist.requires or []:
            if "extra ==" not in req:
                todo.append(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
        for file in dist.files or []:
            top = file.parts[0]
            # With its .dist-info: some read their own version from it.
            if top != ".." and (site / top).exists():
                tops.add(top)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for top in sorted(tops):
            tar.add(site / top, arcname=top, filter=lambda t: None if "__pycache__" in t.name else t)
    return buf.getvalue()


def test_the_sdk_inside_works_with_no_key(granted, tclient):
    import sys

    inside = granted.run("python3 -c 'import sys; print(sys.version_info[:2])'").stdout.strip()
    if inside != str(tuple(sys.version_info[:2])):
        pytest.skip(f"the sandbox's python is {inside}, the SDK here is for {sys.version_info[:2]}")
    granted.write("/tmp/sdk.tgz", sdk_tarball())
    granted.write("/tmp/sdk.py", SDK_SCRIPT)
    out = granted.run(
        "mkdir -p /tmp/site && tar xzf /tmp/sdk.tgz -C /tmp/site && "
        "env -u LANGSMITH_API_KEY PYTHONPATH=/tmp/site python3 /tmp/sdk.py",
        timeout=120,
    )
    assert out.exit_code == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["listed"] == ["deleg-read"], result
    assert "sandboxes:create" in result["create"], result
    assert "made-by-sdk-inside" not in [s.name for s in tclient.list_sandboxes()]
