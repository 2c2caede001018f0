"""Issue 22: no exec WebSocket is left half-open, through `sandpit serve`.

A socket whose command another connection reconnected to, or whose command
ended unread, answers a close frame at once, and the server closes a socket
itself once it has nothing more to say. Every path is checked with a short
close timeout: superseded, finished while unread, closed while running,
client gone, server shutdown (exec WebSocket, SSE, tunnel), and the same for
tunnels and service-URL WebSockets (closed by the client, by the app, by a
client that vanished, and by the sandbox going). And the SDK program of the
report exits at once instead of hanging at interpreter exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import start_server, stop_server
from websockets.asyncio.client import connect

LINES = "for i in $(seq 1 20); do echo line$i; sleep 0.1; done"
# Well under the 5 s close timeout of the report, well over a round trip.
PROMPT = 1.5


@pytest.fixture(scope="module")
def sb(server):
    from langsmith.sandbox import SandboxClient

    with SandboxClient() as client:
        sandbox = client.create_sandbox(name="ws-close")
        yield sandbox
        client.delete_sandbox("ws-close")


def ws_url(sb) -> str:
    return sb.dataplane_url.replace("http://", "ws://") + "/execute/ws"


def headers(server) -> dict[str, str]:
    return {"X-Api-Key": server.api_key}


async def open_ws(server, sb):
    return await connect(ws_url(sb), additional_headers=headers(server), close_timeout=5)


async def timed_close(ws) -> float:
    started = time.monotonic()
    await ws.close()
    return time.monotonic() - started


def test_the_reported_sequence_closes_at_once(server, sb):
    async def scenario():
        first = await open_ws(server, sb)
        await first.send(json.dumps({"type": "execute", "command": LINES}))
        started = json.loads(await first.recv())
        assert started["type"] == "started"
        second = await open_ws(server, sb)
        await second.send(
            json.dumps({"type": "reconnect", "command_id": started["command_id"], "stdout_offset": 0, "stderr_offset": 0})
        )
        out = []
        while (msg := json.loads(await second.recv()))["type"] != "exit":
            if msg["type"] == "stdout":
                out.append(msg["data"])
        assert "".join(out) == "".join(f"line{i}\n" for i in range(1, 21))
        took = await timed_close(first)
        assert took < PROMPT, f"closing the superseded socket took {took:.2f}s"
        # The server said why it closed it.
        assert first.close_code == 4000, (first.close_code, first.close_reason)
        assert "superseded" in first.close_reason
        assert await timed_close(second) < PROMPT
        assert second.close_code == 1000

    asyncio.run(scenario())


def test_a_close_is_answered_while_the_command_runs(server, sb):
    async def scenario():
        ws = await open_ws(server, sb)
        await ws.send(json.dumps({"type": "execute", "command": "sleep 30", "timeout_seconds": 60}))
        assert json.loads(await ws.recv())["type"] == "started"
        took = await timed_close(ws)
        assert took < PROMPT, f"close took {took:.2f}s"
        assert ws.close_code == 1000

    asyncio.run(scenario())


def test_a_finished_command_nobody_read_answers_a_close(server, sb):
    async def scenario():
        ws = await open_ws(server, sb)
        await ws.send(json.dumps({"type": "execute", "command": "echo done"}))
        await asyncio.sleep(0.5)
        took = await timed_close(ws)
        assert took < PROMPT, f"close took {took:.2f}s"
        assert ws.close_code == 1000

    asyncio.run(scenario())


def test_a_vanished_client_is_detached(server, sb):
    async def scenario():
        ws = await open_ws(server, sb)
        await ws.send(json.dumps({"type": "execute", "command": "sleep 30", "kill_on_disconnect": True}))
        started = json.loads(await ws.recv())
        # No close frame: the TCP connection just goes.
        ws.transport.abort()
        return started["pid"]

    pid = asyncio.run(scenario())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sb.run(f"kill -0 {pid} 2>/dev/null && echo alive || echo gone").stdout.strip() == "gone":
            return
        time.sleep(0.1)
    raise AssertionError("the command of a vanished client was not killed: its socket stayed open")


SDK_SCRIPT = textwrap.dedent(
    """
    from langsmith.sandbox import SandboxClient

    client = SandboxClient()
    sb = client.get_sandbox({name!r})
    handle = sb.run({command!r}, wait=False)
    again = sb.reconnect(handle.command_id)
    print(again.result.stdout.count("line"), again.result.exit_code, flush=True)
    """
)


def test_the_sdk_program_of_the_report_exits_at_once(server, sb):
    script = SDK_SCRIPT.format(name=sb.name, command=LINES)
    env = dict(os.environ, LANGSMITH_ENDPOINT=f"{server.endpoint}/api", LANGSMITH_API_KEY=server.api_key)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["20", "0"]
    # 2 s of command; before the fix the interpreter then hung for 30 s or more.
    assert took < 6, f"the program took {took:.1f}s to exit"


def _sse_lines(url: str, key: str, lines: list[str], done: threading.Event) -> None:
    try:
        with httpx.stream(
            "POST", url, headers={"X-Api-Key": key}, json={"command": "sleep 60", "timeout_seconds": 120}, timeout=30
        ) as resp:
            for line in resp.iter_lines():
                lines.append(line)
    except httpx.HTTPError as err:
        lines.append(f"error: {err}")
    finally:
        done.set()


def test_server_shutdown_closes_every_stream(tmp_path):
    """SIGTERM with an exec WebSocket, an SSE stream and a tunnel open: each
    ends at once (no half-open connection), and the server exits 0 fast."""
    data_dir = Path(tempfile.mkdtemp(prefix="sp-wsclose-", dir="/tmp"))
    srv = start_server(data_dir, api_key="k-wsclose")
    try:
        from langsmith.sandbox import SandboxClient

        with SandboxClient(api_endpoint=srv.api, api_key=srv.api_key) as c:
            box = c.create_sandbox(name="shutdown")
            base = box.dataplane_url

        sse_lines: list[str] = []
        sse_done = threading.Event()
        threading.Thread(
            target=_sse_lines, args=(f"{base}/execute/stream/start", srv.api_key, sse_lines, sse_done), daemon=True
        ).start()

        async def scenario():
            url = base.replace("http://", "ws://")
            exec_ws = await connect(f"{url}/execute/ws", additional_headers=headers(srv), close_timeout=5)
            await exec_ws.send(json.dumps({"type": "execute", "command": "sleep 60", "timeout_seconds": 120}))
            assert json.loads(await exec_ws.recv())["type"] == "started"
            tunnel = await connect(f"{url}/tunnel", additional_headers=headers(srv), close_timeout=5)
            deadline = time.monotonic() + 10
            while not any("started" in line for line in sse_lines):
                assert time.monotonic() < deadline, sse_lines
                await asyncio.sleep(0.05)
            stop_started = time.monotonic()
            srv.proc.send_signal(15)
            # Each connection ends by itself, promptly.
            for ws in (exec_ws, tunnel):
                await asyncio.wait_for(ws.wait_closed(), 10)
            return stop_started, exec_ws.close_code

        stop_started, exec_code = asyncio.run(scenario())
        assert exec_code in (1001, 1006), exec_code
        assert sse_done.wait(10), "the SSE stream stayed open"
        code = srv.proc.wait(30)
        took = time.monotonic() - stop_started
        assert code == 0
        assert took < 15, f"shutdown took {took:.1f}s"
    finally:
        if srv.proc.poll() is None:
            stop_server(srv)
        else:
            stop_server(srv)  # starts again the server it had suspended
        shutil.rmtree(data_dir, ignore_errors=True)


def tunnel_url(sandbox) -> str:
    return sandbox.dataplane_url.replace("http://", "ws://") + "/tunnel"


def test_an_idle_tunnel_answers_a_close_at_once(server, sb):
    async def scenario():
        ws = await connect(tunnel_url(sb), additional_headers=headers(server), close_timeout=5)
        took = await timed_close(ws)
        assert took < PROMPT, f"closing a tunnel took {took:.2f}s"
        assert ws.close_code == 1000

    asyncio.run(scenario())


@pytest.mark.parametrize("ending", ["stop", "delete"])
def test_a_tunnel_is_closed_by_the_server_when_its_sandbox_goes(server, ending):
    """The server closes a tunnel itself (a close frame, not a dropped
    connection) once the sandbox behind it is stopped or deleted."""
    from langsmith.sandbox import SandboxClient

    name = f"ws-close-tunnel-{ending}"
    with SandboxClient() as client:
        sandbox = client.create_sandbox(name=name)
        try:

            async def scenario():
                ws = await connect(tunnel_url(sandbox), additional_headers=headers(server), close_timeout=5)
                await asyncio.to_thread(getattr(client, f"{ending}_sandbox"), name)
                started = time.monotonic()
                await asyncio.wait_for(ws.wait_closed(), 10)
                took = time.monotonic() - started
                assert ws.close_code is not None and ws.close_code != 1006, ws.close_code
                assert took < 10

            asyncio.run(scenario())
        finally:
            if ending == "stop":
                client.delete_sandbox(name)


# A WebSocket echo server from the standard library (the sandbox image has no
# `websockets`): it answers a close frame, closes itself after "bye", and
# appends "eof" to /tmp/ws-events when a client's TCP connection ends without
# a close frame.
WS_ECHO = r'''
import base64, hashlib, socket, struct, sys, threading
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def exact(c, n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf
def send(c, op, data):
    head = bytes([0x80 | op, len(data)]) if len(data) < 126 else bytes([0x80 | op, 126]) + struct.pack(">H", len(data))
    c.sendall(head + data)
def frame(c):
    head = exact(c, 2)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", exact(c, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", exact(c, 8))[0]
    mask = exact(c, 4)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(exact(c, n)))
    return head[0] & 0x0F, data
def event(what):
    with open("/tmp/ws-events", "a") as f:
        f.write(what + "\n")
def serve(c):
    with c:
        req = b""
        while b"\r\n\r\n" not in req:
            chunk = c.recv(4096)
            if not chunk:
                return
            req += chunk
        key = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        try:
            while True:
                op, data = frame(c)
                if op == 8:
                    send(c, 8, data[:2])
                    event("close")
                    return
                if op == 1 and data == b"bye":
                    send(c, 8, struct.pack(">H", 1000) + b"bye")
                    frame(c)
                    event("closed-by-server")
                    return
                if op == 1:
                    send(c, 1, data)
        except (EOFError, ConnectionError):
            event("eof")
s = socket.create_server(("127.0.0.1", int(sys.argv[1])), reuse_port=True)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''

WS_PORT = 8600


def _events(sandbox) -> list[str]:
    return sandbox.run("cat /tmp/ws-events 2>/dev/null || true").stdout.split()


def _wait_event(sandbox, what: str, count: int = 1, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _events(sandbox).count(what) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {what!r} seen inside the sandbox in {timeout}s: {_events(sandbox)}")


def _serve_ws(sandbox):
    sandbox.write("/app/ws_echo.py", WS_ECHO)
    handle = sandbox.run(f"python3 /app/ws_echo.py {WS_PORT}", timeout=0, wait=False)
    deadline = time.monotonic() + 15
    probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {WS_PORT}), 1)\""
    while sandbox.run(probe, timeout=10).exit_code != 0:
        assert time.monotonic() < deadline, "the WebSocket echo server did not start"
        time.sleep(0.2)
    return handle


async def _service_ws(sandbox):
    svc = sandbox.service(port=WS_PORT)
    url = svc.service_url.replace("http://", "ws://")
    return await connect(url, additional_headers={"X-Langsmith-Sandbox-Service-Token": svc.token}, close_timeout=5)


@pytest.fixture(scope="module")
def ws_sb(server):
    from langsmith.sandbox import SandboxClient

    with SandboxClient() as client:
        sandbox = client.create_sandbox(name="ws-close-service")
        handle = _serve_ws(sandbox)
        yield sandbox
        handle.kill()
        client.delete_sandbox("ws-close-service")


def test_a_service_websocket_answers_a_close_at_once(ws_sb):
    async def scenario():
        ws = await _service_ws(ws_sb)
        await ws.send("hello")
        assert await ws.recv() == "hello"
        took = await timed_close(ws)
        assert took < PROMPT, f"closing a service WebSocket took {took:.2f}s"
        assert ws.close_code == 1000

    asyncio.run(scenario())
    _wait_event(ws_sb, "close")


def test_a_service_websocket_closed_by_the_app_reaches_the_client(ws_sb):
    async def scenario():
        ws = await _service_ws(ws_sb)
        await ws.send("bye")
        await asyncio.wait_for(ws.wait_closed(), PROMPT)
        assert ws.close_code == 1000 and ws.close_reason == "bye"

    asyncio.run(scenario())
    _wait_event(ws_sb, "closed-by-server")


def test_a_vanished_service_websocket_client_is_seen_by_the_app(ws_sb):
    before = _events(ws_sb).count("eof")

    async def scenario():
        ws = await _service_ws(ws_sb)
        await ws.send("ping")
        assert await ws.recv() == "ping"
        ws.transport.abort()  # no close frame: the TCP connection just goes

    asyncio.run(scenario())
    _wait_event(ws_sb, "eof", before + 1)


@pytest.mark.parametrize("ending", ["stop", "delete"])
def test_a_service_websocket_is_closed_when_its_sandbox_goes(server, ending):
    """A client holding a service WebSocket is not left hanging on a
    connection nothing answers once the sandbox behind it stops or goes."""
    from langsmith.sandbox import SandboxClient

    name = f"ws-close-svc-{ending}"
    with SandboxClient() as client:
        sandbox = client.create_sandbox(name=name)
        try:
            _serve_ws(sandbox)

            async def scenario():
                ws = await _service_ws(sandbox)
                await ws.send("ping")
                assert await ws.recv() == "ping"
                await asyncio.to_thread(getattr(client, f"{ending}_sandbox"), name)
                await asyncio.wait_for(ws.wait_closed(), 10)

            asyncio.run(scenario())
        finally:
            if ending == "stop":
                client.delete_sandbox(name)


# Counts the connections that reached it and ended (EOF or reset), in
# /tmp/tcp-events.
TCP_WATCH = r'''
import socket, sys, threading
def serve(c):
    with c:
        try:
            while c.recv(65536):
                pass
        except ConnectionError:
            pass
    with open("/tmp/tcp-events", "a") as f:
        f.write("ended\n")
s = socket.create_server(("127.0.0.1", int(sys.argv[1])), reuse_port=True)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''


def test_a_vanished_tunnel_client_ends_its_connections(server, sb):
    """A tunnel client whose TCP connection goes without a close frame: the
    connections it had opened into the sandbox are ended, not left open."""
    from langsmith.sandbox._tunnel import _WSAdapter
    from langsmith.sandbox._yamux import YamuxSession
    from websockets.sync.client import connect as sync_connect

    port = 8601
    sb.write("/app/tcp_watch.py", TCP_WATCH)
    handle = sb.run(f"python3 /app/tcp_watch.py {port}", timeout=0, wait=False)
    try:
        deadline = time.monotonic() + 15
        probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 1)\""
        while sb.run(probe, timeout=10).exit_code != 0:
            assert time.monotonic() < deadline, "the watch server did not start"
            time.sleep(0.2)
        ended = lambda: sb.run("cat /tmp/tcp-events 2>/dev/null || true").stdout.split().count("ended")  # noqa: E731
        before = ended()
        with sync_connect(tunnel_url(sb), additional_headers=headers(server), ping_interval=None) as ws:
            session = YamuxSession(_WSAdapter(ws))
            for _ in range(3):
                stream = session.open_stream()
                stream.write(struct.pack(">BH", 1, port))
                assert stream.read(1)[0] == 0
            time.sleep(0.3)
            assert ended() == before, "a tunnelled connection ended early"
            # No close frame, no yamux go-away: the client's socket is reset.
            ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.socket.close()
            deadline = time.monotonic() + 10
            while ended() < before + 3:
                assert time.monotonic() < deadline, f"tunnelled connections left open: {ended() - before}/3 ended"
                time.sleep(0.1)
    finally:
        handle.kill()
