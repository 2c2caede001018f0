"""Snapshot semantics as the langsmith SDKs document them (issue 17 item 4,
Python SDK 0.15.1):

- `capture_snapshot` of a sandbox on the built-in `host` image works, and
  the snapshot holds only what the sandbox wrote (its writable layer) plus a
  reference to `host`: never a host file, not even through a link the
  sandbox planted;
- a snapshot's labels are inherited by its sandboxes, key by key under the
  sandbox's own;
- `created_by` is the id of the API key that created the snapshot;
- a bare name is `name:latest`, else the newest ready untagged snapshot of
  that name, else not found.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from langsmith.sandbox import SandboxClient
from langsmith.sandbox._exceptions import ResourceNotFoundError


def stored_layer(srv, snapshot_id: str) -> Path:
    """The layer a capture stored, in the server's layer store."""
    digest = hashlib.sha256(snapshot_id.encode()).hexdigest()
    layer = srv.data_dir / "oci" / "layers" / f"sha256-{digest}"
    assert layer.is_dir(), f"no stored layer for snapshot {snapshot_id}"
    return layer


def entries(layer: Path) -> dict[str, str]:
    """Every non-directory entry of a stored layer: path -> kind."""
    out = {}
    for path in layer.rglob("*"):
        rel = str(path.relative_to(layer))
        if path.is_symlink():
            out[rel] = "link"
        elif path.is_file():
            out[rel] = "file"
        elif not path.is_dir():
            out[rel] = "other"  # overlay whiteouts (deletions)
    return out


def test_readme_capture_a_running_host_sandbox(srv, client):
    """The README's "Capture a Running Sandbox", from `client.sandbox()`."""
    host_secret = (srv.data_dir / "secrets.key").read_bytes()
    with client.sandbox() as sb:  # the built-in host image
        sb.write("/opt/config.yaml", "model: gpt-5\n")
        setup = sb.run(
            "set -e; mkdir -p /home/user/proj; echo data > /home/user/proj/data.txt;"
            " echo scratch > /tmp/scratch;"
            # A host path replaced with a link to a host file the sandbox
            # cannot see, and a fresh link to another: kept as links.
            f" rm -f /etc/os-release; ln -s {srv.data_dir}/secrets.key /etc/os-release;"
            " ln -s /etc/shadow /opt/shadow"
        )
        assert setup.exit_code == 0, setup.stderr
        snapshot = sb.capture_snapshot("host-ready", timeout=300)
        assert snapshot.status == "ready"
        assert snapshot.source_sandbox_id == sb.id
        assert snapshot.tags == ["latest"]

    # What is stored is what the sandbox wrote, nothing of the host.
    layer = stored_layer(srv, snapshot.id)
    stored = entries(layer)
    assert stored == {
        "opt/config.yaml": "file",
        "opt/shadow": "link",
        "home/user/proj/data.txt": "file",
        "etc/os-release": "link",
    }, stored
    assert (layer / "etc/os-release").readlink() == srv.data_dir / "secrets.key"
    files = [p for p in layer.rglob("*") if p.is_file() and not p.is_symlink()]
    assert all(p.read_bytes() != host_secret for p in files)
    assert sum(p.stat().st_size for p in files) == len("model: gpt-5\n") + len("data\n")
    assert snapshot.fs_used_bytes < 4096

    # Booting it is the host base plus the captured layer.
    with client.sandbox(snapshot_id=snapshot.id) as box:
        assert box.read("/opt/config.yaml") == b"model: gpt-5\n"
        assert box.run("cat /home/user/proj/data.txt").stdout == "data\n"
        assert box.run("test -e /tmp/scratch").exit_code != 0  # /tmp is not carried
        assert box.run("pwd").stdout == "/home/user\n"
        assert box.run("python3 -c 'print(6 * 7)'").stdout == "42\n"  # the host's /usr
        assert box.run("readlink /etc/os-release").stdout == f"{srv.data_dir}/secrets.key\n"
        assert box.run("cat /etc/os-release").exit_code != 0  # dangles inside
        # A capture of a sandbox booted from it keeps both layers over host.
        box.write("/opt/second.txt", "two\n")
        again = client.capture_snapshot(box.name, "host-ready", tag="v2", timeout=300)
    assert entries(stored_layer(srv, again.id)) == {"opt/second.txt": "file"}
    with client.sandbox(snapshot="host-ready:v2") as box:
        assert box.run("cat /opt/config.yaml /opt/second.txt").stdout == "model: gpt-5\ntwo\n"
        assert box.run("python3 -c 'print(1)'").stdout == "1\n"
    client.delete_snapshot(again.id)
    client.delete_snapshot(snapshot.id)


