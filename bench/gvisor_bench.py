"""Namespaces vs gVisor in one run (issue 15 part 2): create -> first
`run("true")` complete, the `run("true")` round trip, and a syscall-heavy
command (`find /usr | wc -l`, the host image's /usr), per isolation level,
through the Python SDK against one server.

Usage: LANGSMITH_ENDPOINT=... LANGSMITH_API_KEY=... python bench/gvisor_bench.py [--runs N]
(bench/gvisor.sh starts a server and runs this.)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import httpx
from langsmith.sandbox import SandboxClient


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)

    def at(q: float) -> float:
        rank = max(1, math.ceil(len(samples) * q))
        return samples[rank - 1] * 1000

    return f"n={len(samples):<4} p50={at(0.5):8.2f} ms  p99={at(0.99):8.2f} ms"


def create(api: str, headers: dict, name: str, isolation: str) -> None:
    body = {"name": name, "isolation": isolation, "wait_for_ready": True}
    resp = httpx.post(f"{api}/boxes", headers=headers, json=body, timeout=120)
    resp.raise_for_status()


def bench(client: SandboxClient, api: str, headers: dict, isolation: str, runs: int) -> None:
    samples = []
    for i in range(runs):
        name = f"bench-{isolation[:2]}-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        create(api, headers, name, isolation)
        client.get_sandbox(name).run("true")
        samples.append(time.perf_counter() - t0)
        client.delete_sandbox(name)
    print(f"{isolation:<10} create -> first run(\"true\")  {percentiles(samples)}")

    name = f"bench-{isolation[:2]}-{os.getpid()}-rt"
    create(api, headers, name, isolation)
    try:
        sb = client.get_sandbox(name)
        for _ in range(5):
            sb.run("true")
        samples = []
        for _ in range(runs * 4):
            t0 = time.perf_counter()
            sb.run("true")
            samples.append(time.perf_counter() - t0)
        print(f"{isolation:<10} run(\"true\") round trip     {percentiles(samples)}")
        times, count = [], ""
        for _ in range(5):
            t0 = time.perf_counter()
            count = sb.run("find /usr | wc -l", timeout=600).stdout.strip()
            times.append(time.perf_counter() - t0)
        print(
            f"{isolation:<10} find /usr | wc -l ({count} entries)  "
            f"median={statistics.median(times) * 1000:8.1f} ms  min={min(times) * 1000:8.1f} ms"
        )
    finally:
        client.delete_sandbox(name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    api = os.environ["LANGSMITH_ENDPOINT"].rstrip("/") + "/v2/sandboxes"
    headers = {"X-Api-Key": os.environ["LANGSMITH_API_KEY"]}
    client = SandboxClient()
    for isolation in ("namespaces", "gvisor"):
        bench(client, api, headers, isolation, args.runs)


if __name__ == "__main__":
    main()
