#!/bin/bash
# scpctl run --cas: a copy of Debian's redis-server, measured with 'platform measure --', gets its
# command (password rendered by CAS) and a protected volume at /data only after attestation;
# data is ciphertext on disk and back after a restart; the tag CAS holds advances with writes; a
# rolled-back volume is refused (3); a program with one byte changed gets nothing and does not
# start (1, CAS's reason); a revoked platform gets nothing; unreachable CAS (1), wrong pin (3),
# missing program, arguments the policy does not allow.
source "$(dirname "$0")/lib.sh" "$@"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "redis not installed: skipped"; exit 77; }

A=$T/admin.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p1.key"
P1=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" platform enroll --name p1 --key "$T/p1.key"

mkdir -p "$T/bin" "$T/bad"
cp "$(command -v redis-server)" "$T/bin/redis-server"
cp "$(readlink -f /bin/sh)" "$T/bin/sh"
expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/redis-server"
M=$(cat "$T/last.out")
# the shell services run tr and sleep: every exec of a binary that is not measured is refused
SHTRUST=(--trusted "$(readlink -f "$(command -v tr)")" --trusted "$(readlink -f "$(command -v sleep)")")
expect_rc 0 "$SCPCTL" platform measure "${SHTRUST[@]}" -- "$T/bin/sh"
MSH=$(cat "$T/last.out")
# the measurement covers the libraries as the loader resolves them: a program whose library
# sits next to it (RUNPATH $ORIGIN) measures differently when one byte of the library changes
if command -v cc >/dev/null; then
    mkdir -p "$T/app"
    printf 'int scp_lib_answer(void) { return 42; }\n' >"$T/app/lib.c"
    printf 'int scp_lib_answer(void);\nint main(void) { return scp_lib_answer() == 42 ? 0 : 1; }\n' >"$T/app/main.c"
    cc -shared -fPIC -o "$T/app/libanswer.so" "$T/app/lib.c" &&
        cc -o "$T/app/app" "$T/app/main.c" -L"$T/app" -lanswer -Wl,--enable-new-dtags,-rpath,'$ORIGIN' ||
        fail "cannot build the library test program"
    SCP_MEASURE_VERBOSE=1 "$SCPCTL" platform measure -- "$T/app/app" >"$T/m1" 2>"$T/m1.files" || fail "measure app"
    grep -qx "measured $T/app/libanswer.so" "$T/m1.files" || fail "the library was not measured: $(cat "$T/m1.files")"
    grep -q "measured .*libc.so.6" "$T/m1.files" || fail "libc was not measured: $(cat "$T/m1.files")"
    # the value is the documented format over the files listed, computed independently
    python3 - "$T/m1.files" "$T/m1" <<'PY' || fail "the measurement does not follow the documented format"
import hashlib, struct, sys
lines = open(sys.argv[1]).read().split("\n")
files = [l.split(" ", 1)[1] for l in lines if l.startswith("measured ")]
config = "\n".join(lines[lines.index("--- configuration:") + 1:lines.index("---")]).encode() + b"\n"
h = hashlib.sha256()
for f in files:
    b = open(f, "rb").read()
    h.update(b"file" + struct.pack(">Q", len(b)) + hashlib.sha256(b).digest())
    # the configuration lists each file with its hash and size (the trusted-file manifest)
    if (" %s %d " % (hashlib.sha256(b).hexdigest(), len(b))).encode() not in config:
        sys.exit(1)
h.update(b"config" + struct.pack(">Q", len(config)) + hashlib.sha256(config).digest())
sys.exit(0 if h.hexdigest() == open(sys.argv[2]).read().strip() else 1)
PY
    printf '\x01' | dd of="$T/app/libanswer.so" bs=1 seek=100 conv=notrunc 2>/dev/null
    "$SCPCTL" platform measure -- "$T/app/app" >"$T/m2" || fail "measure app"
    cmp -s "$T/m1" "$T/m2" && fail "changing a library did not change the measurement"
fi

