"""Ingress benchmark (docs/benchmarks.md, "Ingress"), against a running
`sandpit serve` named by LANGSMITH_ENDPOINT / LANGSMITH_API_KEY:

- a small GET (2-byte body) with wrk, straight to the sandbox's address,
  through the service URL, and through Debian's nginx as a reverse proxy
  to the same address (when nginx is installed), in the same run;
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


def wrk(url: str, args, headers: dict[str, str] | None = None) -> dict:
    cmd = ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_us": pct("50"), "p99_us": pct("99"), "non2xx": int(errors.group(1)) if errors else 0}


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
        results = {
            "direct": wrk(f"http://{addr}:8080/", args),
            "service URL": wrk(svc.service_url, args, {"X-Langsmith-Sandbox-Service-Token": svc.token}),
        }
        if shutil.which("nginx"):
            work = tempfile.mkdtemp(prefix="sp-nginx-")
            port = free_port()
            conf = os.path.join(work, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX.format(work=work, upstream=f"{addr}:8080", port=port))
            subprocess.run(["nginx", "-c", conf, "-p", work], check=True)
            try:
                time.sleep(0.3)
                results["nginx"] = wrk(f"http://127.0.0.1:{port}/", args)
            finally:
                subprocess.run(["nginx", "-c", conf, "-p", work, "-s", "stop"], check=False)
                shutil.rmtree(work, ignore_errors=True)
        print(f"small GET, wrk -t2 -c{args.connections} -d{args.duration}s")
        print(f"{'path':<14}{'req/s':>10}{'p50 µs':>10}{'p99 µs':>10}{'non-2xx':>9}")
        for name, r in results.items():
            print(f"{name:<14}{r['rps']:>10.0f}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}{r['non2xx']:>9}")
        mbps = tunnel_throughput(args.sandpit, sb, args.tunnel_mib << 20)
        print(f"tunnel: {args.tunnel_mib} MiB download through `sandpit tunnel`: {mbps:.0f} MB/s")


if __name__ == "__main__":
    main()
