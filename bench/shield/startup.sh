#!/bin/sh
# bench/shield/startup.sh [BUILD_DIR] - what the shield adds to a program's start, one command
# (about a minute). Prints CPU time (task-clock of the whole process tree, from perf stat: the
# load-independent figure) and wall time, shielded against native, and the load average.
#
#   per exec   a shell execs N programs (N=200): under scpctl run each exec starts the shield
#              again (what git, make and shell scripts pay); the same loop natively. The figure
#              is (loop of N - loop of 0) / N, so scpctl's own start is not in it.
#              true: a program that never touches a volume; cat: one that reads a 4 KiB
#              protected file (native: the same file in an ordinary directory), so it pays
#              the volume's first use (loading libcrypto, OpenSSL's start, the volume's open).
#              truevol, perlvol: /bin/true and perl stored in the volume (run from a copy);
#              perl: the same perl outside it. libvol: a program in the volume with its two
#              libraries there (preloaded from copies).
#   per fork   shield-forkbench: FN (2000) times fork + _exit + waitpid, CPU of the parent and
#              its children per fork: every fork copies the descriptor table up to the highest
#              open number, the shield's reserved range included (docs/shield.md "Reserved
#              descriptors"); natively, shielded, and shielded from bash (fork + exec per
#              command: `for i in $(seq N); do /bin/true; done`).
#   scpctl run end to end: `scpctl run --volume V:/m -- /bin/true` (launcher, namespace,
#              shield) against /bin/true, R runs (R=50); and `scpctl --version` (the
#              launcher's own loading of its libraries); `sqlite3 DB 'select * from t'`
#              natively, under scpctl run with DB outside the volume, and with DB on it.
#   QUICK=1    only the per-fork and per-exec (true) figures (A/B rounds: bench/shield/forkab.sh)
#   FILL=N     N one-byte files in the volume beside the 4 KiB one (smalltree.sh): the first
#              volume call of each exec'd image loads the whole manifest
set -eu
B=${1:-build}
N=${N:-200}
R=${R:-50}
S=$B/src/scpctl
command -v perf >/dev/null || { echo "needs perf (linux-perf)"; exit 1; }
T=$(mktemp -d "${BASE:-/var/tmp}/scp-startup.XXXXXX")
trap 'rm -rf "$T"' EXIT
export SCP_QUIET=1
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null
mkdir -p "$T/plain"
head -c 4096 /dev/urandom > "$T/plain/small"
"$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- cp "$T/plain/small" "$T/mnt/small"
if [ "${FILL:-0}" -gt 0 ]; then
    bash "$(dirname "$0")/smalltree.sh" "$T/fill.tar" "$FILL"
    "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- sh -c "mkdir $T/mnt/fill && tar -xf $T/fill.tar -C $T/mnt/fill"
fi

