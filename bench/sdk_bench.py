"""The same measurements as `sandpit bench`, through the Python SDK
(langsmith==0.15.0): what a Python user sees, SDK overhead included.

Usage: LANGSMITH_ENDPOINT=... LANGSMITH_API_KEY=... python bench/sdk_bench.py [--runs N] [--stream-mib M]
"""

from __future__ import annotations

import argparse
import math
import time

from langsmith.sandbox import SandboxClient

LINE = "sandpit streaming benchmark: the quick brown fox jumps over the lazy dog"


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)

    def at(q: float) -> float:
        rank = max(1, math.ceil(len(samples) * q))
        return samples[rank - 1] * 1000

    return f"n={len(samples):<4} p50={at(0.5):8.2f} ms  p90={at(0.9):8.2f} ms  p99={at(0.99):8.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--stream-mib", type=int, default=1024)
    args = parser.parse_args()
    client = SandboxClient()

    samples = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        sb = client.create_sandbox()
        sb.run("true")
        samples.append(time.perf_counter() - t0)
        client.delete_sandbox(sb.name)
    label = 'SDK: create -> first run("true") complete'
    print(f"{label:<46} {percentiles(samples)}")

    with client.sandbox(mem_bytes=2 << 30) as sb:
        for _ in range(5):
            sb.run("true")
        samples = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            sb.run("true")
            samples.append(time.perf_counter() - t0)
        label = 'SDK: run("true") round trip (WebSocket)'
        print(f"{label:<46} {percentiles(samples)}")

        if args.stream_mib:
            size = args.stream_mib << 20
            sb.run(f"yes '{LINE}' | head -c {size} > /home/user/stream.txt", timeout=600)
            t0 = time.perf_counter()
            handle = sb.run("cat /home/user/stream.txt", timeout=600, wait=False)
            received = sum(len(chunk.data) for chunk in handle)
            elapsed = time.perf_counter() - t0
            assert received == size, (received, size)
            print(f"SDK: cat of {args.stream_mib} MiB, iterating a CommandHandle  {size / elapsed / 1e6:7.0f} MB/s")


if __name__ == "__main__":
    main()
