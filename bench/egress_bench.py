"""Egress benchmark (docs/benchmarks.md, "Egress"), in one run:

HTTPS GETs (keep-alive, wrk) to an nginx upstream on the host with its
own test CA:

- direct (netns): wrk in a network namespace this script makes, joined
  to the host by its own veth pair, straight to nginx — the sandbox's
  client placement (own netns, a veth hop) without the proxy. The
  baseline the ratios are computed against.
- direct (loopback): wrk on the host to nginx on 127.0.0.1 (the old
  baseline; no veth hop), for reference.
- passthrough (NAT route): wrk in a sandbox whose policy has no allow or
  deny list, to a host no rule names: Sandpit's DNS answers an alias with
  a direct route, and the TLS stream goes to nginx by NAT, around the
  proxy (crates/egress/src/direct.rs);
- passthrough (relay): the same host from a second sandbox whose policy
  has a deny list (for another name), so the proxy reads the SNI and
  relays the TLS stream untouched (`splice(2)`);
- intercepted: wrk in a sandbox to a host a rule names (the proxy
  terminates TLS with a Sandpit leaf certificate, injects a header and
  forwards over a kept-alive upstream TLS connection).

The sandbox gets every CPU of the machine (`vcpus=os.cpu_count()`), so its
CPU quota does not hold wrk back where the netns client has none. Each
target runs with one connection (latency: added p50) and with
--connections (throughput), and once more downloading a --bulk-mib file
over one connection (MB/s); --rounds repeats the whole set and reports the
median of each row. Sandbox rows also show the proxy's CPU per request:
the user and system time of the `sandpit serve` process over the run. Needs root, nginx, wrk and iproute2
(scripts/install-deps).

    SANDPIT_BIN=target/release/sandpit python bench/egress_bench.py [--duration 5] [--connections 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import statistics
import tempfile
from contextlib import contextmanager
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
    listen {veth_host}:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ return 200 "ok\\n"; }}
    location /big {{ alias {work}/big; }}
  }}
}}
"""


def parse_wrk(out: str) -> dict:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out).groups()
    mb_s = float(value) * {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}[unit]

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "mb_s": mb_s, "p50_us": pct("50"), "p99_us": pct("99"),
            "non2xx": int(errors.group(1)) if errors else 0}


# (row, sandbox, host): the open-policy sandbox takes a NAT route to a host
# no rule names; the one with a deny list has the proxy relay it.
SANDBOX_ROWS = (("passthrough (NAT route)", "open", "other.example.test"),
                ("passthrough (relay)", "listed", "other.example.test"),
                ("intercepted", "open", "api.example.test"))


def curl_mb_s(sb, flags: str, url: str, times: int = 5) -> float:
    """Median MB/s of `times` curl downloads of `url` in sandbox `sb`."""
    out = sb.run(f"for i in $(seq {times}); do curl -sS {flags} --cacert /tmp/up-ca.pem -o /dev/null "
                 f"-w '%{{speed_download}}\\n' {url} || exit 1; done", timeout=300)
    assert out.exit_code == 0, out.stdout + out.stderr
    return statistics.median(float(x) / 1e6 for x in out.stdout.split())


def wrk_args(connections: int, duration: int) -> str:
    return f"-t1 -c{connections} -d{duration}s --latency"


NETNS = "spbench"
VETH = ("spbench0", "spbench1")  # host end, namespace end (not spv*: no sandbox firewall rules)
VETH_HOST, VETH_NS = "10.253.254.1", "10.253.254.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