def capture(srv, sandbox: str, body: dict, api_key: str | None = None) -> dict:
    """POST /boxes/{sandbox}/snapshot with fields the Python SDK does not
    send (labels), then wait for it like the SDK does."""
    key = api_key or srv.api_key
    resp = httpx.post(f"{srv.api}/boxes/{sandbox}/snapshot", json=body, headers={"X-Api-Key": key})
    assert resp.status_code == 201, resp.text
    with SandboxClient(api_endpoint=srv.api, api_key=key) as c:
        c.wait_for_snapshot(resp.json()["id"], timeout=300)
    return httpx.get(f"{srv.api}/snapshots/{resp.json()['id']}", headers={"X-Api-Key": key}).json()


def test_snapshot_labels_are_inherited_unless_overridden(srv, client):
    src = client.create_sandbox(name="labels-src", labels={"from": "source-sandbox"})
    try:
        snap = capture(srv, src.name, {"name": "labelled", "labels": {"team": "ml", "tier": "gold"}})
    finally:
        client.delete_sandbox(src.name)
    assert snap["labels"] == {"team": "ml", "tier": "gold"}  # the request's only
    names = []
    try:
        sb = client.create_sandbox(name="labels-own", snapshot_id=snap["id"],
                                   labels={"tier": "silver", "owner": "me"})
        names.append(sb.name)
        # Per key: the sandbox's own win, the rest are the snapshot's.
        assert sb.labels == {"team": "ml", "tier": "silver", "owner": "me"}
        assert client.get_sandbox(sb.name).labels == sb.labels
        sb = client.create_sandbox(name="labels-none", snapshot="labelled")
        names.append(sb.name)
        assert client.get_sandbox(sb.name).labels == {"team": "ml", "tier": "gold"}
        bad = httpx.post(f"{srv.api}/boxes/labels-none/snapshot", json={"name": "x", "labels": ["a"]},
                         headers=srv.headers())
        assert bad.status_code == 422, bad.text
    finally:
        for name in names:
            client.delete_sandbox(name)
        client.delete_snapshot(snap["id"])


def test_created_by_is_the_creating_key(srv, client):
    admin = f"{srv.endpoint}/api/v1/admin"
    tenant = "snap-owner-" + hashlib.sha256(srv.api_key.encode()).hexdigest()[:6]
    resp = httpx.post(f"{admin}/tenants", headers=srv.headers(), json={"name": tenant})
    assert resp.status_code == 201, resp.text
    resp = httpx.post(f"{admin}/keys", headers=srv.headers(), json={"tenant": tenant, "name": "ci"})
    assert resp.status_code == 201, resp.text
    key, key_id = resp.json()["key"], resp.json()["id"]
    with SandboxClient(api_endpoint=srv.api, api_key=key) as c:
        sb = c.create_sandbox(name="owned")
        snapshot = c.capture_snapshot(sb.name, "owned", timeout=300)
        assert snapshot.created_by == key_id
        assert key not in str(snapshot.created_by)
        assert c.get_snapshot("owned").created_by == key_id
        assert c.list_snapshots()[0].created_by == key_id
        c.delete_sandbox(sb.name)
        c.delete_snapshot(snapshot.id)


def test_a_bare_name_is_latest_else_the_newest_untagged(client):
    sb = client.create_sandbox(name="bare-src")
    try:
        sb.write("/opt/v", "1")
        first = sb.capture_snapshot("bare", timeout=300)  # tagged latest
        assert first.tags == ["latest"]
        v1 = client.capture_snapshot(sb.name, "bare", tag="v1", timeout=300)
        assert client.get_snapshot("bare").id == first.id
        # Re-publishing latest leaves `first` untagged.
        newer = sb.capture_snapshot("bare", timeout=300)
        assert client.get_snapshot("bare").id == newer.id
        assert client.get_snapshot(first.id).tags == []
        client.delete_snapshot(newer.id)
        # No `latest`: the newest ready untagged one.
        assert client.get_snapshot("bare").id == first.id
        with client.sandbox(snapshot="bare") as box:
            assert box.read("/opt/v") == b"1"
        client.delete_snapshot(first.id)
        # Only a tagged one is left: a bare name does not find it.
        with pytest.raises(ResourceNotFoundError):
            client.get_snapshot("bare")
        assert client.get_snapshot("bare:v1").id == v1.id
        client.delete_snapshot(v1.id)
    finally:
        client.delete_sandbox(sb.name)
