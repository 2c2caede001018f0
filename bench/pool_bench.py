#!/usr/bin/env python3
"""Create → first exec from a warm pool vs the cold path, with the
template-era SDK (langsmith 0.7.x), through a real `sandpit serve`.

Each iteration: `create_sandbox(template_name=...)`, `run("true")`, and
then (untimed) delete and wait until the pool is full again, so every pooled
create finds a warm sandbox. The cold path uses a template without a pool.

    SANDPIT_BIN=target/release/sandpit ~/.cache/sandpit/venv-07.../bin/python bench/pool_bench.py --runs 30
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from conftest import start_server, stop_server  # noqa: E402
from langsmith.sandbox import SandboxClient  # noqa: E402


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))] * 1000


def measure(client, srv, template: str, runs: int, pool: str | None) -> list[float]:
    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        sb = client.create_sandbox(template_name=template, name=f"b-{template}-{i}")
        sb.run("true")
        out.append(time.perf_counter() - t0)
        client.delete_sandbox(sb.name)
        while pool:
            state = httpx.get(f"{srv.api}/pools/{pool}", headers=srv.headers()).json()
            if state["ready_replicas"] == state["replicas"]:
                break
            time.sleep(0.02)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="sp-poolbench-", dir="/tmp"))
    srv = start_server(data, api_key="k-poolbench", extra_args=["--reconcile-interval-ms", "500"])
    try:
        client = SandboxClient(api_endpoint=srv.api, api_key=srv.api_key, timeout=120)
        client.create_template(name="cold", image="host")
        client.create_template(name="pooled", image="host")
        client.create_pool(name="bench", template_name="pooled", replicas=2)
        measure(client, srv, "cold", 3, None)  # warm-up
        cold = measure(client, srv, "cold", args.runs, None)
        pooled = measure(client, srv, "pooled", args.runs, "bench")
        for label, s in (("cold (template, no pool)", cold), ("warm pool", pooled)):
            print(f"{label:26} p50 {pct(s, 0.5):6.1f} ms  p90 {pct(s, 0.9):6.1f} ms  "
                  f"mean {statistics.mean(s) * 1000:6.1f} ms  (n={len(s)})")
        client.delete_pool("bench")
    finally:
        stop_server(srv)
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
