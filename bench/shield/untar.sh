#!/usr/bin/env bash
# bench/shield/untar.sh [BUILD_DIR] - `tar -xf` of a tree of many small files (FILES files of
# one byte in directories of 1,000: what an image layer, a source checkout or node_modules
# unpacks) into a plain directory and, under `scpctl run`, into a fresh protected volume, in
# the same rounds; wall and CPU seconds (the whole process tree's) and the ratios printed. What
# it measures is the cost of a create as the volume grows: each create is a manifest change,
# and anything that costs O(entries) per create makes the whole O(FILES^2).
#
# Environment: FILES=30000, ROUNDS=3, BASE=/dev/shm (tmpfs: the disk's inode allocation after
#   deleting the previous round's objects moves the system time by seconds from run to run),
#   AB=OTHER_BUILD (that build's scpctl too: "base").
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
[ -x "$B/src/scpctl" ] || { echo "untar.sh: build $B first" >&2; exit 2; }
FILES=${FILES:-30000} ROUNDS=${ROUNDS:-3}
T=$(mktemp -d "${BASE:-/dev/shm}/scp-bench-untar.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
"$B/src/scpctl" volume keygen "$T/key" >/dev/null 2>&1 || exit 1
mkdir "$T/src"
python3 - "$T/src" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 1000))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "w") as f:
        f.write("x")
PY
tar -cf "$T/tree.tar" -C "$T/src" . && rm -rf "$T/src"
builds="scp:$B"
[ -n "${AB:-}" ] && builds="$builds base:$(cd "$AB" && pwd)"

timed() { # COMMAND...: "wall cpu" seconds (cpu: user + system of the whole tree)
    /usr/bin/time -f "%e %U %S" "$@" 2>&1 >/dev/null | tail -1 | awk '{ printf "%.2f %.2f", $1, $2 + $3 }'
}
declare -A wall cpu
for r in $(seq "$ROUNDS"); do
    rm -rf "$T/plain" && mkdir "$T/plain"
    read -r w c <<<"$(timed tar -xf "$T/tree.tar" -C "$T/plain")"
    wall[plain]+="$w " cpu[plain]+="$c "
    line="round $r: plain ${w} s (cpu $c)"
    for bb in $builds; do
        name=${bb%%:*} dir=${bb#*:}
        rm -rf "$T/vol" && "$dir/src/scpctl" volume create "$T/vol" --key-file "$T/key" >/dev/null 2>&1 || exit 1
        read -r w c <<<"$(timed env SCP_QUIET=1 "$dir/src/scpctl" run --volume "$T/vol:/scp-untar" --key-file "$T/key" -- \
            tar -xf "$T/tree.tar" -C /scp-untar)"
        wall[$name]+="$w " cpu[$name]+="$c "
        line+=", $name ${w} s (cpu $c)"
    done
    echo "$line"
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
pw=$(echo "${wall[plain]}" | med)
echo "tar -xf of $FILES files, $ROUNDS rounds, medians: plain $pw s"
for bb in $builds; do
    name=${bb%%:*}
    w=$(echo "${wall[$name]}" | med) c=$(echo "${cpu[$name]}" | med)
    awk -v n="$name" -v w="$w" -v c="$c" -v p="$pw" 'BEGIN { printf "  %s: %.2f s (cpu %.2f s), %.1fx the time of plain\n", n, w, c, w / p }'
done
if [ -n "${AB:-}" ]; then
    awk -v a="$(echo "${wall[scp]}" | med)" -v b="$(echo "${wall[base]}" | med)" 'BEGIN { printf "  scp/base: %.2fx the time\n", a / b }'
fi
