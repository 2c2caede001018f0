"""Fixtures that run a real `sandpit serve` for the end-to-end tests.

The server binary comes from $SANDPIT_BIN (scripts/test sets it) or
target/release/sandpit. Every session gets a fresh data dir and a known
admin key, exports LANGSMITH_ENDPOINT / LANGSMITH_API_KEY so the SDK's
`SandboxClient()` works unchanged, and checks at the end that the server
exited cleanly and left no cgroups, veths, mounts or processes behind.

Only one `sandpit serve` runs per host (it takes /run/sandpit.lock), so
starting a server stops the one running (it must exit 0) and stopping that
server starts the previous one again, on the same address, data dir and key.
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
    # How it was started, to start it again after a nested server.
    given_key: str | None = None
    extra_args: list[str] = field(default_factory=list)
    # The server this one stopped to take the host, started again after it.
    suspended: "Server | None" = None

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
        # Not on a terminal, the key itself is not printed (see
        # test_security_server.py): the line names where it is.
        if line.startswith("export LANGSMITH_API_KEY="):
            ready.set()


# The server holding the host lock (or the last one started, if it died).
_current: Server | None = None


def start_server(data_dir: Path, api_key: str | None, extra_args: list[str] | None = None) -> Server:
    """Start `sandpit serve`, first stopping the server that runs (if any);
    `stop_server` of the new one starts that one again."""
    global _current
    suspended = _take_host()
    srv = _launch(data_dir, api_key, extra_args or [], "127.0.0.1:0")
    srv.suspended = suspended
    _current = srv
    return srv


def _take_host() -> Server | None:
    """Stop the running server so another may start; returns the server to
    start again later."""
    running = _current
    if running is None:
        return None
    if running.proc.poll() is not None:
        # Stopped or killed by its test: whatever it had suspended waits on.
        return running.suspended
    code = _terminate(running)
    assert code == 0, "sandpit serve exited with %s when suspended:\n%s" % (code, "\n".join(running.log[-80:]))
    return running


def _launch(
    data_dir: Path, api_key: str | None, extra_args: list[str], listen: str, log: list[str] | None = None
) -> Server:
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info,sandpit=debug")
    if api_key is not None:
        env["SANDPIT_API_KEY"] = api_key
    else:
        env.pop("SANDPIT_API_KEY", None)
    cmd = [sandpit_binary(), "serve", "--listen", listen, "--data-dir", str(data_dir)]
    proc = subprocess.Popen(
        cmd + extra_args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    log = log if log is not None else []
    ready = threading.Event()
    found: dict = {}
    threading.Thread(target=_pump, args=(proc.stdout, log, ready, found), daemon=True).start()
    if not ready.wait(60):
        proc.kill()
        raise RuntimeError("sandpit serve did not start:\n" + "\n".join(log[-50:]))
    key = api_key if api_key is not None else (data_dir / "admin-api-key").read_text().strip()
    return Server(
        endpoint=found["endpoint"],
        api_key=key,
        data_dir=data_dir,
        proc=proc,
        log=log,
        given_key=api_key,
        extra_args=list(extra_args),
    )


def _terminate(server: Server, timeout: float = 60) -> int:
    server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise


def _resume(server: Server) -> None:
    """Start a suspended server again, on the same address."""
    listen = server.endpoint.removeprefix("http://")
    # Its output goes on into the log list the tests hold.
    again = _launch(server.data_dir, server.given_key, server.extra_args, listen, log=server.log)
    assert again.endpoint == server.endpoint, (again.endpoint, server.endpoint)
    server.proc = again.proc


def stop_server(server: Server, timeout: float = 60) -> int:
    """Stop `server`; start again the server it had suspended."""
    global _current
    code = _terminate(server, timeout)
    if _current is server:
        _current = server.suspended
        if server.suspended is not None:
            _resume(server.suspended)
    return code


@contextmanager
def host_free():
    """No `sandpit serve` runs inside; the one that ran is started again
    after (for tests that start servers by hand)."""
    global _current
    suspended = _take_host()
    try:
        yield
    finally:
        if suspended is not None and suspended.proc.poll() is not None:
            _resume(suspended)
        _current = suspended


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
    # SANDPIT_E2E_DATABASE_URL: the session server's store is that database
    # (scripts/test points it at a throwaway PostgreSQL for a subset).
    database = os.environ.get("SANDPIT_E2E_DATABASE_URL")
    with checked_server(
        data_dir,
        api_key="sp_e2e_" + secrets.token_urlsafe(16),
        extra_args=["--max-upload-bytes", str(32 << 20)] + (["--database-url", database] if database else []),
    ) as srv:
        os.environ["LANGSMITH_ENDPOINT"] = f"{srv.endpoint}/api"
        os.environ["LANGSMITH_API_KEY"] = srv.api_key
        yield srv
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def srv(server):
    """The server a module's tests talk to: the session server, unless the
    module starts one of its own (it then defines its own `srv`)."""
    return server


@pytest.fixture
def client(srv):
    """The langsmith SDK's client for the module's server."""
    from helpers import sdk_client

    with sdk_client(srv) as c:
        yield c


@pytest.fixture
def http(srv):
    """httpx on the module's server's LangSmith API, with its key."""
    import httpx

    with httpx.Client(base_url=srv.api, headers=srv.headers(), timeout=60) as c:
        yield c


@pytest.fixture
def names(client):
    """Names of sandboxes a test made, deleted after it."""
    from langsmith.sandbox import ResourceNotFoundError

    made: list[str] = []
    yield made
    for name in made:
        try:
            client.delete_sandbox(name)
        except ResourceNotFoundError:
            pass


@pytest.fixture(scope="module")
def workdir(request):
    """A scratch directory for the module (registries, server data)."""
    path = Path(tempfile.mkdtemp(prefix=f"sp-{request.module.__name__}-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def registry(workdir):
    """A throwaway OCI registry on loopback (tests/e2e/registry.py)."""
    from registry import start_registry

    reg = start_registry(workdir)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def registry_server(registry, workdir):
    """A server of the module's own that may pull from the module's registry."""
    with checked_server(
        workdir / "data",
        api_key="sp_reg_" + secrets.token_urlsafe(12),
        extra_args=["--insecure-registry", registry.host],
    ) as server:
        yield server
