#!/bin/bash
# scpctl run --cas with a policy that injects files (policy `files`, secrets rendered into them):
# the program (and what it executes) reads the rendered content at the policy's path; stat
# reports a regular read-only file of the right size; writes, truncation and removal fail; the
# file does not exist on the host while the program runs, and neither the rendered content nor
# the password is in any file under /tmp, the volume directory or CAS's data directory; the
# process that holds it is not dumpable (other processes of its user cannot open its
# descriptors); a policy file inside a volume mount is refused. A real redis-server reads its
# requirepass from an injected config file.
source "$(dirname "$0")/lib.sh" "$@"

A=$T/admin.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p1.key"
expect_rc 0 "$SCPCTL" platform enroll --name p1 --key "$T/p1.key"

mkdir -p "$T/bin"
cp "$(readlink -f /bin/sh)" "$T/bin/sh"
# what the reader executes must be measured (an exec of an unlisted binary is refused)
SHTRUST=()
for b in cat od tr stat truncate rm sleep touch; do SHTRUST+=(--trusted "$(readlink -f "$(command -v $b)")"); done
expect_rc 0 "$SCPCTL" platform measure "${SHTRUST[@]}" -- "$T/bin/sh"
MSH=$(cat "$T/last.out")
HAVE_REDIS=0
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    HAVE_REDIS=1
    cp "$(command -v redis-server)" "$T/bin/redis-server"
    expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/redis-server"
    MR=$(cat "$T/last.out")
fi
PORT=$(freeport)
MARK=SCPINJ$RANDOM$RANDOM
# As root, the program runs as nobody, so that "another process of the same user" below is
# not root (root can read any process's descriptors).
# (outside /tmp: the program runs in a container whose /tmp is private)
U=$(mktemp -d /var/tmp/scp-cas-files.XXXXXX)
trap 'cleanup; rm -rf "$U"' EXIT
AS=()
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    chmod 711 "$T"
    AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    cp "$T/p1.key" "$A" "$U/"
    chown -R 65534:65534 "$U"
fi

