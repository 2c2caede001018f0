"""Garbage collection of the layer store (`sandpit gc`, POST
/api/v1/admin/gc): image layers no snapshot, template or sandbox uses go
once their grace period is over; layers shared with a snapshot that is
kept, and layers a sandbox still boots from, stay. The layer-store size and
the pull metrics move with it.

Two images share a base layer (busybox) and each has a top layer of its
own; the module's server pulls them from a registry on loopback, with a
3-second grace period and no periodic pass (the test runs every pass).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from langsmith.sandbox import SandboxClient

from conftest import checked_server, sandpit_binary
from helpers import metric, scrape
from registry import BUSYBOX, _run

GRACE = 3


@pytest.fixture(scope="module")
def srv(registry, workdir):
    with checked_server(
        workdir / "data",
        api_key="sp_gc_" + secrets.token_urlsafe(12),
        extra_args=[
            "--insecure-registry", registry.host,
            "--gc-grace-seconds", str(GRACE),
            "--gc-interval-seconds", "0",
        ],
    ) as server:
        yield server


def _base_layout(workdir: Path) -> Path:
    """An OCI layout whose one layer is busybox."""
    layout = workdir / "oci-base"
    bundle = workdir / "bundle-base"
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:t")
    _run("umoci", "unpack", "--image", f"{layout}:t", str(bundle))
    rootfs = bundle / "rootfs"
    for d in ("bin", "etc", "tmp", "root"):
        (rootfs / d).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    (rootfs / "bin/sh").symlink_to("busybox")
    (rootfs / "bin/cat").symlink_to("busybox")
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    _run("umoci", "repack", "--image", f"{layout}:t", str(bundle))
    shutil.rmtree(bundle, ignore_errors=True)
    return layout


def _layered(registry, workdir: Path, base: Path, ref: str, marker: str) -> str:
    """Push `ref`: the base layer plus a layer of its own holding /etc/marker."""
    name = ref.replace(":", "_")
    layout = workdir / f"oci-{name}"
    bundle = workdir / f"bundle-{name}"
    shutil.copytree(base, layout)
    _run("umoci", "unpack", "--image", f"{layout}:t", str(bundle))
    (bundle / "rootfs/etc/marker").write_text(marker + "\n")
    (bundle / "rootfs/etc/payload").write_bytes(os.urandom(256 << 10))
    _run("umoci", "repack", "--image", f"{layout}:t", str(bundle))
    _run("umoci", "config", "--image", f"{layout}:t", "--config.cmd=/bin/sh", "--config.env=PATH=/bin")
    full = f"{registry.host}/{ref}"
    _run(
        "skopeo", "copy", "--quiet", "--format=oci", "--dest-tls-verify=false",
        f"oci:{layout}:t", f"docker://{full}",
    )
    shutil.rmtree(bundle, ignore_errors=True)
    return full


@pytest.fixture(scope="module")
def images(registry, workdir):
    base = _base_layout(workdir)
    return {
        "one": _layered(registry, workdir, base, "gc-one:1", "one"),
        "two": _layered(registry, workdir, base, "gc-two:1", "two"),
    }


def _layers(registry, repo: str) -> list[str]:
    return [layer["digest"] for layer in registry.manifest(repo, "1")["layers"]]


def _on_disk(srv) -> set[str]:
    return {p.name.replace("sha256-", "sha256:") for p in (srv.data_dir / "oci" / "layers").iterdir()}


def _gc(srv, *args: str) -> dict | str:
    env = dict(os.environ, LANGSMITH_ENDPOINT=f"{srv.endpoint}/api", LANGSMITH_API_KEY=srv.api_key)
    out = subprocess.run(
        [sandpit_binary(), "gc", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if "--json" in args else out.stdout


def test_gc_keeps_shared_and_used_layers_and_frees_the_rest(srv, registry, images):
    one, two = _layers(registry, "gc-one"), _layers(registry, "gc-two")
    assert one[0] == two[0] and one[1] != two[1], "the images share their base layer only"
    pulls_before = metric(scrape(srv), "sandpit_image_pull_seconds_count")
    with SandboxClient(api_endpoint=srv.api, api_key=srv.api_key) as client:
        snap_one = client.create_snapshot("gc-one", docker_image=images["one"], fs_capacity_bytes=1 << 30)
        snap_two = client.create_snapshot("gc-two", docker_image=images["two"], fs_capacity_bytes=1 << 30)
        assert set(one + two) <= _on_disk(srv)
        metrics = scrape(srv)
        assert metric(metrics, "sandpit_image_pull_seconds_count", outcome="ok") >= pulls_before + 2
        size_before = metric(metrics, "sandpit_layer_store_bytes")
        assert size_before > 2 * (256 << 10)

        client.delete_snapshot(snap_two.id)
        # Unused since just now: within the grace period, nothing goes.
        early = _gc(srv, "--dry-run", "--json")
        assert early["layers_removed"] == 0 and early["layers_in_grace"] == 1, early
        assert early["images_in_use"] == 1 and early["layers_in_use"] == 2, early
        time.sleep(GRACE + 1)
        dry = _gc(srv, "--dry-run", "--json")
        assert dry["dry_run"] and dry["removed_layers"] == [two[1]], dry
        assert dry["images_removed"] == 1 and dry["bytes_freed"] >= 256 << 10, dry
        assert two[1] in _on_disk(srv), "a dry run removes nothing"

        text = _gc(srv)
        assert text.startswith("freed "), text
        assert f"layer {two[1]}" in text, text
        assert _on_disk(srv) == set(one), "the shared base and gc-one's layer stay"
        metrics = scrape(srv)
        assert metric(metrics, "sandpit_layer_store_bytes") <= size_before - (256 << 10)
        assert metric(metrics, "sandpit_layer_gc_removed_total", kind="layer") == 1
        assert metric(metrics, "sandpit_layer_gc_freed_bytes_total") >= 256 << 10

        # The kept snapshot still boots; a sandbox keeps its image after its
        # snapshot is gone, across a stop and start.
        sb = client.create_sandbox(snapshot_id=snap_one.id, timeout=120)
        try:
            assert sb.run("cat /etc/marker").stdout == "one\n"
            client.delete_snapshot(snap_one.id)
            time.sleep(GRACE + 1)
            kept = _gc(srv, "--json")
            assert kept["layers_removed"] == 0 and kept["images_in_use"] == 1, kept
            assert _on_disk(srv) == set(one)
            client.stop_sandbox(sb.name)
            client.start_sandbox(sb.name, timeout=120)
            assert client.get_sandbox(sb.name).run("cat /etc/marker").stdout == "one\n"
        finally:
            client.delete_sandbox(sb.name)

    # Nothing refers to gc-one any more once the sandbox row is gone: both
    # its layers go, a grace period after a pass first finds them unused.
    deadline = time.time() + 60
    while _gc(srv, "--json")["images_in_use"] and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(GRACE + 1)
    last = _gc(srv, "--json")
    assert last["layers_removed"] == 2, last
    assert not _on_disk(srv) & set(one), last
    assert metric(scrape(srv), "sandpit_layer_store_bytes") < 4096


def test_gc_needs_the_admin_key(srv):
    resp = httpx.post(f"{srv.endpoint}/api/v1/admin/gc", headers={"X-Api-Key": "nope"})
    assert resp.status_code == 401
    tenant = httpx.post(
        f"{srv.endpoint}/api/v1/admin/tenants", headers=srv.headers(), json={"name": "gc-t"}
    )
    assert tenant.status_code == 201, tenant.text
    key = httpx.post(
        f"{srv.endpoint}/api/v1/admin/keys", headers=srv.headers(), json={"tenant": "gc-t"}
    ).json()["key"]
    resp = httpx.post(f"{srv.endpoint}/api/v1/admin/gc?dry_run=true", headers={"X-Api-Key": key})
    assert resp.status_code == 403
    assert resp.json()["detail"]["error"] == "Forbidden"
    bad = httpx.post(f"{srv.endpoint}/api/v1/admin/gc?dry_run=maybe", headers=srv.headers())
    assert bad.status_code in (400, 422), bad.text
