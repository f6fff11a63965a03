# bench/volume/lib.sh - what the fio benchmarks (fio.sh, fio-over.sh, fio-fork.sh) share: the
# place set-up, the runner that runs one fio job on a plain directory or under `scpctl run`
# on a protected volume and measures its MB/s and CPU time, and medians and ratios.
#
# Source it after setting B (the build directory) and NAME (the script's name, for messages):
#   . "$(dirname "$0")/lib.sh"
# Environment it reads: CHUNK=4096 (the volume's chunk size), TMPFS=/dev/shm, DISK=/var/tmp,
#   AB=OTHER_BUILD (optional: also run the volume lines with that build's scpctl, mode "base",
#   on a volume of its own, for a before/after in the same run), GOCRYPTFS=auto|0|1 (only in a
#   script that sets LIB_GOCRYPTFS=1 before sourcing: also run the lines on a gocryptfs mount,
#   mode "gocryptfs", Debian's gocryptfs with default options over FUSE; auto: when gocryptfs,
#   fusermount3 and /dev/fuse are here and a probe mount works; 1: fail if not).

SCPCTL=$B/src/scpctl
MKVOL=$B/tests/shield/shield-mkvol
command -v fio >/dev/null || { echo "$NAME: needs fio (apt-get install fio)" >&2; exit 2; }
[ -x "$SCPCTL" ] && [ -x "$MKVOL" ] || { echo "$NAME: build $B first" >&2; exit 2; }
if [ -n "${AB:-}" ]; then
    [ -x "$AB/src/scpctl" ] || { echo "$NAME: AB=$AB holds no src/scpctl" >&2; exit 2; }
    MODES="plain scp base"
else
    MODES="plain scp"
fi
LIB_TMPS=()
LIB_MOUNTS=()
lib_cleanup() {
    local m
    for m in "${LIB_MOUNTS[@]}"; do fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    rm -rf "${LIB_TMPS[@]}"
}
trap lib_cleanup EXIT

# gocryptfs: the issue's other baseline (an encrypting FUSE file system), if asked for and usable
LIB_GC_WHY=
lib_gc_probe() {
    local d
    command -v gocryptfs >/dev/null && command -v fusermount3 >/dev/null ||
        { LIB_GC_WHY="gocryptfs or fusermount3 missing (apt-get install gocryptfs fuse3)"; return 1; }
    [ -c /dev/fuse ] || { LIB_GC_WHY="no /dev/fuse here"; return 1; }
    d=$(mktemp -d "${TMPFS:-/dev/shm}/scp-gcprobe.XXXXXX") || return 1
    LIB_TMPS+=("$d")
    lib_gc_mount "$d" && echo probe >"$d/gc.plain/x" && [ "$(cat "$d/gc.plain/x")" = probe ] ||
        { LIB_GC_WHY="a gocryptfs mount did not work here: $(head -c 300 "$d/gc.log" 2>/dev/null)"; return 1; }
}
# lib_gc_mount T: a gocryptfs file system with its ciphertext in T/gc.cipher, mounted on T/gc.plain
lib_gc_mount() {
    mkdir -p "$1/gc.cipher" "$1/gc.plain"
    head -c 24 /dev/urandom | base64 >"$1/gc.pass"
    gocryptfs -init -q -passfile "$1/gc.pass" "$1/gc.cipher" >"$1/gc.log" 2>&1 || return 1
    # (stdin and stdout not a pipe of ours: the daemon keeps them open)
    gocryptfs -q -nosyslog -passfile "$1/gc.pass" "$1/gc.cipher" "$1/gc.plain" >>"$1/gc.log" 2>&1 </dev/null ||
        return 1
    LIB_MOUNTS+=("$1/gc.plain")
}
if [ "${LIB_GOCRYPTFS:-0}" = 1 ] && [ "${GOCRYPTFS:-auto}" != 0 ]; then
    if lib_gc_probe; then
        MODES="$MODES gocryptfs"
    elif [ "${GOCRYPTFS:-auto}" = 1 ]; then
        echo "$NAME: GOCRYPTFS=1 but $LIB_GC_WHY" >&2
        exit 2
    fi
