"""The unmodified `opensandbox==1.1.1` SDK against `sandpit serve`: the
lifecycle API, execd (commands, files, metrics) through the endpoint of
port 44772, the README quick starts (sync and async), errors in
OpenSandbox's `{"code", "message"}` shape, and one sandbox used through
both the OpenSandbox and the LangSmith APIs.

Images: `host` (the built-in image) everywhere; a registry image from the
loopback fixture registry in `test_registry_image_and_snapshot_names`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from opensandbox import SandboxSync
from opensandbox.config import ConnectionConfig, ConnectionConfigSync
from opensandbox.exceptions import SandboxApiException, SandboxException
from opensandbox.manager import SandboxManager
from opensandbox.models.execd import ExecutionHandlers, RunCommandOpts
from opensandbox.models.filesystem import (
    ContentReplaceEntry,
    MoveEntry,
    SearchEntry,
    SetPermissionEntry,
    WriteEntry,
)
from opensandbox.models.sandboxes import SandboxFilter
from opensandbox.sandbox import Sandbox


def config(server, key: str | None = None) -> ConnectionConfig:
    return ConnectionConfig(domain=server.endpoint, api_key=key or server.api_key)


def config_sync(server, key: str | None = None) -> ConnectionConfigSync:
    return ConnectionConfigSync(domain=server.endpoint, api_key=key or server.api_key)


def new_tenant_key(server) -> str:
    name = "os-" + secrets.token_hex(4)
    admin = f"{server.endpoint}/api/v1/admin"
    assert httpx.post(f"{admin}/tenants", headers=server.headers(), json={"name": name}).status_code in (200, 201)
    resp = httpx.post(f"{admin}/keys", headers=server.headers(), json={"tenant": name})
    assert resp.status_code in (200, 201), resp.text
    return resp.json()["key"]


def os_headers(server, key: str | None = None) -> dict[str, str]:
    return {"OPEN-SANDBOX-API-KEY": key or server.api_key}


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "message"}, body
    assert resp.headers.get("x-request-id")
    if code:
        assert body["code"] == code, body
    return body


def test_readme_quick_start_async(server):
    """The SDK README's quick start, with the `host` image."""

    async def main() -> str:
        sandbox = await Sandbox.create("host", connection_config=config(server))
        try:
            execution = await sandbox.commands.run("echo 'Hello Sandbox!'")
            return execution.logs.stdout[0].text
        finally:
            await sandbox.destroy()

    assert asyncio.run(main()).strip() == "Hello Sandbox!"


def test_readme_quick_start_sync(server):
    sandbox = SandboxSync.create("host", connection_config=config_sync(server))
    try:
        execution = sandbox.commands.run("echo 'Hello Sandbox!'")
        assert execution.logs.stdout[0].text.strip() == "Hello Sandbox!"
        assert execution.exit_code == 0
        sandbox_id = sandbox.id
    finally:
        sandbox.destroy()
    resp = httpx.get(f"{server.endpoint}/v1/sandboxes/{sandbox_id}", headers=os_headers(server))
    assert_error(resp, 404, "NOT_FOUND")


