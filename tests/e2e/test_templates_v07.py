"""Templates and volumes with the template-era SDK (langsmith==0.7.30):
CRUD as the SDK and the seed use it, sandboxes booting from a template's
image with its resources and volumes, and the README's "Quick Start",
"Templates" and "Persistent Volumes" sections run unchanged (with local
images in place of `python:3.12-slim`).

Runs only under langsmith 0.7.x (scripts/test runs it with that venv).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import langsmith
import pytest

pytestmark = pytest.mark.skipif(
    not langsmith.__version__.startswith("0.7."), reason="template-era SDK (langsmith 0.7.x) only"
)

from registry import build_image  # noqa: E402

if langsmith.__version__.startswith("0.7."):
    from langsmith.sandbox import SandboxClient, VolumeMountSpec
    from langsmith.sandbox._exceptions import (
        ResourceCreationError,
        ResourceInUseError,
        ResourceNotFoundError,
        SandboxClientError,
        ValidationError,
    )


def cgroup_limits(sandbox_id: str) -> tuple[int, int]:
    """(CPU quota in thousandths of a CPU, memory limit) of a sandbox's
    cgroup, read on the host (cgroup v1 or v2)."""
    v2 = Path("/sys/fs/cgroup/sandpit") / sandbox_id
    if (v2 / "cpu.max").exists():
        quota, period = (v2 / "cpu.max").read_text().split()
        memory = int((v2 / "memory.max").read_text())
    else:
        cpu = Path("/sys/fs/cgroup/cpu/sandpit") / sandbox_id
        quota = (cpu / "cpu.cfs_quota_us").read_text()
        period = (cpu / "cpu.cfs_period_us").read_text()
        memory = int((Path("/sys/fs/cgroup/memory/sandpit") / sandbox_id / "memory.limit_in_bytes").read_text())
    return int(quota) * 1000 // int(period), memory


@pytest.fixture(scope="module")
def busybox(registry, workdir):
    return build_image(registry, workdir, "busybox:1", files={"/etc/marker": "template-image\n"})


@pytest.fixture(scope="module")
def srv(registry_server):
    return registry_server


@pytest.fixture
def client(srv, monkeypatch):
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"{srv.endpoint}/api")
    monkeypatch.setenv("LANGSMITH_API_KEY", srv.api_key)
    with SandboxClient() as c:
        yield c


@pytest.fixture
def http(srv):
    with httpx.Client(base_url=f"{srv.endpoint}/api/v2/sandboxes", headers=srv.headers()) as c:
        yield c


def test_readme_quick_start(client):
    # First, create a template (defines the container image)
    client.create_template(
        name="python-sandbox",
        image="host",  # the built-in image, in place of python:3.12-slim
    )

    # Now create a sandbox from the template and run code
    with client.sandbox(template_name="python-sandbox") as sb:
        result = sb.run("python -c 'print(2 + 2)'")
        assert result.stdout == "4\n"
        assert result.success

    # Or create a sandbox to keep
    sb = client.create_sandbox(template_name="python-sandbox")
    result = sb.run("python -c 'print(2 + 2)'")
    assert result.stdout == "4\n"
    name = sb.name
    # Or use an existing sandbox by name
    again = client.get_sandbox(name=name)
    assert again.template_name == "python-sandbox"
    assert again.run("python -c 'print(2 + 2)'").stdout == "4\n"
    client.delete_sandbox(name)
    client.delete_template("python-sandbox")


def test_readme_templates(client, busybox):
    template = client.create_template(
        name="my-python-env",
        image=busybox,
        cpu="1",
        memory="1Gi",
    )
    assert (template.resources.cpu, template.resources.memory) == ("1", "1Gi")
    assert template.id and template.created_at and template.updated_at

    with client.sandbox(template_name="my-python-env") as sb:
        assert sb.run("cat /etc/marker").stdout == "template-image\n"
        assert cgroup_limits(sb.id) == (1000, 1 << 30)

    assert "my-python-env" in [t.name for t in client.list_templates()]
    assert client.get_template("my-python-env").image == busybox
    renamed = client.update_template("my-python-env", new_name="python-env-v2")
    assert renamed.name == "python-env-v2" and renamed.id == template.id
    client.delete_template("python-env-v2")
    with pytest.raises(ResourceNotFoundError):
        client.get_template("python-env-v2")


def test_half_a_cpu(client, busybox):
    client.create_template(name="half", image=busybox, cpu="500m", memory="256Mi")
    try:
        with client.sandbox(template_name="half") as sb:
            assert cgroup_limits(sb.id) == (500, 256 << 20)
    finally:
        client.delete_template("half")


def test_template_storage_is_enforced(client, busybox):
    client.create_template(name="tiny-disk", image=busybox, storage="32Mi")
    try:
        with client.sandbox(template_name="tiny-disk") as sb:
            result = sb.run("dd if=/dev/zero of=/big bs=1M count=64")
            assert result.exit_code != 0 and "No space left on device" in result.stderr
            assert sb.run("rm /big && echo ok").stdout == "ok\n"
    finally:
        client.delete_template("tiny-disk")


def test_template_in_use_cannot_be_deleted(client, busybox):
    client.create_template(name="busy", image=busybox)
    sb = client.create_sandbox(template_name="busy")
    with pytest.raises(ResourceInUseError, match=sb.name):
        client.delete_template("busy")
    client.delete_sandbox(sb.name)
    client.delete_template("busy")


def test_template_errors(client, http, busybox):
    with pytest.raises(ResourceNotFoundError):
        client.get_template("nope")
    resp = http.get("/templates/nope")
    assert resp.status_code == 404
    assert resp.json()["detail"]["error"] == "NotFound"

    client.create_template(name="dup", image=busybox)
    resp = http.post("/templates", json={"name": "dup", "image": busybox, "resources": {}})
    assert resp.status_code == 409 and resp.json()["detail"]["error"] == "Conflict"
    client.create_template(name="dup-2", image=busybox)
    with pytest.raises(SandboxClientError):
        client.update_template("dup-2", new_name="dup")

    for resources in ({"cpu": "lots"}, {"memory": "1Xi"}, {"cpu": "0"}, {"storage": "-1Gi"}):
        with pytest.raises(ValidationError):
            client.create_template(name="bad", image=busybox, **resources)
    resp = http.post("/templates", json={"name": "bad", "image": busybox, "resources": {"cpu": "x"}})
    assert resp.status_code == 422 and "cpu" in resp.json()["detail"]["message"].lower()
    with pytest.raises(ResourceNotFoundError):
        client.create_template(
            name="bad", image=busybox, volume_mounts=[VolumeMountSpec(volume_name="ghost", mount_path="/g")]
        )
    with pytest.raises(ResourceNotFoundError):
        client.create_sandbox(template_name="no-such-template")
    client.delete_template("dup")
    client.delete_template("dup-2")


def test_template_with_a_missing_image(client, registry):
    client.create_template(name="ghost-image", image=f"{registry.host}/nope:1")
    try:
        with pytest.raises(ResourceCreationError, match="not found"):
            client.create_sandbox(template_name="ghost-image")
    finally:
        client.delete_template("ghost-image")


def test_readme_persistent_volumes(client, busybox):
    # Create a volume
    volume = client.create_volume(name="my-data", size="1Gi")
    assert (volume.name, volume.size) == ("my-data", "1Gi")

    # Create a template with the volume mounted
    client.create_template(
        name="stateful-sandbox",
        image=busybox,
        volume_mounts=[VolumeMountSpec(volume_name="my-data", mount_path="/data")],
    )

    # Data written to /data persists across sandbox sessions
    with client.sandbox(template_name="stateful-sandbox") as sb:
        sb.write("/data/state.txt", "persistent data")

    # Later, in a new sandbox...
    with client.sandbox(template_name="stateful-sandbox") as sb:
        content = sb.read("/data/state.txt")
        assert content.decode() == "persistent data"

    assert [v.name for v in client.list_volumes()] == ["my-data"]
    assert client.get_volume("my-data").id == volume.id
    with pytest.raises(ResourceInUseError):
        client.delete_volume("my-data")
    grown = client.update_volume("my-data", size="2Gi")
    assert grown.size == "2Gi"
    with pytest.raises(ValidationError):
        client.update_volume("my-data", size="1Gi")  # volumes never shrink
    client.delete_template("stateful-sandbox")
    client.delete_volume("my-data")
    with pytest.raises(ResourceNotFoundError):
        client.get_volume("my-data")


def test_volume_errors(client, http):
    client.create_volume(name="v1", size="1Gi")
    resp = http.post("/volumes", json={"name": "v1", "size": "1Gi"})
    assert resp.status_code == 409
    resp = http.post("/volumes", json={"name": "v2", "size": "lots"})
    assert resp.status_code == 422
    with pytest.raises(ResourceNotFoundError):
        client.delete_volume("nope")
    renamed = client.update_volume("v1", new_name="v1-renamed")
    assert renamed.name == "v1-renamed"
    client.delete_volume("v1-renamed")


def volume_df_kib(sb, path="/data") -> int:
    """Size in KiB of the file system mounted at `path` in a sandbox."""
    return int(sb.run(f"df -k {path}").stdout.splitlines()[-1].split()[1])


def test_volume_size_is_enforced_and_shared(client, busybox, workdir):
    volume = client.create_volume(name="small", size="32Mi")
    client.create_template(
        name="small-vol",
        image=busybox,
        volume_mounts=[VolumeMountSpec(volume_name="small", mount_path="/data")],
    )
    image = workdir / "data" / "volumes" / f"{volume.id}.img"
    try:
        with client.sandbox(template_name="small-vol") as a, client.sandbox(template_name="small-vol") as b:
            # Both sandboxes see one file system: a write in one is read in the other.
            a.write("/data/shared.txt", "from a")
            assert b.read("/data/shared.txt").decode() == "from a"
            assert 28 << 10 < volume_df_kib(a) <= 32 << 10

            result = b.run("dd if=/dev/zero of=/data/big bs=1M count=64")
            assert result.exit_code != 0 and "No space left on device" in result.stderr
            # The host holds at most the volume's size, whatever was written.
            assert image.stat().st_blocks * 512 <= 33 << 20
            assert a.run("rm /data/big && echo ok").stdout == "ok\n"

        # Growing the volume applies at the next mount; the files stay.
        client.update_volume("small", size="64Mi")
        with client.sandbox(template_name="small-vol") as sb:
            assert 60 << 10 < volume_df_kib(sb) <= 64 << 10
            assert sb.read("/data/shared.txt").decode() == "from a"
            assert sb.run("dd if=/dev/zero of=/data/big bs=1M count=40 && echo ok").stdout.endswith("ok\n")
    finally:
        client.delete_template("small-vol")
        client.delete_volume("small")
    assert not image.exists()
