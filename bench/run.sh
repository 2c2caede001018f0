#!/usr/bin/env bash
# Reproduce docs/benchmarks.md: start a release `sandpit serve` on a scratch
# data dir, run `sandpit bench` (Rust client; with podman as the reference)
# and bench/sdk_bench.py (Python SDK), then stop the server.
#
#   ./bench/run.sh [--runs N] [--stream-mib M]
set -euo pipefail
cd "$(dirname "$0")/.."

runs=50
stream_mib=1024
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --stream-mib) stream_mib=$2; shift 2 ;;
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
port=$((20000 + RANDOM % 20000))
export LANGSMITH_ENDPOINT="http://127.0.0.1:$port/api" LANGSMITH_API_KEY="bench-$RANDOM$RANDOM"
SANDPIT_API_KEY=$LANGSMITH_API_KEY "$sandpit" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

# podman (runc; Debian's crun does not support hybrid cgroups) running the same
# `true` from a busybox root, with rlimit defaults this host cannot raise.
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/" && ln -s busybox "$work/rootfs/bin/true"
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
podman="CONTAINERS_CONF=$work/containers.conf podman --runtime runc --cgroup-manager cgroupfs run --rm --network none --rootfs $work/rootfs /bin/true"

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$sandpit" bench --endpoint "http://127.0.0.1:$port" --runs "$runs" --stream-mib "$stream_mib" --reference "$podman"
"$venv/bin/python" bench/sdk_bench.py --runs "$runs" --stream-mib "$stream_mib"
