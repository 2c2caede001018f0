"""Helpers the end-to-end tests share: commands run inside a sandbox, tenants
and SDK clients for a server. Fixtures live in conftest.py."""

from __future__ import annotations

import secrets
import time

import httpx


def curl(sb, args: str, max_time: int = 8) -> tuple[int, str]:
    """curl inside the sandbox: (exit code, stdout and stderr together)."""
    out = sb.run(f"curl -sS --max-time {max_time} {args} 2>&1; echo rc=$?", timeout=max_time + 22)
    text, _, rc = out.stdout.rpartition("rc=")
    return int(rc.strip()), text


def transparent_curl(sb, args: str) -> tuple[int, str]:
    """curl inside the sandbox without its proxy variables: the firewall's
    redirect (transparent) egress path."""
    return curl(sb, f"--noproxy '*' {args}")


def wait_listening(sb, port: int, timeout: float = 15) -> None:
    """Waits until something accepts connections on the sandbox's 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 1)\""
    while time.monotonic() < deadline:
        if sb.run(probe, timeout=10).exit_code == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} in the sandbox")


def serve_in(sb, path: str, source: str, *args) -> object:
    """Writes a Python program into the sandbox and starts it in the
    background with `args`; returns the command handle (kill it when done)."""
    sb.write(path, source)
    return sb.run(" ".join(["python3", path, *map(str, args)]), timeout=0, wait=False)


def new_tenant(server, prefix: str = "t", **quotas) -> tuple[str, str]:
    """A fresh tenant (with optional quotas) and a key for it: (name, key)."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    admin = f"{server.endpoint}/api/v1/admin"
    resp = httpx.post(f"{admin}/tenants", headers=server.headers(), json={"name": name, **quotas})
    assert resp.status_code == 201, resp.text
    resp = httpx.post(f"{admin}/keys", headers=server.headers(), json={"tenant": name, "name": "e2e"})
    assert resp.status_code == 201, resp.text
    return name, resp.json()["key"]


def new_tenant_key(server, prefix: str = "t") -> str:
    """A key of a fresh tenant."""
    return new_tenant(server, prefix)[1]


def sdk_client(srv):
    """The langsmith SDK's SandboxClient for a server (a context manager)."""
    from langsmith.sandbox import SandboxClient

    return SandboxClient(api_endpoint=srv.api, api_key=srv.api_key)
