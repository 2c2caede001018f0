"""OCI images and snapshots (langsmith==0.15.0): sandboxes boot from images
pulled from a registry on loopback, snapshots are addressed by id and
`name:tag`, and pull failures are reported clearly.

The module runs its own `sandpit serve` with `--insecure-registry` for the
fixture registry it starts.
"""

from __future__ import annotations

import subprocess
import secrets
import threading
from pathlib import Path

import httpx
import pytest
from langsmith.sandbox import SandboxClient
from langsmith.sandbox._exceptions import (
    ResourceCreationError,
    ResourceNotFoundError,
    SandboxClientError,
)

from conftest import checked_server
from registry import build_image, corrupt_layers, start_registry

GiB = 1 << 30


@pytest.fixture(scope="module")
def busybox(registry, workdir):
    return build_image(
        registry,
        workdir,
        "busybox:1",
        files={"/etc/marker": "from-the-image\n", "/srv/app/hello.txt": "hi\n"},
        env={"GREETING": "hello-from-config", "PATH": "/bin"},
        working_dir="/srv/app",
    )


@pytest.fixture(scope="module")
def srv(registry_server):
    return registry_server


@pytest.fixture(scope="module")
def bb_snapshot(srv, busybox):
    with SandboxClient(api_endpoint=f"{srv.endpoint}/api/v2/sandboxes", api_key=srv.api_key) as c:
        return c.create_snapshot("bb", docker_image=busybox, fs_capacity_bytes=GiB)


def test_snapshot_from_a_registry_image(bb_snapshot, busybox):
    snap = bb_snapshot
    assert snap.status == "ready"
    assert snap.docker_image == busybox
    assert snap.image_digest.startswith("sha256:")
    # No tag given: `latest` (a bare name finds it) and the image's own.
    assert snap.tags == ["1", "latest"]
    assert snap.fs_capacity_bytes == GiB
    assert snap.fs_used_bytes > 500_000  # busybox itself
    assert snap.run_config.work_dir == "/srv/app"
    assert snap.run_config.env_vars["GREETING"] == "hello-from-config"


def test_sandbox_boots_the_image_with_its_config(client, bb_snapshot):
    with client.sandbox(snapshot_id=bb_snapshot.id) as sb:
        assert sb.run("cat /etc/marker").stdout == "from-the-image\n"
        assert sb.run("pwd").stdout == "/srv/app\n"
        assert sb.run("echo $GREETING").stdout == "hello-from-config\n"
        assert sb.run("cat hello.txt").stdout == "hi\n"
        # The host's files are not there: only the image's.
        assert sb.run("test -e /usr/bin/python3").exit_code != 0
        sb.write("/srv/app/new.txt", "written")
        assert sb.read("/srv/app/new.txt") == b"written"
    # Writes stay in that sandbox's upper layer; the image is untouched.
    with client.sandbox(snapshot="bb:1", run_config={"env_vars": {"GREETING": "override"}}) as sb:
        assert sb.run("test -e /srv/app/new.txt").exit_code != 0
        assert sb.run("echo $GREETING").stdout == "override\n"


@pytest.fixture(scope="module")
def app_image(registry, workdir):
    """An image whose config sets every field Sandpit reads: Env,
    WorkingDir, User (by name) and Entrypoint/Cmd."""
    return build_image(
        registry,
        workdir,
        "app:1",
        files={"/home/app/.keep": ""},
        env={"APP_MODE": "config-env", "PATH": "/bin"},
        working_dir="/home/app",
        user="app",
        entrypoint=["/bin/sh", "-c", "touch /entrypoint-ran; sleep 1000"],
    )


