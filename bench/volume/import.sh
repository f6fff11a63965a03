#!/usr/bin/env bash
# bench/volume/import.sh - `scpctl volume import` and `export` of a whole tree against `cp -a`
# of the same tree on the same disk (the plain baseline), same run, medians and ratios printed.
# Import and export keep what cp -a keeps (modes, owners, times, links: src/cli/volume_tree.h),
# so cp -a is the like-for-like copy.
#
#   bench/volume/import.sh [BUILD_DIR]
#
# Environment: SRC=DIR (the tree; by default a synthetic one: FILES small files of 1-64 KiB in
#   directories of 50, and BIG files of 8 MiB), FILES=2000, BIG=4, ROUNDS=3, BASE=/var/tmp (the
#   disk the copies go to), CHUNK=4096, AB=OTHER_BUILD (also that build's scpctl: "base").
#   Each copy ends with a sync of the file system, which is part of its time: a copy is done
#   when it is on the disk, and import's commits flush as they go.
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
SCPCTL=$B/src/scpctl
[ -x "$SCPCTL" ] || { echo "import.sh: build $B first" >&2; exit 2; }
ROUNDS=${ROUNDS:-3} FILES=${FILES:-2000} BIG=${BIG:-4} CHUNK=${CHUNK:-4096}
T=$(mktemp -d "${BASE:-/var/tmp}/scp-bench-import.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
"$SCPCTL" volume keygen "$T/key" >/dev/null 2>&1 || exit 1

if [ -n "${SRC:-}" ]; then
    S=$SRC
else
    S=$T/src
    python3 - "$S" "$FILES" "$BIG" <<'EOF'
import os, random, sys
root, files, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(57)
for i in range(files):
    d = os.path.join(root, "d%03d" % (i // 50))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(rng.randbytes(rng.randint(1, 64) * 1024))
for i in range(big):
    with open(os.path.join(root, "big%d" % i), "wb") as f:
        f.write(rng.randbytes(8 << 20))
EOF
fi
nfiles=$(find "$S" -type f | wc -l)
bytes=$(du -sb "$S" | cut -f1)
echo "tree: $S, $nfiles files, $((bytes / 1048576)) MiB; ${ROUNDS} rounds, chunk size $CHUNK, copies under ${BASE:-/var/tmp}"

# secs CMD...: the wall time of CMD and a sync after it, in seconds (3 decimals)
secs() {
    local t0 t1
    sync
    t0=$(date +%s%N)
    "$@" >/dev/null 2>"$T/err" || { echo "failed: $* ($(tail -1 "$T/err"))" >&2; exit 1; }
    sync
    t1=$(date +%s%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'; }

declare -A t
builds="scp"
[ -n "${AB:-}" ] && builds="scp base"
for r in $(seq 1 "$ROUNDS"); do
    rm -rf "$T/cp" "$T/cpback"
    t[cp]+=" $(secs cp -a "$S" "$T/cp")"
    for b in $builds; do
        x=$SCPCTL
        [ "$b" = base ] && x=$AB/src/scpctl
        rm -rf "$T/v" "$T/out"
        "$x" volume create "$T/v" --key-file "$T/key" --chunk-size "$CHUNK" >/dev/null 2>&1
        t[$b-import]+=" $(secs "$x" volume import "$S" "$T/v" --key-file "$T/key")"
        t[$b-export]+=" $(secs "$x" volume export "$T/v" "$T/out" --key-file "$T/key")"
    done
    echo "  round $r: cp -a ${t[cp]##* } s, import ${t[scp-import]##* } s, export ${t[scp-export]##* } s${AB:+, base import ${t[base-import]##* } s, export ${t[base-export]##* } s}"
done
cp=$(med ${t[cp]})
for b in $builds; do
    i=$(med ${t[$b-import]})
    e=$(med ${t[$b-export]})
    echo "$b: median import $i s ($(ratio "$cp" "$i")x the speed of cp -a, $cp s), export $e s ($(ratio "$cp" "$e")x)"
done
if [ -n "${AB:-}" ]; then
    echo "scp/base: import $(ratio "$(med ${t[base-import]})" "$(med ${t[scp-import]})")x the speed, export $(ratio "$(med ${t[base-export]})" "$(med ${t[scp-export]})")x"
fi