@contextmanager
def client_netns():
    """A network namespace joined to the host by a veth pair, as a sandbox is."""
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    ip("netns", "add", NETNS)
    try:
        ip("link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1], "netns", NETNS)
        ip("addr", "add", f"{VETH_HOST}/30", "dev", VETH[0])
        ip("link", "set", VETH[0], "up")
        ip("-n", NETNS, "addr", "add", f"{VETH_NS}/30", "dev", VETH[1])
        ip("-n", NETNS, "link", "set", VETH[1], "up")
        ip("-n", NETNS, "link", "set", "lo", "up")
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def wrk_direct(flags: str, url: str, netns: bool) -> dict:
    prefix = ["ip", "netns", "exec", NETNS] if netns else []
    out = subprocess.run([*prefix, "wrk", *flags.split(), "-H", "Host: api.example.test", url],
                         capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--bulk-mib", type=int, default=16, help="size of the bulk download (1 conn)")
    args = parser.parse_args()
    with client_netns():
        run(args)


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sp-egress-bench-"))
    ca, cert, key = make_ca(work)
    port = free_port()
    (work / "big").write_bytes(os.urandom(args.bulk_mib << 20))
    # nginx's workers (not root) read the file: mkdtemp makes 0700 dirs.
    work.chmod(0o755)
    (work / "big").chmod(0o644)
    (work / "nginx.conf").write_text(NGINX.format(work=work, port=port, cert=cert, key=key, veth_host=VETH_HOST))
    subprocess.run(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], check=True)
    data_dir = Path(tempfile.mkdtemp(prefix="sp-egress-bench-srv-", dir="/tmp"))
    extra = ["--egress-ports", "27443,27080,27053", "--egress-upstream-ca", str(ca)]
    # Upstreams on the veth's host address: NAT from a sandbox's veth cannot
    # reach 127.0.0.0/8 (loopback targets always take the relay).
    for host in ("api.example.test", "other.example.test"):
        extra += ["--egress-resolve", f"{host}={VETH_HOST}:{port}"]
    srv = start_server(data_dir, "k-" + secrets.token_hex(8), extra)
    runs: dict[str, list[dict]] = {}
    curls: dict[str, list[float]] = {}
    try:
        with SandboxClient(api_endpoint=srv.api, api_key=srv.api_key) as client:
            rules = [{"name": "bench", "match_hosts": ["api.example.test"],
                      "headers": [{"name": "X-Bench", "type": "plaintext", "value": "1"}]}]
            sb = client.create_sandbox(name="egress-bench", proxy_config={"rules": rules},
                                       vcpus=os.cpu_count())
            listed = client.create_sandbox(
                name="egress-bench-listed", vcpus=os.cpu_count(),
                proxy_config={"rules": rules, "access_control": {"deny_list": ["denied.example.test"]}})
            try:
                sb.write("/tmp/up-ca.pem", ca.read_text())
                sets = ((1, "1 conn", "/"), (args.connections, f"{args.connections} conns", "/"),
                        (1, f"bulk {args.bulk_mib} MiB", "/big"))
                for _ in range(args.rounds):
                    for conns, label, path in sets:
                        flags = wrk_args(conns, args.duration)
                        runs.setdefault(f"direct (netns), {label}", []).append(
                            wrk_direct(flags, f"https://{VETH_HOST}:{port}{path}", netns=True))
                        runs.setdefault(f"direct (loopback), {label}", []).append(
                            wrk_direct(flags, f"https://127.0.0.1:{port}{path}", netns=False))
                        for name, box, host in SANDBOX_ROWS:
                            box = {"open": sb, "listed": listed}[box]
                            before = cpu_seconds(srv.proc.pid)
                            out = box.run(f"wrk {flags} https://{host}{path}", timeout=args.duration + 60)
                            after = cpu_seconds(srv.proc.pid)
                            assert out.exit_code == 0, out.stderr
                            result = parse_wrk(out.stdout)
                            # The proxy's CPU per request (the server process; the
                            # exec that starts wrk is a rounding error).
                            requests = result["rps"] * args.duration
                            result["usr_us"] = (after[0] - before[0]) * 1e6 / requests
                            result["sys_us"] = (after[1] - before[1]) * 1e6 / requests
                            runs.setdefault(f"{name}, {label}", []).append(result)
                    # Clients that honour HTTPS_PROXY (set in every sandbox)
                    # tunnel with CONNECT: curl's bulk download each way.
                    for name, flag in (("curl, NAT route", "--noproxy '*'"), ("curl, CONNECT tunnel", "")):
                        curls.setdefault(name, []).append(curl_mb_s(sb, flag, "https://other.example.test/big"))
            finally:
                client.delete_sandbox("egress-bench")
                client.delete_sandbox("egress-bench-listed")
    finally:
        stop_server(srv)
        subprocess.run(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work), "-s", "stop"], check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    results = {name: median(r) for name, r in runs.items()}
    for name, speeds in curls.items():
        print(f"{name}, bulk {args.bulk_mib} MiB: {statistics.median(speeds):.0f} MB/s "
              f"(median of {len(speeds)}; {' '.join(f'{x:.0f}' for x in speeds)})")
    print(f"HTTPS GET keep-alive, wrk -t1 -d{args.duration}s, nginx upstream, {os.cpu_count()} CPUs, "
          f"median of {args.rounds} round(s)")
    print(f"{'target':<44} {'req/s':>10} {'MB/s':>8} {'p50 µs':>9} {'p99 µs':>9} {'non-2xx':>8} "
          f"{'proxy usr/sys µs/req':>21}  all req/s")
    for name, r in results.items():
        every = " ".join(f"{x['rps']:.0f}" for x in runs[name])
        cpu = f"{r['usr_us']:.1f}/{r['sys_us']:.1f}" if "usr_us" in r else "-"
        print(f"{name:<44} {r['rps']:>10.0f} {r['mb_s']:>8.0f} {r['p50_us']:>9.0f} {r['p99_us']:>9.0f} "
              f"{r['non2xx']:>8.0f} {cpu:>21}  {every}")
    for label in ("1 conn", f"{args.connections} conns", f"bulk {args.bulk_mib} MiB"):
        d = results[f"direct (netns), {label}"]
        assert all(r["non2xx"] == 0 for r in results.values()), "some requests failed"
        for name, _, _ in SANDBOX_ROWS:
            r = results[f"{name}, {label}"]
            print(f"{name}, {label}: added p50 {r['p50_us'] - d['p50_us']:.0f} µs, "
                  f"{100 * r['rps'] / d['rps']:.0f}% of direct (netns) throughput")


if __name__ == "__main__":
    main()