def test_image_config_env_workdir_user_and_entrypoint(client, app_image):
    snap = client.create_snapshot("app", docker_image=app_image, fs_capacity_bytes=GiB)
    assert snap.run_config.user == "app"
    try:
        with client.sandbox(snapshot="app") as sb:
            # Env and WorkingDir apply to every command.
            assert sb.run("echo $APP_MODE").stdout == "config-env\n"
            assert sb.run("pwd").stdout == "/home/app\n"
            # User: resolved through the image's /etc/passwd and /etc/group
            # (primary group 1001, supplementary group staff 1002), with
            # the account's HOME and USER.
            assert sb.run("id -u; id -g").stdout == "1000\n1001\n"
            assert "1002" in sb.run("id -G").stdout.split()
            assert sb.run("echo $HOME $USER").stdout == "/home/app app\n"
            assert sb.run("touch /etc/nope").exit_code != 0  # not root
            # Entrypoint and Cmd are not run: PID 1 is Sandpit's agent.
            assert "sandpit" in sb.run("cat /proc/1/cmdline | tr '\\0' ' '").stdout
            assert sb.run("test -e /entrypoint-ran").exit_code != 0
        # A sandbox's run_config.user overrides the image's, numeric works.
        with client.sandbox(snapshot="app", run_config={"user": "4321:4322"}) as sb:
            assert sb.run("id -u; id -g").stdout == "4321\n4322\n"
        with client.sandbox(snapshot="app", run_config={"user": "root"}) as sb:
            assert sb.run("id -u").stdout == "0\n"
    finally:
        client.delete_snapshot(snap.id)


def test_readme_start_stop_keeps_files(client, bb_snapshot):
    sb = client.create_sandbox(snapshot_id=bb_snapshot.id, name="my-vm")
    try:
        sb.run("echo 'hello' > /tmp/state.txt")
        sb.run("echo kept > /srv/app/kept.txt")
        sb.run("sleep 1000 &")
        sb.stop()
        stopped = client.get_sandbox("my-vm")
        assert stopped.status == "stopped" and stopped.stopped_at
        sb.start()
        result = sb.run("cat /tmp/state.txt")
        assert result.stdout.strip() == "hello"
        assert sb.run("cat /srv/app/kept.txt").stdout == "kept\n"
        # Stop ended every process.
        assert "sleep 1000" not in sb.run("ps").stdout
        client.stop_sandbox("my-vm")
        sandbox = client.start_sandbox("my-vm")
        assert sandbox.status == "ready"
        assert client.get_sandbox("my-vm").stopped_at is None
    finally:
        client.delete_sandbox("my-vm")


def test_names_tags_and_listing(client, registry, workdir, bb_snapshot):
    image = build_image(registry, workdir, "tagged:latest", files={"/v": "1\n"})
    first = client.create_snapshot("my-env", docker_image=image, fs_capacity_bytes=GiB)
    assert first.tags == ["latest"]
    second = client.create_snapshot("my-env", docker_image=image, fs_capacity_bytes=GiB, tag="v2")
    assert second.tags == ["v2"]
    assert client.get_snapshot("my-env").id == first.id
    assert client.get_snapshot("my-env:v2").id == second.id
    assert client.get_snapshot(second.id).name == "my-env"
    tags = {t.tag: t.snapshot_id for t in client.list_snapshot_tags("my-env")}
    assert tags == {"latest": first.id, "v2": second.id}
    # Re-publishing a tag moves it; the old snapshot stays addressable by id.
    third = client.create_snapshot("my-env", docker_image=image, fs_capacity_bytes=GiB, tag="v2")
    assert client.get_snapshot("my-env:v2").id == third.id
    assert client.get_snapshot(second.id).tags == []
    with client.sandbox(snapshot="my-env:v2") as box:
        assert box.run("cat /v").stdout == "1\n"

    names = [s.name for s in client.list_snapshots(name_contains="MY-E")]
    assert names == ["my-env"] * 3
    page = client.list_snapshots(name_contains="my-env", limit=1, offset=1)
    assert [s.id for s in page] == [second.id]
    assert len(client.list_snapshots(limit=500)) >= 4
    for bad in (0, 501):
        with pytest.raises(SandboxClientError):
            client.list_snapshots(limit=bad)
    with pytest.raises(SandboxClientError):
        client.list_snapshots(offset=-1)

    client.delete_snapshot(third.id)
    with pytest.raises(ResourceNotFoundError):
        client.get_snapshot(third.id)
    with pytest.raises(ResourceNotFoundError):
        client.delete_snapshot(third.id)
    with pytest.raises(ResourceNotFoundError):
        client.list_snapshot_tags("never-published")
    with pytest.raises(ResourceNotFoundError):
        client.create_sandbox(snapshot="no-such-snapshot")


