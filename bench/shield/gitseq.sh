#!/bin/bash
# bench/shield/gitseq.sh [BUILD_DIR] - a sequential git session on a protected volume under
# `scpctl run` against the same in a plain directory: init, then N commits (N=30), each
# writing three files and running `git add -A`, `git commit` and `git status`, then `git log`,
# `git gc` and `git fsck --full --strict`: about 150 git commands, each a new process that
# opens the volume (a shared family: the shell forks and execs them). ROUNDS rounds (3),
# plain and shielded alternating; with AB=OTHER_BUILD_DIR a third run per round under that
# build. Prints wall and CPU (user + system of the whole run, from /usr/bin/time) per round,
# the medians and the ratios, and the manifest log's size at the end of the shielded run (the
# records a new process walks; session 41: an opener folds a long log).
set -eu
B=${1:-build}
N=${N:-30}
ROUNDS=${ROUNDS:-3}
AB=${AB:-}
T=$(mktemp -d "${BASE:-/var/tmp}/scp-gitseq.XXXXXX")
trap 'rm -rf "$T"' EXIT
command -v git >/dev/null && [ -x /usr/bin/time ] || { echo "needs git and /usr/bin/time"; exit 77; }
cat >"$T/seq.sh" <<'EOF'
set -e
G="git -c user.name=scp -c user.email=scp@example.invalid -c init.defaultBranch=main -c gc.auto=0"
mkdir -p "$1/repo" && cd "$1/repo"
$G init -q .
i=0
while [ $i -lt "$2" ]; do
    i=$((i + 1))
    echo "$i a" >"a$i"; echo "$i b" >b; seq $i >c
    $G add -A; $G commit -qm "commit $i"; $G status --short >/dev/null
done
[ "$($G log --oneline | wc -l)" = "$2" ]
$G gc -q
$G fsck --full --strict
EOF
# one run: WHO (plain, scp or base) with its build; prints "wall cpu log_bytes"
one() {
    local who=$1 b=$2 d="$T/$1.$3"
    mkdir -p "$d"
    if [ "$who" = plain ]; then
        /usr/bin/time -f "%e %U %S" -o "$d/time" sh "$T/seq.sh" "$d/dir" "$N" >/dev/null
        echo "$(awk '{printf "%.2f %.2f", $1, $2 + $3}' "$d/time") -"
    else
        "$b/tests/shield/shield-mkvol" "$d/key" "$d/vol" >/dev/null
        SCP_QUIET=1 /usr/bin/time -f "%e %U %S" -o "$d/time" "$b/src/scpctl" run \
            --volume "$d/vol:/mnt/gitseq" --key-file "$d/key" -- sh "$T/seq.sh" /mnt/gitseq "$N" \
            >/dev/null || { echo "the shielded run failed ($who)" >&2; exit 1; }
        echo "$(awk '{printf "%.2f %.2f", $1, $2 + $3}' "$d/time") $(stat -c %s "$d/vol/manifest.log")"
    fi
    rm -rf "$d"
}
med() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
echo "git: init, $N commits (add, commit, status), log, gc, fsck; $ROUNDS rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$T/plain.r"; : >"$T/scp.r"; : >"$T/base.r"
for r in $(seq "$ROUNDS"); do
    p=$(one plain "" "$r"); s=$(one scp "$B" "$r")
    echo "$p" >>"$T/plain.r"; echo "$s" >>"$T/scp.r"
    line="  round $r: plain wall $(echo "$p" | cut -d' ' -f1) s, CPU $(echo "$p" | cut -d' ' -f2) s; scp wall $(echo "$s" | cut -d' ' -f1) s, CPU $(echo "$s" | cut -d' ' -f2) s, log $(echo "$s" | cut -d' ' -f3) B"
    if [ -n "$AB" ]; then
        a=$(one base "$AB" "$r"); echo "$a" >>"$T/base.r"
        line="$line; base wall $(echo "$a" | cut -d' ' -f1) s, CPU $(echo "$a" | cut -d' ' -f2) s, log $(echo "$a" | cut -d' ' -f3) B"
    fi
    echo "$line"
done
pw=$(cut -d' ' -f1 "$T/plain.r" | med); pc=$(cut -d' ' -f2 "$T/plain.r" | med)
sw=$(cut -d' ' -f1 "$T/scp.r" | med); sc=$(cut -d' ' -f2 "$T/scp.r" | med)
echo "median: plain wall $pw s CPU $pc s; scp wall $sw s CPU $sc s; scp/plain wall $(ratio "$sw" "$pw"), CPU $(ratio "$sc" "$pc")"
if [ -n "$AB" ]; then
    aw=$(cut -d' ' -f1 "$T/base.r" | med); ac=$(cut -d' ' -f2 "$T/base.r" | med)
    echo "base ($AB): wall $aw s CPU $ac s; scp/base wall $(ratio "$sw" "$aw"), CPU $(ratio "$sc" "$ac")"
fi
