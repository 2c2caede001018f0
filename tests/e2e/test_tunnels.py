"""TCP tunnels through the SDK's unchanged `sb.tunnel()`: yamux over a
WebSocket to ports inside the sandbox (loopback-only ones included), with an
HTTP server, a non-HTTP echo server, many concurrent connections, large
transfers with checksums, and the protocol's refusals."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading

import httpx
import pytest

# `free_port`: `local_port=0` mirrors the remote port in the SDK, and a closed
# tunnel's listener lingers until its accept thread wakes, so every tunnel
# here gets its own port.
from helpers import wait_listening
from registry import free_port

ECHO = r'''
import socket, sys, threading
def serve(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(256)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

# Sends the file named on the command line to every client, then closes.
BLOB = r'''
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
while True:
    c, _ = s.accept()
    try:
        with c, open(sys.argv[2], "rb") as f:
            c.sendfile(f)
    except OSError:
        pass  # the client left early (a readiness probe)
'''

BLOB_BYTES = 64 << 20


@pytest.fixture(scope="module")
def tsb(server):
    from langsmith.sandbox import SandboxClient

    with SandboxClient() as client, client.sandbox() as sb:
        sb.write("/app/echo.py", ECHO)
        sb.write("/app/blob.py", BLOB)
        sb.run(f"head -c {BLOB_BYTES} /dev/urandom > /tmp/blob", timeout=60)
        handles = [
            sb.run("python3 -m http.server 8000 --bind 127.0.0.1", timeout=0, wait=False, cwd="/app"),
            sb.run("python3 /app/echo.py 9000", timeout=0, wait=False),
            sb.run("python3 /app/blob.py 9001 /tmp/blob", timeout=0, wait=False),
        ]
        for port in (8000, 9000, 9001):
            wait_listening(sb, port)
        yield sb
        for handle in handles:
            handle.kill()


def _echo_once(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_http_server_through_a_tunnel(tsb):
    with tsb.tunnel(remote_port=8000, local_port=free_port()) as t:
        resp = httpx.get(f"http://127.0.0.1:{t.local_port}/")
        assert resp.status_code == 200
        assert "echo.py" in resp.text


def test_echo_server_with_many_concurrent_connections(tsb):
    with tsb.tunnel(remote_port=9000, local_port=free_port()) as t:
        errors: list[str] = []

        def worker(i: int) -> None:
            try:
                with socket.create_connection(("127.0.0.1", t.local_port), timeout=30) as conn:
                    for j in range(10):
                        msg = f"conn {i} message {j}\n".encode()
                        conn.sendall(msg)
                        got = b""
                        while len(got) < len(msg):
                            chunk = conn.recv(4096)
                            assert chunk, "closed early"
                            got += chunk
                        assert got == msg
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{i}: {exc!r}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors[:5]


def test_large_transfers_keep_their_checksums(tsb):
    with tsb.tunnel(remote_port=9000, local_port=free_port()) as t:
        payload = os.urandom(8 << 20)
        assert hashlib.sha256(_echo_once(t.local_port, payload)).digest() == hashlib.sha256(payload).digest()
    expected = tsb.run("sha256sum /tmp/blob", timeout=60).stdout.split()[0]
    with tsb.tunnel(remote_port=9001, local_port=free_port()) as t:
        digest = hashlib.sha256()
        total = 0
        with socket.create_connection(("127.0.0.1", t.local_port), timeout=60) as conn:
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
                total += len(chunk)
        assert total == BLOB_BYTES
        assert digest.hexdigest() == expected


def test_nothing_listening_closes_the_local_connection(tsb):
    with tsb.tunnel(remote_port=9999, local_port=free_port()) as t:
        with socket.create_connection(("127.0.0.1", t.local_port), timeout=10) as conn:
            conn.sendall(b"hello")
            try:
                assert conn.recv(10) == b""
            except ConnectionResetError:
                pass


def _raw_session(sb, api_key: str):
    from langsmith.sandbox._tunnel import _WSAdapter
    from langsmith.sandbox._yamux import YamuxSession
    from websockets.sync.client import connect

    url = sb.dataplane_url.replace("http://", "ws://") + "/tunnel"
    ws = connect(url, additional_headers={"X-Api-Key": api_key}, ping_interval=None)
    return YamuxSession(_WSAdapter(ws))


def _status(session, version: int, port: int) -> int:
    stream = session.open_stream()
    stream.write(struct.pack(">BH", version, port))
    return stream.read(1)[0]


def test_protocol_statuses(tsb, server):
    session = _raw_session(tsb, server.api_key)
    try:
        assert _status(session, 1, 9000) == 0
        assert _status(session, 1, 0) == 1  # port not allowed
        assert _status(session, 1, 9999) == 2  # dial failed
        assert _status(session, 2, 9000) == 3  # unsupported version
    finally:
        session.close()


def test_tunnels_need_the_sandboxes_tenant(tsb, server):
    from websockets.exceptions import InvalidStatus

    name = "tun-" + os.urandom(4).hex()
    admin = f"{server.endpoint}/api/v1/admin"
    httpx.post(f"{admin}/tenants", headers=server.headers(), json={"name": name}).raise_for_status()
    key = httpx.post(f"{admin}/keys", headers=server.headers(), json={"tenant": name}).json()["key"]
    with pytest.raises(InvalidStatus) as err:
        _raw_session(tsb, key)
    assert err.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as err:
        _raw_session(tsb, "sp_wrong")
    assert err.value.response.status_code == 401


def test_sandpit_tunnel_cli_verb(tsb, server, tmp_path):
    """`sandpit tunnel` with only a saved `sandpit login` (no flags, no
    LANGSMITH_* variables): it resolves the server like every other verb
    (it failed with "no API key" before, issue 21)."""
    import subprocess

    from conftest import sandpit_binary

    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGSMITH_")}
    env["SANDPIT_CONFIG"] = str(tmp_path / "config.json")
    subprocess.run(
        [sandpit_binary(), "login", "--endpoint", server.endpoint, "--api-key", server.api_key],
        env=env, check=True, capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [sandpit_binary(), "tunnel", tsb.name, "9000", "--local-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"Forwarding 127.0.0.1:{port} -> {tsb.name}:9000"), line
        payload = os.urandom(4 << 20)
        assert _echo_once(port, payload) == payload
        results: list[bool] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(_echo_once(port, b"x%d" % i) == b"x%d" % i))
            for i in range(32)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert results == [True] * 32
    finally:
        proc.terminate()
        proc.wait(10)
