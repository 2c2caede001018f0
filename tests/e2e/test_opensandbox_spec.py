"""Every operation of OpenSandbox's two OpenAPI documents (vendored
excerpts in fixtures/opensandbox/, see its README for the source commits)
is routed by `sandpit serve`: served, or a documented 501 in OpenSandbox's
`{"code", "message"}` shape; never an unrouted 404 or a 405."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import yaml

from opensandbox import SandboxSync

from test_opensandbox import config_sync, os_headers

FIXTURES = Path(__file__).parent / "fixtures" / "opensandbox"
# 404s that name a missing resource (not a missing route).
RESOURCE_NOT_FOUND = {"CONTEXT_NOT_FOUND", "COMMAND_NOT_FOUND", "FILE_NOT_FOUND", "NOT_FOUND"}


def operations(name: str) -> list[tuple[str, str]]:
    spec = yaml.safe_load((FIXTURES / name).read_text())
    return [(path, method) for path, ops in spec["paths"].items() for method in ops]


def call(client: httpx.Client, method: str, url: str) -> httpx.Response:
    body = {} if method in ("post", "patch", "put") else None
    with client.stream(method.upper(), url, json=body) as resp:
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            return resp  # status is all we need of a stream
        resp.read()
        return resp


def check(resp: httpx.Response, what: str) -> None:
    assert resp.status_code != 405, what
    if resp.status_code == 404:
        body = resp.json()
        assert set(body) == {"code", "message"} and body["code"] in RESOURCE_NOT_FOUND, (what, body)
    if resp.status_code == 501:
        body = resp.json()
        assert body["code"] == "NOT_IMPLEMENTED" and body["message"], (what, body)


def test_every_spec_operation_is_routed(server):
    sandbox = SandboxSync.create("host", connection_config=config_sync(server))
    try:
        client = httpx.Client(headers=os_headers(server), timeout=60)
        context = client.post(
            f"{server.endpoint}/v1/sandboxes/{sandbox.id}/execd/code/context", json={"language": "python"}
        ).json()["id"]
        values = {
            "{sandboxId}": sandbox.id,
            "{port}": "44772",
            "{snapshotId}": "snap-x",
            "{context_id}": context,
            "{sessionId}": str(uuid.uuid4()),
            "{runId}": str(uuid.uuid4()),
            "{id}": "no-such-command",
        }

        def fill(path: str) -> str:
            for key, value in values.items():
                path = path.replace(key, value)
            return path

        checked = 0
        execd = f"{server.endpoint}/v1/sandboxes/{sandbox.id}/execd"
        for path, method in operations("execd-api.yaml"):
            if (path, method) == ("/code/contexts/{context_id}", "delete"):
                continue  # last, below: it deletes the context used above
            check(call(client, method, execd + fill(path)), f"execd {method} {path}")
            checked += 1
        check(call(client, "delete", f"{execd}/code/contexts/{context}"), "execd delete context")
        for path, method in operations("sandbox-lifecycle.yml"):
            if (path, method) == ("/sandboxes/{sandboxId}", "delete"):
                continue  # last, below
            check(call(client, method, f"{server.endpoint}/v1" + fill(path)), f"lifecycle {method} {path}")
            checked += 1
        check(call(client, "delete", f"{server.endpoint}/v1/sandboxes/{sandbox.id}"), "lifecycle delete")
        assert checked > 60
    finally:
        try:
            sandbox.kill()
        except Exception:
            pass
