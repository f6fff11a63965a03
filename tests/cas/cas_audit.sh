#!/bin/bash
# CAS audit log: every request and decision is recorded (who, session, service, measurement,
# platform, granted/denied and why); the hash chain verifies, and an edited, deleted or
# reordered row is detected.
source "$(dirname "$0")/lib.sh" "$@"
command -v sqlite3 >/dev/null || fail "the sqlite3 command is needed (apt-get install sqlite3)"

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

# when the audit log cannot be written, nothing is granted: another process holds the
# database's write lock longer than CAS waits (5 s)
(echo "BEGIN IMMEDIATE;"; sleep 7; echo "COMMIT;") | sqlite3 "$T/data/cas.db" &
LOCKER=$!
sleep 0.5
expect_err 1 "503 audit_unavailable" "$SCPCTL" platform attest --key "$T/p.key" --session s --service svc --measurement $M
[ -s "$T/last.out" ] && fail "a configuration was released without an audit row"
wait $LOCKER
expect_rc 0 "$SCPCTL" platform attest --key "$T/p.key" --session s --service svc --measurement $M
expect_rc 0 "$SCPCTL" cas audit --verify

N=$(wc -l <"$LOG")
[ "$N" -ge 7 ] || fail "only $N audit rows"
DB=$T/data/cas.db
SEQ=$(sqlite3 "$DB" "SELECT seq FROM audit WHERE action='attest' AND decision='denied' LIMIT 1")
[ -n "$SEQ" ] || fail "no denied row in the database"

# edit a row: a denied attestation turned into a granted one
sqlite3 "$DB" "UPDATE audit SET decision='granted' WHERE seq=$SEQ" || fail "sqlite3 update failed"
expect_err 3 "AUDIT CHAIN BROKEN at entry $SEQ" "$SCPCTL" cas audit --verify
# put it back: the chain verifies again (the check is about content, not a flag)
sqlite3 "$DB" "UPDATE audit SET decision='denied' WHERE seq=$SEQ"
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
# re-hashing the edited row with SHA-256 does not help: the chain is keyed
sqlite3 "$DB" "UPDATE audit SET reason='ok', hash=lower(hex(randomblob(32))) WHERE seq=$SEQ"
expect_err 3 "AUDIT CHAIN BROKEN at entry $SEQ" "$SCPCTL" cas audit --verify
# delete a row in the middle
expect_rc 3 "$SCPCTL" cas audit --verify # still broken: the keyless re-hash above
stop_cas
rm -rf "$T/data" "$SCP_HOME/cas.conf"
start_cas --admin "$IDA"
for _ in 1 2 3 4; do expect_rc 0 "$SCPCTL" cas status; done
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
sqlite3 "$T/data/cas.db" "DELETE FROM audit WHERE seq = 2"
expect_err 3 "AUDIT CHAIN BROKEN at entry 2" "$SCPCTL" cas audit --verify
# and across a restart (the chain is verified from the rows alone)
stop_cas
start_cas --admin "$IDA"
expect_err 3 "AUDIT CHAIN BROKEN at entry 2" "$SCPCTL" cas audit --verify
stop_cas

# removing the newest rows while CAS is down is detected at the next start (audit head file)
fresh() {
    rm -rf "$T/data" "$SCP_HOME/cas.conf"
    start_cas --admin "$IDA"
    for _ in 1 2 3 4 5; do expect_rc 0 "$SCPCTL" cas status; done
    stop_cas
}
fresh
LAST=$(sqlite3 "$T/data/cas.db" "SELECT max(seq) FROM audit")
sqlite3 "$T/data/cas.db" "DELETE FROM audit WHERE seq >= $((LAST - 1))"
start_cas --admin "$IDA"
grep -q "audit log is broken" "$T/cas.err" || fail "CAS did not warn about a truncated audit log at start"
expect_err 3 "newest rows were removed" "$SCPCTL" cas audit --verify
stop_cas
start_cas --admin "$IDA" # still detected after more restarts and appends
expect_err 3 "newest rows were removed" "$SCPCTL" cas audit --verify
stop_cas
# ... and so is removing the head file with them
fresh
sqlite3 "$T/data/cas.db" "DELETE FROM audit WHERE seq > 3"
rm "$T/data/audit.head"
start_cas --admin "$IDA"
expect_err 3 "missing or forged" "$SCPCTL" cas audit --verify
stop_cas
# a forged head file (no key) is refused too
fresh
echo "2 $(printf '%064d' 0) $(printf '%064d' 1)" >"$T/data/audit.head"
start_cas --admin "$IDA"
expect_err 3 "missing or forged" "$SCPCTL" cas audit --verify
stop_cas
# a clean or crashed stop and restart keep an intact log intact
fresh
start_cas --admin "$IDA"
expect_rc 0 "$SCPCTL" cas status
kill -KILL "$CAS_PID"; wait "$CAS_PID" 2>/dev/null; CAS_PID=
start_cas --admin "$IDA"
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
echo "cas_audit: ok"