PORT=$(freeport)
cat >"$T/db.yaml" <<YAML
name: db
services:
  - name: redis
    measurements: [$M]
    command: [redis-server, --port, "$PORT", --bind, 127.0.0.1, --dir, /data, --appendonly, "yes",
              --appendfsync, always, --save, "", --requirepass, "\$\$SCP::pw\$\$", --logfile, ""]
    environment: {SCP_TEST_ENV: "\$\$SCP::envsecret\$\$"}
    cwd: /data
    volumes: [data]
  - name: probe
    measurements: [$MSH]
    command: [sh, -c, 'echo "env=\$SCP_TEST_ENV arg=\$0"; tr "\\0" " " </proc/self/cmdline; echo', "\$\$SCP::envsecret\$\$"]
    environment: {SCP_TEST_ENV: "\$\$SCP::envsecret\$\$"}
  - name: args
    measurements: [$MSH]
    append_args: true
    command: [sh, -c, 'echo "args=\$*"', sh]
  - name: daemon
    measurements: [$MSH]
    command: [sh, -c, 'sleep 61.5 </dev/null >/dev/null 2>&1 &']
  - name: loader
    measurements: [$MSH]
    environment: {LD_PRELOAD: /tmp/evil.so}
secrets:
  - {name: pw, kind: ascii, size: 32}
  - {name: envsecret, kind: ascii, size: 32}
volumes:
  - {name: data, path: /data, chunk_size: 8192}
YAML
expect_rc 0 "$SCPCTL" session create "$T/db.yaml"

