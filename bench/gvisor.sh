#!/usr/bin/env bash
# Namespaces vs gVisor in one run (docs/benchmarks.md): start a release
# `sandpit serve` on a scratch data dir, run bench/gvisor_bench.py, stop it.
#
#   ./bench/gvisor.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v runsc >/dev/null || { echo "runsc is not installed (apt-get install runsc)" >&2; exit 1; }
target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}
sandpit="${SANDPIT_BIN:-$target_dir/release/sandpit}"
venv="${SANDPIT_VENV:-$HOME/.cache/sandpit/venv-e2e}"

work=$(mktemp -d /tmp/sp-gvbench-XXXXXX)
port=$((20000 + RANDOM % 20000))
export LANGSMITH_ENDPOINT="http://127.0.0.1:$port/api" LANGSMITH_API_KEY="bench-$RANDOM$RANDOM"
SANDPIT_API_KEY=$LANGSMITH_API_KEY "$sandpit" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

echo "runsc: $(runsc --version | head -1), platform ptrace, network host (in the sandbox's netns)"
echo "kernel: $(uname -r), $(nproc) CPUs"
"$venv/bin/python" bench/gvisor_bench.py "$@"