def test_lifecycle_through_the_manager(server):
    async def main():
        cfg = config(server)
        tag = secrets.token_hex(4)
        sandbox = await Sandbox.create(
            "host",
            connection_config=cfg,
            env={"GREETING": "hi there"},
            metadata={"suite": "os-" + tag, "note": "a&b=c d"},
            resource={"cpu": "500m", "memory": "256Mi"},
            timeout=timedelta(minutes=5),
            entrypoint=["sleep", "infinity"],
        )
        other = await Sandbox.create("host", connection_config=cfg, metadata={"suite": "os-" + tag})
        manager = await SandboxManager.create(cfg)
        try:
            info = await sandbox.get_info()
            assert info.status.state == "Running"
            assert info.metadata == {"suite": "os-" + tag, "note": "a&b=c d"}
            assert info.image.image == "host"
            assert info.entrypoint == ["sleep", "infinity"]
            assert timedelta(minutes=4) < info.expires_at - datetime.now(timezone.utc) <= timedelta(minutes=5)
            run = await sandbox.commands.run("echo $GREETING")
            assert "".join(m.text for m in run.logs.stdout) == "hi there\n"
            ls_view = httpx.get(f"{server.api}/boxes/{sandbox.id}", headers=server.headers()).json()
            assert (ls_view["vcpus"], ls_view["mem_bytes"]) == (1, 256 << 20)
            assert ls_view["labels"] == info.metadata
            assert (ls_view["idle_ttl_seconds"], ls_view["delete_after_stop_seconds"]) == (0, 0)
            metrics = await sandbox.get_metrics()
            assert (metrics.cpu_count, metrics.memory_total_in_mib) == (1, 256)
            assert 0 < metrics.memory_used_in_mib < 256
            # The entrypoint runs beside the agent.
            ps = await sandbox.commands.run("ps -eo args")
            assert "sleep infinity" in "".join(m.text for m in ps.logs.stdout)

            both = await manager.list_sandbox_infos(SandboxFilter(metadata={"suite": "os-" + tag}))
            assert {s.id for s in both.sandbox_infos} == {sandbox.id, other.id}
            assert both.pagination.total_items == 2
            one = await manager.list_sandbox_infos(
                SandboxFilter(metadata={"suite": "os-" + tag, "note": "a&b=c d"})
            )
            assert [s.id for s in one.sandbox_infos] == [sandbox.id]
            page = await manager.list_sandbox_infos(
                SandboxFilter(metadata={"suite": "os-" + tag}, page_size=1, page=2)
            )
            assert len(page.sandbox_infos) == 1 and page.pagination.total_pages == 2
            assert not page.pagination.has_next_page

            new_expiry = await sandbox.renew(timedelta(minutes=30))
            assert new_expiry.expires_at - datetime.now(timezone.utc) > timedelta(minutes=29)

            await sandbox.files.write_file("/tmp/kept.txt", "still here")
            await manager.pause_sandbox(sandbox.id)
            assert (await manager.get_sandbox_info(sandbox.id)).status.state == "Paused"
            paused = await manager.list_sandbox_infos(
                SandboxFilter(states=["Paused"], metadata={"suite": "os-" + tag})
            )
            assert [s.id for s in paused.sandbox_infos] == [sandbox.id]
            with pytest.raises(SandboxApiException) as err:
                await manager.pause_sandbox(sandbox.id)
            assert err.value.status_code == 409

            resumed = await Sandbox.resume(sandbox.id, connection_config=cfg)
            assert (await resumed.get_info()).status.state == "Running"
            assert await resumed.files.read_file("/tmp/kept.txt") == "still here"
            with pytest.raises(SandboxApiException) as err:
                await manager.resume_sandbox(sandbox.id)
            assert err.value.status_code == 409
        finally:
            await sandbox.kill()
            await other.kill()
            await manager.close()
        with pytest.raises(SandboxApiException) as err:
            await manager.get_sandbox_info(sandbox.id)
        assert err.value.status_code == 404

    asyncio.run(main())


