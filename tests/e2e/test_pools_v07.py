"""Warm pools with the template-era SDK (langsmith==0.7.30): `/pools` CRUD,
creating a sandbox from a pooled template takes a pre-started one and the
pool refills in the background, scaling up and down, and the refusals the
SDK documents (volumes, missing template, duplicates, template in use).

Runs only under langsmith 0.7.x (scripts/test runs it with that venv).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import langsmith
import pytest

pytestmark = pytest.mark.skipif(
    not langsmith.__version__.startswith("0.7."), reason="template-era SDK (langsmith 0.7.x) only"
)

import leaks  # noqa: E402
from conftest import checked_server  # noqa: E402

if langsmith.__version__.startswith("0.7."):
    from langsmith.sandbox import VolumeMountSpec
    from langsmith.sandbox._exceptions import (
        ResourceAlreadyExistsError,
        ResourceInUseError,
        ResourceNotFoundError,
        SandboxClientError,
        ValidationError,
    )


@pytest.fixture(scope="module")
def srv():
    data_dir = Path(tempfile.mkdtemp(prefix="sp-pool-", dir="/tmp"))
    with checked_server(
        data_dir,
        api_key="sp_pool_" + secrets.token_urlsafe(12),
        extra_args=["--reconcile-interval-ms", "300"],
    ) as server:
        yield server
    shutil.rmtree(data_dir, ignore_errors=True)


def pool_state(srv, name: str) -> dict:
    r = httpx.get(f"{srv.api}/pools/{name}", headers=srv.headers())
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_pool_hands_out_warm_sandboxes_and_refills(srv, client):
    client.create_template(name="fast", image="host", cpu="500m", memory="256Mi")
    pool = client.create_pool(name="warm", template_name="fast", replicas=2)
    assert (pool.name, pool.template_name, pool.replicas) == ("warm", "fast", 2)
    assert pool_state(srv, "warm")["ready_replicas"] == 2
    # Warm sandboxes are not the user's to list.
    assert client.list_sandboxes() == []
    baseline = len({Path(c).name for c in leaks.cgroups()})

    log_mark = len(srv.log)
    with client.sandbox(template_name="fast", name="from-pool") as sb:
        assert sb.run("echo hi").stdout == "hi\n"
        assert [s.name for s in client.list_sandboxes()] == ["from-pool"]
        claimed = [line for line in srv.log[log_mark:] if "claimed warm sandbox" in line]
        assert claimed and sb.id in claimed[0], claimed
        # The pool refills in the background: two warm ones again, plus ours.
        wait_for(lambda: pool_state(srv, "warm")["ready_replicas"] == 2, 30, "refill")
        assert len({Path(c).name for c in leaks.cgroups()}) == baseline + 1
        # The claimed sandbox has the template's resources and its own
        # settings (a fresh lifetime).
        got = client.get_sandbox("from-pool")
        assert got.template_name == "fast"

    # Scale up and down.
    client.update_pool("warm", replicas=3)
    wait_for(lambda: pool_state(srv, "warm")["ready_replicas"] == 3, 30, "scale up")
    client.update_pool("warm", replicas=0)
    wait_for(lambda: pool_state(srv, "warm")["ready_replicas"] == 0, 30, "scale down")
    wait_for(lambda: len({Path(c).name for c in leaks.cgroups()}) == baseline - 2, 30, "members removed")
    # With no warm sandbox, creates still work (cold path).
    with client.sandbox(template_name="fast") as cold:
        assert cold.run("echo cold").stdout == "cold\n"

    client.delete_pool("warm")
    with pytest.raises(ResourceNotFoundError):
        client.get_pool("warm")
    client.delete_template("fast")


def test_pool_refusals(srv, client):
    client.create_template(name="tpl", image="host")
    client.create_volume(name="vol", size="64Mi")
    client.create_template(
        name="with-volume", image="host",
        volume_mounts=[VolumeMountSpec(volume_name="vol", mount_path="/data")],
    )
    try:
        with pytest.raises(ValidationError):
            client.create_pool(name="p-vol", template_name="with-volume", replicas=1)
        with pytest.raises(ResourceNotFoundError):
            client.create_pool(name="p-missing", template_name="nope", replicas=1)
        for bad in (0, 101):
            with pytest.raises(SandboxClientError):
                client.create_pool(name="p-bad", template_name="tpl", replicas=bad)
        client.create_pool(name="p1", template_name="tpl", replicas=1)
        with pytest.raises(ResourceAlreadyExistsError):
            client.create_pool(name="p1", template_name="tpl", replicas=1)
        # The template is in use while a pool refers to it.
        with pytest.raises(ResourceInUseError):
            client.delete_template("tpl")
        assert [p.name for p in client.list_pools()] == ["p1"]
        # Another tenant sees none of it.
        r = httpx.post(
            f"{srv.endpoint}/api/v1/admin/tenants", headers=srv.headers(), json={"name": "other-" + secrets.token_hex(3)}
        )
        key = httpx.post(
            f"{srv.endpoint}/api/v1/admin/keys", headers=srv.headers(), json={"tenant": r.json()["name"]}
        ).json()["key"]
        other = {"X-Api-Key": key}
        assert httpx.get(f"{srv.api}/pools/p1", headers=other).status_code == 404
        assert httpx.get(f"{srv.api}/pools", headers=other).json() == {"pools": []}
        assert httpx.delete(f"{srv.api}/pools/p1", headers=other).status_code == 404
        for path in ("templates/tpl", "volumes/vol"):
            assert httpx.get(f"{srv.api}/{path}", headers=other).status_code == 404, path
            assert httpx.delete(f"{srv.api}/{path}", headers=other).status_code == 404, path
        assert httpx.get(f"{srv.api}/templates", headers=other).json().get("templates", []) == []
    finally:
        for pool in client.list_pools():
            client.delete_pool(pool.name)
        client.delete_template("tpl")
        client.delete_template("with-volume")
        client.delete_volume("vol")
