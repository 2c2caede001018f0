"""User namespaces (issue 15, part 1): with `sandpit serve --userns on`
every sandbox's root is an unprivileged host id (>= --userns-base), files
show the right owners inside and mapped ids on the host, and root inside
still administers its sandbox.

The module runs its own server with `--userns on`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import checked_server

BASE = 100_000


@pytest.fixture(scope="module")
def srv():
    data_dir = Path(tempfile.mkdtemp(prefix="sp-userns-", dir="/tmp"))
    with checked_server(
        data_dir,
        api_key="sp_userns_" + secrets.token_urlsafe(12),
        extra_args=["--userns", "on", "--userns-base", str(BASE)],
    ) as server:
        yield server
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def sb(client):
    with client.sandbox() as box:
        yield box


def ids(pid: int, key: str) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(l for l in status.splitlines() if l.startswith(key))
    return [int(v) for v in line.split()[1:]]


def host_pid_of(command: bytes) -> int:
    """The host pid of the process whose command line is `command` (it may
    take a moment to exec after the shell that started it returned)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline == command:
                return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no process {command!r}")


def start_sleeper(sb) -> tuple[str, int]:
    seconds = f"{900 + secrets.randbelow(10_000)}.{secrets.randbelow(10**6)}"
    sb.run(f"nohup sleep {seconds} >/dev/null 2>&1 &")
    return seconds, host_pid_of(f"sleep\0{seconds}\0".encode())


def test_processes_run_as_unprivileged_host_ids(sb):
    assert sb.run("id -u; id -g").stdout == "0\n0\n"
    uid_map = sb.run("cat /proc/self/uid_map").stdout.split()
    assert int(uid_map[0]) == 0 and int(uid_map[1]) >= BASE and int(uid_map[2]) == 65536
    _, pid = start_sleeper(sb)
    for key in ("Uid:", "Gid:"):
        assert all(i >= BASE for i in ids(pid, key)), ids(pid, key)
    assert ids(pid, "Uid:")[0] == int(uid_map[1])


def test_files_belong_to_mapped_ids_on_the_host(sb):
    sb.run("echo made > /tmp/by-root && touch /tmp/by-user && chown 1234:1234 /tmp/by-user")
    sb.write("/home/user/uploaded.txt", "uploaded")
    inside = sb.run("stat -c %u /tmp/by-root /tmp/by-user /home/user/uploaded.txt /etc/passwd /usr/bin").stdout
    by_root, by_user, uploaded, passwd, usr = (int(x) for x in inside.split())
    assert (by_root, by_user, passwd, usr) == (0, 1234, 0, 0)
    assert uploaded in (0, 1000)  # the upload's owner inside, not nobody
    _, pid = start_sleeper(sb)
    base = ids(pid, "Uid:")[0]
    root = Path(f"/proc/{pid}/root")
    assert (root / "tmp/by-root").stat().st_uid == base
    assert (root / "tmp/by-user").stat().st_uid == base + 1234
    assert (root / "etc/passwd").stat().st_uid == base


def test_root_inside_administers_its_sandbox(sb):
    script = (
        "set -e; mkdir -p /opt/tool /var/lib/apt/lists/x /root/.cache/pip; "
        "echo x > /opt/tool/bin; echo 'app:x:2000:2000::/home/app:/bin/sh' >> /etc/passwd; "
        "mkdir -p /home/app && chown 2000:2000 /home/app && stat -c %u:%g /home/app"
    )
    result = sb.run(script)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "2000:2000\n"
    bind = "python3 -c 'import socket; s=socket.socket(); s.bind((\"0.0.0.0\", 80)); s.listen(); print(\"bound\")'"
    result = sb.run(bind)
    assert result.stdout == "bound\n", result.stderr
    # No nested user namespace, no mounting.
    assert sb.run("unshare -U true").exit_code != 0
    assert sb.run("unshare -Urm true").exit_code != 0
    assert sb.run("mount -t tmpfs x /mnt").exit_code != 0


def test_run_config_user_still_applies(client):
    with client.sandbox(run_config={"user": "4321:4322"}) as box:
        assert box.run("id -u; id -g").stdout == "4321\n4322\n"
        _, pid = start_sleeper(box)
        root_uid = int(box.run("cat /proc/self/uid_map").stdout.split()[1])
        assert ids(pid, "Uid:")[0] == root_uid + 4321
        assert ids(pid, "Gid:")[0] == root_uid + 4322


def test_live_sandboxes_get_disjoint_ranges(client):
    with client.sandbox() as a, client.sandbox() as b:
        first = [int(a.run("cat /proc/self/uid_map").stdout.split()[1]), int(b.run("cat /proc/self/uid_map").stdout.split()[1])]
        assert abs(first[0] - first[1]) >= 65536
        assert min(first) >= BASE
