"""Egress benchmark (docs/benchmarks.md, "Egress"), in one run:

HTTPS GETs (keep-alive, wrk) to an nginx upstream on the host's loopback
with its own test CA:

- direct: wrk on the host straight to nginx;
- passthrough: wrk in a sandbox to a host no rule names (the proxy reads
  the SNI and splices the TLS stream);
- intercepted: wrk in a sandbox to a host a rule names (the proxy
  terminates TLS with a Sandpit leaf certificate, injects a header and
  forwards over a kept-alive upstream TLS connection).

Each target runs with one connection (latency: added p50) and with
--connections (throughput). Needs root, nginx and wrk (scripts/install-deps).

    SANDPIT_BIN=target/release/sandpit python bench/egress_bench.py [--duration 5] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
from conftest import start_server, stop_server  # noqa: E402
from test_egress_inject import make_ca  # noqa: E402

from langsmith.sandbox import SandboxClient  # noqa: E402

NGINX = """
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""


def parse_wrk(out: str) -> dict:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_us": pct("50"), "p99_us": pct("99"), "non2xx": int(errors.group(1)) if errors else 0}


def wrk_args(connections: int, duration: int) -> str:
    return f"-t1 -c{connections} -d{duration}s --latency"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sp-egress-bench-"))
    ca, cert, key = make_ca(work)
    port = free_port()
    (work / "nginx.conf").write_text(NGINX.format(work=work, port=port, cert=cert, key=key))
    subprocess.run(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], check=True)
    data_dir = Path(tempfile.mkdtemp(prefix="sp-egress-bench-srv-", dir="/tmp"))
    extra = ["--egress-ports", "27443,27080,27053", "--egress-upstream-ca", str(ca)]
    for host in ("api.example.test", "other.example.test"):
        extra += ["--egress-resolve", f"{host}=127.0.0.1:{port}"]
    srv = start_server(data_dir, "k-" + secrets.token_hex(8), extra)
    results: dict[str, dict] = {}
    try:
        with SandboxClient(api_endpoint=srv.api, api_key=srv.api_key) as client:
            rules = [{"name": "bench", "match_hosts": ["api.example.test"],
                      "headers": [{"name": "X-Bench", "type": "plaintext", "value": "1"}]}]
            sb = client.create_sandbox(name="egress-bench", proxy_config={"rules": rules})
            try:
                for conns, label in ((1, "1 conn"), (args.connections, f"{args.connections} conns")):
                    flags = wrk_args(conns, args.duration)
                    direct = subprocess.run(
                        ["wrk", *flags.split(), "-H", "Host: api.example.test", f"https://127.0.0.1:{port}/"],
                        capture_output=True, text=True, check=True).stdout
                    results[f"direct, {label}"] = parse_wrk(direct)
                    for name, host in (("passthrough", "other.example.test"), ("intercepted", "api.example.test")):
                        out = sb.run(f"wrk {flags} https://{host}/", timeout=args.duration + 60)
                        assert out.exit_code == 0, out.stderr
                        results[f"{name}, {label}"] = parse_wrk(out.stdout)
            finally:
                client.delete_sandbox("egress-bench")
    finally:
        stop_server(srv)
        subprocess.run(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work), "-s", "stop"], check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"HTTPS GET keep-alive, wrk -t1 -d{args.duration}s, nginx upstream, {os.cpu_count()} CPUs")
    print(f"{'target':<28} {'req/s':>10} {'p50 µs':>9} {'p99 µs':>9} {'non-2xx':>8}")
    for name, r in results.items():
        print(f"{name:<28} {r['rps']:>10.0f} {r['p50_us']:>9.0f} {r['p99_us']:>9.0f} {r['non2xx']:>8}")
    for label in ("1 conn", f"{args.connections} conns"):
        d = results[f"direct, {label}"]
        for name in ("passthrough", "intercepted"):
            r = results[f"{name}, {label}"]
            print(f"{name}, {label}: added p50 {r['p50_us'] - d['p50_us']:.0f} µs, "
                  f"{100 * r['rps'] / d['rps']:.0f}% of direct throughput")


if __name__ == "__main__":
    main()
