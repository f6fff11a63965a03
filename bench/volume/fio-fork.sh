#!/usr/bin/env bash
# bench/volume/fio-fork.sh - fio's default job (it forks a job process, so the shield puts the
# volume in shared mode: docs/volume-format.md "Shared mode") against the same job with
# --thread (one process: private mode), plain directory vs protected volume under `scpctl run`,
# on tmpfs and on disk, in one run, with ratios. Issue 13's job:
#   fio --name=u --rw=write --bs=1M --size=SIZE --end_fsync=1   (psync; fallocates the file)
#
#   bench/volume/fio-fork.sh [BUILD_DIR]      (default: build; needs fio: apt-get install fio)
#
# Environment: ROUNDS=3 (medians; the four runs of a place alternate within a round),
#   SIZE=128M, TMPFS=/dev/shm, DISK=/var/tmp, CHUNK=4096, ONLY="tmpfs disk".
# Besides MB/s (which moves 2x with the load of a shared machine), it prints CPU time (user +
# system of scpctl, fio and the job, from getrusage of the children), which the load moves much
# less: per MiB written, and the marginal cost per MiB (the difference between a SIZE run and a
# SMALL run of the same job, which cancels fio's and scpctl's start-up). Under 5 minutes with
# the defaults.
set -uo pipefail
B=${1:-build}
SCPCTL=$B/src/scpctl
MKVOL=$B/tests/shield/shield-mkvol
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-128M}
SMALL=${SMALL:-16M}
ONLY=${ONLY:-tmpfs disk}
command -v fio >/dev/null || { echo "fio-fork.sh: needs fio (apt-get install fio)" >&2; exit 2; }
[ -x "$SCPCTL" ] && [ -x "$MKVOL" ] || { echo "fio-fork.sh: build $B first" >&2; exit 2; }
TMPS=()
cleanup() { rm -rf "${TMPS[@]}"; }
trap cleanup EXIT
mib() { numfmt --from=iec "$1" | awk '{print $1 / 1048576}'; }
MIB=$(mib "$SIZE")
MIB_SMALL=$(mib "$SMALL")

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# R[place,job,mode] = "MB/s ...", C[...] = "CPU ms per MiB ...", D[...] = "marginal CPU ms per MiB ..."
declare -A R C D

# run_job PLACE_DIR MODE JOB [SIZE] -> prints "MB/s cpu_ms_per_MiB cpu_ms"
run_job() {
    local t=$1 mode=$2 job=$3 size=${4:-$SIZE} pre=() d=$t/plain extra=()
    if [ "$mode" = scp ]; then
        pre=(env SCP_QUIET=1 "$SCPCTL" run --volume "$t/vol:$t/mnt" --key-file "$t/key" --)
        d=$t/mnt
    fi
    [ "$job" = thread ] && extra=(--thread)
    python3 - "$(mib "$size")" "${pre[@]}" fio --name=u --filename="$d/f" --rw=write --bs=1M --size="$size" \
        --ioengine=psync --end_fsync=1 --output-format=json "${extra[@]}" 2>"$t/fio.err" <<'EOF'
import json, resource, subprocess, sys
mib = float(sys.argv[1])
p = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
try:
    j = json.loads(p.stdout)["jobs"][0]
    cpu = (ru.ru_utime + ru.ru_stime) * 1000
    print("%.0f %.2f %.1f" % (j["write"]["bw_bytes"] / 1e6, cpu / mib, cpu))
except Exception:
    print("0 0 0")
EOF
}

rm_file() { # T MODE
    if [ "$2" = scp ]; then SCP_QUIET=1 "$SCPCTL" run --volume "$1/vol:$1/mnt" --key-file "$1/key" -- rm -f "$1/mnt/f"
    else rm -f "$1/plain/f"; fi
}

round() { # PLACE BASE
    local place=$1 t=$2 mode job v
    for job in fork thread; do
        for mode in plain scp; do
            rm_file "$t" "$mode"
            read -r _ _ c0 < <(run_job "$t" "$mode" "$job" "$SMALL")
            rm_file "$t" "$mode"
            read -r v c c1 < <(run_job "$t" "$mode" "$job")
            [ "$v" = 0 ] && cat "$t/fio.err" >&2
            R[$place,$job,$mode]+=" $v"
            C[$place,$job,$mode]+=" $c"
            D[$place,$job,$mode]+=" $(awk -v a="$c1" -v b="$c0" -v m="$MIB" -v s="$MIB_SMALL" 'BEGIN {printf "%.3f", (a - b) / (m - s)}')"
        done
    done
    rm_file "$t" plain
    rm_file "$t" scp
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for place in $ONLY; do
    case $place in tmpfs) base=${TMPFS:-/dev/shm} ;; disk) base=${DISK:-/var/tmp} ;; *) continue ;; esac
    t=$(mktemp -d "$base/scp-fiofork.XXXXXX")
    TMPS+=("$t")
    "$MKVOL" "$t/key" "$t/vol" "${CHUNK:-4096}" >/dev/null || exit 1
    chmod 600 "$t/key"
    mkdir -p "$t/plain" "$t/mnt"
    for r in $(seq 1 "$ROUNDS"); do echo "round $r ($place)" >&2; round "$place" "$t"; done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), a / b}'; }
printf '\n%s, sequential 1 MiB writes of %s, psync, end_fsync=1, chunk %s, medians of %s rounds\n' \
    "$(fio --version)" "$SIZE" "${CHUNK:-4096}" "$ROUNDS"
printf 'load average before %s, after %s\n' "$LOAD0" "$LOAD1"
printf '| place | job | plain MB/s | scp MB/s | scp/plain | plain CPU ms/MiB | scp CPU ms/MiB | scp rounds |\n'
printf '|---|---|---:|---:|---:|---:|---:|---|\n'
declare -A M MC
for place in $ONLY; do
    for job in fork thread; do
        p=$(echo ${R[$place,$job,plain]:-0} | tr ' ' '\n' | median)
        s=$(echo ${R[$place,$job,scp]:-0} | tr ' ' '\n' | median)
        pc=$(echo ${C[$place,$job,plain]:-0} | tr ' ' '\n' | median)
        sc=$(echo ${C[$place,$job,scp]:-0} | tr ' ' '\n' | median)
        M[$place,$job]=$s
        pd=$(echo ${D[$place,$job,plain]:-0} | tr ' ' '\n' | median)
        sd=$(echo ${D[$place,$job,scp]:-0} | tr ' ' '\n' | median)
        MC[$place,$job]=$(awk -v a="$sd" -v b="$pd" 'BEGIN {printf "%.3f", a - b}')
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$place" "$job" "$p" "$s" "$(ratio "$s" "$p")" \
            "$pc" "$sc" "$(echo ${R[$place,$job,scp]:-} | tr ' ' ',')"
    done
done
# The marginal CPU that the volume adds (scp - plain, per MiB beyond the SMALL run) leaves out
# fio's and scpctl's start-up, which is most of a short run's CPU; its ratio is the
# load-independent form of the target "forked >= 0.8x of --thread".
printf '\n| place | scp forked / --thread (MB/s) | volume marginal CPU ms/MiB forked | --thread | --thread / forked |\n'
printf '|---|---:|---:|---:|---:|\n'
for place in $ONLY; do
    printf '| %s | %s | %s | %s | %s |\n' "$place" "$(ratio "${M[$place,fork]}" "${M[$place,thread]}")" \
        "${MC[$place,fork]}" "${MC[$place,thread]}" "$(ratio "${MC[$place,thread]}" "${MC[$place,fork]}")"
done
