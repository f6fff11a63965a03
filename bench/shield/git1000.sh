#!/bin/sh
# bench/shield/git1000.sh [BUILD_DIR] - git add + commit of 1,000 small files in a protected
# volume (under scpctl run) against the same in a plain directory; ROUNDS rounds (default 3),
# plain and shielded alternating. Prints wall and CPU milliseconds per round (CPU: user +
# system time of the git processes, from the shell's `times`; it does not grow with the
# machine's load as the wall time does), the medians, the ratios and the load average. Then
# `git status` (twice: the second sees the index fresh) in the repository of the last round.
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
tf=${TMPDIR:-/tmp}/git1000-times.$$
cpu() { awk -F"[ms ]+" "NR == 2 {printf \"%d\", (\$1 * 60 + \$2 + \$3 * 60 + \$4) * 1000}" "$tf"; }
times > "$tf"; c0=$(cpu); t0=$(date +%s%N)
'"$G"' init -q
'"$G"' add -A
'"$G"' commit -qm "1000 files"
t1=$(date +%s%N); times > "$tf"; c1=$(cpu)
s0=$(date +%s%N)
'"$G"' status --porcelain | wc -l > /dev/null
'"$G"' status --porcelain | wc -l > /dev/null
s1=$(date +%s%N); times > "$tf"; c2=$(cpu); rm -f "$tf"
echo $(((t1 - t0) / 1000000)) $((c1 - c0)) $(((s1 - s0) / 1000000)) $((c2 - c1))
'
mkdir -p "$T/plain"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$T/rounds"
for r in $(seq "$ROUNDS"); do
    a=$(sh -c "$round" sh "$T/plain" "$r")
    b=$(SCP_QUIET=1 "$B/src/scpctl" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- sh -c "$round" sh "$T/mnt" "$r")
    set -- $a $b
    echo "round $r: commit wall/cpu ms: plain $1 / $2, shielded $5 / $6; status x2: plain $3 / $4, shielded $7 / $8"
    echo "$a $b" >> "$T/rounds"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# medians per column, then the ratios shielded / plain
awk -v n="$ROUNDS" '{for (i = 1; i <= 8; i++) v[i, NR] = $i}
    END {for (i = 1; i <= 8; i++) {k = 0; for (r = 1; r <= NR; r++) a[++k] = v[i, r]; asort(a); m[i] = a[int((k + 1) / 2)]; delete a}
         printf "git init+add+commit of 1000 files (median of %d): plain %d ms wall / %d ms cpu, shielded %d / %d, ratio %.1fx wall / %.1fx cpu\n", n, m[1], m[2], m[5], m[6], m[5] / m[1], m[6] / (m[2] ? m[2] : 1)
         printf "git status x2 in it: plain %d ms wall / %d ms cpu, shielded %d / %d, ratio %.1fx wall / %.1fx cpu\n", m[3], m[4], m[7], m[8], m[7] / m[3], m[8] / (m[4] ? m[4] : 1)}' "$T/rounds"
