#!/bin/sh
# bench/volume/sparse.sh [BUILD_DIR] - what a large sparse file costs in a volume: its chunk
# table is 44 bytes per chunk whether the chunk holds data or not (docs/volume-format.md,
# "Chunk table and content root", large sparse tables).
# Each round, under scpctl run (so that both sides pay its start): `truncate -s SIZE` a new
# file, a one-byte read far inside it (a fresh process: the open loads the table), a one-byte
# write far inside, and the read again; in the volume and in a plain directory beside it.
# Prints the median wall time (ms) and peak resident set (MB) of each step, and scp/plain.
# AB=OTHER_BUILD adds the same steps with another build's scpctl (A/B against a base).
# SIZE (default 5G), ROUNDS (5), BASE (the directory for the files: /var/tmp).
set -eu
B=${1:-build}
SIZE=${SIZE:-5G}
ROUNDS=${ROUNDS:-5}
S=$B/src/scpctl
T=$(mktemp -d "${BASE:-/var/tmp}/scp-sparse.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export SCP_QUIET=1
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null
mkdir -p "$T/plain"
if [ -n "${AB:-}" ]; then "$AB/tests/shield/shield-mkvol" "$T/keyab" "$T/volab" >/dev/null; fi

# step NAME SCPCTL VOLARGS DIR CMD...: run CMD under scpctl run, append "ms mb" to $T/NAME
step() {
    name=$1 s=$2 vol=$3 dir=$4
    shift 4
    t0=$(date +%s%N)
    # shellcheck disable=SC2086
    /usr/bin/time -f "%M" -o "$T/rss" "$s" run $vol -- sh -c "$*" >/dev/null
    t1=$(date +%s%N)
    echo "$(( (t1 - t0) / 1000 )) $(cat "$T/rss")" >> "$T/$name"
    : "$dir"
}

round() {
    tag=$1 s=$2 vol=$3 dir=$4 r=$5
    f=$dir/big$r
    step "$tag.truncate" "$s" "$vol" "$dir" "truncate -s $SIZE $f"
    step "$tag.read" "$s" "$vol" "$dir" "dd if=$f bs=1 skip=3000000000 count=1 status=none"
    step "$tag.write" "$s" "$vol" "$dir" "printf x | dd of=$f bs=1 seek=4000000000 conv=notrunc status=none"
    step "$tag.reread" "$s" "$vol" "$dir" "dd if=$f bs=1 skip=4000000000 count=1 status=none"
}

r=0
while [ "$r" -lt "$ROUNDS" ]; do
    round plain "$S" "" "$T/plain" "$r"
    round scp "$S" "--volume $T/vol:/mnt/v --key-file $T/key" /mnt/v "$r"
    if [ -n "${AB:-}" ]; then
        round base "$AB/src/scpctl" "--volume $T/volab:/mnt/v --key-file $T/keyab" /mnt/v "$r"
    fi
    r=$((r + 1))
done
"$S" volume verify "$T/vol" --key-file "$T/key" >/dev/null

# median of column C of file F
med() { sort -n -k"$2" "$1" | awk -v c="$2" '{a[NR]=$c} END {print a[int((NR+1)/2)]}'; }
echo "sparse file of $SIZE, $ROUNDS rounds, medians (wall ms / peak RSS MB), $(date -u +%H:%MZ)"
printf '%-8s %16s %16s %16s %10s\n' step plain scp "${AB:+base}" scp/plain
for st in truncate read write reread; do
    pm=$(med "$T/plain.$st" 1) pr=$(med "$T/plain.$st" 2)
    sm=$(med "$T/scp.$st" 1) sr=$(med "$T/scp.$st" 2)
    bcol=""
    if [ -n "${AB:-}" ]; then
        bm=$(med "$T/base.$st" 1) br=$(med "$T/base.$st" 2)
        bcol=$(awk -v m="$bm" -v r="$br" 'BEGIN {printf "%.1f / %.0f", m / 1000, r / 1024}')
    fi
    awk -v st="$st" -v pm="$pm" -v pr="$pr" -v sm="$sm" -v sr="$sr" -v b="$bcol" 'BEGIN {
        printf "%-8s %16s %16s %16s %9.2fx\n", st, sprintf("%.1f / %.0f", pm / 1000, pr / 1024),
            sprintf("%.1f / %.0f", sm / 1000, sr / 1024), b, sm / pm }'
done