fi

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# med "v1 v2 ..." -> the median (0 if empty)
med() { echo ${1:-0} | tr ' ' '\n' | median; }
# ratio A B -> "A/Bx", or "-" if B is 0
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), a / b}'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# lib_place PLACE TAG -> prints a new directory on tmpfs or disk holding key, vol (a volume made
# by this build), plain/ and mnt/ (and, with AB, bvol and bkey: the base build's volume)
lib_place() {
    local base t
    case $1 in tmpfs) base=${TMPFS:-/dev/shm} ;; disk) base=${DISK:-/var/tmp} ;; *) return 1 ;; esac
    t=$(mktemp -d "$base/scp-$2.XXXXXX") || return 1
    if ! "$MKVOL" "$t/key" "$t/vol" "${CHUNK:-4096}" >/dev/null ||
        { [ -n "${AB:-}" ] && ! "$MKVOL" "$t/bkey" "$t/bvol" "${CHUNK:-4096}" >/dev/null; }; then
        rm -rf "$t"
        return 1
    fi
    chmod 600 "$t"/*key
    mkdir -p "$t/plain" "$t/mnt"
    case " $MODES " in *" gocryptfs "*) lib_gc_mount "$t" || { echo "$NAME: gocryptfs mount failed" >&2; return 1; } ;; esac
    echo "$t"
}

# lib_pre T MODE -> sets PRE (the command prefix) and DIR (where the file goes) for a mode:
# plain (a directory), scp (this build's scpctl run), base (AB's scpctl run), gocryptfs (its mount)
lib_pre() {
    case $2 in
    plain) PRE=() DIR=$1/plain ;;
    gocryptfs) PRE=() DIR=$1/gc.plain ;;
    scp) PRE=(env SCP_QUIET=1 "$SCPCTL" run --volume "$1/vol:$1/mnt" --key-file "$1/key" --) DIR=$1/mnt ;;
    base) PRE=(env SCP_QUIET=1 "$AB/src/scpctl" run --volume "$1/bvol:$1/mnt" --key-file "$1/bkey" --) DIR=$1/mnt ;;
    esac
}

# lib_fio T MODE NAME FILE RW BS SIZE [fio options] -> "MB/s cpu_ms_per_MiB cpu_ms", or "0 0 0"
# (with fio's errors on stderr). MB/s is the job's (read or write, whichever it did); CPU is
# user + system time of everything the job ran (scpctl, fio, its job process: getrusage of the
# children), which the load of a shared machine moves much less than MB/s.
lib_fio() {
    local t=$1 mode=$2 name=$3 file=$4 rw=$5 bs=$6 size=$7
    shift 7
    lib_pre "$t" "$mode"
    local daemon=0 # gocryptfs: its daemon's CPU is the job's too (not a child of it)
    [ "$mode" = gocryptfs ] && daemon=$(pgrep -f "gocryptfs -fg .*$t/gc.cipher" | head -1)
    python3 - "$(numfmt --from=iec "$size")" "${daemon:-0}" "${PRE[@]}" fio --name="$name" \
        --filename="$DIR/$file" --rw="$rw" --bs="$bs" --size="$size" --ioengine=psync --end_fsync=1 \
        --output-format=json "$@" 2>"$t/fio.err" <<'EOF' || { echo 0 0 0; cat "$t/fio.err" >&2; }
import json, os, resource, subprocess, sys
mib = float(sys.argv[1]) / 1048576
def daemon_ms(pid):
    if pid == "0": return 0.0
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")
d0 = daemon_ms(sys.argv[2])
p = subprocess.run(sys.argv[3:], stdout=subprocess.PIPE)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
j = json.loads(p.stdout)["jobs"][0]
k = "read" if j["read"]["io_bytes"] else "write"
cpu = (ru.ru_utime + ru.ru_stime) * 1000 + daemon_ms(sys.argv[2]) - d0
print("%.0f %.3f %.1f" % (j[k]["bw_bytes"] / 1e6, cpu / mib, cpu))
EOF
}

# lib_rm T MODE FILE: remove the file (through the volume for scp and base)
lib_rm() {
    lib_pre "$1" "$2"
    "${PRE[@]}" rm -f "$DIR/$3"
}

# lib_rounds TAG: for each place of $ONLY, a fresh place (lib_place PLACE TAG, removed at exit)
# and $ROUNDS calls of the script's own `round PLACE DIR`; LOAD0 and LOAD1 are the load
# averages before and after.
lib_rounds() {
    local place t r
    LOAD0=$(loadavg)
    for place in $ONLY; do
        t=$(lib_place "$place" "$1") || exit 1
        LIB_TMPS+=("$t")
        # (lib_place ran in a subshell: its mount is recorded here)
        case " $MODES " in *" gocryptfs "*) LIB_MOUNTS+=("$t/gc.plain") ;; esac
        for r in $(seq 1 "$ROUNDS"); do echo "round $r ($place)" >&2; round "$place" "$t"; done
    done
    LOAD1=$(loadavg)
}
