#!/bin/bash
set -e
# Create latency with the Rust client, and mkfs.ext4 vs a sparse copy of a
# pre-formatted blank (docs/benchmarks.md, "disks copied from a blank").
# Usage (root): SANDPIT_BIN=target/release/sandpit bench/disk_blank_bench.sh
B=${SANDPIT_BIN:-target/release/sandpit}
W=$(mktemp -d /tmp/sp-bench-XXXX)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export LANGSMITH_API_KEY=sp_bench_$RANDOM$RANDOM
SANDPIT_API_KEY=$LANGSMITH_API_KEY $B serve --listen 127.0.0.1:$port --data-dir $W/data >$W/server.log 2>&1 &
srv=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:$port/api/v2/sandboxes/boxes -H "X-Api-Key: $LANGSMITH_API_KEY" >/dev/null && break; sleep 0.1; done
uptime
$B bench --endpoint http://127.0.0.1:$port --runs 40 --stream-mib 0
kill -TERM $srv; wait $srv || true
# mkfs vs a sparse copy of a blank, same minute
truncate -s 10G $W/blank.img
/sbin/mkfs.ext4 -q -F -m 0 -i 65536 -O ^has_journal,^resize_inode -E lazy_itable_init=1,nodiscard $W/blank.img
python3 - $W <<'PY'
import subprocess, sys, time, statistics, os
w = sys.argv[1]
def t(cmd):
    xs = []
    for i in range(20):
        if os.path.exists(f"{w}/x.img"): os.remove(f"{w}/x.img")
        if "mkfs" in cmd[0]: subprocess.run(["truncate", "-s", "10G", f"{w}/x.img"], check=True)
        s = time.perf_counter(); subprocess.run(cmd, check=True); xs.append((time.perf_counter() - s) * 1000)
    return statistics.median(xs)
print("mkfs.ext4 10 GiB sparse image: p50 %.1f ms" % t(["/sbin/mkfs.ext4", "-q", "-F", "-m", "0", "-i", "65536", "-O", "^has_journal,^resize_inode", "-E", "lazy_itable_init=1,nodiscard", f"{w}/x.img"]))
print("sparse copy of the blank (cp --sparse=always): p50 %.1f ms" % t(["cp", "--sparse=always", f"{w}/blank.img", f"{w}/x.img"]))
PY
uptime
rm -rf $W
