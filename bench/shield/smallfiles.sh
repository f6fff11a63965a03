#!/bin/sh
# bench/shield/smallfiles.sh BUILD_DIR [ROUNDS] - small files (smallfiles.py: create 1,500 files
# of 300 bytes, then read them back) natively in a plain directory and under `scpctl run` in a
# protected volume, alternating, in TMPDIR (the disk or tmpfs: set it), with the ratio per round.
set -eu
B=$(cd "$1" && pwd)
R=${2:-2}
D=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/scp-smallfiles.XXXXXX")
trap 'rm -rf "$T"' EXIT
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null
i=1
while [ "$i" -le "$R" ]; do
    mkdir "$T/plain$i"
    n=$("$PY" "$D/smallfiles.py" "$T/plain$i")
    s=$(SCP_QUIET=1 "$B/src/scpctl" run --volume "$T/vol:/scp-smallfiles" --key-file "$T/key" -- \
        "$PY" "$D/smallfiles.py" "/scp-smallfiles/r$i")
    echo "round $i native: $n"
    echo "round $i shield: $s"
    echo "$n $s" | awk '{ printf "round %d shield/native: create %.1fx, read back %.1fx\n", i, $11 / $2, $15 / $6 }' i="$i"
    i=$((i + 1))
done