# the configuration as the runtime receives it (debug path): the password and CAS's tag
config() { "$SCPCTL" platform attest --key "$T/p1.key" --session db --service redis --measurement "$M" 2>/dev/null; }
PW=$(config | python3 -c 'import json,sys; c=json.load(sys.stdin)["command"]; print(c[c.index("--requirepass")+1])')
[ ${#PW} -eq 32 ] || fail "no password in the configuration"
cas_gen() { config | python3 -c 'import json,sys; t=json.load(sys.stdin)["volumes"][0]["expected_tag"]; print(int(t[:16],16) if t else -1)'; }

cli() { redis-cli -p "$PORT" --no-auth-warning -a "$PW" "$@"; }
RUN=("$SCPCTL" run --session db --service redis --platform-key "$T/p1.key" --volume-dir "$T/vols")
start() {
    "${RUN[@]}" -- "$T/bin/redis-server" >"$T/run.out" 2>"$T/run.err" &
    RPID=$!
    for _ in $(seq 1 100); do
        [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
        kill -0 $RPID 2>/dev/null || fail "scpctl run exited: $(cat "$T/run.err")"
        sleep 0.1
    done
    fail "redis did not answer: $(cat "$T/run.err"; tail -5 "$T/run.out")"
}
stop() {
    kill -TERM $RPID
    wait $RPID
    local rc=$?
    [ $rc -eq 0 ] || fail "scpctl run exited $rc after SIGTERM, want redis's 0: $(cat "$T/run.err")"
}

start
grep -q "memory is NOT protected" "$T/run.err" || fail "sim mode did not say that memory is not protected"
[ -d "$T/vols/db/data" ] || fail "the volume was not created under --volume-dir/SESSION/VOLUME"
# the policy's chunk_size reaches the runtime, which created the volume with it
cs=$(config | python3 "$(dirname "$0")/volkey.py" "$T/vol.key") || fail "no volume key in the configuration"
[ "$cs" = 8192 ] || fail "the configuration does not carry the volume's chunk_size 8192 (got '$cs')"
"$SCPCTL" volume info "$T/vols/db/data" --key-file "$T/vol.key" >"$T/info.out" 2>&1 || fail "volume info: $(cat "$T/info.out")"
grep -q "^chunk size: *8192$" "$T/info.out" || fail "the volume was not created with the policy's chunk_size: $(cat "$T/info.out")"
rm -f "$T/vol.key"
"$SCPCTL" session show db 2>/dev/null | grep -q '"chunk_size": 8192' || fail "session show does not list the volume's chunk_size"
G0=$(cas_gen)
[ "$G0" -ge 0 ] || fail "the new volume's tag was not reported to CAS"
for i in $(seq 1 50); do echo "SET key:$i SCPMARK_run_value_$i"; done | cli >/dev/null
[ "$(cli get key:50)" = SCPMARK_run_value_50 ] || fail "redis does not serve what it was given"
RPROG=$(redis_in $RPID)
[ "$(readlink /proc/$RPROG/cwd)" = /data ] || fail "redis does not run in the policy's cwd /data: $(readlink /proc/$RPROG/cwd)"
G1=$(cas_gen)
[ "$G1" -gt "$G0" ] || fail "the tag CAS holds did not advance after writes ($G0 -> $G1)"
# no rendered secret is readable on the host while it runs (argv and environment reach redis
# through the shield; redis accepting PW above shows that they did)
for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do
    tr '\0' '\n' <"$f" 2>/dev/null | grep -qF -- "$PW" && fail "the password is readable in $f"
done
ENVS=$("$SCPCTL" platform attest --key "$T/p1.key" --session db --service redis --measurement "$M" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["environment"]["SCP_TEST_ENV"])')
[ ${#ENVS} -eq 32 ] || fail "no environment secret in the configuration"
for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do
    tr '\0' '\n' <"$f" 2>/dev/null | grep -qF -- "$ENVS" && fail "the environment secret is readable in $f"
done
stop
grep -rq SCPMARK_run "$T/vols" && fail "plaintext marker in the volume directory"
grep -rq "$PW" "$T/vols" && fail "the password in the volume directory"

start
[ "$(cli get key:17)" = SCPMARK_run_value_17 ] || fail "data not back after a restart"
stop

# the program gets the policy's environment and arguments; its own /proc/self/cmdline shows
# only placeholders
expect_rc 0 "$SCPCTL" run --session db --service probe --platform-key "$T/p1.key" --volume-dir "$T/vols" "${SHTRUST[@]}" -- "$T/bin/sh"
grep -qx "env=$ENVS arg=$ENVS" "$T/last.out" || fail "the program did not get its environment/arguments: $(cat "$T/last.out")"
grep -qF "$ENVS" <(sed 1d "$T/last.out") && fail "the secret argument is in /proc/self/cmdline: $(cat "$T/last.out")"
grep -q "^sh (scp) (scp) (scp) *$" "$T/last.out" || fail "unexpected cmdline: $(cat "$T/last.out")"

# --tag-sync: while CAS is frozen, a write that redis fsyncs (appendfsync always) is not
# acknowledged; it is once CAS answers, and CAS then holds the new tag. Without --tag-sync the
# write is acknowledged at once (the asynchronous mode's window).
frozen_write() { # KEY -> prints "acked-while-frozen" or "waited"
    kill -STOP "$CAS_PID"
    cli set "$1" v >"$T/set.out" 2>&1 &
    local cp=$!
    sleep 1.5
    local state=waited
    [ -s "$T/set.out" ] && state=acked-while-frozen
    kill -CONT "$CAS_PID"
    wait $cp
    grep -q OK "$T/set.out" || fail "the write failed: $(cat "$T/set.out")"
    echo $state
}
start
[ "$(frozen_write async-key)" = acked-while-frozen ] || fail "async mode: the write waited for CAS"
# the tag records that queue while CAS is slow reach it as one report (the newest), not one per
# commit: 20 writes, each fsynced (a commit and a record each) while CAS is frozen
tag_reports() { "$SCPCTL" cas audit 2>/dev/null | grep -cP "\tvolume\.tag\tdb\tredis\t"; }
N0=$(tag_reports)
GB=$(cas_gen)
kill -STOP "$CAS_PID"
for i in $(seq 1 20); do cli set "burst:$i" v >/dev/null || { kill -CONT "$CAS_PID"; fail "write $i failed"; }; done
sleep 0.3
kill -CONT "$CAS_PID"
stop
N1=$(tag_reports)
[ "$(cas_gen)" -ge $((GB + 20)) ] || fail "CAS does not hold the newest tag after the burst ($GB -> $(cas_gen))"
[ $((N1 - N0)) -le 5 ] || fail "20 queued tag records took $((N1 - N0)) reports to CAS, want them folded into a few"
RUN+=(--tag-sync)
start
GS=$(cas_gen)
[ "$(frozen_write sync-key)" = waited ] || fail "--tag-sync: the write was acknowledged while CAS could not have the tag"
[ "$(cas_gen)" -gt "$GS" ] || fail "--tag-sync: CAS does not hold the new tag after the write returned"
stop
unset 'RUN[${#RUN[@]}-1]'

# ARGS are appended where the policy allows it; a policy environment that would steer the
# loader (and so change what runs after measuring) is refused
PROBE=("$SCPCTL" run --platform-key "$T/p1.key" --volume-dir "$T/vols" --session db "${SHTRUST[@]}")
expect_rc 0 "${PROBE[@]}" --service args -- "$T/bin/sh" one two
grep -qx "args=one two" "$T/last.out" || fail "ARGS not appended: $(cat "$T/last.out")"
# the run ends with the program, even if a child it left behind keeps the tag socket open: the
# container's init kills it
expect_rc 0 timeout 30 "${PROBE[@]}" --service daemon -- "$T/bin/sh"
sleep 0.3
pgrep -f "sleep 61.5" >/dev/null && fail "the program's background child outlived the container"
expect_err 1 "LD_PRELOAD, which would change what the loader runs" "${PROBE[@]}" --service loader -- "$T/bin/sh"

# rollback: keep a copy, write more (CAS's tag advances), put the copy back
cp -a "$T/vols/db/data" "$T/snapshot"
start
cli set after-copy 1 >/dev/null
stop
mv "$T/vols/db/data" "$T/latest"
cp -a "$T/snapshot" "$T/vols/db/data"
expect_err 3 "volume data .* rolled back: it holds generation [0-9]*, CAS expects generation [0-9]*" \
    timeout 30 "${RUN[@]}" -- "$T/bin/redis-server"
[ "$(cli ping 2>/dev/null)" = PONG ] && fail "redis runs on a rolled-back volume"
rm -rf "$T/vols/db/data"
mv "$T/latest" "$T/vols/db/data" # the latest state opens again

# one byte changed: no configuration, does not start
cp "$T/bin/redis-server" "$T/bad/redis-server"
printf '\x01' | dd of="$T/bad/redis-server" bs=1 seek=4096 conv=notrunc 2>/dev/null
expect_err 1 "403 wrong_measurement" timeout 30 "${RUN[@]}" -- "$T/bad/redis-server"
[ "$(cli ping 2>/dev/null)" = PONG ] && fail "the modified program runs"

# bad input
expect_err 1 "not found in PATH" "${RUN[@]}" -- no-such-program-xyz
expect_err 1 "does not allow arguments" "${RUN[@]}" -- "$T/bin/redis-server" --port 1
expect_err 3 "does not match the pinned" "${RUN[@]}" --pin "$(printf '0%.0s' $(seq 64))" -- "$T/bin/redis-server"
expect_err 1 "CAS unreachable" "${RUN[@]}" --cas 127.0.0.1:1 --cas-timeout 0.5 -- "$T/bin/redis-server"

# CAS down at start: scpctl run retries with backoff and starts once CAS is back (same port)
stop_cas
"${RUN[@]}" --cas-timeout 60 -- "$T/bin/redis-server" >"$T/run.out" 2>"$T/run.err" &
RPID=$!
sleep 1
kill -0 $RPID 2>/dev/null || fail "scpctl run gave up while CAS was down: $(cat "$T/run.err")"
"$SCPCTL" cas serve --data "$T/data" ${CAS_STORE:+--store "$CAS_STORE"} --listen "$SCP_CAS" --admin "$A" >"$T/cas2.out" 2>"$T/cas.err" &
CAS_PID=$!
for _ in $(seq 1 200); do
    [ "$(cli ping 2>/dev/null)" = PONG ] && break
    kill -0 $RPID 2>/dev/null || fail "scpctl run exited: $(cat "$T/run.err")"
    sleep 0.1
done
[ "$(cli get key:17)" = SCPMARK_run_value_17 ] || fail "no data after starting through a CAS that came back"
stop

# a revoked platform gets nothing
expect_rc 0 "$SCPCTL" platform revoke "$P1"
expect_err 1 "403 revoked_platform" timeout 30 "${RUN[@]}" -- "$T/bin/redis-server"
[ "$(cli ping 2>/dev/null)" = PONG ] && fail "redis runs on a revoked platform"
echo "cas_run: ok"
