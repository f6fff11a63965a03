#!/usr/bin/env bash
# bench/volume/run.sh - protected volumes (scp) vs plain files vs gocryptfs, on tmpfs and disk.
#
#   bench/volume/run.sh            # builds volbench in ./build if needed, runs everything
#
# Environment (all optional):
#   BUILD=build            build directory that holds bench/volume/volbench
#   ROUNDS=3               rounds; each line's figure is the median over the rounds. Within a
#                          round the back ends run one after the other, so that a burst of noise
#                          from other work on the machine spreads over them instead of hitting one
#   TMPFS_BASE=/dev/shm    where the tmpfs runs live (must be tmpfs)
#   DISK_BASE=/var/tmp     where the disk runs live (must be a disk file system)
#   TMPFS_MIB=512 DISK_MIB=256   file size for the sequential lines (random lines use it too)
#   OPS=32768              4 KiB random operations per random line
#   FS="tmpfs disk"        which file systems to run
#   NO_GOCRYPTFS=1         skip gocryptfs (otherwise it is installed with apt-get if missing)
#
# Prints the raw result lines as they come, then a markdown table with the ratios of scp against
# plain files and against gocryptfs. Figures: MB/s = 10^6 bytes/s for sequential lines, ops/s for
# 4 KiB random lines. Reads are warm (the page cache holds what the write left: plaintext for
# plain, ciphertext for scp and gocryptfs); on disk, the -cold lines drop the page cache first.
# Everything it creates (directories, mounts) is removed on exit, also on failure or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
ROUNDS=${ROUNDS:-3}
TMPFS_BASE=${TMPFS_BASE:-/dev/shm}
DISK_BASE=${DISK_BASE:-/var/tmp}
TMPFS_MIB=${TMPFS_MIB:-512}
DISK_MIB=${DISK_MIB:-256}
OPS=${OPS:-32768}
FS=${FS:-"tmpfs disk"}
VOLBENCH=$BUILD/bench/volume/volbench

MOUNTS=()
DIRS=()
cleanup() {
    set +e
    for m in "${MOUNTS[@]}"; do
        if mountpoint -q "$m"; then
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || umount -l "$m"
        fi
    done
    for d in "${DIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

log() { echo "# $*"; }

if [[ ! -x $VOLBENCH ]]; then
    log "building volbench in $BUILD"
    [[ -f $BUILD/build.ninja ]] || cmake -S "$ROOT" -B "$BUILD" -G Ninja >/dev/null
    ninja -C "$BUILD" volbench >/dev/null
fi

fstype() { df --output=fstype "$1" | tail -1; }
[[ $(fstype "$TMPFS_BASE") == tmpfs ]] || { echo "run.sh: $TMPFS_BASE is not tmpfs (set TMPFS_BASE)" >&2; exit 2; }

WT=$(mktemp -d "$TMPFS_BASE/volbench.XXXXXX"); DIRS+=("$WT")
WD=$(mktemp -d "$DISK_BASE/volbench.XXXXXX"); DIRS+=("$WD")
[[ $(fstype "$WD") != tmpfs ]] || { echo "run.sh: $DISK_BASE is tmpfs, not a disk (set DISK_BASE)" >&2; exit 2; }
KEY=$WT/key
PASS=$WT/gocryptfs.pass
head -c 32 /dev/urandom >"$KEY"
head -c 24 /dev/urandom | base64 >"$PASS"
chmod 600 "$KEY" "$PASS"

# ---- gocryptfs: install if missing, then check that FUSE really mounts here --------------------
GC_OK=0
GC_WHY=
if [[ -n ${NO_GOCRYPTFS:-} ]]; then
    GC_WHY="skipped (NO_GOCRYPTFS set)"
else
    if ! command -v gocryptfs >/dev/null || ! command -v fusermount3 >/dev/null; then
        log "installing gocryptfs and fuse3 (bench only)"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gocryptfs fuse3 >/dev/null 2>&1; then
            apt-get update -qq >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gocryptfs fuse3 >/dev/null 2>&1 || true
        fi
    fi
    if ! command -v gocryptfs >/dev/null || ! command -v fusermount3 >/dev/null; then
        GC_WHY="gocryptfs or fusermount3 missing and apt-get install gocryptfs fuse3 failed"
    elif [[ ! -c /dev/fuse ]]; then
        GC_WHY="/dev/fuse does not exist on this machine, so FUSE cannot mount"
    else
        mkdir -p "$WT/probe.c" "$WT/probe.m"
        if ! out=$(gocryptfs -init -q -passfile "$PASS" "$WT/probe.c" 2>&1); then
            GC_WHY="gocryptfs -init failed: $out"
        # (not in $(...): the daemon keeps the pipe open and the substitution would never end)
        elif ! gocryptfs -q -nosyslog -passfile "$PASS" "$WT/probe.c" "$WT/probe.m" \
                >"$WT/probe.log" 2>&1 </dev/null; then
            GC_WHY="gocryptfs mount failed (FUSE does not work here): $(head -c 300 "$WT/probe.log")"
        else
            MOUNTS+=("$WT/probe.m")
            if echo probe >"$WT/probe.m/x" && [[ $(cat "$WT/probe.m/x") == probe ]]; then
                GC_OK=1
            else
                GC_WHY="gocryptfs mounted but a file written through it did not read back"
            fi
            fusermount3 -u "$WT/probe.m"
        fi
        rm -rf "$WT/probe.c" "$WT/probe.m"
    fi
fi

# ---- the machine ---------------------------------------------------------------------------
log "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
log "tmpfs: $WT; disk: $WD ($(fstype "$WD") on $(df --output=source "$WD" | tail -1))"
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $GC_OK == 1 ]]; then
    log "gocryptfs: $(gocryptfs -version 2>/dev/null | head -1)"
