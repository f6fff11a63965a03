#!/bin/bash
# CAS audit log: every request and decision is recorded (who, session, service, measurement,
# platform, granted/denied and why); the hash chain verifies, and an edited, deleted or
# reordered row is detected.
source "$(dirname "$0")/lib.sh" "$@"
client_leaks_off # (lib.sh: dozens of short client commands; the daemon keeps the leak check)
command -v sqlite3 >/dev/null || fail "the sqlite3 command is needed (apt-get install sqlite3)"
# (CAS_TEST_STORE=pg runs it on a PostgreSQL store: db_sql, db_wipe and the locker below)

A=$T/a.pem
B=$T/b.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
IDA=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" cas identity --out "$B"
export SCP_IDENTITY=$A
start_cas --admin "$IDA"

expect_rc 0 "$SCPCTL" platform create-key "$T/p.key"
P=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" platform enroll --name p --key "$T/p.key"
M=1111111111111111111111111111111111111111111111111111111111111111
BADM=2222222222222222222222222222222222222222222222222222222222222222
printf 'name: s\nservices: [{name: svc, measurements: [%s]}]\n' $M >"$T/s.yaml"
expect_rc 0 "$SCPCTL" session create "$T/s.yaml"
expect_rc 0 "$SCPCTL" platform attest --key "$T/p.key" --session s --service svc --measurement $M
expect_rc 1 "$SCPCTL" platform attest --key "$T/p.key" --session s --service svc --measurement $BADM
expect_rc 1 "$SCPCTL" session show s --identity "$B"

expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
grep -q "BROKEN" "$T/last.err" && fail "a verified log is also reported broken: $(cat "$T/last.err")"
# stdout and stderr into one pipe (as the demo shows it): the rows first, the verdict last
"$SCPCTL" cas audit --verify 2>&1 | tail -1 | grep -q "audit chain verified" ||
    fail "the verdict is not the last line of 'cas audit --verify 2>&1'"
LOG=$T/audit.txt
cp "$T/last.out" "$LOG"
grep -P "\t$IDA\tsession.create\ts\t" "$LOG" >/dev/null || fail "session creation not audited with its actor"
grep -P "\tattest\ts\tsvc\t$M\t$P\tgranted\t" "$LOG" >/dev/null || fail "granted attestation not audited"
grep -P "\tattest\ts\tsvc\t$BADM\t$P\tdenied\t403 measurement" "$LOG" >/dev/null || fail "denied attestation not audited with its reason"
grep -P "\tsession.read\ts\t.*\tdenied\t403" "$LOG" >/dev/null || fail "denied read not audited"
expect_err 1 "403 not_admin" "$SCPCTL" cas audit --identity "$B"
# numbers that are not numbers: a usage error, and 400 from CAS itself (atoll read "abc" as 0)
expect_err 2 "limit wants a number from 1 to 10000, not 'abc'" "$SCPCTL" cas audit --limit abc
expect_err 2 "from wants a record number from 1 up, not '0'" "$SCPCTL" cas audit --from 0
if command -v curl >/dev/null; then
    for q in 'limit=abc' 'from=-1' 'limit=10001' 'from=2x'; do
        code=$(curl -sk --max-time 20 --cert "$A" --key "$A" -o "$T/q.out" -w '%{http_code}' "https://$SCP_CAS/v1/audit?$q")
        [ "$code" = 400 ] || fail "GET /v1/audit?$q gave HTTP $code, want 400: $(head -c 300 "$T/q.out")"
    done
    code=$(curl -sk --max-time 20 --cert "$A" --key "$A" -o "$T/q.out" -w '%{http_code}' "https://$SCP_CAS/v1/audit?from=2&limit=3")
    [ "$code" = 200 ] || fail "GET /v1/audit?from=2&limit=3 gave HTTP $code, want 200: $(head -c 300 "$T/q.out")"
fi

# a refused policy whose key holds a newline and tabs (quoted in the refusal reason) cannot
# forge a row in the text output: control characters are escaped
printf '"x\\n99\\t1\\troot\\tattest\\ts\\tsvc\\t%s\\t%s\\tgranted\\tforged": 1\nname: s2\n' $M $P >"$T/evil.yaml"
expect_err 1 "400" "$SCPCTL" session create "$T/evil.yaml"
grep -q "$(printf '\t')" "$T/last.err" && fail "the refusal printed by the client holds a raw tab: $(cat "$T/last.err")"
expect_rc 0 "$SCPCTL" cas audit
grep -q "^99	" "$T/last.out" && fail "a client forged an audit row: $(grep -n "^99	" "$T/last.out")"
awk -F'\t' 'NF != 10 || $1 !~ /^[0-9]+$/ {bad = 1} END {exit bad}' "$T/last.out" ||
    fail "an audit line is not one row of 10 fields: $(cat "$T/last.out")"
