"""gVisor as an isolation level (issue 15 part 2).

The module runs its own server with `--default-isolation gvisor`, so every
sandbox the unchanged SDK creates runs under runsc; one test creates both
levels explicitly through `POST /boxes` (`isolation`). Each user-facing
feature is exercised once under gVisor: exec (blocking, streaming, stdin,
PTY, kill, reconnect), files, a service URL and a tunnel to a server on the
sandbox's 127.0.0.1, egress policy, the memory limit, stop/start and a
snapshot capture. Skipped only when runsc is not installed
(scripts/install-deps installs it).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from conftest import checked_server
from helpers import curl as sandbox_curl
from helpers import sdk_client, wait_listening

pytestmark = pytest.mark.skipif(
    shutil.which("runsc") is None,
    reason="runsc (gVisor) is not installed: apt-get install runsc (scripts/install-deps does)",
)

HOSTS = ["api.example.test", "other.example.test"]
EGRESS_PORTS = "26443,26080,26053"


@pytest.fixture(scope="module")
def upstreams():
    from test_egress import https_recorder, self_signed

    work = Path(tempfile.mkdtemp(prefix="sp-gvisor-up-"))
    https = https_recorder(*self_signed(work, HOSTS))
    yield {"cert": (work / "cert.pem").read_text(), "https": https.server_address[1]}
    https.shutdown()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def srv(upstreams, registry):
    data_dir = Path(tempfile.mkdtemp(prefix="sp-gvisor-", dir="/tmp"))
    resolve = ["--insecure-registry", registry.host]
    for host in HOSTS:
        resolve += ["--egress-resolve", f"{host}=127.0.0.1:{upstreams['https']}"]
    with checked_server(
        data_dir,
        api_key="sp_gvisor_" + secrets.token_urlsafe(12),
        extra_args=["--default-isolation", "gvisor", "--egress-ports", EGRESS_PORTS, *resolve],
    ) as server:
        yield server
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def mclient(srv):
    with sdk_client(srv) as c:
        yield c


@pytest.fixture(scope="module")
def bb_snapshot(mclient, registry, workdir):
    from registry import build_image

    image = build_image(registry, workdir, "busybox:gv", files={"/etc/marker": "image\n"}, env={"PATH": "/bin"})
    return mclient.create_snapshot("gv-bb", docker_image=image, fs_capacity_bytes=1 << 30)


@pytest.fixture(scope="module")
def sb(mclient):
    with mclient.sandbox() as box:
        yield box


def sentry_pids() -> set[int]:
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"runsc-sandbox\0"):
                    found.add(int(pid))
            except OSError:
                pass
    return found


def test_the_sandbox_runs_on_gvisors_kernel(sb):
    # gVisor's Sentry reports its own kernel, not the host's.
    version = sb.run("cat /proc/version").stdout
    assert version != Path("/proc/version").read_text()
    assert "Linux version 4.4.0" in version, version
    assert sb.run("dmesg 2>/dev/null | head -3; true").exit_code == 0
    # The host sees the Sentry (runsc-sandbox), not the sandbox's processes.
    assert sentry_pids()
    seconds = f"{900 + secrets.randbelow(10_000)}.{secrets.randbelow(10**6)}"
    sb.run(f"nohup sleep {seconds} >/dev/null 2>&1 &")
    time.sleep(0.3)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert cmdline != f"sleep\0{seconds}\0".encode(), "a sandboxed process is a host process"
    sb.run("pkill sleep; true")


def test_isolation_field_on_create_and_in_the_response(srv, mclient):
    api = srv.api
    names = []
    try:
        for level in ("namespaces", "gvisor"):
            name = f"iso-{level}-{secrets.token_hex(3)}"
            names.append(name)
            r = httpx.post(f"{api}/boxes", headers=srv.headers(), json={"name": name, "isolation": level}, timeout=60)
            assert r.status_code in (200, 201), r.text
            assert r.json()["isolation"] == level
            got = httpx.get(f"{api}/boxes/{name}", headers=srv.headers()).json()
            assert got["isolation"] == level
            run = mclient.get_sandbox(name).run("cat /proc/version")
            on_gvisor = "Linux version 4.4.0" in run.stdout
            assert on_gvisor == (level == "gvisor"), run.stdout
        # The server default (gvisor here) applies without the field.
        name = f"iso-default-{secrets.token_hex(3)}"
        names.append(name)
        r = httpx.post(f"{api}/boxes", headers=srv.headers(), json={"name": name}, timeout=60)
        assert r.json()["isolation"] == "gvisor"
        bad = httpx.post(f"{api}/boxes", headers=srv.headers(), json={"isolation": "kata"})
        assert bad.status_code == 422 and "isolation" in bad.text and "kata" in bad.text, bad.text
        git = {"remote_url": "https://example.test/r.git"}
        mounts = {"mounts": [{"id": "repo", "type": "git", "mount_path": "/mnt/repo", "git": git}]}
        fuse = httpx.post(
            f"{api}/boxes",
            headers=srv.headers(),
            json={"isolation": "gvisor", "mount_config": mounts},
        )
        assert fuse.status_code == 422 and "mount_config" in fuse.text and "gvisor" in fuse.text, fuse.text
    finally:
        for name in names:
            httpx.delete(f"{api}/boxes/{name}", headers=srv.headers())


def test_exec_blocking_and_streaming(sb):
    result = sb.run("echo out; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    handle = sb.run("for i in 1 2 3; do echo line-$i; sleep 0.2; done", wait=False)
    chunks = [c.data for c in handle]
    assert "".join(chunks) == "line-1\nline-2\nline-3\n" and len(chunks) >= 2


def test_exec_stdin(sb):
    handle = sb.run("read a; echo got-$a", wait=False, close_input=False)
    handle.send_input("hello\n")
    assert handle.result.stdout == "got-hello\n"


def test_exec_pty(sb):
    pty = sb.run("tty; stty size", pty=True)
    assert pty.stdout.replace("\r\n", "\n").splitlines()[0].startswith("/dev/pts/")


def test_exec_kill_and_reconnect(sb, mclient):
    handle = sb.run("sleep 3600 & sleep 3600; echo never", timeout=7200, wait=False)
    time.sleep(0.3)
    handle.kill()
    assert sb.reconnect(handle.command_id).result.exit_code == 137
    assert sb.run("pgrep -c sleep").stdout.strip() == "0"
    handle = sb.run("for i in $(seq 1 5); do echo n$i; sleep 0.1; done", wait=False)
    other = mclient.get_sandbox(sb.name)
    assert other.reconnect(handle.command_id).result.stdout == "".join(f"n{i}\n" for i in range(1, 6))


def test_files_up_and_down(sb):
    blob = os.urandom(3 << 20)
    sb.write("/data/blob.bin", blob)
    assert sb.read("/data/blob.bin") == blob
    assert sb.run("sha256sum /data/blob.bin").stdout.split()[0] == __import__("hashlib").sha256(blob).hexdigest()


SERVER = "python3 -m http.server {port} --bind 127.0.0.1 --directory /srv"


def test_service_url_and_tunnel_reach_a_server_on_loopback(sb):
    sb.write("/srv/index.html", b"hello from gvisor\n")
    handle = sb.run(SERVER.format(port=8000), timeout=0, wait=False)
    try:
        wait_listening(sb, 8000)
        svc = sb.service(port=8000)
        assert svc.get("/").text == "hello from gvisor\n"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with sb.tunnel(remote_port=8000, local_port=port) as t:
            assert httpx.get(f"http://127.0.0.1:{t.local_port}/").text == "hello from gvisor\n"
    finally:
        handle.kill()


def test_egress_policy_holds(mclient, upstreams):
    sb = mclient.create_sandbox(
        name=f"gv-egress-{secrets.token_hex(3)}",
        proxy_config={"rules": [], "access_control": {"allow_list": ["api.example.test"]}},
    )
    try:
        sb.write("/tmp/ca.pem", upstreams["cert"])
        opts = "--noproxy '*' --cacert /tmp/ca.pem"
        rc, body = sandbox_curl(sb, f"{opts} https://api.example.test/ok")
        assert rc == 0 and body == "upstream saw api.example.test /ok\n", body
        rc, body = sandbox_curl(sb, f"{opts} https://other.example.test/")
        assert rc != 0, body
        # The host's own loopback is not the sandbox's.
        rc, _ = sandbox_curl(sb, f"http://127.0.0.1:{upstreams['https']}/", max_time=3)
        assert rc != 0
    finally:
        mclient.delete_sandbox(sb.name)


def test_memory_limit_holds(mclient, srv):
    from langsmith.sandbox import SandboxConnectionError

    limit = 256 << 20
    with mclient.sandbox(mem_bytes=limit) as box:
        cgroup = Path(f"/sys/fs/cgroup/memory/sandpit/{box.id}/memory.limit_in_bytes")
        assert int(cgroup.read_text()) == limit
        # gVisor sizes its kernel's memory from the cgroup.
        total_kib = int(box.run("grep MemTotal /proc/meminfo").stdout.split()[1])
        assert total_kib * 1024 <= limit
        hog = "python3 -c 'x = bytearray(1024 << 20); x[::4096] = b\"x\" * len(x[::4096]); print(len(x))'"
        try:
            result = box.run(hog, timeout=60)
            assert result.exit_code != 0 and "1073741824" not in result.stdout
        except SandboxConnectionError:
            # The host's OOM killer ended the whole sandbox (the Sentry is the
            # cgroup's one big process): the limit held, the host did not pay.
            pass
    assert httpx.get(f"{srv.endpoint}/healthz").status_code == 200


def test_stop_start_keeps_files_and_capture_sees_them(mclient, bb_snapshot):
    name = f"gv-keep-{secrets.token_hex(3)}"
    box = mclient.create_sandbox(snapshot_id=bb_snapshot.id, name=name)
    try:
        box.write("/work/kept.txt", b"survives a stop\n")
        box.run("echo written-by-a-command > /work/cmd.txt")
        before = sentry_pids()
        mclient.stop_sandbox(name)
        mclient.start_sandbox(name)
        box = mclient.get_sandbox(name)
        assert box.read("/work/kept.txt") == b"survives a stop\n"
        assert box.run("cat /work/cmd.txt").stdout == "written-by-a-command\n"
        assert "Linux version 4.4.0" in box.run("cat /proc/version").stdout
        assert sentry_pids() - before, "the restart runs a new Sentry"
        box.run("echo after-restart > /work/late.txt")
        snap = mclient.capture_snapshot(name, f"gv-snap-{secrets.token_hex(3)}", timeout=120)
        with mclient.sandbox(snapshot_id=snap.id) as restored:
            assert restored.read("/work/kept.txt") == b"survives a stop\n"
            assert restored.run("cat /work/late.txt /etc/marker").stdout == "after-restart\nimage\n"
    finally:
        mclient.delete_sandbox(name)