def test_commands(server):
    sandbox = SandboxSync.create("host", connection_config=config_sync(server))
    try:
        seen: list[str] = []
        handlers = ExecutionHandlers(on_stdout=lambda m: seen.append(m.text))
        run = sandbox.commands.run(
            "for i in 1 2 3; do echo line $i; done; echo oops >&2; pwd; echo $X",
            opts=RunCommandOpts(working_directory="/tmp", envs={"X": "from-env"}),
            handlers=handlers,
        )
        stdout = "".join(m.text for m in run.logs.stdout)
        assert stdout.splitlines() == ["line 1", "line 2", "line 3", "/tmp", "from-env"]
        assert "".join(m.text for m in run.logs.stderr).strip() == "oops"
        assert "".join(seen) == stdout
        assert run.exit_code == 0 and run.id

        failed = sandbox.commands.run("exit 7")
        assert failed.exit_code == 7
        argv = sandbox.commands.run(["printf", "%s|", "a b", "it's"])
        assert "".join(m.text for m in argv.logs.stdout) == "a b|it's|"

        started = time.monotonic()
        slow = sandbox.commands.run("sleep 30", opts=RunCommandOpts(timeout=timedelta(seconds=1)))
        assert time.monotonic() - started < 10
        assert slow.exit_code != 0

        bg = sandbox.commands.run(
            "echo first; sleep 1; echo second; exit 3", opts=RunCommandOpts(background=True)
        )
        assert bg.id
        status = sandbox.commands.get_command_status(bg.id)
        assert status.running is True and status.exit_code is None
        deadline = time.monotonic() + 20
        while sandbox.commands.get_command_status(bg.id).running and time.monotonic() < deadline:
            time.sleep(0.2)
        status = sandbox.commands.get_command_status(bg.id)
        assert status.running is False and status.exit_code == 3 and status.finished_at
        logs = sandbox.commands.get_background_command_logs(bg.id)
        assert logs.content == "first\nsecond\n"
        more = sandbox.commands.get_background_command_logs(bg.id, cursor=logs.cursor)
        assert more.content == ""

        forever = sandbox.commands.run("sleep 600", opts=RunCommandOpts(background=True))
        assert sandbox.commands.get_command_status(forever.id).running
        sandbox.commands.interrupt(forever.id)
        deadline = time.monotonic() + 10
        while sandbox.commands.get_command_status(forever.id).running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sandbox.commands.get_command_status(forever.id).exit_code == 137
        with pytest.raises(SandboxException):
            sandbox.commands.get_command_status("no-such-command")

        # A foreground command whose client goes away is killed.
        ep = httpx.get(
            f"{server.endpoint}/v1/sandboxes/{sandbox.id}/endpoints/44772", headers=os_headers(server)
        ).json()
        with httpx.stream(
            "POST", f"http://{ep['endpoint']}/command", headers=ep["headers"], json={"command": "sleep 300"}
        ) as resp:
            assert resp.status_code == 200
            first = next(resp.iter_lines())
        cid = json.loads(first.removeprefix("data:").strip())["text"]
        deadline = time.monotonic() + 10
        while sandbox.commands.get_command_status(cid).running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sandbox.commands.get_command_status(cid).exit_code == 137
    finally:
        sandbox.destroy()


def test_command_table_is_bounded(server):
    """Kept executions are bounded per sandbox: old finished ones (and their
    logs) are evicted, and a sandbox full of running background commands
    is refused with 429 in OpenSandbox's error shape (128 kept, 16 MiB of
    logs per sandbox)."""
    sandbox = SandboxSync.create("host", connection_config=config_sync(server))
    execd = f"{server.endpoint}/v1/sandboxes/{sandbox.id}/execd"
    headers = os_headers(server)

    def start(command: str, background: bool) -> tuple[int, str]:
        with httpx.stream("POST", f"{execd}/command", headers=headers, timeout=120,
                          json={"command": command, "background": background}) as resp:
            if resp.status_code != 200:
                resp.read()
                return resp.status_code, resp.text
            first = ""
            for line in resp.iter_lines():
                if line.startswith("data:") and not first:
                    first = json.loads(line[5:])["text"]
            return 200, first

    try:
        # 20 commands of 1 MiB of output: over the sandbox's 16 MiB budget.
        ids = []
        for _ in range(20):
            status, cid = start("head -c 1048000 /dev/zero | tr '\\0' x | fold -w 1000", False)
            assert status == 200, cid
            ids.append(cid)
        assert httpx.get(f"{execd}/command/status/{ids[0]}", headers=headers).status_code == 404
        last = httpx.get(f"{execd}/command/{ids[-1]}/logs", headers=headers)
        assert last.status_code == 200 and len(last.text) > 1_000_000
        # Fill the sandbox with running commands: the 129th is refused.
        for n in range(128):
            status, text = start("sleep 300", True)
            assert status == 200, (n, text)
        status, text = start("sleep 300", True)
        assert status == 429, text
        body = json.loads(text)
        assert body["code"] == "TOO_MANY_COMMANDS" and "interrupt" in body["message"], body
    finally:
        sandbox.kill()