def test_missing_image(client, registry):
    with pytest.raises(ResourceCreationError, match="not found"):
        client.create_snapshot("missing", docker_image=f"{registry.host}/nope:1", fs_capacity_bytes=GiB)
    failed = client.list_snapshots(name_contains="missing")[0]
    assert failed.status == "failed"
    with pytest.raises(SandboxClientError, match="failed to build"):
        client.create_sandbox(snapshot_id=failed.id)


def test_unreachable_registry(client):
    with pytest.raises(ResourceCreationError, match="unreachable"):
        client.create_snapshot("nowhere", docker_image="127.0.0.1:1/busybox:1", fs_capacity_bytes=GiB)


def test_bad_digest(client, registry, workdir):
    image = build_image(registry, workdir, "corrupt:1", files={"/c": "corrupt-me\n"})
    corrupt_layers(registry, "corrupt", "1")
    with pytest.raises(ResourceCreationError, match="digest"):
        client.create_snapshot("corrupt", docker_image=image, fs_capacity_bytes=GiB)


def test_zstd_layers(client, registry, workdir):
    image = build_image(registry, workdir, "zstd:1", files={"/z": "zstd\n"}, compress="zstd")
    layers = registry.manifest("zstd", "1")["layers"]
    assert all(layer["mediaType"].endswith("+zstd") for layer in layers)
    snap = client.create_snapshot("zst", docker_image=image, fs_capacity_bytes=GiB)
    with client.sandbox(snapshot_id=snap.id) as sb:
        assert sb.run("cat /z").stdout == "zstd\n"


def test_concurrent_pulls_of_one_image_happen_once(client, srv, registry, workdir):
    image = build_image(registry, workdir, "shared:1", files={"/s": "shared\n"})
    results, errors = [], []

    def build(i):
        try:
            results.append(client.create_snapshot(f"shared-{i}", docker_image=image, fs_capacity_bytes=GiB))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert len({s.image_digest for s in results}) == 1
    pulls = [line for line in srv.log if "pulling image" in line and "shared:1" in line]
    assert len(pulls) == 1, pulls


def test_layers_are_shared_between_sandboxes(client, srv, bb_snapshot):
    layers = srv.data_dir / "oci" / "layers"
    before = sorted(p.name for p in layers.iterdir())
    with client.sandbox(snapshot_id=bb_snapshot.id) as a, client.sandbox(snapshot_id=bb_snapshot.id) as b:
        a.run("echo a > /mine")
        assert b.run("test -e /mine").exit_code != 0
    assert sorted(p.name for p in layers.iterdir()) == before


def test_snapshot_validation(srv):
    api = f"{srv.endpoint}/api/v2/sandboxes/snapshots"
    headers = {"X-Api-Key": srv.api_key}
    for body in (
        {"docker_image": "x"},
        {"name": "bad name", "docker_image": "x", "fs_capacity_bytes": GiB},
        {"name": "ok", "docker_image": "x", "fs_capacity_bytes": 10},
        {"name": "ok", "docker_image": "", "fs_capacity_bytes": GiB},
    ):
        resp = httpx.post(api, json=body, headers=headers)
        assert resp.status_code == 422, (body, resp.text)
        assert "detail" in resp.json()
    assert httpx.get(api, headers={"X-Api-Key": "nope"}).status_code == 401