else
    log "gocryptfs: NOT RUN: $GC_WHY"
fi
if command -v openssl >/dev/null; then
    gcm=$(openssl speed -evp aes-256-gcm -bytes 4096 -seconds 1 2>/dev/null | awk '/^AES-256-GCM/ {print $2}')
    log "bound: openssl speed -evp aes-256-gcm, 4 KiB blocks, one core: ${gcm:-?} (1000s of bytes/s)"
fi

RAW=$WT/raw.txt
: >"$RAW"
bench() { # label args...
    local label=$1; shift
    "$VOLBENCH" --reps 1 --ops "$OPS" --label "$label" "$@" | tee -a "$RAW"
}

for fs in $FS; do
    case $fs in
        tmpfs) base=$WT/bench; mib=$TMPFS_MIB; seq=seqwrite,seqread; rnd=randwrite,randread ;;
        disk) base=$WD/bench; mib=$DISK_MIB; seq=seqwrite,seqread,seqread-cold; rnd=randwrite,randread,randread-cold ;;
        *) echo "run.sh: unknown FS '$fs' (tmpfs or disk)" >&2; exit 2 ;;
    esac
    mkdir -p "$base/plain"
    if [[ $GC_OK == 1 ]]; then
        mkdir -p "$base/gc.cipher" "$base/gc.plain"
        gocryptfs -init -q -passfile "$PASS" "$base/gc.cipher"
        gocryptfs -q -nosyslog -passfile "$PASS" "$base/gc.cipher" "$base/gc.plain" </dev/null
        MOUNTS+=("$base/gc.plain")
    fi
    cols=(plain scp-4k scp-64k)
    [[ $GC_OK == 1 ]] && cols+=(gocryptfs)
    for ((r = 1; r <= ROUNDS; r++)); do
        log "$fs, round $r of $ROUNDS (load $(cut -d' ' -f1 /proc/loadavg))"
        # rotate the order of the back ends from round to round, so none is always first
        for ((i = 0; i < ${#cols[@]}; i++)); do
            col=${cols[$(((i + r - 1) % ${#cols[@]}))]}
            create=()
            [[ -e $base/$col ]] || create=(--create)
            case $col in
                plain) bench "$fs/plain" --backend plain "$base/plain" --size-mib "$mib" --workloads "$seq,$rnd" ;;
                scp-4k) bench "$fs/scp-4k" --backend scp "$base/scp-4k" --key-file "$KEY" "${create[@]}" \
                    --chunk 4096 --size-mib "$mib" --workloads "$seq,$rnd" ;;
                scp-64k) bench "$fs/scp-64k" --backend scp "$base/scp-64k" --key-file "$KEY" "${create[@]}" \
                    --chunk 65536 --size-mib "$mib" --workloads "$seq" ;;
                gocryptfs) bench "$fs/gocryptfs" --backend plain "$base/gc.plain" --evict "$base/gc.cipher" \
                    --size-mib "$mib" --workloads "$seq,$rnd" ;;
            esac
        done
    done
    if [[ $GC_OK == 1 ]]; then
        fusermount3 -u "$base/gc.plain"
    fi
    rm -rf "${base:?}"
done
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the table ---------------------------------------------------------------------------------
echo
[[ $GC_OK == 1 ]] || echo "gocryptfs was not run: $GC_WHY"
awk -v rounds="$ROUNDS" '
function median(key,   n, i, j, t, a) {
    n = cnt[key]; if (!n) return -1
    for (i = 1; i <= n; i++) a[i] = val[key, i]
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function extreme(key, want_max,   i, x) {
    if (!cnt[key]) return -1
    x = val[key, 1]
    for (i = 2; i <= cnt[key]; i++)
        if (want_max ? val[key, i] > x : val[key, i] < x) x = val[key, i]
    return x
}
# which: 0 = median, 1 = worst round (longest time), 2 = best round
function figx(fs, col, w, which,   k, s) {
    k = fs "/" col SUBSEP w
    s = which == 0 ? median(k) : extreme(k, which == 1)
    if (s <= 0) return -1
    return (w ~ /^seq/) ? bytes[k] / s / 1e6 : ops[k] / s
}
function fig(fs, col, w) { return figx(fs, col, w, 0) }
function span(fs, col, w,   lo, hi) {
    lo = figx(fs, col, w, 1); hi = figx(fs, col, w, 2)
    return lo < 0 ? "n/a" : cell(lo) "-" cell(hi)
}
function cell(x) { return x < 0 ? "n/a" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x)) }
function ratio(a, b) { return (a < 0 || b <= 0) ? "n/a" : sprintf("%.2fx", a / b) }
function verdict(s, p, g, w,   bad) {
    if (s < 0) return ""
    bad = ""
    if (w ~ /^seq/ && p > 0 && s < 0.7 * p) bad = bad " <0.7x plain"
    if (g > 0 && s <= g) bad = bad " not ahead of gocryptfs"
    return bad == "" ? "met" : "MISSED:" bad
}
{
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    split(f["label"], lp, "/"); fsn = lp[1]
    if (!(fsn in seenfs)) { seenfs[fsn] = 1; fsorder[++nfs] = fsn }
    k = f["label"] SUBSEP f["workload"]
    val[k, ++cnt[k]] = f["secs"]; bytes[k] = f["bytes"]; ops[k] = f["ops"]
}
END {
    nw = split("seqwrite seqread seqread-cold randwrite randread randread-cold", wl, " ")
    printf "Median of %d rounds. Sequential lines: MB/s (10^6 B/s, 1 MiB I/O); random lines: ops/s (4 KiB I/O).\n\n", rounds
    print "| fs | workload | unit | plain | gocryptfs | scp 4k | scp 64k | 4k/plain | 4k/gocryptfs | 64k/plain | 64k/gocryptfs | target (4k; 64k) |"
    print "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for (i = 1; i <= nfs; i++) for (j = 1; j <= nw; j++) {
        fsn = fsorder[i]; w = wl[j]
        p = fig(fsn, "plain", w); g = fig(fsn, "gocryptfs", w)
        s4 = fig(fsn, "scp-4k", w); s64 = fig(fsn, "scp-64k", w)
        if (p < 0 && s4 < 0) continue
        v = verdict(s4, p, g, w); v64 = verdict(s64, p, g, w)
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%s |\n", fsn, w,
            (w ~ /^seq/) ? "MB/s" : "ops/s", cell(p), cell(g), cell(s4), cell(s64),
            ratio(s4, p), ratio(s4, g), ratio(s64, p), ratio(s64, g), v, (v64 == "" ? "" : "; " v64)
    }
    printf "\nSpread: worst-best round of each cell (same units).\n\n"
    print "| fs | workload | plain | gocryptfs | scp 4k | scp 64k |"
    print "|---|---|---:|---:|---:|---:|"
    for (i = 1; i <= nfs; i++) for (j = 1; j <= nw; j++) {
        fsn = fsorder[i]; w = wl[j]
        if (fig(fsn, "plain", w) < 0 && fig(fsn, "scp-4k", w) < 0) continue
        printf "| %s | %s | %s | %s | %s | %s |\n", fsn, w, span(fsn, "plain", w),
            span(fsn, "gocryptfs", w), span(fsn, "scp-4k", w), span(fsn, "scp-64k", w)
    }
}' "$RAW"