def test_files(server):
    async def main():
        sandbox = await Sandbox.create("host", connection_config=config(server))
        files = sandbox.files
        try:
            await files.create_directories([WriteEntry(path="/work/a/b", mode=750)])
            await files.write_files(
                [
                    WriteEntry(path="/work/a/one.txt", data="hello world\nhello again\n", mode=640),
                    WriteEntry(path="/work/a/b/two.py", data=b"\x00\x01binary", mode=755),
                ]
            )
            assert await files.read_file("/work/a/one.txt") == "hello world\nhello again\n"
            assert await files.read_bytes("/work/a/b/two.py") == b"\x00\x01binary"
            assert await files.read_bytes("/work/a/one.txt", range_header="bytes=6-10") == b"world"
            assert await files.read_file("/work/a/one.txt", offset=2, limit=1) == "hello again\n"

            info = await files.get_file_info(["/work/a/one.txt", "/work/a/b"])
            assert info["/work/a/one.txt"].size == 24 and info["/work/a/one.txt"].mode == 640
            assert info["/work/a/b"].mode == 750 and info["/work/a/b"].entry_type == "directory"

            found = await files.search(SearchEntry(path="/work", pattern="*.py"))
            assert [f.path for f in found] == ["/work/a/b/two.py"]

            await files.replace_contents(
                [ContentReplaceEntry(path="/work/a/one.txt", old_content="hello", new_content="bye")]
            )
            assert await files.read_file("/work/a/one.txt") == "bye world\nbye again\n"
            assert (await files.get_file_info(["/work/a/one.txt"]))["/work/a/one.txt"].mode == 640

            await files.set_permissions([SetPermissionEntry(path="/work/a/one.txt", mode=600)])
            assert (await files.get_file_info(["/work/a/one.txt"]))["/work/a/one.txt"].mode == 600

            await files.move_files([MoveEntry(src="/work/a/one.txt", dest="/work/moved.txt")])
            assert await files.read_file("/work/moved.txt") == "bye world\nbye again\n"

            await files.delete_files(["/work/moved.txt"])
            with pytest.raises(SandboxException):
                await files.get_file_info(["/work/moved.txt"])
            await files.delete_directories(["/work/a"])
            with pytest.raises(SandboxException):
                await files.read_file("/work/a/b/two.py")

            metrics = await sandbox.get_metrics()
            assert metrics.cpu_count >= 1 and metrics.memory_total_in_mib > 0
        finally:
            await sandbox.destroy()

    asyncio.run(main())


def test_one_sandbox_two_apis(server, client):
    """Created through LangSmith, used through OpenSandbox, and the other
    way round: the same row, the same files."""
    ls = client.create_sandbox()
    try:
        ls.write("/tmp/from-langsmith.txt", b"ls wrote this")
        sb = SandboxSync.connect(ls.id, connection_config=config_sync(server))
        assert sb.get_info().status.state == "Running"
        assert sb.files.read_file("/tmp/from-langsmith.txt") == "ls wrote this"
        sb.files.write_file("/tmp/from-opensandbox.txt", "os wrote this")
        assert ls.read("/tmp/from-opensandbox.txt") == b"os wrote this"
    finally:
        client.delete_sandbox(ls.name)

    created = SandboxSync.create("host", connection_config=config_sync(server), metadata={"team": "ml"})
    try:
        seen = {s.id: s for s in client.list_sandboxes()}
        assert created.id in seen
        ls_view = seen[created.id]
        assert ls_view.status == "ready"
        result = ls_view.run("echo through langsmith")
        assert result.stdout.strip() == "through langsmith"
        client.stop_sandbox(ls_view.name)
        assert created.get_info().status.state == "Paused"
    finally:
        created.destroy()