# The reader: its own opens (sh's redirection, read), an exec'ed cat, stat, and the refusals;
# then it waits (ready/go files) so that the host can look while it runs. It prints what it
# reads in hex, so that its output file is not a file that holds the secret.
cat >"$T/reader.sh" <<'SH'
F=/etc/app/secret.conf
h() { od -An -tx1 | tr -d ' \n'; }
echo "cat:$(cat $F | h)"
read -r line <$F; echo "read:$(printf %s "$line" | h)"
echo "stat:$(stat -c '%s %a %F' $F)"
[ -f $F ] && [ -r $F ] && echo "test:regular-readable"
[ -w $F ] && echo "test:WRITABLE"
(echo x >$F) 2>/dev/null && echo "write:WRITE-OK"
(echo x >>$F) 2>/dev/null && echo "append:APPEND-OK"
truncate -s 0 $F 2>/dev/null && echo "truncate:TRUNC-OK"
rm -f $F 2>/dev/null && [ ! -e $F ] && echo "rm:RM-OK"
echo "after:$(cat $F | h)"
exec 7<$F
echo $$ >"$DIR/pid"
touch "$DIR/ready"
i=0
while [ ! -e "$DIR/go" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
exec 7<&-
SH
cat >"$T/db.yaml" <<YAML
name: app
services:
  - name: reader
    measurements: [$MSH]
    command:
      - sh
      - -c
      - |
$(sed 's/^/        /' "$T/reader.sh")
    environment: {DIR: "$U"}
    files:
      - {path: /etc/app/secret.conf, content: "pw=\$\$SCP::pw\$\$ $MARK"}
  - name: invol
    measurements: [$MSH]
    command: [sh, -c, 'cat /data/x.conf']
    volumes: [data]
    files:
      - {path: /data/x.conf, content: "x"}
  - name: unnormal
    measurements: [$MSH]
    command: [sh, -c, 'true']
    files:
      - {path: /etc/../etc/x.conf, content: "x"}
  - name: redis
    measurements: [${MR:-$MSH}]
    command: [redis-server, /etc/redis/scp.conf]
    files:
      - path: /etc/redis/scp.conf
        content: "port $PORT\nbind 127.0.0.1\nsave \"\"\nappendonly no\nrequirepass \$\$SCP::pw\$\$\nlogfile \"\"\n"
secrets:
  - {name: pw, kind: ascii, size: 32}
volumes:
  - {name: data, path: /data}
YAML
expect_rc 0 "$SCPCTL" session create "$T/db.yaml"
rm -f "$T/db.yaml" "$T/reader.sh" # the marker is in the policy: keep it out of the search below
expect_rc 0 "$SCPCTL" session secret app pw
PW=$(cat "$T/last.out")
rm -f "$T/last.out"
[ ${#PW} -eq 32 ] || fail "cannot read the generated password: $PW"

RUN0=("$SCPCTL" run --session app --platform-key "$T/p1.key" --volume-dir "$T/vols")
RUN=("${RUN0[@]}" "${SHTRUST[@]}")
[ -e /etc/app/secret.conf ] && fail "test setup: /etc/app/secret.conf exists on this host"
if [ ${#AS[@]} -gt 0 ]; then
    SCP_IDENTITY=$U/admin.pem "${AS[@]}" "$SCPCTL" run --session app --platform-key "$U/p1.key" --volume-dir "$U/vols" \
        "${SHTRUST[@]}" --service reader -- "$T/bin/sh" >"$T/reader.out" 2>"$T/reader.err" &
else
    "${RUN[@]}" --service reader -- "$T/bin/sh" >"$T/reader.out" 2>"$T/reader.err" &
fi
RPID=$!
for _ in $(seq 1 100); do
    [ -e "$U/ready" ] && break
    kill -0 $RPID 2>/dev/null || fail "scpctl run exited: $(cat "$T/reader.err" "$T/reader.out")"
    sleep 0.1
done
[ -e "$U/ready" ] || fail "the reader did not start: $(cat "$T/reader.err")"
SPID=$(cat "$U/pid")

# while it runs: nothing on the host's file system
[ -e /etc/app/secret.conf ] && fail "the injected file exists on the host"
[ -e /etc/app ] && fail "the injected file's directory exists on the host"
hits=$(grep -rlsF --devices=skip -e "$PW" -e "$MARK" /tmp "$T/vols" "$T/data" 2>/dev/null)
[ -z "$hits" ] || fail "the rendered content or the password is in a file: $hits"
# the program holds the file open (fd 7): the process is not dumpable, so another process of
# the same user cannot open its descriptors (root on the host can: CAP_SYS_PTRACE)
[ "$(stat -c %u "/proc/$SPID")" = "$(id -u)" ] || [ ${#AS[@]} -gt 0 ] || fail "the reader runs as another user"
"${AS[@]}" cat "/proc/$SPID/fd/7" >/dev/null 2>&1 &&
    fail "another process of the program's user reads the injected file through /proc/$SPID/fd/7"
touch "$U/go"
wait $RPID
rc=$?
[ $rc -eq 0 ] || fail "the reader exited $rc: $(cat "$T/reader.err" "$T/reader.out")"
OUT=$T/reader.out
LEN=$(printf 'pw=%s %s' "$PW" "$MARK" | wc -c)
HEX=$(printf 'pw=%s %s' "$PW" "$MARK" | od -An -tx1 | tr -d ' \n')
grep -qxF "cat:$HEX" "$OUT" || fail "an exec'ed cat did not read the rendered content: $(cat "$OUT" "$T/reader.err")"
grep -qxF "read:$HEX" "$OUT" || fail "the program's own open did not read the content: $(cat "$OUT")"
grep -qx "stat:$LEN 400 regular file" "$OUT" || fail "stat does not show a regular read-only file of $LEN bytes: $(cat "$OUT")"
grep -qx "test:regular-readable" "$OUT" || fail "test -f/-r failed on the injected file: $(cat "$OUT")"
grep -q "WRITABLE\|WRITE-OK\|APPEND-OK\|TRUNC-OK\|RM-OK" "$OUT" && fail "the injected file could be changed: $(cat "$OUT")"
grep -qxF "after:$HEX" "$OUT" || fail "the content changed after the refused writes: $(cat "$OUT")"
[ -e /etc/app/secret.conf ] && fail "the injected file exists on the host after the run"
hits=$(grep -rlsF --devices=skip -e "$PW" -e "$MARK" /tmp "$T/vols" "$T/data" 2>/dev/null)
[ -z "$hits" ] || fail "after the run, the rendered content or the password is in a file: $hits"

# refused before anything starts: a path inside a volume mount, a path that is not normalized
expect_err 1 "injected file '/data/x.conf' of service invol lies in the protected volume mounted at /data" \
    "${RUN[@]}" --service invol -- "$T/bin/sh"
expect_err 1 "must be absolute and normalized" "${RUN[@]}" --service unnormal -- "$T/bin/sh"

# a real server: redis reads its port and requirepass from the injected config file
if [ $HAVE_REDIS = 1 ]; then
    "${RUN0[@]}" --service redis -- "$T/bin/redis-server" >"$T/redis.out" 2>"$T/redis.err" &
    RPID=$!
    cli() { redis-cli -p "$PORT" --no-auth-warning "$@"; }
    for _ in $(seq 1 100); do
        [ "$(cli -a "$PW" ping 2>/dev/null)" = PONG ] && break
        kill -0 $RPID 2>/dev/null || fail "redis exited: $(cat "$T/redis.err"; tail -5 "$T/redis.out")"
        sleep 0.1
    done
    [ "$(cli -a "$PW" ping 2>/dev/null)" = PONG ] || fail "redis did not answer with the injected password"
    cli ping 2>&1 | grep -q NOAUTH || fail "redis answers without the password: the config was not applied"
    [ -e /etc/redis/scp.conf ] && fail "redis's injected config exists on the host"
    kill -TERM $RPID
    wait $RPID
fi
echo "ok"