# cpu_ms CMD...: "CPU WALL", the task-clock (ms) of CMD and its children, and the wall ms
cpu_ms() {
    t0=$(date +%s%N)
    c=$(perf stat -x, -e task-clock -- "$@" 2>&1 >/dev/null | awk -F, '/task-clock/ {print $1}')
    t1=$(date +%s%N)
    awk -v c="$c" -v a="$t0" -v b="$t1" 'BEGIN {printf "%s %.3f\n", c, (b - a) / 1e6}'
}
loop='i=0; while [ $i -lt $1 ]; do '
per_exec() { # NAME NATIVE_BODY SHIELD_BODY (the shell: $PSH, sh unless set)
    sh=${PSH:-sh}
    set -- "$1" "$loop $2; i=\$((i+1)); done" "$loop $3; i=\$((i+1)); done"
    set -- "$1" "$(cpu_ms $sh -c "$2" sh 0)" "$(cpu_ms $sh -c "$2" sh "$N")" \
        "$(cpu_ms "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- $sh -c "$3" sh 0)" \
        "$(cpu_ms "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- $sh -c "$3" sh "$N")"
    echo "$2 $3 $4 $5" | awk -v n="$N" -v name="$1" '{
        c0 = $1; w0 = $2; cN = $3; wN = $4; s0 = $5; v0 = $6; sN = $7; vN = $8
        nc = (cN - c0) / n; sc = (sN - s0) / n; nw = (wN - w0) / n; sw = (vN - v0) / n
        printf "per exec, %-5s cpu: native %.3f ms, shielded %.3f ms, shield adds %.3f ms (%.1fx); wall: native %.3f ms, shielded %.3f ms (%.1fx)\n",
               name, nc, sc, sc - nc, sc / nc, nw, sw, sw / nw }'
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
per_exec true /bin/true /bin/true
PSH=bash
per_exec bash /bin/true /bin/true
PSH=sh
# per fork (FB: the benchmark program, so that an A/B run can use one build's for both)
FB=${FB:-$B/bench/shield/shield-forkbench}
FN=${FN:-2000}
echo "per fork, native:   $("$FB" "$FN")"
echo "per fork, shielded: $("$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- "$FB" "$FN")"
if [ "${QUICK:-0}" = 1 ]; then echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"; exit 0; fi
per_exec cat "cat $T/plain/small" "cat $T/mnt/small"
# a program stored in the volume runs from a sealed in-memory copy of its plaintext
# (src/shield/exec_script.c): /bin/true (39 KB) and perl (3.9 MB) copied in; native: the same
# copies in an ordinary directory. Against the shielded line of the program outside the volume
# (true above; perl here) the difference is the copy: a read and a decryption of the whole file
PERL=$(readlink -f /usr/bin/perl)
cp /bin/true "$PERL" "$T/plain/"
"$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- cp /bin/true "$PERL" "$T/mnt/"
per_exec truevol "$T/plain/true" "$T/mnt/true"
per_exec perl "$PERL -e 1" "$PERL -e 1"
per_exec perlvol "$T/plain/${PERL##*/} -e 1" "$T/mnt/${PERL##*/} -e 1"
# shared libraries stored in the volume (src/shield/libs.c): a program there that needs two
# small libraries there ($ORIGIN/lib), preloaded from sealed copies at each exec; native: the
# same files in an ordinary directory. Against truevol the difference is the libraries' copies
if command -v gcc >/dev/null; then
    mkdir -p "$T/plain/lv/lib"
    printf 'int dep(void) { return 7; }\n' > "$T/plain/lv/dep.c"
    printf 'int dep(void);\nint foo(int x) { return x + dep(); }\n' > "$T/plain/lv/foo.c"
    printf 'int foo(int);\nint main(void) { return foo(0) == 7 ? 0 : 1; }\n' > "$T/plain/lv/main.c"
    (cd "$T/plain/lv" && gcc -shared -fPIC -o lib/libdep.so -Wl,-soname,libdep.so dep.c &&
        gcc -shared -fPIC -o lib/libfoo.so -Wl,-soname,libfoo.so foo.c -Llib -ldep -Wl,-rpath,'$ORIGIN' &&
        gcc -o main main.c -Llib -lfoo -Wl,-rpath,'$ORIGIN/lib')
    "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- cp -r "$T/plain/lv" "$T/mnt/lv"
    per_exec libvol "$T/plain/lv/main" "$T/mnt/lv/main"
fi
# the part of it that is only the dynamic loader's: libscp-shield.so and the libraries it
# needs preloaded without a configuration (the shield then stays off); libssl and libcrypto
# were among them until the shield loaded OpenSSL at its first use (src/shield/openssl_lazy.c)
L=$(cd "$B/src" && pwd)/libscp-shield.so
l0=$(cpu_ms sh -c "$loop /bin/true; i=\$((i+1)); done" sh "$N")
l1=$(cpu_ms sh -c "$loop LD_PRELOAD=$L /bin/true; i=\$((i+1)); done" sh "$N")
echo "$l0 $l1" | awk -v n="$N" '{printf "per exec, loading libscp-shield.so and what it links alone (no configuration): %.3f ms cpu\n", ($3 - $1) / n}'
e2e() { # NAME CMD...: cpu and wall per run, R runs
    name=$1; shift
    perf stat -r "$R" -x, -e task-clock -- "$@" 2>&1 >/dev/null | awk -F, -v name="$name" '/task-clock/ {printf "%s cpu %.3f ms\n", name, $1}'
}
a=$(e2e native /bin/true)
b=$(e2e shielded "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- /bin/true)
c=$(e2e launcher-load "$S" --version)
echo "scpctl run -- /bin/true end to end ($R runs): $a; $b; of which scpctl loading its libraries: $c" | sed 's/native cpu/native \/bin\/true cpu/'
# a short command that uses the volume (each phase of bench/shield/apps.sh's sqlite line is one):
# natively, under scpctl run without a volume, and on the volume (the program names it, so the
# shield's check before main is its first use: docs/runtime.md "The volume check at start")
if command -v sqlite3 >/dev/null; then
    sqlite3 "$T/plain/db" 'create table t(a); insert into t values(1)'
    "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- sqlite3 "$T/mnt/db" 'create table t(a); insert into t values(1)'
    a=$(e2e native sqlite3 "$T/plain/db" 'select * from t')
    b=$(e2e novolume "$S" run -- sqlite3 "$T/plain/db" 'select * from t')
    c=$(e2e volume "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- sqlite3 "$T/mnt/db" 'select * from t')
    echo "sqlite3 DB 'select * from t' end to end ($R runs): $a; under scpctl run, DB outside the volume: $b; DB on the volume: $c"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