grep -qF 'x\n99\t1\troot\tattest' "$T/last.out" || fail "the refused key is not shown escaped: $(tail -3 "$T/last.out")"
# an invalid secret entry is refused even when more keys follow it (was 201: issue 10.6)
for bad in '{name: "bad name!\n'"'"'%s", kind: random, size: 4}' '{name: i, kind: imported, session: "../../x y", secret: x}' \
    '{name: a, name: b, kind: random, size: 4}'; do
    printf 'name: s3\nservices: [{name: svc, measurements: [%s]}]\nsecrets: [%s]\n' $M "$bad" >"$T/bad.yaml"
    expect_err 1 "400 bad_policy" "$SCPCTL" session create "$T/bad.yaml"
done

# when the audit log cannot be written, nothing is granted: another process holds the
# database's write lock longer than CAS waits (5 s): until the test lets it go (a line on the
# fifo), or 60 s if the test died first
mkfifo "$T/release" || fail "mkfifo"
if [ -n "${CAS_STORE:-}" ]; then
    # (PostgreSQL: CAS waits 5 s for a lock, lock_timeout; psql holds the table's lock)
    (echo "BEGIN; LOCK TABLE audit IN ACCESS EXCLUSIVE MODE; SELECT 'locked';"; read -r -t 60 _ <>"$T/release"
     echo "COMMIT;") | pg_as psql -h "$PG_DIR" -U postgres -d cas -At >"$T/locker.out" &
    LOCKER=$!
    for _ in $(seq 100); do grep -q locked "$T/locker.out" && break; sleep 0.1; done
else
    (echo ".timeout 5000"; echo "BEGIN IMMEDIATE;"; read -r -t 60 _ <>"$T/release"; echo "COMMIT;") |
        sqlite3 "$T/data/cas.db" &
    LOCKER=$!
    # wait until the locker holds the lock (a loaded machine may take seconds to start it)
    for _ in $(seq 100); do
        sqlite3 -cmd ".timeout 20" "$T/data/cas.db" "BEGIN IMMEDIATE; ROLLBACK;" 2>/dev/null || break
        sleep 0.1
    done
fi
expect_err 1 "503 audit_unavailable" "$SCPCTL" platform attest --key "$T/p.key" --session s --service svc --measurement $M
[ -s "$T/last.out" ] && fail "a configuration was released without an audit row"
echo go >"$T/release"
wait $LOCKER
expect_rc 0 "$SCPCTL" platform attest --key "$T/p.key" --session s --service svc --measurement $M
expect_rc 0 "$SCPCTL" cas audit --verify

N=$(wc -l <"$LOG")
[ "$N" -ge 7 ] || fail "only $N audit rows"
SEQ=$(db_sql "SELECT seq FROM audit WHERE action='attest' AND decision='denied' LIMIT 1")
[ -n "$SEQ" ] || fail "no denied row in the database"

# edit a row: a denied attestation turned into a granted one
db_sql "UPDATE audit SET decision='granted' WHERE seq=$SEQ" || fail "update failed"
expect_err 3 "AUDIT CHAIN BROKEN at entry $SEQ" "$SCPCTL" cas audit --verify
# put it back: the chain verifies again (the check is about content, not a flag)
db_sql "UPDATE audit SET decision='denied' WHERE seq=$SEQ"
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
# re-hashing the edited row with SHA-256 does not help: the chain is keyed
db_sql "UPDATE audit SET reason='ok', hash='$(openssl rand -hex 32)' WHERE seq=$SEQ"
expect_err 3 "AUDIT CHAIN BROKEN at entry $SEQ" "$SCPCTL" cas audit --verify
# delete a row in the middle
expect_rc 3 "$SCPCTL" cas audit --verify # still broken: the keyless re-hash above
stop_cas
rm -rf "$T/data" "$SCP_HOME/cas.conf"
db_wipe
start_cas --admin "$IDA"
for _ in 1 2 3 4; do expect_rc 0 "$SCPCTL" cas status; done
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
db_sql "DELETE FROM audit WHERE seq = 2"
expect_err 3 "AUDIT CHAIN BROKEN at entry 2" "$SCPCTL" cas audit --verify
# and across a restart (the chain is verified from the rows alone)
stop_cas
start_cas --admin "$IDA"
expect_err 3 "AUDIT CHAIN BROKEN at entry 2" "$SCPCTL" cas audit --verify
stop_cas

