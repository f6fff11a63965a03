#!/usr/bin/env bash
# bench/shield/gitvol.sh [BUILD_DIR] - git with its repository inside a protected volume: each
# git command is an exec'd image, whose first volume call loads the volume's manifest (the
# repository's files, and git's objects: about two entries per committed file). A repository
# of FILES committed files (50 directories), one file changed; ms per command (wall, a shell
# loop of N runs, medians over ROUNDS) of `git status --short`, `git log --oneline -1` and
# `git diff --stat`, natively on a plain directory and under `scpctl run` with the repository
# in the volume, the ratios printed. The repository is built once per build and reused by its
# rounds.
#
# Environment: FILES=5000, N=5, ROUNDS=3, BASE=/dev/shm, AB=OTHER_BUILD (that build's scpctl
#   too, on a volume of its own: "base").
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
[ -x "$B/src/scpctl" ] || { echo "gitvol.sh: build $B first" >&2; exit 2; }
command -v git >/dev/null || { echo "gitvol.sh: needs git" >&2; exit 2; }
FILES=${FILES:-5000} N=${N:-5} ROUNDS=${ROUNDS:-3}
T=$(mktemp -d "${BASE:-/dev/shm}/scp-bench-gitvol.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
"$B/src/scpctl" volume keygen "$T/key" >/dev/null 2>&1 || exit 1
export SCP_QUIET=1 GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
per=$((FILES / 50))
# make_repo DIR: the repository, committed, with one file changed after the commit
make_repo='cd "$1" && git init -q r && cd r && git config user.email b@scp && git config user.name b &&
  for d in $(seq 50); do mkdir d$d; for f in $(seq '"$per"'); do echo $d-$f > d$d/f$f; done; done &&
  git add -A && git commit -qm init && echo change >> d1/f1'
# loop DIR: "status log diff" ms per command, N runs each
loop='cd "$1/r" || exit 1; n='"$N"'
  for c in "status --short" "log --oneline -1" "diff --stat"; do
    t0=$(date +%s%N); i=0; while [ $i -lt $n ]; do git $c >/dev/null || exit 1; i=$((i+1)); done
    printf "%s " $(( ($(date +%s%N) - t0) / 1000 / n ))
  done'
builds="scp:$B"
[ -n "${AB:-}" ] && builds="$builds base:$(cd "$AB" && pwd)"
mkdir "$T/plain" && sh -c "$make_repo" sh "$T/plain" || exit 1
for bb in $builds; do
    name=${bb%%:*} dir=${bb#*:}
    "$dir/src/scpctl" volume create "$T/vol-$name" --key-file "$T/key" >/dev/null 2>&1 || exit 1
    "$dir/src/scpctl" run --volume "$T/vol-$name:/scp-git" --key-file "$T/key" -- sh -c "$make_repo" sh /scp-git || exit 1
done
declare -A res
for r in $(seq "$ROUNDS"); do
    out=$(sh -c "$loop" sh "$T/plain") || exit 1
    res[plain]+="$out|"
    line="round $r (us per command: status, log, diff): plain ${out% }"
    for bb in $builds; do
        name=${bb%%:*} dir=${bb#*:}
        out=$("$dir/src/scpctl" run --volume "$T/vol-$name:/scp-git" --key-file "$T/key" -- sh -c "$loop" sh /scp-git) || exit 1
        res[$name]+="$out|"
        line+=", $name ${out% }"
    done
    echo "$line"
done
# med NAME K: the median over the rounds of the K-th figure of NAME's runs
med() { echo "${res[$1]}" | tr '|' '\n' | grep . | awk -v k="$2" '{ print $k }' | sort -g |
        awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "git in a repository of $FILES files ($(ls "$T/vol-scp/objects" | wc -l) backing objects in scp's volume), $N runs per command, $ROUNDS rounds, medians (ms per command):"
k=1
for c in "status --short" "log --oneline -1" "diff --stat"; do
    p=$(med plain $k)
    line=$(printf "  git %-17s plain %6.1f" "$c" "$(awk -v x="$p" 'BEGIN { print x / 1000 }')")
    for bb in $builds; do
        name=${bb%%:*}
        x=$(med "$name" $k)
        line+=$(awk -v n="$name" -v x="$x" -v p="$p" 'BEGIN { printf ", %s %6.1f (%.1fx)", n, x / 1000, x / p }')
    done
    if [ -n "${AB:-}" ]; then
        line+=$(awk -v a="$(med scp $k)" -v b="$(med base $k)" 'BEGIN { printf ", scp/base %.2fx", a / b }')
    fi
    echo "$line"
    k=$((k + 1))
done
