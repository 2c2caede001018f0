"""Issue 14, sandbox runtime findings: socket families (H2), seccomp (L1),
host-wide limits (M3), `/etc` files past the disk capacity (M4), the data
dir in the mount table, CAP_AUDIT_WRITE (L3)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

MiB = 1 << 20


@pytest.fixture
def sb(client):
    with client.sandbox() as box:
        yield box


def py(sb, code: str) -> str:
    result = sb.run(f"python3 -c '{code}'")
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


SOCKET_ERRNO = (
    "import socket, sys\n"
    "try:\n"
    "  socket.socket(getattr(socket, sys.argv[1]), socket.SOCK_STREAM).close(); print(\"ok\")\n"
    "except OSError as e: print(e.errno)"
)


def socket_errno(sb, family: str) -> str:
    result = sb.run(f"python3 -c '{SOCKET_ERRNO}' {family}")
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def test_vsock_and_unneeded_socket_families_are_refused(sb):
    # EAFNOSUPPORT (97): as if the kernel had no such family.
    for family in ["AF_VSOCK", "AF_ALG", "AF_PACKET"]:
        assert socket_errno(sb, family) == "97", family
    bind = "import socket; s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM); s.bind((socket.VMADDR_CID_ANY, 5555))"
    result = sb.run(f"python3 -c '{bind}'")
    assert result.exit_code != 0 and "Address family not supported" in result.stderr, result
    for family in ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]:
        assert socket_errno(sb, family) == "ok" or family == "AF_NETLINK", family


def test_everyday_tools_still_work(sb):
    assert py(sb, "import socket, ssl, threading, subprocess; print(2 + 2)") == "4"
    checks = {
        "curl --version": "curl",
        "git --version": "git version",
        "ssh -V 2>&1": "OpenSSH",
        "pip --version": "pip",
        "node -e 'console.log(6 * 7)'": "42",
        "ip -o addr show lo": "127.0.0.1",
        "getent hosts localhost": "127.0.0.1",
        "cd /tmp && git init -q repo && cd repo && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m x && git log --oneline | wc -l": "1",
    }
    for cmd, expected in checks.items():
        tool = cmd.split()[0]
        if tool in ("ssh", "node", "curl", "git", "pip") and sb.run(f"command -v {tool}").exit_code != 0:
            continue  # not in this host image
        result = sb.run(cmd)
        assert result.exit_code == 0 and expected in result.stdout, (cmd, result.stdout, result.stderr)


def test_seccomp_matches_docker_for_personality_and_kernel_state(sb):
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(*a):\n"
        "  r = libc.syscall(*a)\n"
        "  return -ctypes.get_errno() if r == -1 else r\n"
        "print(call(135, 0xffffffff) >= 0, call(135, 0x0040000), call(103, 10, 0, 0), call(312, 0, 0, 0, 0, 0),"
        " call(239, 0, 0, 0, 0, 0), call(458, 0, 0, 0, 0), call(457, 0, 0, 0, 0))"
    )
    # personality query ok; ADDR_NO_RANDOMIZE, syslog, kcmp, get_mempolicy:
    # EPERM; listmount, statmount: ENOSYS.
    assert py(sb, code) == "True -1 -1 -1 -1 -38 -38"
    assert "Operation not permitted" in sb.run("dmesg 2>&1 | head -1").stdout + sb.run("dmesg 2>&1").stderr


def test_no_audit_write_capability(sb):
    status = sb.run("grep CapBnd /proc/self/status").stdout.split()[1]
    assert int(status, 16) & (1 << 29) == 0, status


def test_open_files_are_limited(sb):
    soft, hard = sb.run("ulimit -n; ulimit -Hn").stdout.split()
    assert soft == hard and int(hard) <= 65536, (soft, hard)
    assert sb.run(f"ulimit -Hn {int(hard) + 1}").exit_code != 0


@pytest.mark.parametrize(
    "field, value",
    # The defaults: this host's memory and CPUs, 1 TiB of disk.
    [("mem_bytes", 1 << 62), ("vcpus", (os.cpu_count() or 1) + 1), ("fs_capacity_bytes", (1 << 40) + 1)],
)
def test_resources_beyond_the_server_maxima_are_422(http, field, value):
    before = http.get("/boxes").json()["sandboxes"]
    resp = http.post("/boxes", json={field: value})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail["error"] == "ValidationError"
    assert re.match(rf"{field} must be (at most|between) ", detail["message"]), detail
    assert http.get("/boxes").json()["sandboxes"] == before


def test_etc_files_cannot_exceed_the_disk_capacity(client, server):
    with client.sandbox(fs_capacity_bytes=64 * MiB) as sb:
        for path in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]:
            result = sb.run(f"dd if=/dev/zero of={path} bs=1M count=16 2>&1")
            assert result.exit_code != 0, (path, result.stdout)
            assert int(sb.run(f"stat -c %s {path}").stdout) <= MiB, path
        sb.run(": > /etc/hostname; : > /etc/resolv.conf")
        assert sb.run("echo '10.1.2.3 extra' >> /etc/hosts && grep -c extra /etc/hosts").stdout.strip() == "1"
    # Nothing landed on the host disk under the data dir.
    big = [p for p in server.data_dir.rglob("*") if p.is_file() and p.stat().st_size > 8 * MiB and p.suffix != ".img"]
    assert not [p for p in big if p.parent.name == "etc"], big


def test_the_mount_table_does_not_name_the_data_dir(client, server):
    data_dir = Path(server.data_dir).resolve()
    hidden = [p for p in [data_dir, *data_dir.parents] if p != Path("/")]
    with client.sandbox(fs_capacity_bytes=64 * MiB) as sb:
        table = sb.run("cat /proc/self/mountinfo /proc/mounts /proc/1/mountinfo").stdout
    assert " /etc/hosts " in table and " /.sandpit/sandpit " in table, table
    words = set(re.split(r"[\s,=:]+", table))
    for path in map(str, hidden):
        named = [w for w in words if w == path or w.startswith(path + "/")]
        assert not named, (path, named, table)
