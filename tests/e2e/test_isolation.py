"""Escape attempts: a sandbox must not see or touch the host, other
sandboxes, or the server, and its limits must hold."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest


@pytest.fixture
def sb(client):
    with client.sandbox() as box:
        yield box


def test_only_the_sandboxes_processes_are_visible(sb):
    result = sb.run("ps -e -o pid=,comm=")
    assert result.exit_code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    pids = {int(r[0]) for r in rows}
    assert 1 in pids
    assert len(rows) < 10, result.stdout  # agent, the shell, ps
    assert "sandpit" in sb.run("cat /proc/1/cmdline | tr '\\0' ' '").stdout
    host_pid = os.getpid()
    assert sb.run(f"test -e /proc/{host_pid}/cmdline && cat /proc/{host_pid}/cmdline").stdout == "" or host_pid < 10


def test_host_files_outside_the_image_are_invisible(sb, server):
    token = secrets.token_hex(8)
    markers = [Path(f"/tmp/sandpit-marker-{token}"), Path(f"/root/sandpit-marker-{token}"),
               server.data_dir / f"marker-{token}"]
    for marker in markers:
        marker.write_text("secret")
    try:
        for marker in markers:
            assert sb.run(f"test -e {marker}").exit_code == 1, marker
        assert sb.run(f"ls {server.data_dir}").exit_code != 0
        assert sb.run("ls /work").exit_code != 0
        hits = sb.run(f"grep -rs {token} /etc /home /root /tmp /var /opt 2>/dev/null | head -1").stdout
        assert hits == ""
    finally:
        for marker in markers:
            marker.unlink()


def test_usr_is_read_only(sb):
    result = sb.run("touch /usr/bin/evil")
    assert result.exit_code != 0
    assert "Read-only file system" in result.stderr
    assert not Path("/usr/bin/evil").exists()
    assert sb.run("touch /home/user/fine && echo ok").stdout == "ok\n"


def test_capabilities_are_dropped(sb):
    assert sb.run("mount -t tmpfs none /mnt").exit_code != 0
    status = sb.run("grep CapEff /proc/self/status").stdout.split()[1]
    assert int(status, 16) & (1 << 21) == 0  # CAP_SYS_ADMIN
    assert "NoNewPrivs:\t1" in sb.run("cat /proc/self/status").stdout


def test_memory_limit_kills_the_hog_not_the_host(client, server):
    with client.sandbox(mem_bytes=128 << 20) as sb:
        result = sb.run("python3 -c 'x = bytearray(512 << 20); print(len(x))'", timeout=60)
        assert result.exit_code != 0
        assert "536870912" not in result.stdout
        # The sandbox (its agent) and the server survive.
        assert sb.run("echo alive").stdout == "alive\n"
    assert httpx.get(f"{server.endpoint}/healthz").status_code == 200


def test_fork_bomb_stops_at_the_pids_limit(sb):
    result = sb.run(
        "for i in $(seq 3000); do sleep 30 & done 2>&1 | grep -m1 -o 'Resource temporarily unavailable'; "
        "pkill sleep; true",
        timeout=60,
    )
    assert "Resource temporarily unavailable" in result.stdout + result.stderr
    assert sb.run("echo alive").stdout == "alive\n"


def test_other_sandboxes_are_invisible(client):
    with client.sandbox() as a, client.sandbox() as b:
        a.run("echo secret > /tmp/mine")
        server = a.run("python3 -m http.server 8000 --bind 0.0.0.0", timeout=0, wait=False)
        try:
            assert b.run("test -e /tmp/mine").exit_code == 1
            assert "http.server" not in b.run("ps -e -o args=").stdout
            a_ip = a.run(
                "python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                f"s.connect(('{_gateway(a)}', 9)); print(s.getsockname()[0])\""
            ).stdout.strip()
            assert a_ip and a_ip != _gateway(b)
            # The server is up (inside a) before b tries: retry while it starts.
            for _ in range(50):
                if a.run(_connect_script("127.0.0.1", 8000)).stdout.startswith("connected"):
                    break
                time.sleep(0.1)
            assert a.run(_connect_script("127.0.0.1", 8000)).stdout.startswith("connected")
            out = b.run(_connect_script(a_ip, 8000), timeout=30).stdout
            assert out.startswith("refused"), out
        finally:
            server.kill()


def _gateway(sb) -> str:
    """The host end of the sandbox's veth (its default gateway)."""
    for line in sb.run("cat /proc/net/route").stdout.splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            raw = bytes.fromhex(fields[2])[::-1]
            return socket.inet_ntoa(raw)
    raise AssertionError("no default route in the sandbox")


def _connect_script(host: str, port: int) -> str:
    return (
        "python3 -c \"import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        f"try:\n    s.connect(('{host}', {port})); print('connected')\n"
        "except Exception as e: print('refused', type(e).__name__)\""
    )


def test_sandbox_cannot_reach_host_ports_or_the_server(sb, server):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        gateway = _gateway(sb)
        server_port = int(server.endpoint.rsplit(":", 1)[1])
        for host, p in [(gateway, port), (gateway, server_port), ("127.0.0.1", server_port),
                        ("127.0.0.1", port), ("169.254.169.254", 8080)]:
            out = sb.run(_connect_script(host, p), timeout=30).stdout
            assert out.startswith("refused"), (host, p, out)
        # Port 80 goes to the egress proxy, which refuses reserved addresses
        # (cloud metadata, the host itself) with a 403 that says so.
        for host in ("169.254.169.254", gateway):
            out = sb.run(f"curl -s -m 5 -w ' %{{http_code}}' http://{host}/latest/meta-data/", timeout=30).stdout
            assert out.endswith(" 403") and "private or reserved" in out, (host, out)
        assert accepted == []
    finally:
        listener.close()


def test_ipv6_is_off(sb):
    assert sb.run("cat /proc/sys/net/ipv6/conf/all/disable_ipv6").stdout.strip() == "1"
    assert sb.run("cat /proc/net/if_inet6 2>/dev/null").stdout.strip() == ""
