#!/bin/sh
# bench/shield/forkab.sh BUILD_DIR AB_BUILD_DIR [ROUNDS] - the per-fork and per-exec figures of
# startup.sh (QUICK=1) for two builds in alternating rounds (A = AB_BUILD_DIR, e.g. main, then B
# = BUILD_DIR), the same fork benchmark program (BUILD_DIR's) for both; run it under nice -n 5.
set -eu
B=$1
A=$2
R=${3:-3}
D=$(cd "$(dirname "$0")" && pwd)
FB=$(cd "$B" && pwd)/bench/shield/shield-forkbench
export FB QUICK=1
i=1
while [ "$i" -le "$R" ]; do
    echo "== round $i: A ($A)"
    sh "$D/startup.sh" "$A"
    echo "== round $i: B ($B)"
    sh "$D/startup.sh" "$B"
    i=$((i + 1))
done
