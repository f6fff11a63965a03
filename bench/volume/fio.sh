#!/usr/bin/env bash
# bench/volume/fio.sh - fio (a real program, default options but the job's) under `scpctl run`
# on a protected volume against fio on a plain directory, on tmpfs and on disk, in the same run,
# with ratios (scp / plain). Issue 13's jobs: psync, end_fsync=1, SIZE bytes.
#
#   bench/volume/fio.sh [BUILD_DIR]      (default: build; needs fio: apt-get install fio)
#
# Environment: ROUNDS=3 (medians; plain and scp alternate within a round), SIZE=256M,
#   TMPFS=/dev/shm, DISK=/var/tmp, CHUNK=4096 (the volume's chunk size), ONLY="tmpfs disk".
# Lines, for each place:
#   seq-write-fresh     1 MiB sequential writes to a new file, --fallocate=none
#   seq-write-falloc    the same with fio's default layout (posix_fallocate first)
#   seq-write-over      1 MiB sequential writes over the existing file (the one just written)
#   seq-write-over2     the same again (a second overwrite: on a volume, the chunks' second
#                       slots exist from the first one, as for a database rewriting its pages)
#   seq-read            1 MiB sequential reads of that file
#   rand-write-falloc   4 KiB random writes to a new file (fio's default: fallocated)
#   rand-write-over     4 KiB random writes over the existing file
# and the ratios that issue 13 asks for: overwrite / fresh and fallocated / fresh (scp).
set -uo pipefail
B=${1:-build}
SCPCTL=$B/src/scpctl
MKVOL=$B/tests/shield/shield-mkvol
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-256M}
ONLY=${ONLY:-tmpfs disk}
command -v fio >/dev/null || { echo "fio.sh: needs fio (apt-get install fio)" >&2; exit 2; }
[ -x "$SCPCTL" ] && [ -x "$MKVOL" ] || { echo "fio.sh: build $B first" >&2; exit 2; }
TMPS=()
cleanup() { rm -rf "${TMPS[@]}"; }
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R # R[place,line,mode] = "v1 v2 ..."

# run_fio PLACE_DIR MODE NAME FILE RW BS [extra fio options] -> prints MB/s of the job
run_fio() {
    local t=$1 mode=$2 name=$3 file=$4 rw=$5 bs=$6
    shift 6
    local pre=() d=$t/plain
    if [ "$mode" = scp ]; then
        pre=(env SCP_QUIET=1 "$SCPCTL" run --volume "$t/vol:$t/mnt" --key-file "$t/key" --)
        d=$t/mnt
    fi
    "${pre[@]}" fio --name="$name" --filename="$d/$file" --rw="$rw" --bs="$bs" --size="$SIZE" \
        --ioengine=psync --end_fsync=1 --output-format=json "$@" 2>"$t/fio.err" |
        python3 -c 'import json,sys
j=json.load(sys.stdin)["jobs"][0]
k="read" if j["read"]["io_bytes"] else "write"
print("%.0f" % (j[k]["bw_bytes"]/1e6))' 2>/dev/null || { echo 0; cat "$t/fio.err" >&2; }
}

rm_file() { # T MODE FILE
    if [ "$2" = scp ]; then SCP_QUIET=1 "$SCPCTL" run --volume "$1/vol:$1/mnt" --key-file "$1/key" -- rm -f "$1/mnt/$3"
    else rm -f "$1/plain/$3"; fi
}

round() { # PLACE BASE
    local place=$1 t=$2 mode v
    for mode in plain scp; do
        rm_file "$t" "$mode" f
        v=$(run_fio "$t" "$mode" sw f write 1M --fallocate=none); R[$place,seq-write-fresh,$mode]+=" $v"
        v=$(run_fio "$t" "$mode" so f write 1M --fallocate=none); R[$place,seq-write-over,$mode]+=" $v"
        v=$(run_fio "$t" "$mode" so f write 1M --fallocate=none); R[$place,seq-write-over2,$mode]+=" $v"
        v=$(run_fio "$t" "$mode" sr f read 1M); R[$place,seq-read,$mode]+=" $v"
        rm_file "$t" "$mode" f
        v=$(run_fio "$t" "$mode" sa f write 1M); R[$place,seq-write-falloc,$mode]+=" $v"
        rm_file "$t" "$mode" f
        v=$(run_fio "$t" "$mode" ra f randwrite 4k); R[$place,rand-write-falloc,$mode]+=" $v"
        v=$(run_fio "$t" "$mode" ro f randwrite 4k); R[$place,rand-write-over,$mode]+=" $v"
        rm_file "$t" "$mode" f
        echo "  $place $mode: done" >&2
    done
}

LINES="seq-write-fresh seq-write-falloc seq-write-over seq-write-over2 seq-read rand-write-falloc rand-write-over"
for place in $ONLY; do
    case $place in tmpfs) base=${TMPFS:-/dev/shm} ;; disk) base=${DISK:-/var/tmp} ;; *) continue ;; esac
    t=$(mktemp -d "$base/scp-fio.XXXXXX")
    TMPS+=("$t")
    "$MKVOL" "$t/key" "$t/vol" "${CHUNK:-4096}" >/dev/null || exit 1
    mkdir -p "$t/plain"
    for r in $(seq 1 "$ROUNDS"); do echo "round $r ($place)" >&2; round "$place" "$t"; done
done

printf '\nfio %s, psync, end_fsync=1, SIZE=%s, chunk %s, medians of %s rounds (MB/s)\n' \
    "$(fio --version)" "$SIZE" "${CHUNK:-4096}" "$ROUNDS"
printf '| place | job | plain | scp | scp/plain | scp rounds |\n|---|---|---:|---:|---:|---|\n'
declare -A M
for place in $ONLY; do
    for l in $LINES; do
        p=$(echo ${R[$place,$l,plain]:-0} | tr ' ' '\n' | median)
        s=$(echo ${R[$place,$l,scp]:-0} | tr ' ' '\n' | median)
        M[$place,$l]=$s
        printf '| %s | %s | %s | %s | %s | %s |\n' "$place" "$l" "$p" "$s" \
            "$(awk -v a="$s" -v b="$p" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), a / b}')" \
            "$(echo ${R[$place,$l,scp]:-} | tr ' ' ',')"
    done
done
printf '\n| place | scp overwrite / fresh (seq) | second overwrite / fresh | scp fallocated / fresh (seq) |\n|---|---:|---:|---:|\n'
for place in $ONLY; do
    f=${M[$place,seq-write-fresh]}
    printf '| %s | %s | %s | %s |\n' "$place" \
        "$(awk -v a="${M[$place,seq-write-over]}" -v b="$f" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), a / b}')" \
        "$(awk -v a="${M[$place,seq-write-over2]}" -v b="$f" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), a / b}')" \
        "$(awk -v a="${M[$place,seq-write-falloc]}" -v b="$f" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), a / b}')"
done
