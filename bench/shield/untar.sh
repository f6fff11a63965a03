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
#   AB=OTHER_BUILD (that build's scpctl too: "base"), AS=USER (tar runs as that user, plain and
#   under the shield, into a directory it owns: a caller other than root has its search
#   permission checked on every directory of every path, in the volume by the shield).
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
[ -x "$B/src/scpctl" ] || { echo "untar.sh: build $B first" >&2; exit 2; }
FILES=${FILES:-30000} ROUNDS=${ROUNDS:-3}
T=$(mktemp -d "${BASE:-/dev/shm}/scp-bench-untar.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
"$B/src/scpctl" volume keygen "$T/key" >/dev/null 2>&1 || exit 1
bash "$(dirname "$0")/smalltree.sh" "$T/tree.tar" "$FILES" || exit 1
AS=${AS:-}
asuser=() prep=""
if [ -n "$AS" ]; then
    chmod 755 "$T" && chmod 644 "$T/tree.tar" || exit 1
    asuser=(setpriv --reuid="$AS" --regid="$(id -gn "$AS")" --clear-groups)
    prep="mkdir /scp-untar/x && chown $AS /scp-untar/x && "
fi
into=${AS:+/x}
builds="scp:$B"
[ -n "${AB:-}" ] && builds="$builds base:$(cd "$AB" && pwd)"

timed() { # COMMAND...: "wall cpu" seconds (cpu: user + system of the whole tree)
    /usr/bin/time -f "%e %U %S" "$@" 2>&1 >/dev/null | tail -1 | awk '{ printf "%.2f %.2f", $1, $2 + $3 }'
}
declare -A wall cpu
for r in $(seq "$ROUNDS"); do
    rm -rf "$T/plain" && mkdir "$T/plain" && { [ -z "$AS" ] || chown "$AS" "$T/plain"; }
    read -r w c <<<"$(timed "${asuser[@]}" tar -xf "$T/tree.tar" -C "$T/plain")"
    n=$(find "$T/plain" -type f | wc -l)
    [ "$n" = "$FILES" ] || { echo "untar.sh: plain unpacked $n files of $FILES" >&2; exit 1; }
    wall[plain]+="$w " cpu[plain]+="$c "
    line="round $r: plain ${w} s (cpu $c)"
    for bb in $builds; do
        name=${bb%%:*} dir=${bb#*:}
        rm -rf "$T/vol" && "$dir/src/scpctl" volume create "$T/vol" --key-file "$T/key" >/dev/null 2>&1 || exit 1
        read -r w c <<<"$(timed env SCP_QUIET=1 "$dir/src/scpctl" run --volume "$T/vol:/scp-untar" --key-file "$T/key" -- \
            sh -c "$prep"'exec "$@"' sh "${asuser[@]}" tar -xf "$T/tree.tar" -C "/scp-untar$into")"
        n=$(SCP_QUIET=1 "$dir/src/scpctl" run --volume "$T/vol:/scp-untar" --key-file "$T/key" -- \
            find "/scp-untar$into" -type f | wc -l)
        [ "$n" = "$FILES" ] || { echo "untar.sh: $name unpacked $n files of $FILES" >&2; exit 1; }
        wall[$name]+="$w " cpu[$name]+="$c "
        line+=", $name ${w} s (cpu $c)"
    done
    echo "$line"
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
pw=$(echo "${wall[plain]}" | med)
echo "tar -xf of $FILES files${AS:+ as $AS}, $ROUNDS rounds, medians: plain $pw s"
for bb in $builds; do
    name=${bb%%:*}
    w=$(echo "${wall[$name]}" | med) c=$(echo "${cpu[$name]}" | med)
    awk -v n="$name" -v w="$w" -v c="$c" -v p="$pw" 'BEGIN { printf "  %s: %.2f s (cpu %.2f s), %.1fx the time of plain\n", n, w, c, w / p }'
done
if [ -n "${AB:-}" ]; then
    awk -v a="$(echo "${wall[scp]}" | med)" -v b="$(echo "${wall[base]}" | med)" 'BEGIN { printf "  scp/base: %.2fx the time\n", a / b }'
fi
