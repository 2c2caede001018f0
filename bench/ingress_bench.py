"""Ingress benchmark (docs/benchmarks.md, "Ingress"), against a running
`sandpit serve` named by LANGSMITH_ENDPOINT / LANGSMITH_API_KEY:

- a small GET (2-byte body) with wrk, straight to the sandbox's address,
  through the service URL, and through Debian's nginx as a reverse proxy
  to the same address (when nginx is installed), in the same run: loaded
  (`--connections`, for requests/s) and on one connection (for the latency
  a proxy adds, without queueing), in interleaved rounds;
- a 1 GiB download through `sandpit tunnel`.

    python bench/ingress_bench.py SANDPIT_BINARY [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from statistics import median

from langsmith.sandbox import SandboxClient

UPSTREAM = r'''
import asyncio
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
async def handle(r, w):
    try:
        while True:
            await r.readuntil(b"\r\n\r\n")
            w.write(RESP)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", 8080, backlog=4096)
    await s.serve_forever()
asyncio.run(main())
'''

BLOB = r'''
import socket, sys
total = int(sys.argv[2])
chunk = bytes(1 << 20)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
while True:
    c, _ = s.accept()
    try:
        with c:
            sent = 0
            while sent < total:
                sent += c.send(chunk[: min(len(chunk), total - sent)])
    except OSError:
        pass
'''

NGINX = """
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream sb {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://sb; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, args, headers: dict[str, str] | None = None, connections: int | None = None) -> dict:
    conns = connections or args.connections
    cmd = ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{args.duration}s", "--latency", url]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_us": pct("50"), "p99_us": pct("99"), "non2xx": int(errors.group(1)) if errors else 0}


def start_nginx(upstream: str) -> tuple[str, int]:
    work = tempfile.mkdtemp(prefix="sp-nginx-")
    port = free_port()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX.format(work=work, upstream=upstream, port=port))
    subprocess.run(["nginx", "-c", conf, "-p", work], check=True)
    time.sleep(0.3)
    return work, port


def stop_nginx(work: str) -> None:
    conf = os.path.join(work, "nginx.conf")
    subprocess.run(["nginx", "-c", conf, "-p", work, "-s", "stop"], check=False)
    shutil.rmtree(work, ignore_errors=True)


def wait_port(sb, port: int) -> None:
    probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 1)\""
    for _ in range(100):
        if sb.run(probe, timeout=10).exit_code == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def tunnel_throughput(sandpit: str, sb, total: int) -> float:
    sb.write("/tmp/blob.py", BLOB)
    sb.run(f"python3 /tmp/blob.py 9001 {total}", timeout=0, wait=False)
    wait_port(sb, 9001)
    port = free_port()
    proc = subprocess.Popen(
        [sandpit, "tunnel", sb.name, "9001", "--local-port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdout.readline()
        buf = bytearray(4 << 20)
        got = 0
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            while n := conn.recv_into(buf):
                got += n
        elapsed = time.perf_counter() - start
        assert got == total, (got, total)
        return total / elapsed / 1e6
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sandpit")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tunnel-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with SandboxClient() as client, client.sandbox() as sb:
        sb.write("/tmp/upstream.py", UPSTREAM)
        sb.run("python3 /tmp/upstream.py", timeout=0, wait=False)
        wait_port(sb, 8080)
        addr = sb.run(
            "python3 -c \"import socket; s=socket.socket(2,2); s.connect(('10.255.255.255',1)); "
            "print(s.getsockname()[0])\"",
            timeout=10,
        ).stdout.strip()
        svc = sb.service(port=8080, expires_in_seconds=3600)
        targets = {
            "direct": (f"http://{addr}:8080/", {}),
            "service URL": (svc.service_url, {"X-Langsmith-Sandbox-Service-Token": svc.token}),
        }
        nginx = start_nginx(f"{addr}:8080") if shutil.which("nginx") else None
        if nginx:
            targets["nginx"] = (f"http://127.0.0.1:{nginx[1]}/", {})
        loaded: dict[str, list[dict]] = {name: [] for name in targets}
        single: dict[str, list[dict]] = {name: [] for name in targets}
        try:
            # Interleaved rounds, so drift on a shared machine hits all paths.
            for _ in range(args.rounds):
                for name, (url, headers) in targets.items():
                    loaded[name].append(wrk(url, args, headers))
                    single[name].append(wrk(url, args, headers, connections=1))
        finally:
            if nginx:
                stop_nginx(nginx[0])
        print(f"small GET, wrk -d{args.duration}s, median of {args.rounds} interleaved rounds")
        print(f"{'path':<14}{'req/s @' + str(args.connections):>12}{'p50 µs':>9}{'p99 µs':>9}"
              f"{'req/s @1':>10}{'p50 µs @1':>11}{'added':>8}{'non-2xx':>9}")
        base = median(r["p50_us"] for r in single["direct"])
        for name in targets:
            rps = median(r["rps"] for r in loaded[name])
            p50 = median(r["p50_us"] for r in loaded[name])
            p99 = median(r["p99_us"] for r in loaded[name])
            rps1 = median(r["rps"] for r in single[name])
            p50_1 = median(r["p50_us"] for r in single[name])
            errors = sum(r["non2xx"] for r in loaded[name] + single[name])
            print(f"{name:<14}{rps:>12.0f}{p50:>9.0f}{p99:>9.0f}{rps1:>10.0f}{p50_1:>11.0f}"
                  f"{p50_1 - base:>8.0f}{errors:>9}")
        mbps = tunnel_throughput(args.sandpit, sb, args.tunnel_mib << 20)
        print(f"tunnel: {args.tunnel_mib} MiB download through `sandpit tunnel`: {mbps:.0f} MB/s")


if __name__ == "__main__":
    main()
