#!/bin/bash
# scpctl run --cas is a secure container (docs/runtime.md, docs/cas.md "Running a service"):
# Debian's redis-server, measured inside a --rootfs, runs with --net host as pid 2 under the
# container's init, with no_new_privs and no capabilities, and answers the password that the
# owner reads with 'scpctl session secret'; SIGKILL of the whole scpctl run tree in the middle of
# writes (appendfsync always) loses nothing redis acknowledged; a crashing program leaves no core
# dump (not dumpable, core limit 0); no plaintext marker or secret in any file that CAS or the
# runtime wrote; a policy whose cwd or volume path leaves the rootfs is refused before anything
# starts. Root only (the rootfs is built with bind mounts in a private mount namespace).
if [ "${3:-}" != --inner ]; then
    [ "$(id -u)" = 0 ] || { echo "not root: skipped"; exit 77; }
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "redis not installed: skipped"; exit 77; }
    exec unshare -m bash "$0" "$1" "$2" --inner
fi
source "$(dirname "$0")/lib.sh" "$1" "$2"
note() { echo "-- $*"; }
# the bind mounts go before the files: rm -rf must not walk into the host's /usr and /etc
eval "lib_$(declare -f cleanup)"
cleanup() {
    [ -n "${RPID:-}" ] && kill -KILL $(tree "$RPID") 2>/dev/null # a failed check leaves no redis behind
    local r=${R:-/nonexistent}
    for m in "$r"/usr "$r"/etc "$r"/bin "$r"/sbin "$r"/lib "$r"/lib32 "$r"/lib64 "$r"/libx32; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m"
    done
    lib_cleanup
}

# the rootfs: the host's /usr and /etc read-only, the merged-/usr symlinks, a writable /crash
R=$T/root
mkdir -p "$R/usr" "$R/etc" "$R/crash" && chmod 755 "$T" "$R"
for l in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; elif [ -d "/$l" ]; then
        mkdir "$R/$l"; mount --bind -o ro "/$l" "$R/$l"; fi
done
mount --bind -o ro /usr "$R/usr" && mount --bind -o ro /etc "$R/etc" || fail "cannot build the rootfs"
ln -s ../../../../../.. "$R/up"  # a relative symlink that climbs out of the rootfs
ln -s /etc "$R/abs"              # an absolute one

A=$T/admin.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p1.key"
expect_rc 0 "$SCPCTL" platform enroll --name p1 --key "$T/p1.key"

note "measured inside the rootfs"
SCP_MEASURE_VERBOSE=1 "$SCPCTL" platform measure --rootfs "$R" -- redis-server >"$T/m" 2>"$T/m.files" || fail "measure: $(cat "$T/m.files")"
M=$(cat "$T/m")
grep -q "^measured /usr/bin/redis-server$" "$T/m.files" || fail "redis-server not resolved inside: $(cat "$T/m.files")"
grep -q "^measured $T" "$T/m.files" && fail "host paths measured: $(cat "$T/m.files")"
# the crash service dlopens ctypes's extension module: it is measured with its libraries
PYTRUST=(--trusted "$(/usr/bin/python3 -c 'import _ctypes; print(_ctypes.__file__)')")
expect_rc 0 "$SCPCTL" platform measure --rootfs "$R" "${PYTRUST[@]}" -- python3
MPY=$(cat "$T/last.out")
expect_err 1 "not found in PATH" "$SCPCTL" platform measure --rootfs "$R" -- no-such-program-xyz

PORT=$(freeport)
cat >"$T/db.yaml" <<YAML
name: db
services:
  - name: redis
    measurements: [$M]
    command: [redis-server, --port, "$PORT", --bind, 127.0.0.1, --dir, /data, --appendonly, "yes",
              --appendfsync, always, --save, "", --requirepass, "\$\$SCP::pw\$\$", --logfile, ""]
    cwd: /data
    volumes: [data]
  - name: crash
    measurements: [$MPY]
    command: [python3, -c, 'import ctypes, os; print("dumpable=%d" % ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), flush=True); os.kill(os.getpid(), 11)']
    cwd: /crash
