#!/usr/bin/env python3
"""Soak: create and delete many sandboxes, then check the server and the
kernel are back where they started.

Starts its own `sandpit serve` on a scratch data dir, warms up (one
create/delete), records a baseline, creates and deletes `--sequential`
sandboxes one after another, then `--concurrent` at once, and compares:
server RSS and open file descriptors, mounts, cgroups, veths and sandbox
processes. Prints the figures; exits 1 if a kernel object leaked, the fd count
grew, or RSS grew by more than `--max-rss-growth-mib`.

    SANDPIT_BIN=target/release/sandpit python3 bench/soak.py --sequential 1000 --concurrent 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import leaks  # noqa: E402
from conftest import start_server, stop_server  # noqa: E402
from langsmith.sandbox import SandboxClient  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def helper_pids(pid: int) -> list[int]:
    """The server and its runtime helpers (child processes of any of its
    threads)."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            children += Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            pass
    return [pid, *map(int, children)]


def measure(server, marker: str) -> dict:
    pids = helper_pids(server.proc.pid)
    objects = leaks.snapshot(marker)
    return {
        "rss_kib": sum(rss_kib(p) for p in pids),
        # Database files are held by the connection pool (at most 4 SQLite
        # connections), which grows under concurrency: counted apart.
        "db_fds": sum(1 for p in pids for f in fds(p) if "/sandpit.db" in f),
        "fds": sum(1 for p in pids for f in fds(p) if "/sandpit.db" not in f),
        "_fds": sorted(f for p in pids for f in fds(p) if "/sandpit.db" not in f),
        **{k: len(v) for k, v in objects.items()},
        "_objects": objects,
    }


def cycle(client: SandboxClient, name: str) -> float:
    t0 = time.perf_counter()
    sb = client.create_sandbox(name=name, idle_ttl_seconds=0)
    assert sb.run("echo ok").stdout == "ok\n"
    client.delete_sandbox(name)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequential", type=int, default=1000)
    ap.add_argument("--concurrent", type=int, default=100)
    ap.add_argument("--bursts", type=int, default=1, help="repeat the concurrent phase")
    ap.add_argument("--max-rss-growth-mib", type=float, default=32)
    args = ap.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="sp-soak-", dir="/tmp"))
    marker = str(data_dir)
    kernel_before = leaks.snapshot(marker)
    server = start_server(data_dir, api_key="k-soak")
    ok = True
    try:
        client = SandboxClient(api_endpoint=server.api, api_key=server.api_key, timeout=120)
        # Warm up at the burst's concurrency: the server starts its extra
        # runtime helpers (at most 4, each with its pipes) the first time
        # every running one is busy, so they belong to the baseline.
        with ThreadPoolExecutor(max_workers=args.concurrent) as pool:
            list(pool.map(lambda i: cycle(client, f"warmup-{i}"), range(args.concurrent)))
        client.close()
        time.sleep(1)
        base = measure(server, marker)
        client = SandboxClient(api_endpoint=server.api, api_key=server.api_key, timeout=120)

        t0 = time.perf_counter()
        seq = [cycle(client, f"seq-{i}") for i in range(args.sequential)]
        seq_wall = time.perf_counter() - t0
        after_seq = measure(server, marker)

        t0 = time.perf_counter()
        conc = []
        for burst in range(args.bursts):
            with ThreadPoolExecutor(max_workers=args.concurrent) as pool:
                conc += pool.map(lambda i: cycle(client, f"conc-{i}"), range(args.concurrent))
            if args.bursts > 1:
                print(f"after burst {burst + 1}: rss {measure(server, marker)['rss_kib']} KiB")
        conc_wall = (time.perf_counter() - t0) / args.bursts
        left = client.list_sandboxes()
        # Close the client's pooled keep-alive connections: they are the
        # client's, not a leak, and the server holds one fd for each.
        client.close()
        time.sleep(1)
        after = measure(server, marker)

        seq.sort()
        if seq:
            print(f"sequential: {args.sequential} create+exec+delete in {seq_wall:.1f} s "
                  f"(p50 {seq[len(seq) // 2] * 1000:.0f} ms, max {seq[-1] * 1000:.0f} ms)")
        print(f"concurrent: {args.concurrent} at once in {conc_wall:.1f} s per burst (max {max(conc) * 1000:.0f} ms)")
        print(f"{'':14}{'baseline':>12}{'after seq':>12}{'after conc':>12}")
        for key in ("rss_kib", "fds", "db_fds", "mounts", "cgroups", "veths", "processes"):
            print(f"{key:14}{base[key]:>12}{after_seq[key]:>12}{after[key]:>12}")
        print(f"sandboxes listed at the end: {len(left)}")

        growth_mib = (after["rss_kib"] - base["rss_kib"]) / 1024
        if left:
            print("FAIL: sandboxes left in the list"); ok = False
        if after["fds"] > base["fds"]:
            extra = list(after["_fds"])
            for f in base["_fds"]:
                if f in extra:
                    extra.remove(f)
            print(f"FAIL: file descriptors grew: {extra}"); ok = False
        if after["db_fds"] > 4 * 3:
            print("FAIL: more database fds than the pool allows"); ok = False
        if growth_mib > args.max_rss_growth_mib:
            print(f"FAIL: RSS grew by {growth_mib:.1f} MiB"); ok = False
        for key in ("mounts", "cgroups", "veths", "processes"):
            if after["_objects"][key] - base["_objects"][key]:
                print(f"FAIL: leaked {key}: {after['_objects'][key] - base['_objects'][key]}"); ok = False
    finally:
        code = stop_server(server)
        shutil.rmtree(data_dir, ignore_errors=True)
    left = leaks.leaked(kernel_before, leaks.snapshot(marker))
    if code != 0 or left:
        print(f"FAIL: server exit {code}, leaked after shutdown: {left}"); ok = False
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
