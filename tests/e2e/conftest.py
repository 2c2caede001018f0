"""Fixtures that run a real `sandpit serve` for the end-to-end tests.

The server binary comes from $SANDPIT_BIN (scripts/test sets it) or
target/release/sandpit. Every session gets a fresh data dir and a known
admin key, exports LANGSMITH_ENDPOINT / LANGSMITH_API_KEY so the SDK's
`SandboxClient()` works unchanged, and checks at the end that the server
exited cleanly and left no cgroups, veths, mounts or processes behind.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import leaks  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def sandpit_binary() -> str:
    explicit = os.environ.get("SANDPIT_BIN")
    if explicit:
        return explicit
    candidate = REPO / "target" / "release" / "sandpit"
    if candidate.exists():
        return str(candidate)
    raise RuntimeError("build sandpit first (cargo build --release) or set SANDPIT_BIN")


@dataclass
class Server:
    endpoint: str  # e.g. http://127.0.0.1:PORT
    api_key: str
    data_dir: Path
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.endpoint}/api/v2/sandboxes"

    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key}


def _pump(stream, sink: list[str], ready: threading.Event, found: dict) -> None:
    for raw in iter(stream.readline, ""):
        line = raw.rstrip("\n")
        sink.append(line)
        match = re.match(r"export LANGSMITH_ENDPOINT=(\S+)/api$", line)
        if match:
            found["endpoint"] = match.group(1)
        if line.startswith("export LANGSMITH_API_KEY="):
            found["key"] = line.split("=", 1)[1]
            ready.set()


def start_server(data_dir: Path, api_key: str | None, extra_args: list[str] | None = None) -> Server:
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info,sandpit=debug")
    if api_key is not None:
        env["SANDPIT_API_KEY"] = api_key
    else:
        env.pop("SANDPIT_API_KEY", None)
    cmd = [sandpit_binary(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
    proc = subprocess.Popen(
        cmd + (extra_args or []),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    log: list[str] = []
    ready = threading.Event()
    found: dict = {}
    threading.Thread(target=_pump, args=(proc.stdout, log, ready, found), daemon=True).start()
    if not ready.wait(60):
        proc.kill()
        raise RuntimeError("sandpit serve did not start:\n" + "\n".join(log[-50:]))
    return Server(endpoint=found["endpoint"], api_key=found["key"], data_dir=data_dir, proc=proc, log=log)


def stop_server(server: Server, timeout: float = 60) -> int:
    server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise


@contextmanager
def checked_server(data_dir: Path, api_key: str | None, extra_args: list[str] | None = None):
    """A running `sandpit serve` on `data_dir`; on exit it is stopped, must
    exit 0, and must leave no cgroups, veths, mounts or processes behind."""
    before = leaks.snapshot(str(data_dir))
    srv = start_server(data_dir, api_key, extra_args)
    yield srv
    code = stop_server(srv)
    time.sleep(0.2)
    left = leaks.leaked(before, leaks.snapshot(str(data_dir)))
    assert code == 0, "sandpit serve exited with %s:\n%s" % (code, "\n".join(srv.log[-80:]))
    assert not left, f"leaked kernel objects after shutdown: {left}"


@pytest.fixture(scope="session")
def server():
    data_dir = Path(tempfile.mkdtemp(prefix="sp-e2e-", dir="/tmp"))
    with checked_server(
        data_dir,
        api_key="sp_e2e_" + secrets.token_urlsafe(16),
        extra_args=["--max-upload-bytes", str(32 << 20)],
    ) as srv:
        os.environ["LANGSMITH_ENDPOINT"] = f"{srv.endpoint}/api"
        os.environ["LANGSMITH_API_KEY"] = srv.api_key
        yield srv
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def client(server):
    from langsmith.sandbox import SandboxClient

    with SandboxClient() as c:
        yield c
