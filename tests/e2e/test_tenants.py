"""Tenants, API keys and quotas, through the admin API, the `sandpit keys` /
`sandpit tenants` verbs and the unmodified SDK: one tenant's key never sees
another tenant's sandboxes (404 on every route, the data plane included), a
revoked key stops working on the next request, and quotas raise the SDK's
`QuotaExceededError` with the right `quota_type`."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import httpx
import pytest
from conftest import sandpit_binary
from helpers import new_tenant
from langsmith.sandbox import (
    QuotaExceededError,
    ResourceNotFoundError,
    SandboxAuthenticationError,
    SandboxClient,
)


def admin(server, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{server.endpoint}/api/v1/admin{path}", headers=server.headers(), timeout=30, **kw)


def cli(server, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, LANGSMITH_ENDPOINT=f"{server.endpoint}/api", LANGSMITH_API_KEY=key or server.api_key)
    return subprocess.run([sandpit_binary(), *args], env=env, capture_output=True, text=True, timeout=60)


def sdk(server, key: str) -> SandboxClient:
    return SandboxClient(api_endpoint=server.api, api_key=key)


def test_cli_verbs_create_list_and_revoke(server):
    name = "cli-" + secrets.token_hex(3)
    out = cli(server, "tenants", "create", name, "--max-sandboxes", "3", "--json")
    assert out.returncode == 0, out.stderr
    [tenant] = json.loads(out.stdout)
    assert tenant["name"] == name and tenant["max_sandboxes"] == 3 and tenant["sandboxes"] == 0

    out = cli(server, "tenants", "update", name, "--max-sandboxes", "none", "--max-vcpus", "4", "--json")
    assert out.returncode == 0, out.stderr
    [tenant] = json.loads(out.stdout)
    assert tenant["max_sandboxes"] is None and tenant["max_vcpus"] == 4

    out = cli(server, "keys", "create", "--tenant", name, "--name", "ci")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("sp_")
    # The key works, and only the hash is stored: the listing shows a prefix.
    assert httpx.get(f"{server.api}/boxes", headers={"X-Api-Key": key}).status_code == 200
    listed = json.loads(cli(server, "keys", "list", "--tenant", name, "--json").stdout)
    assert [k["name"] for k in listed] == ["ci"]
    assert listed[0]["prefix"] == key[:8] and key not in json.dumps(listed)
    database = os.environ.get("SANDPIT_E2E_DATABASE_URL")
    if database:  # the store is PostgreSQL: search a dump of it
        stored = [subprocess.run(["pg_dump", database], capture_output=True, check=True).stdout]
    else:
        stored = [f.read_bytes() for f in server.data_dir.glob("sandpit.db*")]
    assert stored and all(stored)
    assert all(key.encode() not in data for data in stored)

    out = cli(server, "keys", "revoke", listed[0]["id"])
    assert out.returncode == 0, out.stderr
    assert httpx.get(f"{server.api}/boxes", headers={"X-Api-Key": key}).status_code == 401

    table = cli(server, "tenants", "list").stdout
    assert name in table
    # Errors are the API's, not a traceback.
    bad = cli(server, "keys", "revoke", "no-such-key")
    assert bad.returncode == 1 and "404" in bad.stderr and "not found" in bad.stderr.lower()
    not_admin = cli(server, "tenants", "list", key=new_tenant(server)[1])
    assert not_admin.returncode == 1 and "403" in not_admin.stderr


def test_admin_api_validates_and_needs_an_admin_key(server):
    _, key = new_tenant(server)
    r = httpx.get(f"{server.endpoint}/api/v1/admin/tenants", headers={"X-Api-Key": key})
    assert r.status_code == 403 and r.json()["detail"]["error"] == "Forbidden"
    assert admin(server, "POST", "/tenants", json={"name": "bad name!"}).status_code == 422
    assert admin(server, "POST", "/tenants", json={"name": "x", "max_vcpus": -1}).status_code == 422
    assert admin(server, "POST", "/tenants", json={"name": "x", "bogus": 1}).status_code == 422
    name, _ = new_tenant(server)
    r = admin(server, "POST", "/tenants", json={"name": name})
    assert r.status_code == 409 and r.json()["detail"]["error"] == "Conflict"
    assert admin(server, "POST", "/keys", json={"tenant": "nobody-" + name}).status_code == 404
    assert admin(server, "PATCH", f"/tenants/{name}", json={"max_vcpus": "many"}).status_code == 422


def test_other_tenants_get_404_on_every_route(server):
    _, key_a = new_tenant(server)
    _, key_b = new_tenant(server)
    a, b = sdk(server, key_a), sdk(server, key_b)
    sb = a.create_sandbox(name="mine")
    try:
        sb.write("/home/user/secret.txt", "tenant a only")
        for call in (
            lambda: b.get_sandbox("mine"),
            lambda: b.get_sandbox_status("mine"),
            lambda: b.update_sandbox("mine", idle_ttl_seconds=120),
            lambda: b.stop_sandbox("mine"),
            lambda: b.start_sandbox("mine"),
            lambda: b.delete_sandbox("mine"),
        ):
            with pytest.raises(ResourceNotFoundError):
                call()
        assert [s.name for s in b.list_sandboxes()] == []
        # The data plane: B's key on A's sandbox URL is refused with 404 for
        # every operation, by id as well as by name.
        hb = {"X-Api-Key": key_b}
        for path in ("execute", "download?path=/home/user/secret.txt", "upload?path=/home/user/x"):
            method = "GET" if path.startswith("download") else "POST"
            r = httpx.request(method, f"{sb.dataplane_url}/{path}", headers=hb, json={"command": "id"})
            assert r.status_code == 404, (path, r.status_code, r.text)
            assert "secret" not in r.text
        by_id = f"{server.api}/boxes/{sb.id}"
        assert httpx.get(by_id, headers=hb).status_code == 404
        # Same name in another tenant is a different sandbox.
        other = b.create_sandbox(name="mine")
        assert other.id != sb.id
        assert other.run("cat /home/user/secret.txt 2>&1 || true").stdout.find("tenant a only") == -1
        b.delete_sandbox("mine")
        # A is untouched by all of the above.
        assert a.get_sandbox("mine").status == "ready"
        assert sb.read("/home/user/secret.txt") == b"tenant a only"
    finally:
        a.delete_sandbox("mine")


def test_tenant_header_selects_tenant_only_for_admin_keys(server):
    name_a, key_a = new_tenant(server)
    name_b, _ = new_tenant(server)
    a = sdk(server, key_a)
    a.create_sandbox(name="scoped")
    try:
        # Admin key acting for tenant A (by name) sees A's sandbox.
        r = httpx.get(f"{server.api}/boxes/scoped", headers={**server.headers(), "X-Tenant-Id": name_a})
        assert r.status_code == 200, r.text
        # ...and not without the header (the admin's own tenant).
        assert httpx.get(f"{server.api}/boxes/scoped", headers=server.headers()).status_code == 404
        # A tenant key naming its own tenant is fine; naming another is 403.
        own = httpx.get(f"{server.api}/boxes/scoped", headers={"X-Api-Key": key_a, "X-Tenant-Id": name_a})
        assert own.status_code == 200
        other = httpx.get(f"{server.api}/boxes", headers={"X-Api-Key": key_a, "X-Tenant-Id": name_b})
        assert other.status_code == 403
        unknown = httpx.get(f"{server.api}/boxes", headers={**server.headers(), "X-Tenant-Id": "nope-" + name_b})
        assert unknown.status_code == 403
    finally:
        a.delete_sandbox("scoped")


def test_revoked_key_fails_on_the_next_request(server):
    _, key = new_tenant(server)
    client = sdk(server, key)
    assert client.list_sandboxes() == []  # cached as valid now
    keys = admin(server, "GET", "/keys").json()["keys"]
    [row] = [k for k in keys if k["prefix"] == key[:8]]
    assert admin(server, "DELETE", f"/keys/{row['id']}").status_code == 204
    with pytest.raises(SandboxAuthenticationError):
        client.list_sandboxes()
    listed = admin(server, "GET", "/keys").json()["keys"]
    assert [k["revoked_at"] for k in listed if k["id"] == row["id"]][0]


def test_quotas_raise_quota_exceeded_with_its_type(server):
    name, key = new_tenant(server, max_sandboxes=2)
    client = sdk(server, key)
    try:
        client.create_sandbox(name="q1", vcpus=1, mem_bytes=256 << 20)
        client.create_sandbox(name="q2", vcpus=1, mem_bytes=256 << 20)
        with pytest.raises(QuotaExceededError) as err:
            client.create_sandbox(name="q3")
        assert err.value.quota_type == "sandbox_count"
        assert [s.name for s in client.list_sandboxes()] and "q3" not in [s.name for s in client.list_sandboxes()]

        usage = admin(server, "GET", f"/tenants/{name}").json()
        assert (usage["sandboxes"], usage["vcpus_in_use"], usage["mem_bytes_in_use"]) == (2, 2, 512 << 20)

        r = admin(server, "PATCH", f"/tenants/{name}", json={"max_sandboxes": None, "max_vcpus": 3})
        assert r.status_code == 200 and r.json()["max_vcpus"] == 3
        with pytest.raises(QuotaExceededError) as err:
            client.create_sandbox(name="q3", vcpus=2)
        assert err.value.quota_type == "cpu"
        # A stopped sandbox holds no CPU: stopping one frees room, and
        # starting it again is refused while the room is taken.
        client.stop_sandbox("q1")
        client.create_sandbox(name="q3", vcpus=2, mem_bytes=256 << 20)
        with pytest.raises(QuotaExceededError):
            client.start_sandbox("q1")

        admin(server, "PATCH", f"/tenants/{name}", json={"max_vcpus": None, "max_mem_bytes": 600 << 20})
        with pytest.raises(QuotaExceededError) as err:
            client.create_sandbox(name="q4", mem_bytes=512 << 20)
        assert err.value.quota_type == "memory"
    finally:
        for s in client.list_sandboxes():
            client.delete_sandbox(s.name)
    assert admin(server, "GET", f"/tenants/{name}").json()["sandboxes"] == 0
