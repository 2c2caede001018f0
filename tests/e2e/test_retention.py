"""Retention: idle stop, deletion after stop, the template-era hard lifetime,
live updates of all three, and deadlines that survive a server restart.

The server runs with `--test-time-scale 30` (every retention duration divided
by 30: 60 s becomes 2 s) and a 200 ms reconciler interval. The logic is the
production logic; only the clock's unit changes.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from conftest import checked_server, start_server, stop_server
from langsmith.sandbox import ResourceNotFoundError, SandboxClient

import leaks

SCALE = 30
FAST = ["--test-time-scale", str(SCALE), "--reconcile-interval-ms", "200"]


def scaled(seconds: float) -> float:
    return seconds / SCALE


@pytest.fixture
def data_dir():
    path = Path(tempfile.mkdtemp(prefix="sp-ret-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fast(data_dir):
    with checked_server(data_dir, api_key="k-retention", extra_args=FAST) as srv:
        yield srv


def sdk(server) -> SandboxClient:
    return SandboxClient(api_endpoint=server.api, api_key=server.api_key)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status(client: SandboxClient, name: str) -> str | None:
    try:
        return client.get_sandbox(name).status
    except ResourceNotFoundError:
        return None


def test_idle_sandbox_is_stopped_and_background_processes_do_not_count(fast):
    client = sdk(fast)
    sb = client.create_sandbox(name="idler", idle_ttl_seconds=60, delete_after_stop_seconds=0)
    sb.write("/home/user/kept.txt", "still here")
    # A background process is not activity.
    sb.run("nohup sleep 600 >/dev/null 2>&1 &")
    started = time.monotonic()
    wait_for(lambda: status(client, "idler") == "stopped", 10, "idle stop")
    assert time.monotonic() - started >= scaled(60) - 0.2
    row = client.get_sandbox("idler")
    assert row.stopped_at and "without activity" in (row.status_message or "")
    # Files are kept; using it again starts it.
    client.start_sandbox("idler")
    assert sb.read("/home/user/kept.txt") == b"still here"
    client.delete_sandbox("idler")


def test_activity_keeps_a_sandbox_running(fast):
    client = sdk(fast)
    sb = client.create_sandbox(name="busy", idle_ttl_seconds=60, delete_after_stop_seconds=0)
    # Exec and file I/O every 0.5 s for three idle periods.
    end = time.monotonic() + 3 * scaled(60)
    while time.monotonic() < end:
        sb.run("true")
        sb.write("/tmp/tick", "x")
        time.sleep(0.5)
        assert status(client, "busy") == "ready"
    # A long-running attached command is activity for its whole length.
    result = sb.run(f"sleep {3 * scaled(60)}", timeout=30)
    assert result.exit_code == 0
    assert status(client, "busy") == "ready"
    # Then, left alone, it stops.
    wait_for(lambda: status(client, "busy") == "stopped", 10, "idle stop")
    client.delete_sandbox("busy")


def test_zero_disables_idle_stop(fast):
    client = sdk(fast)
    client.create_sandbox(name="forever", idle_ttl_seconds=0, delete_after_stop_seconds=0)
    time.sleep(3 * scaled(60))
    assert status(client, "forever") == "ready"
    client.delete_sandbox("forever")


def test_delete_after_stop_and_updates_move_the_deadline(fast):
    client = sdk(fast)
    client.create_sandbox(name="doomed", idle_ttl_seconds=0, delete_after_stop_seconds=120)
    client.stop_sandbox("doomed")
    stopped = time.monotonic()
    # Push the deadline out while it is stopped: 600 s (20 s scaled).
    updated = client.update_sandbox("doomed", delete_after_stop_seconds=600)
    assert updated.delete_after_stop_seconds == 600
    time.sleep(scaled(120) + 1.5)
    assert status(client, "doomed") == "stopped"
    # Pull it in below the time already stopped: deleted on the next pass.
    client.update_sandbox("doomed", delete_after_stop_seconds=60)
    wait_for(lambda: status(client, "doomed") is None, 5, "deletion after stop")
    assert time.monotonic() - stopped >= scaled(120)

    # Idle stop then deletion chain together.
    client.create_sandbox(name="chain", idle_ttl_seconds=60, delete_after_stop_seconds=60)
    wait_for(lambda: status(client, "chain") == "stopped", 10, "idle stop")
    wait_for(lambda: status(client, "chain") is None, 10, "deletion after idle stop")
    # Disabling idle stop on a running sandbox holds.
    client.create_sandbox(name="kept", idle_ttl_seconds=60, delete_after_stop_seconds=0)
    client.update_sandbox("kept", idle_ttl_seconds=0)
    time.sleep(2 * scaled(60) + 1)
    assert status(client, "kept") == "ready"
    client.delete_sandbox("kept")


def test_hard_lifetime_of_the_template_era(fast):
    # langsmith 0.7.30 sends `ttl_seconds`; the sandbox is deleted that long
    # after creation whatever it is doing, and `expires_at` says when.
    headers = fast.headers()
    r = httpx.post(
        f"{fast.api}/boxes",
        headers=headers,
        json={"name": "mortal", "ttl_seconds": 120, "idle_ttl_seconds": 0, "wait_for_ready": True},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.json()["expires_at"]
    bad = httpx.post(f"{fast.api}/boxes", headers=headers, json={"ttl_seconds": 61}, timeout=30)
    assert bad.status_code == 422
    sb = sdk(fast).get_sandbox("mortal")
    created = time.monotonic()
    while time.monotonic() - created < scaled(120) - 1:
        sb.run("true")  # activity does not extend a hard lifetime
        time.sleep(0.2)
    wait_for(lambda: httpx.get(f"{fast.api}/boxes/mortal", headers=headers).status_code == 404, 5, "lifetime")


def test_deadlines_survive_a_restart(data_dir):
    before = leaks.snapshot(str(data_dir))
    server = start_server(data_dir, api_key="k-restart", extra_args=FAST)
    client = sdk(server)
    client.create_sandbox(name="idle-across", idle_ttl_seconds=120, delete_after_stop_seconds=0)
    client.create_sandbox(name="delete-across", idle_ttl_seconds=0, delete_after_stop_seconds=120)
    client.stop_sandbox("delete-across")
    # Crash, and stay down past both deadlines (4 s scaled).
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    time.sleep(scaled(120) + 1)

    server = start_server(data_dir, api_key="k-restart", extra_args=FAST)
    try:
        client = sdk(server)
        wait_for(lambda: status(client, "delete-across") is None, 5, "deletion after restart")
        wait_for(lambda: status(client, "idle-across") == "stopped", 5, "idle stop after restart")
        client.delete_sandbox("idle-across")
    finally:
        assert stop_server(server) == 0
    assert leaks.leaked(before, leaks.snapshot(str(data_dir))) == {}
