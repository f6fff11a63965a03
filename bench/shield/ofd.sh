#!/bin/bash
# bench/shield/ofd.sh BUILD [BASE_BUILD] - what shared offsets cost on the write path.
# The same program (BUILD's shield-trapbench, mode "cursor": 64-byte writes and reads at the
# cursor of a protected file, one process) runs under BUILD's shield and, if given, under
# BASE_BUILD's (a build of the commit before), ROUNDS times each, interleaved; prints the
# median wall and CPU ns per call and the ratios of the same run. Then once in a forked child
# on the description it shares with its parent (shared offset, and the volume's shared mode
# that every fork has brought since before: a lazy commit per write). About 1 minute.
set -eu
B=${1:-build}
BASE=${2:-}
R=${ROUNDS:-5}
N=${N:-100000}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export SCP_QUIET=1
one() { # $1: build whose shield runs; $2: mode
    rm -rf "$T/vol" "$T/key"
    "$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null
    "$1/src/scpctl" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- \
        "$B/bench/shield/shield-trapbench" "$T/mnt" "$N" "$2"
}
# median and minimum: on a loaded machine the minimum CPU time is the steadier figure
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
low() { sort -n | head -1; }
builds="$B${BASE:+ $BASE}"
for r in $(seq "$R"); do
    for b in $builds; do one "$b" cursor | sed "s|^|$b |" >> "$T/out"; done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $R rounds of $N calls"
for what in write read; do
    for b in $builds; do
        w=$(awk -v b="$b" -v w="$what" '$1 == b && $2 == w {print $(NF-3)}' "$T/out" | med)
        c=$(awk -v b="$b" -v w="$what" '$1 == b && $2 == w {print $(NF-1)}' "$T/out" | med)
        m=$(awk -v b="$b" -v w="$what" '$1 == b && $2 == w {print $(NF-1)}' "$T/out" | low)
        printf '%-5s %-40s median %8.1f ns/op %8.1f cpu-ns/op, min %8.1f cpu-ns/op\n' "$what" "$b" "$w" "$c" "$m"
        echo "$what $b $w $c $m" >> "$T/med"
    done
    if [ -n "$BASE" ]; then
        awk -v w="$what" -v nb="$B" -v ob="$BASE" '$1==w && $2==nb {nw=$3; nc=$4} $1==w && $2==ob {ow=$3; oc=$4}
            $1==w && $2==nb {nm=$5} $1==w && $2==ob {om=$5}
            END {printf "%-5s ratio new/base: wall %.3f, cpu %.3f (median), cpu %.3f (min)\n", w, nw/ow, nc/oc, nm/om}' "$T/med"
    fi
done
echo "== in a forked child, on the description shared with its parent (this build)"
one "$B" cursor-fork
