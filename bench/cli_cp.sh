#!/bin/bash
# CLI cp throughput: one 128 MiB file up and down, and a 1000-file tree up and down.
set -e
B=${SANDPIT_BIN:-target/release/sandpit}
D=$(mktemp -d /tmp/sp-cpb-XXXX)
export SANDPIT_API_KEY=sp_b_$RANDOM$RANDOM
$B serve --listen 127.0.0.1:0 --data-dir $D/data > $D/log 2>&1 &
PID=$!
for i in $(seq 100); do grep -q "LANGSMITH_API_KEY" $D/log && break; sleep 0.2; done
export LANGSMITH_ENDPOINT=$(grep -o 'LANGSMITH_ENDPOINT=\S*' $D/log | cut -d= -f2)
export LANGSMITH_API_KEY=$SANDPIT_API_KEY
$B create cpb >/dev/null
head -c $((128<<20)) /dev/urandom > $D/big
mkdir -p $D/tree; for i in $(seq 1000); do head -c 4096 /dev/urandom > $D/tree/f$i; done
t() { local s=$(date +%s.%N); "$@" 2>/dev/null || echo FAIL >&2; local e=$(date +%s.%N); echo "$(echo "$e - $s" | bc)"; }
for run in 1 2 3; do
  echo "run $run: up128MiB=$(t $B cp $D/big cpb:/home/user/big)s down128MiB=$(t $B cp cpb:/home/user/big $D/back)s up1000x4KiB=$(t $B cp $D/tree cpb:/home/user/tree)s down1000x4KiB=$(t $B cp cpb:/home/user/tree $D/treeback$run)s"
done
cmp $D/big $D/back && echo "integrity ok"
$B rm cpb
kill -TERM $PID; wait $PID; echo "server exit $?"
rm -rf $D
