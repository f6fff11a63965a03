#!/usr/bin/env bash
# bench/volume/fio.sh - fio (a real program, default options but the job's) under `scpctl run`
# on a protected volume against fio on a plain directory, on tmpfs and on disk, in the same run,
# with ratios (scp / plain). Issue 13's jobs: psync, end_fsync=1, SIZE bytes.
#
#   bench/volume/fio.sh [BUILD_DIR]      (default: build; needs fio: apt-get install fio)
#
# Environment: ROUNDS=3 (medians; plain and scp alternate within a round), SIZE=256M,
#   TMPFS=/dev/shm, DISK=/var/tmp, CHUNK=4096 (the volume's chunk size), ONLY="tmpfs disk",
#   LINES (a subset of the lines below), AB=OTHER_BUILD (also run the volume lines with that
#   build, "base", for a before/after in the same run: lib.sh), GOCRYPTFS=auto|0|1 (also run
#   every line on a gocryptfs mount, issue 13's other baseline: lib.sh; auto when it works here).
# Lines, for each place:
#   seq-write-fresh     1 MiB sequential writes to a new file, --fallocate=none
#   seq-write-over      1 MiB sequential writes over the existing file (the one just written)
#   seq-write-over2     the same again (a second overwrite: on a volume, the chunks' second
#                       slots exist from the first one, as for a database rewriting its pages)
#   seq-read            1 MiB sequential reads of that file
#   seq-write-falloc    the same with fio's default layout (posix_fallocate first)
#   rand-write-falloc   4 KiB random writes to a new file (fio's default: fallocated)
#   rand-write-over     4 KiB random writes over the existing file
# and the ratios that issue 13 asks for: overwrite / fresh and fallocated / fresh (scp).
# Besides MB/s (which moves 2x with the load of a shared machine) it prints the CPU time of
# each job per MiB (user + system of scpctl, fio and its job process), the load-independent
# figure, and the load average before and after. The CPU is marginal: a 1 MiB job of the same
# mode in the same round (fio's start-up, its clock test, scpctl's; the median of three) is
# subtracted first.
set -uo pipefail
B=${1:-build}
NAME=fio.sh
LIB_GOCRYPTFS=1
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-256M}
ONLY=${ONLY:-tmpfs disk}
ALL="seq-write-fresh seq-write-over seq-write-over2 seq-read seq-write-falloc rand-write-falloc rand-write-over"
LINES=${LINES:-$ALL}
declare -A R C # R[place,line,mode] = "MB/s ...", C[...] = "marginal CPU ms per MiB ..."
MIB=$(numfmt --from=iec "$SIZE" | awk '{print $1 / 1048576}')
C0=0 # CPU ms of the 1 MiB job of this round and mode

# job PLACE T MODE LINE NAME RW BS [fio options]: run it if LINE is wanted, record its figures
job() {
    local place=$1 t=$2 mode=$3 line=$4 name=$5 rw=$6 bs=$7 v c
    shift 7
    case " $LINES " in *" $line "*) ;; *) return 0 ;; esac
    read -r v _ c < <(lib_fio "$t" "$mode" "$name" f "$rw" "$bs" "$SIZE" "$@")
    R[$place,$line,$mode]+=" $v"
    C[$place,$line,$mode]+=" $(awk -v c="$c" -v c0="$C0" -v m="$MIB" 'BEGIN {printf "%.3f", (c - c0) / (m - 1)}')"
}

round() { # PLACE T
    local place=$1 t=$2 mode
    for mode in $MODES; do
        # (the median of three: one sample of fio's start-up, about 200 ms with its clock
        # test, wobbles by 20 ms under load, 0.3 ms/MiB of a 64 MiB job's marginal figure)
        local c0s= k
        for k in 1 2 3; do
            lib_rm "$t" "$mode" f
            read -r _ _ C0 < <(lib_fio "$t" "$mode" st f write 1M 1M --fallocate=none)
            c0s+=" $C0"
        done
        C0=$(med "$c0s")
        lib_rm "$t" "$mode" f
        job "$place" "$t" "$mode" seq-write-fresh sw write 1M --fallocate=none
        job "$place" "$t" "$mode" seq-write-over so write 1M --fallocate=none
        job "$place" "$t" "$mode" seq-write-over2 so write 1M --fallocate=none
        job "$place" "$t" "$mode" seq-read sr read 1M
        lib_rm "$t" "$mode" f
        job "$place" "$t" "$mode" seq-write-falloc sa write 1M
        lib_rm "$t" "$mode" f
        job "$place" "$t" "$mode" rand-write-falloc ra randwrite 4k
        job "$place" "$t" "$mode" rand-write-over ro randwrite 4k
        lib_rm "$t" "$mode" f
        echo "  $place $mode: done" >&2
    done
}

lib_rounds fio

printf '\nfio %s, psync, end_fsync=1, SIZE=%s, chunk %s, medians of %s rounds (MB/s; marginal CPU ms per MiB)\n' \
    "$(fio --version)" "$SIZE" "${CHUNK:-4096}" "$ROUNDS"
