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
SCPCTL=$B/src/scpctl
MKVOL=$B/tests/shield/shield-mkvol
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-128M}
ONLY=${ONLY:-tmpfs disk}
command -v fio >/dev/null || { echo "fio-over.sh: needs fio (apt-get install fio)" >&2; exit 2; }
[ -x "$SCPCTL" ] && [ -x "$MKVOL" ] || { echo "fio-over.sh: build $B first" >&2; exit 2; }
TMPS=()
cleanup() { rm -rf "${TMPS[@]}"; }
trap cleanup EXIT
MIB=$(numfmt --from=iec "$SIZE" | awk '{print $1 / 1048576}')
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R C # R[place,line,mode] = "MB/s ...", C[...] = "CPU ms per MiB ..."

# run_fio T MODE RW BS -> "MB/s cpu_ms_per_MiB"
run_fio() {
    local t=$1 mode=$2 rw=$3 bs=$4 pre=() d=$t/plain
    if [ "$mode" = scp ]; then
        pre=(env SCP_QUIET=1 "$SCPCTL" run --volume "$t/vol:$t/mnt" --key-file "$t/key" --)
        d=$t/mnt
    fi
    python3 - "$MIB" "${pre[@]}" fio --name=o --filename="$d/f" --rw="$rw" --bs="$bs" --size="$SIZE" \
        --ioengine=psync --end_fsync=1 --fallocate=none --output-format=json 2>"$t/fio.err" <<'EOF'
import json, resource, subprocess, sys
mib = float(sys.argv[1])
p = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
try:
    j = json.loads(p.stdout)["jobs"][0]
    print("%.0f %.2f" % (j["write"]["bw_bytes"] / 1e6, (ru.ru_utime + ru.ru_stime) * 1000 / mib))
except Exception:
    print("0 0")
EOF
}

rm_file() { # T MODE
    if [ "$2" = scp ]; then SCP_QUIET=1 "$SCPCTL" run --volume "$1/vol:$1/mnt" --key-file "$1/key" -- rm -f "$1/mnt/f"
    else rm -f "$1/plain/f"; fi
}

round() { # PLACE T
    local place=$1 t=$2 mode line rw bs v c
    for mode in plain scp; do
        rm_file "$t" "$mode"
        for line in seq-write-fresh:write:1M seq-write-over:write:1M seq-write-over2:write:1M rand-write-over:randwrite:4k; do
            IFS=: read -r line rw bs <<<"$line"
            read -r v c < <(run_fio "$t" "$mode" "$rw" "$bs")
            [ "$v" = 0 ] && cat "$t/fio.err" >&2
            R[$place,$line,$mode]+=" $v"
            C[$place,$line,$mode]+=" $c"
        done
        rm_file "$t" "$mode"
    done
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for place in $ONLY; do
    case $place in tmpfs) base=${TMPFS:-/dev/shm} ;; disk) base=${DISK:-/var/tmp} ;; *) continue ;; esac
    t=$(mktemp -d "$base/scp-fioover.XXXXXX")
    TMPS+=("$t")
    "$MKVOL" "$t/key" "$t/vol" "${CHUNK:-4096}" >/dev/null || exit 1
    chmod 600 "$t/key"
    mkdir -p "$t/plain" "$t/mnt"
    for r in $(seq 1 "$ROUNDS"); do echo "round $r ($place)" >&2; round "$place" "$t"; done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), a / b}'; }
med() { echo ${1:-0} | tr ' ' '\n' | median; }
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
