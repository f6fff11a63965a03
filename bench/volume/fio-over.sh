#!/usr/bin/env bash
# bench/volume/fio-over.sh - overwrites by fio's default (forked) job, which the shield runs in
# shared mode (docs/volume-format.md, "Where a shared-mode write goes"): MB/s and CPU time per
# MiB of fresh sequential writes, sequential overwrites and 4 KiB random overwrites of the
# same file, plain directory vs protected volume under `scpctl run`, on tmpfs and on disk, in
# one run, with the ratios issue 13 asks for (overwrite / fresh).
#
#   bench/volume/fio-over.sh [BUILD_DIR]      (default: build; needs fio)
#
# Environment: ROUNDS=3 (medians), SIZE=128M, TMPFS=/dev/shm, DISK=/var/tmp, CHUNK=4096,
#   ONLY="tmpfs disk". CPU is user + system time of scpctl, fio and its job process (getrusage
#   of the children), which the load of a shared machine moves much less than MB/s. Under 5
#   minutes with the defaults.
set -uo pipefail
B=${1:-build}
NAME=fio-over.sh
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-128M}
ONLY=${ONLY:-tmpfs disk}
declare -A R C # R[place,line,mode] = "MB/s ...", C[...] = "CPU ms per MiB ..."

round() { # PLACE T
    local place=$1 t=$2 mode line rw bs v c
    for mode in plain scp; do
        lib_rm "$t" "$mode" f
        for line in seq-write-fresh:write:1M seq-write-over:write:1M seq-write-over2:write:1M rand-write-over:randwrite:4k; do
            IFS=: read -r line rw bs <<<"$line"
            read -r v c _ < <(lib_fio "$t" "$mode" o f "$rw" "$bs" "$SIZE" --fallocate=none)
            R[$place,$line,$mode]+=" $v"
            C[$place,$line,$mode]+=" $c"
        done
        lib_rm "$t" "$mode" f
    done
}

lib_rounds fioover

printf '\n%s, forked job, psync, end_fsync=1, SIZE=%s, chunk %s, medians of %s rounds\n' \
    "$(fio --version)" "$SIZE" "${CHUNK:-4096}" "$ROUNDS"
printf 'load average before %s, after %s\n' "$LOAD0" "$LOAD1"
printf '| place | job | plain MB/s | scp MB/s | scp/plain | plain CPU ms/MiB | scp CPU ms/MiB | scp rounds |\n'
printf '|---|---|---:|---:|---:|---:|---:|---|\n'
declare -A M MC
for place in $ONLY; do
    for line in seq-write-fresh seq-write-over seq-write-over2 rand-write-over; do
        p=$(med "${R[$place,$line,plain]:-}")
        s=$(med "${R[$place,$line,scp]:-}")
        M[$place,$line]=$s
        MC[$place,$line]=$(med "${C[$place,$line,scp]:-}")
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$place" "$line" "$p" "$s" "$(ratio "$s" "$p")" \
            "$(med "${C[$place,$line,plain]:-}")" "${MC[$place,$line]}" "$(echo ${R[$place,$line,scp]:-} | tr ' ' ',')"
    done
done
printf '\n| place | scp overwrite / fresh (MB/s) | second overwrite / fresh | CPU per MiB: fresh / overwrite | fresh / second overwrite |\n'
printf '|---|---:|---:|---:|---:|\n'
for place in $ONLY; do
    printf '| %s | %s | %s | %s | %s |\n' "$place" \
        "$(ratio "${M[$place,seq-write-over]}" "${M[$place,seq-write-fresh]}")" \
        "$(ratio "${M[$place,seq-write-over2]}" "${M[$place,seq-write-fresh]}")" \
        "$(ratio "${MC[$place,seq-write-fresh]}" "${MC[$place,seq-write-over]}")" \
        "$(ratio "${MC[$place,seq-write-fresh]}" "${MC[$place,seq-write-over2]}")"
done
