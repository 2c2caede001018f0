"""The `sandpit` command-line verbs against a real server: login (config
file 0600), create/ls/get/stop/start/rm with --json, exec (streams, exit
code, stdin, quoting), shell through a real pseudo-terminal (with resize),
and cp of a directory tree both ways with integrity checks."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import secrets
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from conftest import sandpit_binary


@pytest.fixture
def cli_env(server, tmp_path):
    """Environment with only a saved login (no LANGSMITH_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGSMITH_")}
    env["SANDPIT_CONFIG"] = str(tmp_path / "cfg" / "config.json")
    out = subprocess.run(
        [sandpit_binary(), "login", "--endpoint", server.endpoint],
        input=server.api_key + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return env


def sp(env, *args, input=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sandpit_binary(), *args], env=env, input=input, capture_output=True, timeout=timeout
    )


def text(env, *args, **kw) -> subprocess.CompletedProcess:
    out = sp(env, *args, **kw)
    out.stdout = out.stdout.decode()
    out.stderr = out.stderr.decode()
    return out


def test_login_saves_a_private_config_and_refuses_bad_keys(server, cli_env, tmp_path):
    cfg = Path(cli_env["SANDPIT_CONFIG"])
    assert oct(cfg.stat().st_mode & 0o777) == "0o600"
    assert json.loads(cfg.read_text()) == {"endpoint": server.endpoint, "api_key": server.api_key}
    env = dict(cli_env, SANDPIT_CONFIG=str(tmp_path / "other.json"))
    bad = text(env, "login", "--endpoint", server.endpoint, "--api-key", "wrong")
    assert bad.returncode == 1 and "401" in bad.stderr
    assert not (tmp_path / "other.json").exists()
    none = text(env, "ls")
    assert none.returncode == 1 and "not logged in" in none.stderr


def test_lifecycle_verbs_with_json(cli_env):
    name = "cli-" + secrets.token_hex(3)
    created = text(cli_env, "create", name, "--label", "team=cli", "--json")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["name"] == name and body["status"] == "ready" and body["labels"] == {"team": "cli"}
    try:
        listed = json.loads(text(cli_env, "ls", "--json").stdout)
        assert name in [s["name"] for s in listed]
        table = text(cli_env, "ls").stdout
        assert name in table and "ready" in table
        assert json.loads(text(cli_env, "get", name, "--json").stdout)["id"] == body["id"]
        stopped = json.loads(text(cli_env, "stop", name, "--json").stdout)
        assert stopped["status"] == "stopped" and stopped["stopped_at"]
        started = json.loads(text(cli_env, "start", name, "--json").stdout)
        assert started["status"] == "ready"
        missing = text(cli_env, "get", "no-such-" + name)
        assert missing.returncode == 1 and "404" in missing.stderr and "not found" in missing.stderr
    finally:
        assert text(cli_env, "rm", name).returncode == 0
    assert name not in text(cli_env, "ls").stdout


@pytest.fixture
def box(cli_env):
    name = "clix-" + secrets.token_hex(3)
    assert text(cli_env, "create", name).returncode == 0
    yield name
    text(cli_env, "rm", name)


def test_exec_streams_and_passes_the_exit_code_through(cli_env, box):
    out = text(cli_env, "exec", box, "--", "echo out; echo err >&2; exit 7")
    assert (out.returncode, out.stdout, out.stderr) == (7, "out\n", "err\n")
    quoted = text(cli_env, "exec", box, "--", "printf", "[%s]\\n", "a b", "it's", "$HOME")
    assert quoted.returncode == 0 and quoted.stdout == "[a b]\n[it's]\n[$HOME]\n"
    piped = sp(cli_env, "exec", box, "--", "sha256sum", input=b"x" * 300_000)
    assert piped.returncode == 0
    assert piped.stdout.decode().split()[0] == hashlib.sha256(b"x" * 300_000).hexdigest()
    cwd = text(cli_env, "exec", box, "--cwd", "/tmp", "--", "pwd")
    assert cwd.stdout == "/tmp\n"


def read_until(fd: int, needle: bytes, timeout: float = 15) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"did not see {needle!r}; got {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_shell_through_a_real_pty_with_resize(cli_env, box):
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(sandpit_binary(), [sandpit_binary(), "shell", box], cli_env)
    try:
        set_size(fd, 30, 100)
        os.write(fd, b"stty size; echo sum=$((6*7))\r")
        seen = read_until(fd, b"sum=42")
        assert b"30 100" in seen
        # The local terminal is resized: SIGWINCH reaches sandpit, which
        # resizes the remote pty.
        set_size(fd, 40, 132)
        time.sleep(0.3)
        os.write(fd, b"stty size\r")
        read_until(fd, b"40 132")
        # Raw mode: Ctrl-C goes to the remote shell, not to sandpit.
        os.write(fd, b"sleep 30\r")
        time.sleep(0.5)
        os.write(fd, b"\x03")
        os.write(fd, b"echo after-interrupt\r")
        read_until(fd, b"after-interrupt\r\n")
        os.write(fd, b"exit 3\r")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_cp_copies_trees_both_ways_byte_for_byte(cli_env, box, tmp_path):
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "nested" / "blob.bin").write_bytes(os.urandom(3 << 20))
    (src / "nested" / "deeper" / "name with spaces é.txt").write_text("unicode ✓\n")
    (src / "empty").write_bytes(b"")
    up = text(cli_env, "cp", str(src), f"{box}:/home/user/tree", "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["files"] == 4
    remote = text(cli_env, "exec", box, "--", "cd /home/user/tree && find . -type f | sort")
    assert remote.stdout.split("\n")[:-1] == sorted(
        "./" + k for k in tree_digest(src)
    )
    inside = text(cli_env, "exec", box, "--", "sha256sum /home/user/tree/nested/blob.bin")
    assert inside.stdout.split()[0] == tree_digest(src)["nested/blob.bin"]

    back = tmp_path / "back"
    down = text(cli_env, "cp", f"{box}:/home/user/tree", str(back))
    assert down.returncode == 0, down.stderr
    assert tree_digest(back) == tree_digest(src)
    # Single files, and a target directory ending in "/".
    (tmp_path / "one").mkdir()
    assert text(cli_env, "cp", f"{box}:/home/user/tree/top.txt", str(tmp_path / "one") + "/").returncode == 0
    assert (tmp_path / "one" / "top.txt").read_text() == "top\n"
    missing = text(cli_env, "cp", f"{box}:/nope", str(tmp_path / "x"))
    assert missing.returncode == 1 and "No such file" in missing.stderr
