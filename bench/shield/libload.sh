#!/bin/sh
# bench/shield/libload.sh [BUILD_DIR] - what loading a shared library stored in a volume costs
# (src/shield/libs.c: a sealed copy per load), against the same files in a plain directory.
# One program dlopens (RTLD_NOW) L distinct small libraries (L=50, ~16 KB each), then M copies
# of a large one (M=5, libsqlite3's 1.4 MB, each under its own name), and prints the time per
# dlopen, measured inside the program (the volume's open, paid at the first, is in it).
# Native: the program and the libraries in a plain directory; shielded: under scpctl run with
# all of them in the volume; shielded-plain: under scpctl run, the libraries outside (what the
# shield's dlopen entry alone adds).
set -eu
B=${1:-build}
L=${L:-50}
M=${M:-5}
S=$B/src/scpctl
command -v gcc >/dev/null || { echo "needs gcc"; exit 1; }
BIG=$(ls /usr/lib/x86_64-linux-gnu/libsqlite3.so.0.* 2>/dev/null | head -1)
[ -n "$BIG" ] || { echo "needs libsqlite3"; exit 1; }
T=$(mktemp -d "${BASE:-/var/tmp}/scp-libload.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export SCP_QUIET=1
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null
P=$T/plain
mkdir -p "$P"
cat > "$P/load.c" <<'C'
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
/* load DIR L M: dlopen DIR/small$i.so (i < L), then DIR/big$j.so (j < M) */
int main(int argc, char **argv) {
    int l = atoi(argv[2]), m = atoi(argv[3]);
    char p[4096];
    double t0 = now();
    for (int i = 0; i < l; i++) {
        snprintf(p, sizeof p, "%s/small%d.so", argv[1], i);
        if (!dlopen(p, RTLD_NOW)) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    }
    double t1 = now();
    for (int j = 0; j < m; j++) {
        snprintf(p, sizeof p, "%s/big%d.so", argv[1], j);
        if (!dlopen(p, RTLD_NOW)) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    }
    double t2 = now();
    printf("%.1f %.1f\n", (t1 - t0) / l, (t2 - t1) / m);
    return 0;
}
C
gcc -O2 -o "$P/load" "$P/load.c" -ldl
i=0
while [ $i -lt "$L" ]; do
    printf 'int f%d(int x) { return x + %d; }\n' $i $i > "$T/s.c"
    gcc -shared -fPIC -o "$P/small$i.so" -Wl,-soname,small$i.so "$T/s.c"
    i=$((i + 1))
done
j=0
while [ $j -lt "$M" ]; do cp "$BIG" "$P/big$j.so"; j=$((j + 1)); done
"$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- cp -r "$P" "$T/mnt/p"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# (a first run, not counted: the first open of each file the copy wrote replays its journal)
"$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- "$T/mnt/p/load" "$T/mnt/p" "$L" "$M" >/dev/null
"$P/load" "$P" "$L" "$M" >/dev/null
n=$("$P/load" "$P" "$L" "$M")
o=$("$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- "$P/load" "$P" "$L" "$M")
v=$("$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- "$T/mnt/p/load" "$T/mnt/p" "$L" "$M")
echo "$n $o $v" | awk -v l="$L" -v m="$M" -v big="$(stat -c %s "$BIG")" '{
    printf "per dlopen, %d small libraries: native %.1f us, shielded (libraries outside) %.1f us, from the volume %.1f us (%.1fx native)\n", l, $1, $3, $5, $5 / $1
    printf "per dlopen, %d copies of a %.1f MB library: native %.1f us, shielded (outside) %.1f us, from the volume %.1f us (%.1fx native; %.0f MB/s)\n", m, big / 1e6, $2, $4, $6, $6 / $2, big / $6 }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
