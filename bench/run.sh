#!/usr/bin/env bash
# Reproduce docs/benchmarks.md: start a release `sandpit serve` on a scratch
# data dir, run `sandpit bench` (Rust client; every row of issue 19's target
# table, with podman as the reference) and bench/sdk_bench.py (Python SDK),
# then the burst row again on a server with one runtime helper (what the
# parallel helpers are worth), and stop the servers.
#
#   ./bench/run.sh [--runs N] [--stream-mib M] [--density N] [--burst N]
#
# --density 2000 is the full density benchmark (issue 19); the default 50 is
# its small form.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=50
stream_mib=1024
density=50
burst=128
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --stream-mib) stream_mib=$2; shift 2 ;;
    --density) density=$2; shift 2 ;;
    --burst) burst=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

./scripts/install-deps --bench
cargo build --release --locked -q
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sandpit="$target_dir/release/sandpit"
req=tests/e2e/requirements.txt
venv="${SANDPIT_VENV:-$HOME/.cache/sandpit/venv-$(sha256sum "$req" | cut -c1-12)}"
[[ -x $venv/bin/python ]] || { echo "run ./scripts/test once to create $venv" >&2; exit 1; }

work=$(mktemp -d /tmp/sp-bench-XXXXXX)
server=
stop_server() {
  [[ -n $server ]] || return 0
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
}
trap 'stop_server; rm -rf "$work"' EXIT

# start_server NAME [ENV=VALUE...]: a server on a fresh data dir; sets $server
# and exports LANGSMITH_ENDPOINT / LANGSMITH_API_KEY for it.
start_server() {
  local name=$1; shift
  local port=$((20000 + RANDOM % 20000))
  export LANGSMITH_ENDPOINT="http://127.0.0.1:$port/api" LANGSMITH_API_KEY="bench-$RANDOM$RANDOM"
  env "$@" SANDPIT_API_KEY="$LANGSMITH_API_KEY" "$sandpit" serve --listen "127.0.0.1:$port" \
    --data-dir "$work/$name" >"$work/$name.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "sandpit serve did not start; see $work/$name.log" >&2
  exit 1
}

# podman (runc; Debian's crun does not support hybrid cgroups) running the same
# `true` from a busybox root, with rlimit defaults this host cannot raise.
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/" && ln -s busybox "$work/rootfs/bin/true"
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
podman="CONTAINERS_CONF=$work/containers.conf podman --runtime runc --cgroup-manager cgroupfs run --rm --network none --rootfs $work/rootfs /bin/true"

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# data dir on: $(findmnt -n -o FSTYPE,OPTIONS -T "$work" | cut -c1-60)"
start_server main
"$sandpit" bench --server-pid "$server" --runs "$runs" --stream-mib "$stream_mib" \
  --burst "$burst" --density "$density" --reference "$podman"
"$venv/bin/python" bench/sdk_bench.py --runs "$runs" --stream-mib "$stream_mib"
stop_server

echo "# the burst again with one runtime helper (before issue 19), load $(cut -d' ' -f1-3 /proc/loadavg)"
start_server one-helper SANDPIT_RUNTIME_HELPERS=1
"$sandpit" bench --server-pid "$server" --only burst --burst "$burst"
