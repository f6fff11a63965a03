#!/bin/sh
# bench/shield/git1000.sh [BUILD_DIR] - git add + commit of 1,000 small files in a protected
# volume (under scpctl run) against the same in a plain directory; ROUNDS rounds (default 3),
# plain and shielded alternating. Prints milliseconds per round and the medians.
set -eu
B=${1:-build}
ROUNDS=${ROUNDS:-3}
T=$(mktemp -d "${BASE:-/var/tmp}/scp-git-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null
G="git -c user.name=scp -c user.email=scp@example.invalid -c init.defaultBranch=main -c gc.auto=0"
# one round in DIR: make the files (not timed), then time init + add + commit
round='
set -e
d=$1/r$2
mkdir -p "$d" && cd "$d"
i=0
while [ $i -lt 1000 ]; do
    mkdir -p "d$((i % 20))"
    echo "file $i of the git benchmark, round $2" > "d$((i % 20))/f$i.txt"
    i=$((i + 1))
done
t0=$(date +%s%N)
'"$G"' init -q
'"$G"' add -A
'"$G"' commit -qm "1000 files"
t1=$(date +%s%N)
echo $(((t1 - t0) / 1000000))
'
mkdir -p "$T/plain"
p="" s=""
for r in $(seq "$ROUNDS"); do
    a=$(sh -c "$round" sh "$T/plain" "$r")
    b=$(SCP_QUIET=1 "$B/src/scpctl" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- sh -c "$round" sh "$T/mnt" "$r")
    echo "round $r: plain $a ms, shielded $b ms"
    p="$p $a" s="$s $b"
done
med() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mp=$(med "$p") ms=$(med "$s")
echo "git init+add+commit of 1000 files: plain ${mp} ms, shielded ${ms} ms (median of $ROUNDS)"