def test_readme_capture_a_running_sandbox(client, bb_snapshot):
    sb = client.create_sandbox(snapshot_id=bb_snapshot.id, name="setup-box")
    sb.run("mkdir -p /opt && echo installed > /opt/pkg")
    sb.write("/opt/config.yaml", "model: gpt-5\n")
    sb.run("echo scratch > /tmp/scratch && rm /etc/marker")

    # Either form works; the instance method just forwards to the client.
    snapshot = sb.capture_snapshot("ml-ready", timeout=300)
    assert snapshot.source_sandbox_id == sb.id
    assert snapshot.tags == ["latest"]
    v2 = client.capture_snapshot(sb.name, "ml-ready", tag="v2")
    assert "v2" in v2.tags
    sb.delete()

    with client.sandbox(snapshot_id=snapshot.id) as box:
        assert box.read("/opt/config.yaml") == b"model: gpt-5\n"
        assert box.run("cat /opt/pkg").stdout == "installed\n"
        assert box.run("test -e /tmp/scratch").exit_code != 0  # /tmp is not carried
        assert box.run("test -e /etc/marker").exit_code != 0  # deletions are
        assert box.run("pwd").stdout == "/srv/app\n"  # and so is the image config
    with client.sandbox(snapshot="ml-ready:v2") as box:
        assert box.run("cat /opt/pkg").stdout == "installed\n"


EXPLOITS = Path(__file__).parent / "exploits"


def build_exploit(workdir: Path, name: str) -> bytes:
    """A static attacker binary from tests/e2e/exploits/NAME.c."""
    out = workdir / name
    if not out.exists():
        subprocess.run(
            ["gcc", "-static", "-O2", "-o", str(out), str(EXPLOITS / f"{name}.c")],
            check=True,
        )
    return out.read_bytes()


def test_capture_never_follows_a_link_the_sandbox_swaps_in(client, srv, workdir, bb_snapshot):
    """Issue 14 C1. Code in the sandbox swaps a directory it made for a
    symlink to the server's data dir (renameat2 RENAME_EXCHANGE) the moment
    the host starts reading a large file in it. `cp -a` (9c6e033) then copied
    DATA/secrets.key into the snapshot; the capture must copy only what the
    sandbox wrote."""
    host_secret = (srv.data_dir / "secrets.key").read_bytes()
    sb = client.create_sandbox(snapshot_id=bb_snapshot.id, name="c1-attacker")
    try:
        sb.write("/x/swap", build_exploit(workdir, "swap_on_read"))
        setup = sb.run(
            "set -e; chmod 755 /x/swap; mkdir -p /x/d; cd /x/d;"
            "dd if=/dev/urandom of=big bs=1M count=64 2>/dev/null;"
            # the decoy must come after `big` in inode order (cp's order)
            "b=$(stat -c %i big); for i in $(seq 1 200); do echo decoy > c$i;"
            " if [ $(stat -c %i c$i) -gt $b ]; then mv c$i secrets.key; break; fi; done;"
            "rm -f c*; test -f secrets.key;"
            f"ln -s {srv.data_dir} /x/l;"
            "setsid /x/swap /x/d/big /x/d /x/l /x/log 120 </dev/null >/dev/null 2>&1 &"
            "sleep 0.5; cat /x/log"
        )
        assert setup.exit_code == 0, setup.stderr
        assert setup.stdout == "waiting\n"

        snapshot = sb.capture_snapshot("c1-capture", timeout=300)
        assert snapshot.status == "ready"
        assert sb.run("echo thawed").stdout == "thawed\n"  # frozen only for the copy

        copies = [
            p for p in (srv.data_dir / "oci" / "layers").rglob("secrets.key") if not p.is_symlink()
        ]
        assert copies, "the capture did not copy /x/d/secrets.key at all"
        for copy in copies:
            assert copy.read_bytes() != host_secret, f"host secret copied into {copy}"
        assert any(c.read_bytes() == b"decoy\n" for c in copies)
        with client.sandbox(snapshot_id=snapshot.id) as box:
            assert box.run("cat /x/d/secrets.key").stdout == "decoy\n"
            assert box.run("readlink /x/l").stdout == f"{srv.data_dir}\n"  # kept as a link
    finally:
        client.delete_sandbox("c1-attacker")


def test_capture_errors(client):
    with pytest.raises(ResourceNotFoundError):
        client.capture_snapshot("no-such-sandbox", "x")
    # A host-image sandbox can be captured: test_snapshot_semantics.py.


