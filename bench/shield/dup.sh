#!/bin/sh
# bench/shield/dup.sh BUILD_DIR [ROUNDS] - shield-dupbench natively on a plain directory and
# under `scpctl run` on a protected volume, in alternating rounds (default 3): the cost of a
# dup of a protected descriptor, and whether a 1,000-dup probe (PostgreSQL's) gets low numbers.
set -eu
B=$(cd "$1" && pwd)
R=${2:-3}
T=$(mktemp -d "${TMPDIR:-/tmp}/scp-dupbench.XXXXXX")
trap 'rm -rf "$T"' EXIT
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null
mkdir "$T/plain"
i=1
while [ "$i" -le "$R" ]; do
    n=$("$B/bench/shield/shield-dupbench" "$T/plain")
    s=$(SCP_QUIET=1 "$B/src/scpctl" run --volume "$T/vol:/scp-dupbench" --key-file "$T/key" -- \
        "$B/bench/shield/shield-dupbench" /scp-dupbench)
    echo "round $i native: $n"
    echo "round $i shield: $s"
    echo "$n $s" | awk '{ printf "round %d shield/native: dup+close %.2fx\n", i, $12 / $2 }' i="$i"
    i=$((i + 1))
done
