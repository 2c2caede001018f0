"""Issue 14, server hygiene: failed API-key checks are throttled per client
address (L3), the admin key never reaches the log (L3), and a second
`sandpit serve` on the host is refused instead of sweeping the first one's
sandboxes ("one server per host")."""

from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from conftest import host_free, sandpit_binary, start_server, stop_server
from test_cli import read_until

LIMIT = 20  # auth::MAX_FAILURES


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from `address` (a loopback alias), so
    throttling it leaves the other tests' 127.0.0.1 alone."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def test_failed_key_checks_are_throttled_per_address(server):
    boxes = f"{server.api}/boxes"
    good = server.headers()
    bad = {"X-Api-Key": "sp_wrong_key_guess"}
    with from_address("127.0.0.2") as attacker, from_address("127.0.0.3") as neighbour:
        for n in range(LIMIT):
            assert attacker.get(boxes, headers=bad).status_code == 401, n
            # A success counts nothing and resets nothing.
            if n % 5 == 0:
                assert attacker.get(boxes, headers=good).status_code == 200
        refused = attacker.get(boxes, headers=bad)
        assert refused.status_code == 429
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert refused.json()["detail"]["error"] == "RateLimited"
        assert "invalid API key" in refused.json()["detail"]["message"]
        # Every key check from that address waits, on every API that takes a key.
        assert attacker.get(boxes, headers=good).status_code == 429
        endpoint = f"{server.endpoint}/v1/sandboxes/any/endpoints/8000"
        assert attacker.get(endpoint, headers={"OPEN-SANDBOX-API-KEY": "sp_guess"}).status_code == 429
        # Other addresses are not affected.
        assert neighbour.get(boxes, headers=good).status_code == 200
        assert neighbour.get(boxes, headers=bad).status_code == 401
    assert httpx.get(boxes, headers=good).status_code == 200


def test_the_admin_key_is_printed_on_a_terminal_only():
    data_dir = Path(tempfile.mkdtemp(prefix="sp-seckey-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "SANDPIT_API_KEY"}
    env["RUST_LOG"] = "debug"
    try:
        with host_free():
            # Not a terminal (a log file, the journal): the key is not there,
            # the line names the 0600 file that holds it.
            srv = start_server(data_dir, api_key=None)
            try:
                key = srv.api_key
                key_file = data_dir / "admin-api-key"
                assert oct(key_file.stat().st_mode & 0o777) == "0o600"
                assert key_file.read_text().strip() == key
                log = "\n".join(srv.log)
                assert key not in log
                assert f"export LANGSMITH_API_KEY=$(cat {key_file})" in log
            finally:
                assert stop_server(srv) == 0
            # On a terminal the key is printed as before (README "Start
            # Sandpit"), and the log on stderr still does not hold it.
            master, slave = pty.openpty()
            proc = subprocess.Popen(
                [sandpit_binary(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=slave,
                stderr=subprocess.PIPE,
                env=env,
            )
            os.close(slave)
            try:
                shown = read_until(master, f"export LANGSMITH_API_KEY={key}".encode(), timeout=60)
                assert f"export LANGSMITH_API_KEY={key}".encode() in shown
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=60)
                os.close(master)
            assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
            assert key.encode() not in err
            assert b"listening" in err
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_given_key_is_not_printed_either():
    data_dir = Path(tempfile.mkdtemp(prefix="sp-seckey2-", dir="/tmp"))
    try:
        srv = start_server(data_dir, api_key="sp_given_" + "x" * 20)
        try:
            log = "\n".join(srv.log)
            assert srv.api_key not in log
            assert 'export LANGSMITH_API_KEY="$SANDPIT_API_KEY"' in log
            assert not (data_dir / "admin-api-key").exists()
        finally:
            assert stop_server(srv) == 0
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_second_server_is_refused_and_the_first_keeps_working(server, client):
    sb = client.create_sandbox(name="first-server-box")
    try:
        handle = sb.run("sleep 300", timeout=0, wait=False)
        veths_before = {n for n in os.listdir("/sys/class/net") if n.startswith("spv")}
        assert veths_before
        other = Path(tempfile.mkdtemp(prefix="sp-second-", dir="/tmp"))
        try:
            second = subprocess.run(
                [sandpit_binary(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(other / "data")],
                capture_output=True,
                text=True,
                timeout=30,
            )
        finally:
            leftovers = list(other.iterdir())
            shutil.rmtree(other, ignore_errors=True)
        assert second.returncode != 0
        message = second.stderr
        assert "another sandpit serve is running on this host" in message, message
        listen = server.endpoint.removeprefix("http://")
        assert f"pid {server.proc.pid}, data dir {server.data_dir}, listening on {listen}" in message
        # It stopped before touching anything: no data dir, nothing swept.
        assert leftovers == []
        assert veths_before <= {n for n in os.listdir("/sys/class/net") if n.startswith("spv")}
        assert sb.run("echo still here").stdout == "still here\n"
        assert handle.command_id in sb.run(f"echo {handle.command_id}").stdout
        assert "sleep 300" in sb.run("ps -e -o args=").stdout
        handle.kill()
    finally:
        client.delete_sandbox("first-server-box")


@pytest.mark.parametrize("expires_in", [2])
def test_opensandbox_endpoints_honour_expires(server, client, expires_in):
    sb = client.create_sandbox(name="expiring-endpoint")
    try:
        sb.run("python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 &", timeout=10)
        url = f"{server.endpoint}/v1/sandboxes/{sb.id}/endpoints/8000"
        key = {"OPEN-SANDBOX-API-KEY": server.api_key}
        for bad in ("soon", "-1", "1.5", str(int(time.time()) - 1), str(int(time.time()) + 10 * 86400)):
            resp = httpx.get(url, params={"expires": bad}, headers=key)
            assert resp.status_code == 400, (bad, resp.text)
            assert "expires" in resp.json()["detail"]["message"]
        expires = int(time.time()) + expires_in
        body = httpx.get(url, params={"expires": str(expires), "use_server_proxy": "true"}, headers=key).json()
        target = f"http://{body['endpoint']}/"
        deadline = time.time() + 10
        while (status := httpx.get(target, headers=body["headers"]).status_code) != 200:
            assert time.time() < deadline, status
            time.sleep(0.1)
        while time.time() < expires + 1:
            time.sleep(0.1)
        # Signed for `expires`: the endpoint stops working then.
        assert httpx.get(target, headers=body["headers"]).status_code == 401
    finally:
        client.delete_sandbox("expiring-endpoint")


def test_the_opensandbox_sdk_signed_endpoint(server, client):
    import asyncio

    from opensandbox.adapters.sandboxes_adapter import SandboxesAdapter
    from opensandbox.config.connection import ConnectionConfig
    from opensandbox.exceptions import SandboxException

    sb = client.create_sandbox(name="signed-endpoint")
    try:
        config = ConnectionConfig(domain=server.endpoint, api_key=server.api_key)

        async def signed(expires: int):
            return await SandboxesAdapter(config).get_signed_sandbox_endpoint(
                sb.id, 8000, expires=expires, use_server_proxy=True
            )

        endpoint = asyncio.run(signed(int(time.time()) + 60))
        assert endpoint.endpoint.endswith(f"/sandboxes/{sb.id}/port/8000")
        with pytest.raises(SandboxException):
            asyncio.run(signed(int(time.time()) - 60))
    finally:
        client.delete_sandbox("signed-endpoint")
