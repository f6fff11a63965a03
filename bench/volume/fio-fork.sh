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
NAME=fio-fork.sh
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-128M}
SMALL=${SMALL:-16M}
ONLY=${ONLY:-tmpfs disk}
mib() { numfmt --from=iec "$1" | awk '{print $1 / 1048576}'; }
MIB=$(mib "$SIZE")
MIB_SMALL=$(mib "$SMALL")
# R[place,job,mode] = "MB/s ...", C[...] = "CPU ms per MiB ...", D[...] = "marginal CPU ms per MiB ..."
declare -A R C D

# run_job PLACE_DIR MODE JOB [SIZE] -> prints "MB/s cpu_ms_per_MiB cpu_ms"
run_job() {
    local extra=()
    [ "$3" = thread ] && extra=(--thread)
    lib_fio "$1" "$2" u f write 1M "${4:-$SIZE}" "${extra[@]}"
}

round() { # PLACE BASE
    local place=$1 t=$2 mode job v
    for job in fork thread; do
        for mode in plain scp; do
            lib_rm "$t" "$mode" f
            read -r _ _ c0 < <(run_job "$t" "$mode" "$job" "$SMALL")
            lib_rm "$t" "$mode" f
            read -r v c c1 < <(run_job "$t" "$mode" "$job")
            [ "$v" = 0 ] && cat "$t/fio.err" >&2
            R[$place,$job,$mode]+=" $v"
            C[$place,$job,$mode]+=" $c"
            D[$place,$job,$mode]+=" $(awk -v a="$c1" -v b="$c0" -v m="$MIB" -v s="$MIB_SMALL" 'BEGIN {printf "%.3f", (a - b) / (m - s)}')"
        done
    done
    lib_rm "$t" plain f
    lib_rm "$t" scp f
}

lib_rounds fiofork

printf '\n%s, sequential 1 MiB writes of %s, psync, end_fsync=1, chunk %s, medians of %s rounds\n' \
    "$(fio --version)" "$SIZE" "${CHUNK:-4096}" "$ROUNDS"
printf 'load average before %s, after %s\n' "$LOAD0" "$LOAD1"
printf '| place | job | plain MB/s | scp MB/s | scp/plain | plain CPU ms/MiB | scp CPU ms/MiB | scp rounds |\n'
printf '|---|---|---:|---:|---:|---:|---:|---|\n'
declare -A M MC
for place in $ONLY; do
    for job in fork thread; do
        p=$(med "${R[$place,$job,plain]:-}")
        s=$(med "${R[$place,$job,scp]:-}")
        pc=$(med "${C[$place,$job,plain]:-}")
        sc=$(med "${C[$place,$job,scp]:-}")
        M[$place,$job]=$s
        pd=$(med "${D[$place,$job,plain]:-}")
        sd=$(med "${D[$place,$job,scp]:-}")
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