def test_errors(server):
    base = f"{server.endpoint}/v1/sandboxes"
    assert_error(httpx.get(base), 401, "UNAUTHORIZED")
    assert_error(httpx.get(base, headers=os_headers(server, "sp_wrong")), 401, "UNAUTHORIZED")
    assert_error(httpx.get(f"{base}/nope", headers=os_headers(server)), 404, "NOT_FOUND")
    assert_error(httpx.delete(f"{base}/nope", headers=os_headers(server)), 404, "NOT_FOUND")
    body = {"image": {"uri": "host"}, "entrypoint": ["true"], "resourceLimits": {}}
    assert_error(httpx.post(base, headers=os_headers(server), json={**body, "timeout": 10}), 400, "INVALID_REQUEST")
    assert_error(httpx.post(base, headers=os_headers(server), content=b"{"), 400, "INVALID_REQUEST")
    bad_image = {**body, "image": {"uri": "127.0.0.1:9/nope:1"}}
    assert_error(httpx.post(base, headers=os_headers(server), json=bad_image), 400, "INVALID_IMAGE")
    assert_error(
        httpx.get(f"{server.endpoint}/v1/templates", headers=os_headers(server)), 501, "NOT_IMPLEMENTED"
    )

    async def sdk_errors():
        with pytest.raises(SandboxException) as err:
            await Sandbox.create("127.0.0.1:9/nope:1", connection_config=config(server))
        assert "INVALID_IMAGE" in str(err.value)
        manager = await SandboxManager.create(config(server, "sp_wrong"))
        try:
            with pytest.raises(SandboxApiException) as err:
                await manager.list_sandbox_infos(SandboxFilter())
            assert err.value.status_code == 401
        finally:
            await manager.close()

    asyncio.run(sdk_errors())

    # Tenants: another tenant's key sees nothing and reaches no execd.
    sandbox = SandboxSync.create("host", connection_config=config_sync(server))
    try:
        foreign = new_tenant_key(server)
        assert_error(httpx.get(f"{base}/{sandbox.id}", headers=os_headers(server, foreign)), 404)
        listed = httpx.get(base, headers=os_headers(server, foreign)).json()
        assert sandbox.id not in {s["id"] for s in listed["items"]}
        execd = f"{base}/{sandbox.id}/execd/ping"
        assert_error(httpx.get(execd, headers=os_headers(server, foreign)), 404)
        assert_error(httpx.get(execd), 401)
        # An endpoint token works for its sandbox's execd only.
        ep = httpx.get(f"{base}/{sandbox.id}/endpoints/44772", headers=os_headers(server)).json()
        assert ep["endpoint"].endswith(f"/v1/sandboxes/{sandbox.id}/execd")
        assert httpx.get(f"http://{ep['endpoint']}/ping", headers=ep["headers"]).status_code == 200
        other_port = httpx.get(f"{base}/{sandbox.id}/endpoints/8000", headers=os_headers(server)).json()
        assert_error(httpx.get(f"http://{ep['endpoint']}/ping", headers=other_port["headers"]), 401)
        assert_error(
            httpx.post(f"http://{ep['endpoint']}/code/context", headers=ep["headers"], json={"language": "java"}),
            501,
            "NOT_IMPLEMENTED",
        )
        assert_error(
            httpx.get(f"http://{ep['endpoint']}/files/info", params={"path": "/nope"}, headers=ep["headers"]),
            404,
            "FILE_NOT_FOUND",
        )
    finally:
        sandbox.destroy()


