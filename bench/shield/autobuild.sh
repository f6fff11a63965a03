#!/usr/bin/env bash
# bench/shield/autobuild.sh [BUILD_DIR] [TARBALL] - a source package built and tested inside a
# protected volume, as a developer with a protected source tree would: `./configure && make -j2
# && make check` of an autotools package (GNU hello by default), natively in a plain directory
# and under `scpctl run` with the tree in the volume, the same disk; wall seconds of each phase
# and the ratios, medians over ROUNDS. configure compiles and runs dozens of test programs
# (conftest) in the tree: each is an ELF image inside the volume, run from a sealed in-memory
# copy (src/shield/exec_script.c), and every process of the build that touches the tree (sh,
# sed, gcc, cc1, as, ld, make) is an exec'd shielded image that opens the volume at its first
# use. So the figure is what exec-heavy work costs (bench/shield/startup.sh gives it per exec).
#
# TARBALL: a .tar.gz whose top directory has a configure script; by default GNU hello's source
# from Debian (`apt-get source --download-only hello`, which needs a deb-src line for bookworm
# in /etc/apt/sources.list.d; the script says so when there is none).
# Environment: ROUNDS=1, BASE=/var/tmp, JOBS=2.
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
[ -x "$B/src/scpctl" ] || { echo "autobuild.sh: build $B first" >&2; exit 2; }
command -v gcc >/dev/null && command -v make >/dev/null || { echo "autobuild.sh: needs gcc and make" >&2; exit 2; }
ROUNDS=${ROUNDS:-1} JOBS=${JOBS:-2}
T=$(mktemp -d "${BASE:-/var/tmp}/scp-bench-autobuild.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
TARBALL=${2:-}
if [ -z "$TARBALL" ]; then
    (cd "$T" && apt-get source --download-only hello >/dev/null 2>&1)
    TARBALL=$(ls "$T"/hello_*.orig.tar.gz 2>/dev/null | head -1)
    [ -n "$TARBALL" ] || { echo "autobuild.sh: no TARBALL given and 'apt-get source hello' failed: add a deb-src line (Types: deb-src) for bookworm, run apt-get update, or name a tarball" >&2; exit 2; }
fi
export SCP_QUIET=1
"$B/src/scpctl" volume keygen "$T/key" >/dev/null 2>&1 || exit 1
# phases DIR: "configure make check" wall ms, the tree unpacked fresh in DIR
phases='cd "$1" && rm -rf src && mkdir src && tar xzf "$2" -C src --strip-components=1 && cd src || exit 1
  for p in "./configure -q" "make -j'"$JOBS"'" "make check"; do
    t0=$(date +%s%N); $p >/dev/null 2>&1 || { echo "FAILED: $p" >&2; exit 1; }
    printf "%s " $(( ($(date +%s%N) - t0) / 1000000 ))
  done'
echo "tarball $(basename "$TARBALL"), $ROUNDS round(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$T/plain"
"$B/src/scpctl" volume create "$T/vol" --key-file "$T/key" >/dev/null 2>&1 || exit 1
for r in $(seq "$ROUNDS"); do
    n=$(bash -c "$phases" sh "$T/plain" "$TARBALL") || exit 1
    s=$("$B/src/scpctl" run --volume "$T/vol:/scp-build" --key-file "$T/key" -- bash -c "$phases" sh /scp-build "$TARBALL") || exit 1
    echo "round $r ms (configure make check): native $n; scp $s"
    echo "$n $s" >> "$T/rounds"
done
"$B/src/scpctl" volume verify "$T/vol" --key-file "$T/key" >/dev/null || { echo "autobuild.sh: the volume does not verify" >&2; exit 1; }
sort -n "$T/rounds" | awk -v n="$ROUNDS" '
  { for (i = 1; i <= 6; i++) v[i, NR] = $i }
  END {
    split("configure make check", name, " ")
    for (i = 1; i <= 3; i++) {
      for (j = 1; j <= n; j++) { a[j] = v[i, j]; b[j] = v[i + 3, j] }
      asort(a); asort(b); m = int((n + 1) / 2)
      printf "%-9s native %7.2f s, scp %7.2f s (%.2fx)\n", name[i], a[m] / 1000, b[m] / 1000, b[m] / a[m]
      tn += a[m]; ts += b[m]
    }
    printf "%-9s native %7.2f s, scp %7.2f s (%.2fx)\n", "all", tn / 1000, ts / 1000, ts / tn
  }'
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
