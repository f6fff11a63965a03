#!/bin/sh
# bench/runtime/setup.sh SCPCTL [RUNS] - cost of the container of `scpctl run` (docs/runtime.md):
# mean wall time per run of /bin/true, plain, under `scpctl run`, and in the container with and
# without --rootfs / --net none. As root it builds a rootfs from the host's /usr and /etc (bind
# mounts in its own mount namespace). Not a test: figures only.
set -eu
S=$1
N=${2:-100}
export SCP_QUIET=1
if [ "$(id -u)" = 0 ] && [ "${3:-}" != --inner ]; then exec unshare -m sh "$0" "$S" "$N" --inner; fi
R=
if [ "$(id -u)" = 0 ]; then
    R=$(mktemp -d /tmp/scp-bench-root.XXXXXX)
    mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/dev" "$R/tmp"
    for l in bin sbin lib lib64; do if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; fi; done
    mount --bind -o ro /usr "$R/usr"
    mount --bind -o ro /etc "$R/etc"
fi
t() {
    name=$1; shift
    s=$(date +%s%N); i=0
    while [ $i -lt "$N" ]; do "$@" >/dev/null; i=$((i + 1)); done
    e=$(date +%s%N)
    printf '%-52s %6d us/run\n' "$name" $(((e - s) / N / 1000))
}
t "/bin/true" /bin/true
t "scpctl run -- /bin/true" "$S" run -- /bin/true
t "scpctl run --container -- /bin/true" "$S" run --container -- /bin/true
t "scpctl run --container --net none -- /bin/true" "$S" run --container --net none -- /bin/true
if [ -n "$R" ]; then
    t "scpctl run --rootfs R -- /bin/true" "$S" run --rootfs "$R" -- /bin/true
    t "scpctl run --rootfs R --net none -- /bin/true" "$S" run --rootfs "$R" --net none -- /bin/true
    umount "$R/usr" "$R/etc"
    rm -f "$R/bin" "$R/sbin" "$R/lib" "$R/lib64"
    rmdir "$R"/* "$R" # never rm -r: it would walk the host's /usr if a umount failed
fi