def test_registry_image_and_snapshot_names(registry_server, registry, workdir):
    """A registry image is pulled once into a snapshot `img-...` (visible to
    LangSmith), booted with its config, and works with execd's files and
    commands (busybox userland); a missing image is 400 and leaves nothing."""
    from registry import build_image

    image = build_image(
        registry,
        workdir,
        "osbusybox:1",
        files={"/etc/marker": "from-the-image\n"},
        env={"GREETING": "hello-from-config", "PATH": "/bin"},
        working_dir="/srv",
    )
    snapshots_url = f"{registry_server.api}/snapshots"

    def snapshot_names() -> list[str]:
        resp = httpx.get(snapshots_url, headers=registry_server.headers())
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items = body["snapshots"] if isinstance(body, dict) else body
        return sorted(s["name"] for s in items)

    cfg = config_sync(registry_server)
    first = SandboxSync.create(image, connection_config=cfg)
    try:
        assert first.get_info().image.image == image
        run = first.commands.run("cat /etc/marker; echo $GREETING; pwd")
        assert "".join(m.text for m in run.logs.stdout) == "from-the-image\nhello-from-config\n/srv\n"
        first.files.write_file("/srv/x.txt", "busybox files")
        assert first.files.read_file("/srv/x.txt") == "busybox files"
        assert first.files.get_file_info(["/srv/x.txt"])["/srv/x.txt"].size == 13
        names = snapshot_names()
        assert len([n for n in names if n.startswith("img-")]) == 1
        # Again by URI, then by the snapshot's name: no second pull.
        second = SandboxSync.create(image, connection_config=cfg)
        by_name = SandboxSync.create(names[0], connection_config=cfg)
        try:
            assert snapshot_names() == names
            out = by_name.commands.run("cat /etc/marker").logs.stdout
            assert "".join(m.text for m in out) == "from-the-image\n"
        finally:
            second.destroy()
            by_name.destroy()
    finally:
        first.destroy()

    resp = httpx.post(
        f"{registry_server.endpoint}/v1/sandboxes",
        headers=os_headers(registry_server),
        json={"image": {"uri": f"{registry.host}/nope:1"}, "entrypoint": ["true"], "resourceLimits": {}},
    )
    assert_error(resp, 400, "INVALID_IMAGE")
    assert snapshot_names() == names


def test_expired_sandbox():
    """`timeout` is the sandbox's lifetime: once over, the sandbox is gone
    (404 NOT_FOUND from the lifecycle API and from execd). The server runs
    with `--test-time-scale 30`: the 60 s minimum lasts 2 s."""
    import shutil
    import tempfile
    from pathlib import Path

    from conftest import checked_server

    fast = ["--test-time-scale", "30", "--reconcile-interval-ms", "200"]
    data = Path(tempfile.mkdtemp(prefix="sp-os-exp-", dir="/tmp"))
    with checked_server(data / "data", api_key="sp_osexp_" + secrets.token_urlsafe(12), extra_args=fast) as srv:

        async def main():
            cfg = config(srv)
            sandbox = await Sandbox.create("host", connection_config=cfg, timeout=timedelta(seconds=60))
            keeper = await Sandbox.create("host", connection_config=cfg, timeout=timedelta(seconds=60))
            await keeper.renew(timedelta(hours=1))
            assert (await sandbox.commands.run("echo alive")).exit_code == 0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                resp = httpx.get(f"{srv.endpoint}/v1/sandboxes/{sandbox.id}", headers=os_headers(srv))
                if resp.status_code == 404:
                    break
                time.sleep(0.2)
            assert_error(resp, 404, "NOT_FOUND")
            with pytest.raises(SandboxException):
                await sandbox.commands.run("echo gone")
            assert (await keeper.get_info()).status.state == "Running"
            await keeper.kill()

        asyncio.run(main())
    shutil.rmtree(data, ignore_errors=True)