secrets:
  - {name: pw, kind: ascii, size: 32}
volumes:
  - {name: data, path: /data}
YAML
expect_rc 0 "$SCPCTL" session create "$T/db.yaml"
expect_rc 0 "$SCPCTL" session secret db pw
PW=$(cat "$T/last.out")
[ ${#PW} -eq 32 ] || fail "the owner did not read the password: '$PW'"

cli() { redis-cli -p "$PORT" --no-auth-warning -a "$PW" "$@"; }
RUN=("$SCPCTL" run --session db --platform-key "$T/p1.key" --volume-dir "$T/vols" --rootfs "$R")
start() {
    "${RUN[@]}" --service redis --net host -- redis-server >"$T/run.out" 2>"$T/run.err" &
    RPID=$!
    for _ in $(seq 1 100); do
        [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
        kill -0 $RPID 2>/dev/null || fail "scpctl run exited: $(cat "$T/run.err" "$T/run.out")"
        sleep 0.1
    done
    fail "redis did not answer: $(cat "$T/run.err"; tail -5 "$T/run.out")"
}

note "redis in the container answers the owner's password"
start
RPROG=$(redis_in $RPID)
[ -n "$RPROG" ] || fail "no redis-server process"
st=$(cat /proc/$RPROG/status)
echo "$st" | grep -q '^NSpid:[[:space:]]*[0-9]*[[:space:]]*2$' || fail "redis is not pid 2 of its own pid namespace: $(echo "$st" | grep NSpid)"
INIT=$(echo "$st" | sed -n 's/^PPid:[[:space:]]*//p')
grep -q '^NSpid:[[:space:]]*[0-9]*[[:space:]]*1$' /proc/$INIT/status || fail "redis's parent is not pid 1 of the container"
tr '\0' ' ' </proc/$INIT/cmdline | grep -q "scpctl run" || fail "pid 1 is not the init: $(tr '\0' ' ' </proc/$INIT/cmdline)"
echo "$st" | grep -q '^NoNewPrivs:[[:space:]]*1$' || fail "redis runs without no_new_privs"
echo "$st" | grep -q '^CapEff:[[:space:]]*0000000000000000$' || fail "redis holds capabilities: $(echo "$st" | grep Cap)"
[ "$(readlink /proc/$RPROG/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] || fail "redis shares the host's mount namespace"
[ "$(readlink /proc/$RPROG/ns/net)" = "$(readlink /proc/self/ns/net)" ] || fail "--net host: redis has its own network"
[ -e /proc/$RPROG/root/etc/passwd ] && [ ! -e "/proc/$RPROG/root$T" ] ||
    fail "redis does not run in the rootfs"
[ "$(cli ping 2>/dev/null)" = PONG ] || fail "no PONG with the owner's password"
[ "$(redis-cli -p "$PORT" --no-auth-warning -a wrong ping 2>&1)" = PONG ] && fail "redis answers a wrong password"

note "SIGKILL of the whole scpctl run tree mid-write loses nothing acknowledged"
: >"$T/acked"
(
    i=0
    while [ "$(cli set "key:$i" "SCPMARK_value_$i" 2>/dev/null)" = OK ]; do
        echo $i >>"$T/acked"
        i=$((i + 1))
    done
) &
WPID=$!
for _ in $(seq 1 1200); do [ "$(wc -l <"$T/acked")" -ge 100 ] && break; sleep 0.05; done # up to 60 s under load
# shellcheck disable=SC2046
kill -KILL $(tree $RPID)
wait $WPID
wait $RPID 2>/dev/null
N=$(wc -l <"$T/acked")
[ "$N" -ge 100 ] || fail "only $N writes before the kill"
start
for i in $(seq 0 $((N - 1))); do echo "GET key:$i"; done | cli >"$T/got"
for i in $(seq 0 $((N - 1))); do echo "SCPMARK_value_$i"; done | cmp -s - "$T/got" ||
    fail "acknowledged writes lost after SIGKILL: $(grep -c SCPMARK "$T/got") of $N back"
note "$N acknowledged writes, all back"
kill -TERM $RPID
wait $RPID || fail "scpctl run exited $? after SIGTERM, want redis's 0"

note "SIGKILL of scpctl run alone ends the container"
start
RPROG=$(redis_in $RPID)
kill -KILL $RPID
wait $RPID 2>/dev/null
for _ in $(seq 1 50); do kill -0 "$RPROG" 2>/dev/null || break; sleep 0.1; done
kill -0 "$RPROG" 2>/dev/null && { kill -KILL "$RPROG"; fail "redis outlived a SIGKILLed scpctl run"; }

note "a crashing program leaves no core dump (not dumpable, core limit 0)"
ulimit -c unlimited
expect_rc 139 "${RUN[@]}" "${PYTRUST[@]}" --service crash -- python3
grep -qx "dumpable=0" "$T/last.out" || fail "the program is dumpable: $(cat "$T/last.out")"
ls "$R/crash" | grep -q . && fail "a core dump was written: $(ls "$R/crash")"

if setpriv --reuid=nobody --regid=nogroup --clear-groups unshare -U true 2>/dev/null; then
    note "an ordinary user: the same container through a user namespace"
    mkdir "$T/nb" && cp "$T/p1.key" "$T/nb/p1.key" && chown -R nobody:nogroup "$T/nb" || fail "cannot prepare for nobody"
    expect_rc 139 env -u SCP_IDENTITY setpriv --reuid=nobody --regid=nogroup --clear-groups "$SCPCTL" run --session db --service crash \
        --platform-key "$T/nb/p1.key" --volume-dir "$T/nb/vols" --rootfs "$R" "${PYTRUST[@]}" -- python3
    grep -qx "dumpable=0" "$T/last.out" || fail "nobody: the program is dumpable: $(cat "$T/last.out")"
else
    note "user namespaces unavailable to ordinary users here: the nobody check is skipped"
fi

note "no plaintext marker or secret in what CAS or the runtime wrote"
for d in "$T/data" "$T/vols" "$R/crash" "$R/data"; do
    [ -e "$d" ] || continue
    grep -rqa SCPMARK_value "$d" && fail "plaintext marker in $d"
    grep -rqaF -- "$PW" "$d" && fail "the password in $d"
done

note "a policy path outside the rootfs is refused before anything starts"
cat >"$T/bad.yaml" <<YAML
name: bad
services:
  - {name: dotdot, measurements: [$MPY], command: [python3, -c, 'print(1)'], cwd: /crash/../../etc}
  - {name: link, measurements: [$MPY], command: [python3, -c, 'print(1)'], cwd: /up/etc}
  - {name: abs, measurements: [$MPY], command: [python3, -c, 'print(1)'], cwd: /abs}
  - {name: vol, measurements: [$MPY], command: [python3, -c, 'print(1)'], volumes: [v]}
volumes:
  - {name: v, path: /up/tmp/x}
YAML
expect_rc 0 "$SCPCTL" session create "$T/bad.yaml"
BAD=("$SCPCTL" run --session bad --platform-key "$T/p1.key" --volume-dir "$T/badvols" --rootfs "$R" "${PYTRUST[@]}")
expect_err 1 "working directory /crash/../../etc leaves the rootfs .* through '..'" "${BAD[@]}" --service dotdot -- python3
expect_err 1 "working directory /up/etc leaves the rootfs .* through a symlink" "${BAD[@]}" --service link -- python3
expect_err 1 "working directory /abs leaves the rootfs .* through a symlink" "${BAD[@]}" --service abs -- python3
expect_err 1 "volume path /up/tmp/x leaves the rootfs .* through a symlink" "${BAD[@]}" --service vol -- python3
[ -e "$T/badvols" ] && fail "a volume was created for a refused policy"
expect_err 1 "rootfs $T/nothing-here is not a directory" "$SCPCTL" run --session db --service redis \
    --platform-key "$T/p1.key" --rootfs "$T/nothing-here" -- redis-server
echo "cas_container: ok"
