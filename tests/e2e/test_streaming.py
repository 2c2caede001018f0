"""Streaming execution through the server's relay: the README sections
"Streaming Output", "Command Lifecycle & TTL" and "PTY" run unchanged, plus
the properties behind them (ordering, promptness, exact offsets, reconnect,
timeouts, kill, PTY, bounded memory, concurrency, the SSE fallback)."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

import pytest
from langsmith.sandbox import (
    CommandTimeoutError,
    SandboxConnectionError,
    SandboxOperationError,
)
from project import BUILD_STDOUT, ProjectClient
from readme import run_section, section_code


@pytest.fixture
def project(client):
    return ProjectClient(client)


@pytest.fixture
def sb(client):
    with client.sandbox() as box:
        yield box


def test_readme_callbacks(project):
    printed = run_section_titled("Callbacks", project)
    assert printed == ["\nBuild succeeded"]
    # The callbacks saw every chunk of both streams, in order.
    assert printed.output == (
        "compiling module 1\nwarning: unused variable\ncompiling module 2\nlinking\n\nBuild succeeded\n"
    )


def run_section_titled(title: str, project: ProjectClient, **extra):
    namespace = {"client": project, "snapshot_id": None, **extra}
    return run_section(title, namespace)


def test_readme_commandhandle(project):
    printed = run_section_titled("Streaming with CommandHandle", project)
    assert printed[0].startswith("Command ID: ")
    assert printed[-1] == "\nExit code: 0"
    assert "".join(printed[1:-1]) == (
        "[OUT] compiling module 1\n[ERR] warning: unused variable\n"
        "[OUT] compiling module 2\n[OUT] linking\n"
    )


def test_readme_kill_kills_and_the_exit_is_reported_on_reconnect(project):
    # The SDK's kill() closes its own socket without waiting (close_timeout
    # 0), so depending on which comes first — the server's exit frame or the
    # SDK's close — the iteration in the README example either ends and the
    # example prints the exit code (137), or raises. Either way the command
    # is killed. `sleep` prints nothing, so the loop's print never runs.
    namespace = {"client": project, "snapshot_id": None}
    try:
        run_section("Killing a Running Command", namespace)
    except SandboxConnectionError:
        assert "result" not in namespace
    except AssertionError as err:
        assert "never ran: {15}" in str(err), err
        assert namespace["result"].exit_code == 137
    handle = namespace["handle"]
    assert handle._control.killed


def test_kill_kills_the_process_group(sb):
    handle = sb.run("sleep 3600 & sleep 3600; echo never", timeout=7200, wait=False)
    time.sleep(0.3)
    assert sb.run("pgrep -c sleep").stdout.strip() == "2"
    handle.kill()
    result = sb.reconnect(handle.command_id).result
    assert result.exit_code == 137
    assert "never" not in result.stdout
    assert sb.run("pgrep -c sleep").stdout.strip() == "0"


def test_readme_stdin_needs_close_input_false(project):
    # langsmith 0.15.0 half-closes stdin of non-PTY commands by default, so
    # the README example's send_input() raises inside the SDK before anything
    # reaches the server; with close_input=False the same code works.
    with pytest.raises(SandboxOperationError, match="close_input=False"):
        run_section_titled("Sending Stdin Input", project)
    code = section_code("Sending Stdin Input")[0].replace("timeout=30,", "timeout=30, close_input=False,")
    namespace = {"client": project, "snapshot_id": None}
    scope = dict(namespace, print=lambda *a, **k: None)
    exec(code, scope)
    assert scope["result"].stdout == "Name: Hello World\n"


def test_readme_auto_reconnect_and_manual_reconnect(project):
    printed = run_section_titled("Auto-Reconnect", project)
    interleaved = "compiling module 1\nwarning: unused variable\ncompiling module 2\nlinking\n"
    assert printed.output == interleaved * 2


def test_readme_no_timeout(project):
    printed = run_section_titled("No Timeout (`timeout=0`)", project)
    assert printed.output == "Starting...\nReady\n"


def test_readme_lifecycle_sections(project):
    printed = run_section_titled("Session TTL (finished commands)", project)
    assert printed == [BUILD_STDOUT]
    for title in ("Idle Timeout (running commands)", "Kill on Disconnect", "Combining Lifecycle Options"):
        run_section_titled(title, project)


def test_readme_pty(project):
    run_section_titled("PTY (Pseudo-Terminal)", project)


def test_pty_is_a_terminal_and_merges_streams(sb):
    result = sb.run("tty; echo out; echo err >&2; stty size", pty=True)
    lines = result.stdout.replace("\r\n", "\n").splitlines()
    assert lines[0].startswith("/dev/pts/")
    assert "out" in lines and "err" in lines
    assert result.stderr == ""
    assert sb.run("tty").stdout.strip() == "not a tty"


def test_chunks_arrive_as_produced_in_order(sb):
    started = time.monotonic()
    # Two pipes: order across streams is only defined when writes are apart.
    handle = sb.run("echo first; sleep 0.2; echo oops >&2; sleep 1; echo second", wait=False)
    seen = []
    for chunk in handle:
        seen.append((chunk.stream, chunk.data, time.monotonic() - started))
    streams = [(s, d) for s, d, _ in seen]
    assert streams == [("stdout", "first\n"), ("stderr", "oops\n"), ("stdout", "second\n")]
    assert seen[1][2] < 1.1, seen  # before the long sleep ended
    assert seen[2][2] >= 1.2, seen
    assert handle.result.exit_code == 0


def test_offsets_are_exact_and_reconnect_neither_loses_nor_repeats(sb):
    script = "for i in $(seq 1 40); do echo line-$i; printf 'é€😀\\xff\\n'; sleep 0.02; done"
    first = sb.run(script, timeout=60, wait=False)
    got = ""
    offset = 0
    for chunk in first:
        assert chunk.offset == offset, (chunk.offset, offset)
        got += chunk.data
        offset += len(chunk.data.encode())
        if offset > 300:
            break
    assert first.last_stdout_offset == offset
    # A second client object, as after a process restart.
    from langsmith.sandbox import SandboxClient

    other = SandboxClient().get_sandbox(sb.name)
    rest = other.reconnect(first.command_id, stdout_offset=offset)
    for chunk in rest:
        assert chunk.offset == offset
        got += chunk.data
        offset += len(chunk.data.encode())
    expected = "".join(f"line-{i}\né€😀\ufffd\n" for i in range(1, 41))
    assert got == expected
    assert rest.result.exit_code == 0
    # Reconnect from zero replays everything from the retained buffer.
    assert other.reconnect(first.command_id).result.stdout == expected


def test_invalid_utf8_does_not_break_the_stream(sb):
    result = sb.run("head -c 4096 /dev/urandom; echo; echo done")
    assert result.exit_code == 0
    assert result.stdout.endswith("\ndone\n")


def test_timeout_kills_the_whole_group(sb):
    with pytest.raises(CommandTimeoutError):
        sb.run("sleep 100 & sleep 100", timeout=1)
    time.sleep(0.2)
    assert sb.run("pgrep -c sleep").stdout.strip() == "0"


@pytest.mark.parametrize(
    "command,code",
    [("exit 3", 3), ("true", 0), ("kill -TERM $$", 143), ("kill -KILL $$", 137)],
)
def test_exit_codes(sb, command, code):
    assert sb.run(command).exit_code == code


def test_unknown_command_id(sb):
    with pytest.raises(SandboxOperationError) as raised:
        sb.reconnect("0" * 32).result
    assert raised.value.error_type in ("CommandNotFound", "SessionExpired")


def test_finished_session_ttl(sb):
    handle = sb.run("echo kept", ttl_seconds=1, wait=False)
    assert handle.result.stdout == "kept\n"
    assert sb.reconnect(handle.command_id).result.stdout == "kept\n"
    time.sleep(2.5)
    with pytest.raises(SandboxOperationError):
        sb.reconnect(handle.command_id).result


def test_idle_timeout_kills_detached_commands(sb):
    handle = sb.run("sleep 600", timeout=0, idle_timeout=1, wait=False)
    handle._control.send_close_stdin()
    handle._stream.close()  # detach without killing
    time.sleep(2.5)
    result = sb.reconnect(handle.command_id).result
    assert result.exit_code != 0
    assert sb.run("pgrep -c sleep").stdout.strip() == "0"


def test_kill_on_disconnect(sb):
    handle = sb.run("sleep 600", timeout=0, kill_on_disconnect=True, wait=False)
    handle._stream.close()
    for _ in range(50):
        if sb.run("pgrep -c sleep").stdout.strip() == "0":
            break
        time.sleep(0.05)
    assert sb.run("pgrep -c sleep").stdout.strip() == "0"


def test_no_idle_timeout_keeps_running(sb):
    handle = sb.run("sleep 600", timeout=0, idle_timeout=-1, ttl_seconds=-1, wait=False)
    handle._stream.close()
    time.sleep(1.5)
    assert sb.run("pgrep -c sleep").stdout.strip() == "1"
    sb.reconnect(handle.command_id).kill()


def _agent_rss_kib(sandbox_id: str) -> int:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if sandbox_id in cgroup and b"--listen-fd" in cmdline:
            status = Path(f"/proc/{pid}/status").read_text()
            return int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1])
    raise AssertionError("agent not found")


def test_chatty_command_streams_with_bounded_agent_memory(sb):
    total = 200_000_000
    handle = sb.run(f"yes | head -c {total}", timeout=300, wait=False)
    received = 0
    peak = 0
    for i, chunk in enumerate(handle):
        received += len(chunk.data)
        if i % 200 == 0:
            peak = max(peak, _agent_rss_kib(sb.id))
    assert received == total
    assert handle.result.exit_code == 0
    assert peak < 96 * 1024, f"agent RSS peaked at {peak} KiB"


def test_fifty_concurrent_commands_in_one_and_across_sandboxes(client, sb):
    with client.sandbox() as other:
        boxes = [sb, other]

        def one(i: int):
            box = boxes[i % 2]
            result = box.run(f"echo start-{i}; sleep 0.5; echo end-{i} >&2", timeout=60)
            return i, result

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, range(50)))
    for i, result in results:
        assert (result.stdout, result.stderr, result.exit_code) == (f"start-{i}\n", f"end-{i}\n", 0)


def test_exec_and_files_count_as_activity(client, sb):
    def last_activity():
        return client.get_sandbox(sb.name).__dict__.get("last_activity_at") or _raw_activity(client, sb)

    first = _raw_activity(client, sb)
    time.sleep(1.2)
    sb.run("true")
    second = _raw_activity(client, sb)
    assert second > first
    time.sleep(1.2)
    sb.read("/etc/hostname")
    assert _raw_activity(client, sb) > second
    del last_activity


def _raw_activity(client, sb) -> str:
    resp = client._http.get(f"{client._base_url}/boxes/{sb.name}")
    resp.raise_for_status()
    return resp.json()["last_activity_at"]


def test_sse_fallback(monkeypatch, client):
    monkeypatch.setenv("LANGSMITH_FEATURES", "sandbox_sse_exec")
    with client.sandbox() as box:
        result = box.run("echo out; echo err >&2; exit 4")
        assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 4)
        handle = box.run("echo first; sleep 1; echo second", wait=False)
        chunks = [c.data for c in handle]
        assert chunks == ["first\n", "second\n"]
        big = box.run("head -c 10000000 /dev/zero | tr '\\0' x", timeout=120)
        assert len(big.stdout) == 10_000_000
        with pytest.raises(CommandTimeoutError):
            box.run("sleep 30", timeout=1)
        again = box.reconnect(handle.command_id)
        assert again.result.stdout == "first\nsecond\n"


def test_sections_exist():
    for title in ("Callbacks", "Streaming with CommandHandle", "Killing a Running Command",
                  "Sending Stdin Input", "Auto-Reconnect", "No Timeout (`timeout=0`)",
                  "Session TTL (finished commands)", "Idle Timeout (running commands)",
                  "Kill on Disconnect", "Combining Lifecycle Options", "PTY (Pseudo-Terminal)"):
        assert section_code(title), title
