#!/bin/sh
# tests/runtime/container.sh - the container of `scpctl run` (docs/runtime.md): namespaces, /proc,
# /dev, /tmp, privileges, pid 1 (signals, exit status, orphans), a shielded volume under --rootfs,
# and the same core checks as an ordinary user through a user namespace.
# Usage: container.sh SCPCTL MKVOL.  As root the test builds a rootfs from the host's /usr and
# /etc (read-only bind mounts, in its own mount namespace via `unshare -m`).
set -u
SCPCTL=$1
MKVOL=$2
export SCP_QUIET=1
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }
PY=/usr/bin/python3

if [ "${3:-}" != --inner ]; then
    T=$(mktemp -d "${TMPDIR:-/tmp}/scp-runtime-test.XXXXXX") || exit 1
    chmod 755 "$T"
    trap 'rm -rf "$T"' EXIT
    if [ "$(id -u)" = 0 ]; then
        unshare -m sh "$0" "$SCPCTL" "$MKVOL" --inner "$T"
    else
        sh "$0" "$SCPCTL" "$MKVOL" --inner "$T"
    fi
    exit $?
fi
T=$4
HOSTMARK=$T/host-only-file
echo host > "$HOSTMARK"
chmod 644 "$HOSTMARK"

# check_core AS WHO OPTS...: the properties that hold as root and as an ordinary user.
# AS is a command prefix (empty, or setpriv ...).
check_core() {
    who=$1; shift
    as=$1; shift
    note "$who: pid 1 is the init, the program is pid 2"
    out=$($as "$SCPCTL" run "$@" -- sh -c 'echo $$; tr "\0" " " < /proc/1/cmdline') || fail "$who: run failed"
    [ "$(echo "$out" | head -1)" = 2 ] || fail "$who: program is not pid 2: $out"
    echo "$out" | tail -1 | grep -q 'scpctl run' || fail "$who: /proc/1 is not the init: $out"

    note "$who: hostname"
    h=$($as "$SCPCTL" run "$@" -- hostname) || fail "$who: hostname failed"
    [ "$h" = scp ] || fail "$who: hostname is '$h', not scp"
    [ "$(hostname)" != scp ] || fail "the host itself is called scp; cannot tell"
    h=$($as "$SCPCTL" run --hostname box1 "$@" -- hostname)
    [ "$h" = box1 ] || fail "$who: --hostname box1 gave '$h'"
    [ "$(hostname)" != box1 ] || fail "$who: the hostname leaked to the host"

    note "$who: --net none shows only lo, up"
    ifs=$($as "$SCPCTL" run --net none "$@" -- sh -c 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "')
    [ "$ifs" = lo ] || fail "$who: interfaces with --net none: $ifs"
    up=$($as "$SCPCTL" run --net none "$@" -- cat /sys/class/net/lo/operstate 2>/dev/null || true)
    $as "$SCPCTL" run --net none "$@" -- $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); c=socket.create_connection(s.getsockname())' \
        || fail "$who: lo is not up"

    note "$who: NoNewPrivs 1, CapEff 0, CapBnd 0"
    st=$($as "$SCPCTL" run "$@" -- cat /proc/self/status)
    echo "$st" | grep -q '^NoNewPrivs:[[:space:]]*1$' || fail "$who: no_new_privs not set"
    echo "$st" | grep -q '^CapEff:[[:space:]]*0000000000000000$' || fail "$who: capabilities left: $(echo "$st" | grep Cap)"
    echo "$st" | grep -q '^CapBnd:[[:space:]]*0000000000000000$' || fail "$who: bounding set not empty"

    note "$who: ptrace and process_vm_readv refused (EPERM)"
    $as "$SCPCTL" run "$@" -- $PY -c '
import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
assert libc.ptrace(0, 0, 0, 0) == -1 and ctypes.get_errno() == errno.EPERM, "ptrace allowed"
class iov(ctypes.Structure): _fields_ = [("b", ctypes.c_void_p), ("n", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(8); l = iov(ctypes.addressof(buf), 8); r = iov(ctypes.addressof(buf), 8)
assert libc.process_vm_readv(os.getpid(), ctypes.byref(l), 1, ctypes.byref(r), 1, 0) == -1 \
    and ctypes.get_errno() == errno.EPERM, "process_vm_readv allowed"
' || fail "$who: ptrace or process_vm_readv allowed"

    # the rule is in the shield's one filter for a dynamic program (one filter fewer on every
    # listed call); a static one takes no shield and keeps the launcher's filter
    note "$who: a shielded program runs 1 seccomp filter, a static one the launcher's"
    n=$($as "$SCPCTL" run "$@" -- $PY -c 'print([l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp_filters")][0])')
    [ "$n" = 1 ] || fail "$who: the shielded python3 runs $n seccomp filters, not 1 (the shield's with the ptrace rule)"
    if [ -x /usr/bin/busybox ] && ! ldd /usr/bin/busybox >/dev/null 2>&1; then
        n=$($as "$SCPCTL" run "$@" -- /usr/bin/busybox awk '/^Seccomp_filters/ {print $2}' /proc/self/status)
        [ "$n" = 1 ] || fail "$who: a static program runs $n seccomp filters, not 1 (the launcher's ptrace rule)"
    fi

    note "$who: /proc/PID/mem of the (shielded, not dumpable) program refused"
    $as "$SCPCTL" run "$@" -- sh -c 'sleep 5 & p=$!; sleep 0.3
        if (exec 3< /proc/$p/mem) 2>/dev/null; then echo "mem of $p readable"; exit 1; fi; kill $p' \
        || fail "$who: /proc/PID/mem of another process readable"

    note "$who: /tmp empty and private"
    rm -f /tmp/scp-private-probe
    n=$($as "$SCPCTL" run "$@" -- sh -c 'ls -A /tmp | wc -l; echo x > /tmp/scp-private-probe')
    if [ -e /tmp/scp-private-probe ]; then rm -f /tmp/scp-private-probe; fail "$who: /tmp is the host's"; fi
    [ "$n" = 0 ] || fail "$who: /tmp not empty: $n"

    note "$who: SIGTERM to scpctl run reaches the program; exit status 7"
    $as "$SCPCTL" run "$@" -- sh -c 'trap "exit 7" TERM; while :; do sleep 0.05; done' &
    pid=$!
    sleep 1
    kill -TERM $pid
    (sleep 10; kill -KILL $pid 2>/dev/null) & watchdog=$! # a lost signal fails, not hangs
    wait $pid
    rc=$?
    kill $watchdog 2>/dev/null
    [ $rc = 7 ] || fail "$who: exit status after TERM is $rc, not 7"

    note "$who: a program killed by SIGKILL gives 137"
    $as "$SCPCTL" run "$@" -- sh -c 'kill -KILL $$'
    rc=$?
    [ $rc = 137 ] || fail "$who: exit status $rc, not 137"

    note "$who: orphans are reaped, leftovers killed when the program ends"
    z=$($as "$SCPCTL" run "$@" -- sh -c '(sleep 0.1 &); sleep 0.6; grep -l "^State:[[:space:]]*Z" /proc/[0-9]*/status | wc -l')
    [ "$z" = 0 ] || fail "$who: $z zombie(s) left in the container"
    $as "$SCPCTL" run "$@" -- sh -c 'sleep 1234.5 & exit 0'
    sleep 0.3
    if pgrep -f 'sleep 1234.5' >/dev/null; then pkill -f 'sleep 1234.5'; fail "$who: a background process outlived the container"; fi
}

check_rootfs() {
    who=$1; shift
    as=$1; shift
    note "$who: --rootfs: host files outside it are invisible"
    $as "$SCPCTL" run --rootfs "$R" "$@" -- sh -c "test ! -e '$HOSTMARK' && test ! -e /work && test -e /etc/passwd" \
        || fail "$who: host files visible inside the rootfs (or the rootfs is broken)"
    $as "$SCPCTL" run --rootfs "$R" "$@" -- sh -c 'cut -d" " -f5 /proc/self/mountinfo | grep -q "^/usr$" &&
        ! cut -d" " -f5 /proc/self/mountinfo | grep -q "^/work\|^'"$T"'"' \
        || fail "$who: the host's mounts are visible in the container"
    check_core "$who+rootfs" "$as" --rootfs "$R" "$@"
}

if [ "$(id -u)" = 0 ]; then
    # the rootfs: the host's /usr and /etc read-only, the merged-/usr symlinks, empty mount points
    R=$T/root
    mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/dev" "$R/tmp" "$R/data"
    for l in bin sbin lib lib32 lib64 libx32; do
        if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; elif [ -d "/$l" ]; then
            mkdir "$R/$l"; mount --bind -o ro "/$l" "$R/$l"; fi
    done
    mount --bind -o ro /usr "$R/usr" && mount --bind -o ro /etc "$R/etc" || fail "cannot build the rootfs"

    check_core root "" --container
    check_rootfs root ""

    note "root: --cap keeps one capability"
    st=$("$SCPCTL" run --cap net_bind_service --container -- cat /proc/self/status)
    echo "$st" | grep -q '^CapEff:[[:space:]]*0000000000000400$' || fail "--cap net_bind_service: $(echo "$st" | grep Cap)"

    note "root: a shielded volume under --rootfs"
    "$MKVOL" "$T/key" "$T/vol" || fail "cannot create a volume"
    out=$("$SCPCTL" run --rootfs "$R" --volume "$T/vol:/data" --key-file "$T/key" -- \
          sh -c 'echo scp-runtime-marker > /data/f && cat /data/f') || fail "volume run failed"
    [ "$out" = scp-runtime-marker ] || fail "read back inside: '$out'"
    out=$("$SCPCTL" volume cat --key-file "$T/key" "$T/vol" f) || fail "volume cat failed"
    [ "$out" = scp-runtime-marker ] || fail "volume cat gave '$out'"
    if grep -r -a -q scp-runtime-marker "$T/vol" "$R/data"; then fail "plaintext on the host"; fi

    # an ordinary user, through a user namespace
    if setpriv --reuid=nobody --regid=nogroup --clear-groups unshare -U true 2>/dev/null; then
        AS="setpriv --reuid=nobody --regid=nogroup --clear-groups"
        check_core nobody "$AS" --container
        check_rootfs nobody "$AS"
        note "nobody: a shielded volume under --rootfs"
        mkdir "$T/nv" && chmod 777 "$T/nv"
        $AS "$MKVOL" "$T/nv/key" "$T/nv/vol" || fail "nobody: cannot create a volume"
        out=$($AS "$SCPCTL" run --rootfs "$R" --volume "$T/nv/vol:/data" --key-file "$T/nv/key" -- \
              sh -c 'echo scp-nobody-marker > /data/g && cat /data/g') || fail "nobody: volume run failed"
        [ "$out" = scp-nobody-marker ] || fail "nobody: read back inside: '$out'"
        out=$($AS "$SCPCTL" volume cat --key-file "$T/nv/key" "$T/nv/vol" g) || fail "nobody: volume cat failed"
        [ "$out" = scp-nobody-marker ] || fail "nobody: volume cat gave '$out'"
    else
        note "user namespaces unavailable to ordinary users here: rootless checks skipped"
    fi
else
    check_core "$(id -un)" "" --container
    note "not root: the --rootfs checks need a rootfs built with bind mounts; skipped"
fi
echo "OK"