printf 'load average before %s, after %s\n' "$LOAD0" "$LOAD1"
has() { case " $MODES " in *" $1 "*) return 0 ;; esac; return 1; }
[ -n "$LIB_GC_WHY" ] && echo "gocryptfs not run: $LIB_GC_WHY"
hdr='| place | job | plain | scp | scp/plain |'
sep='|---|---|---:|---:|---:|'
has base && hdr+=' base | scp/base |' sep+='---:|---:|'
has gocryptfs && hdr+=' gocryptfs | scp/gocryptfs |' sep+='---:|---:|'
hdr+=' CPU plain | CPU scp | CPU scp/plain |' sep+='---:|---:|---:|'
has base && hdr+=' CPU base | CPU scp/base |' sep+='---:|---:|'
has gocryptfs && hdr+=' CPU gocryptfs |' sep+='---:|'
hdr+=' scp rounds |' sep+='---|'
has base && hdr+=' base rounds |' sep+='---|'
printf '%s\n%s\n' "$hdr" "$sep"
declare -A M
behind=
for place in $ONLY; do
    for l in $LINES; do
        p=$(med "${R[$place,$l,plain]:-}")
        s=$(med "${R[$place,$l,scp]:-}")
        cp=$(med "${C[$place,$l,plain]:-}")
        cs=$(med "${C[$place,$l,scp]:-}")
        M[$place,$l]=$s
        row="| $place | $l | $p | $s | $(ratio "$s" "$p") |"
        if has base; then
            b=$(med "${R[$place,$l,base]:-}")
            row+=" $b | $(ratio "$s" "$b") |"
        fi
        if has gocryptfs; then
            g=$(med "${R[$place,$l,gocryptfs]:-}")
            row+=" $g | $(ratio "$s" "$g") |"
            awk -v s="$s" -v g="$g" 'BEGIN {exit !(s <= g)}' && behind+=" $place/$l"
        fi
        row+=" $cp | $cs | $(ratio "$cs" "$cp") |"
        if has base; then
            cb=$(med "${C[$place,$l,base]:-}")
            row+=" $cb | $(ratio "$cs" "$cb") |"
        fi
        has gocryptfs && row+=" $(med "${C[$place,$l,gocryptfs]:-}") |"
        row+=" $(echo ${R[$place,$l,scp]:-} | tr ' ' ',') |"
        has base && row+=" $(echo ${R[$place,$l,base]:-} | tr ' ' ',') |"
        echo "$row"
    done
done
if has gocryptfs; then
    if [ -z "$behind" ]; then echo "issue 13: scp ahead of gocryptfs on every line (MB/s medians)"
    else echo "issue 13: scp NOT ahead of gocryptfs on:$behind"; fi
fi
case " $LINES " in *" seq-write-fresh "*) ;; *) exit 0 ;; esac
# Issue 13's "tmpfs sequential write within 0.8x of the single-core crypto bound": what an
# encrypting writer can reach here. AES-256-GCM alone (openssl speed, one core, 4 KiB blocks:
# the volume's chunk) is G MB/s, plain fio's own write of the same job P MB/s; a writer that
# encrypts and then writes on one core reaches 1/(1/G + 1/P); spread over all cores (the
# volume seals a large write's chunks on a small pool: crypto/parallel.h) at most
# min(P, cores / (1/G + 1/P)), since the kernel copies one file's writes one at a time.
if command -v openssl >/dev/null && case " $ONLY " in *" tmpfs "*) true ;; *) false ;; esac; then
    g=$(openssl speed -evp aes-256-gcm -bytes 4096 -seconds 1 2>/dev/null | awk '/^AES-256-GCM/ {printf "%.0f", $2 / 1000}')
    p=$(med "${R[tmpfs,seq-write-fresh,plain]:-}")
    s=${M[tmpfs,seq-write-fresh]}
    if [ -n "$g" ] && [ -n "$p" ] && [ -n "$s" ]; then
        read -r b1 bn < <(awk -v g="$g" -v p="$p" -v c="$(nproc)" 'BEGIN {
            b = 1 / (1 / g + 1 / p); n = c * b; if (n > p) n = p; printf "%.0f %.0f\n", b, n }')
        printf '\ntmpfs seq-write-fresh against its bounds: AES-256-GCM %s MB/s (openssl speed, one core, 4 KiB), plain write %s MB/s\n' "$g" "$p"
        printf '| bound | MB/s | scp | scp/bound |\n|---|---:|---:|---:|\n'
        printf '| one core: encrypt, then write | %s | %s | %s |\n' "$b1" "$s" "$(ratio "$s" "$b1")"
        printf '| %s cores (the kernel copies one file'"'"'s writes in turn) | %s | %s | %s |\n' "$(nproc)" "$bn" "$s" "$(ratio "$s" "$bn")"
        printf '| the issue'"'"'s: AES-GCM alone, one core | %s | %s | %s |\n' "$g" "$s" "$(ratio "$s" "$g")"
    fi
fi
printf '\n| place | scp overwrite / fresh (seq) | second overwrite / fresh | scp fallocated / fresh (seq) |\n|---|---:|---:|---:|\n'
for place in $ONLY; do
    f=${M[$place,seq-write-fresh]}
    r() { [ -n "${M[$place,$1]:-}" ] && ratio "${M[$place,$1]}" "$f" || echo -; }
    printf '| %s | %s | %s | %s |\n' "$place" "$(r seq-write-over)" "$(r seq-write-over2)" "$(r seq-write-falloc)"
done