# removing rows while CAS is down: a CAS whose keystore existed before refuses to start unless
# the operator accepts the loss, and that decision becomes a row of the log
fresh() {
    rm -rf "$T/data" "$SCP_HOME/cas.conf"
    db_wipe
    start_cas --admin "$IDA"
    for _ in 1 2 3 4 5; do expect_rc 0 "$SCPCTL" cas status; done
    stop_cas
}
# expect_refused PATTERN: cas serve must exit 3 at once with PATTERN on stderr, and then no
# verification can pass
expect_refused() {
    expect_err 3 "refusing to start: $1" timeout 60 "$SCPCTL" cas serve --data "$T/data" ${CAS_STORE:+--store "$CAS_STORE"} --listen 127.0.0.1:0 --admin "$IDA"
    grep -q -- "--accept-audit-reset" "$T/last.err" || fail "the refusal does not name the way out"
    expect_rc 1 "$SCPCTL" cas audit --verify
}
# start_reset PATTERN: start with --accept-audit-reset; the log verifies from there on, and the
# reset row names what was found
start_reset() {
    start_cas --admin "$IDA" --accept-audit-reset
    grep -q "audit log reset accepted: $1" "$T/cas.err" || fail "no warning about the accepted reset: $(cat "$T/cas.err")"
    expect_err 0 "operator accepted a reset of this log at entry $2" "$SCPCTL" cas audit --verify
    awk -F'\t' -v n="$2" -v why="reset accepted at start (--accept-audit-reset): $1" \
        '$1 == n && $3 == "operator" && $4 == "audit.reset" && $9 == "accepted" && index($10, why) == 1 {ok = 1}
         END {exit !ok}' "$T/last.out" || fail "row $2 does not record the reset: $(cat "$T/last.out")"
    stop_cas
    start_cas --admin "$IDA" # accepted once: later starts need no flag
    expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
    stop_cas
}
# a new CAS's log starts with a genesis row
fresh
start_cas --admin "$IDA"
expect_rc 0 "$SCPCTL" cas audit --verify
grep -P "^1\t[0-9]+\tcas\taudit.genesis\t" "$T/last.out" >/dev/null || fail "no genesis row: $(head -2 "$T/last.out")"
stop_cas
# the whole log and the head file deleted (the attack of issue 10.4)
fresh
db_sql "DELETE FROM audit"
rm "$T/data/audit.head"
expect_refused "the audit head file is missing or forged"
expect_refused "the audit head file is missing or forged" # nothing changed by a refused start
start_reset "the audit head file is missing or forged (log ends at row 0)" 1
# the whole log deleted, the head kept
fresh
db_sql "DELETE FROM audit"
expect_refused "the audit log is empty"
start_reset "the audit log is empty" 1
# the newest rows removed
fresh
LAST=$(db_sql "SELECT max(seq) FROM audit")
db_sql "DELETE FROM audit WHERE seq >= $((LAST - 1))"
expect_refused "the audit log ends at row $((LAST - 2)) but row $LAST was written"
start_reset "the audit log ends at row $((LAST - 2)) but row $LAST was written" $((LAST - 1))
# ... and the head file removed with them
fresh
db_sql "DELETE FROM audit WHERE seq > 3"
rm "$T/data/audit.head"
expect_refused "the audit head file is missing or forged"
# a forged head file (no key) is refused too
fresh
echo "2 $(printf '%064d' 0) $(printf '%064d' 1)" >"$T/data/audit.head"
expect_refused "the audit head file is missing or forged"
# the log emptied while CAS runs: --verify fails
fresh
start_cas --admin "$IDA"
db_sql "DELETE FROM audit"
expect_err 3 "AUDIT CHAIN BROKEN at entry 1" "$SCPCTL" cas audit --verify
stop_cas
# a clean or crashed stop and restart keep an intact log intact
fresh
start_cas --admin "$IDA"
expect_rc 0 "$SCPCTL" cas status
kill -KILL "$CAS_PID"; wait "$CAS_PID" 2>/dev/null; CAS_PID=
start_cas --admin "$IDA"
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
echo "cas_audit: ok"