def test_other_tenants_see_nothing(srv, client, bb_snapshot):
    admin = httpx.Client(base_url=f"{srv.endpoint}/api/v1/admin", headers=srv.headers())
    assert admin.post("/tenants", json={"name": "img-other"}).status_code in (200, 201)
    key = admin.post("/keys", json={"tenant": "img-other"}).json()["key"]
    other = SandboxClient(api_endpoint=f"{srv.endpoint}/api/v2/sandboxes", api_key=key)
    with pytest.raises(ResourceNotFoundError):
        other.get_snapshot(bb_snapshot.id)
    with pytest.raises(ResourceNotFoundError):
        other.get_snapshot("bb:1")
    with pytest.raises(ResourceNotFoundError):
        other.delete_snapshot(bb_snapshot.id)
    with pytest.raises(ResourceNotFoundError):
        other.list_snapshot_tags("bb")
    with pytest.raises(ResourceNotFoundError):
        other.create_sandbox(snapshot_id=bb_snapshot.id)
    assert other.list_snapshots() == []
    assert client.get_snapshot(bb_snapshot.id).status == "ready"


def test_fs_capacity_is_enforced(client, srv, busybox, bb_snapshot):
    # A sandbox gets its snapshot's capacity and cannot ask for less.
    small = client.create_snapshot("bb-small", docker_image=busybox, fs_capacity_bytes=32 << 20)
    sb = client.create_sandbox(snapshot_id=small.id, name="small-disk")
    try:
        result = sb.run("dd if=/dev/zero of=/big bs=1M count=64")
        assert result.exit_code != 0
        assert "No space left on device" in result.stderr
        image = srv.data_dir / "sandboxes" / sb.id / "disk.img"
        assert image.stat().st_size == 32 << 20  # the host holds at most this
        assert image.stat().st_blocks * 512 <= 33 << 20
        sb.run("rm /big")
        assert sb.run("echo ok > /after").exit_code == 0
        sb.stop()
        sb.start()
        assert sb.run("cat /after").stdout == "ok\n"
        snap = sb.capture_snapshot("small-disk-capture")
        with client.sandbox(snapshot_id=snap.id) as box:
            assert box.run("cat /after").stdout == "ok\n"
    finally:
        client.delete_sandbox("small-disk")
    with pytest.raises(SandboxClientError):
        client.create_sandbox(snapshot_id=bb_snapshot.id, fs_capacity_bytes=1000)


def test_registry_credentials(workdir):
    """A registry that demands credentials (htpasswd): a pull without them
    fails with a clear message; with --registry-auth it works."""
    creds = ("puller", "s3cret-" + secrets.token_hex(4))
    reg = start_registry(workdir, credentials=creds)
    try:
        image = build_image(reg, workdir, "private:1", credentials=creds)
        common = ["--insecure-registry", reg.host]
        with checked_server(workdir / "data-noauth", api_key="sp_na_" + secrets.token_urlsafe(8), extra_args=common) as s:
            with SandboxClient(api_endpoint=f"{s.endpoint}/api/v2/sandboxes", api_key=s.api_key) as c:
                with pytest.raises(ResourceCreationError, match="registry refused access"):
                    c.create_snapshot("private", docker_image=image, fs_capacity_bytes=GiB)
        auth = common + ["--registry-auth", f"{reg.host}={creds[0]}:{creds[1]}"]
        with checked_server(workdir / "data-auth", api_key="sp_a_" + secrets.token_urlsafe(8), extra_args=auth) as s:
            with SandboxClient(api_endpoint=f"{s.endpoint}/api/v2/sandboxes", api_key=s.api_key) as c:
                snap = c.create_snapshot("private", docker_image=image, fs_capacity_bytes=GiB)
                assert snap.status == "ready"
                with c.sandbox(snapshot_id=snap.id) as sb:
                    assert sb.run("busybox true && echo ok").stdout == "ok\n"
                c.delete_snapshot(snap.id)
    finally:
        reg.stop()
