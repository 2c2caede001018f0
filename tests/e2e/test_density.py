"""The small form of the density benchmark (issue 19): `sandpit bench` holds
50 idle sandboxes at once, created 16 at a time (so several runtime helpers
work in parallel), reads what they cost the host, times `GET /boxes/{name}`
meanwhile, deletes them and checks that no sandbox, cgroup or link is left.
The full form is `sandpit bench --only density --density 2000`
(docs/benchmarks.md). The module has a server of its own on a fresh data
dir, so the first burst's helpers all find no blank disk image yet and make
it at once (they once corrupted each other's)."""

from __future__ import annotations

import re
import secrets
import subprocess

import pytest
from conftest import checked_server, sandpit_binary

N = 50


@pytest.fixture(scope="module")
def srv(workdir):
    with checked_server(workdir / "data", api_key="k-density-" + secrets.token_hex(8)) as server:
        yield server


def _bench(srv, *args: str) -> str:
    out = subprocess.run(
        [sandpit_binary(), "bench", "--endpoint", srv.endpoint, "--api-key", srv.api_key,
         "--server-pid", str(srv.proc.pid), *args],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, f"sandpit bench failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_burst_uses_several_runtime_helpers(srv):
    text = _bench(srv, "--only", "burst", "--burst", "32", "--concurrency", "16")
    assert re.search(r"burst: [0-9.]+ creates/s", text), text
    helpers = [
        pid for pid in subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()
        if "runtime-helper" in open(f"/proc/{pid}/cmdline").read()
    ]
    assert len(helpers) > 1, f"one runtime helper served 16 concurrent creates: {helpers}"
    namespaces = {subprocess.run(["readlink", f"/proc/{p}/ns/mnt"], capture_output=True, text=True).stdout for p in helpers}
    assert len(namespaces) == 1, f"helpers in different mount namespaces: {namespaces}"


def test_density_small_form_holds_and_cleans_up(srv):
    text = _bench(srv, "--only", "density", "--density", str(N))
    assert re.search(rf"density: {N} idle sandboxes created", text), text
    per = re.search(r"MiB per sandbox: .*= (-?[0-9.]+) MiB", text)
    assert per, text
    # The cgroup charge alone is each sandbox's agent and page cache: it is
    # never nothing, and far below the sandbox's memory limit.
    cgroup = float(re.search(r"cgroup (-?[0-9.]+)", text.split("MiB per sandbox:")[1]).group(1))
    assert 0.05 < cgroup < 64, text
    p99 = re.search(rf"API GET /boxes/\{{name\}}, {N} sandboxes\s+n=\S+\s+p50=\s*[0-9.]+ ms\s+p90=\s*[0-9.]+ ms\s+p99=\s*([0-9.]+) ms", text)
    assert p99 and float(p99.group(1)) < 1000, text
    assert re.search(r"left after [0-9.]+ s: nothing", text), text
