#!/bin/bash
# CAS: TLS service, CA pinning, session lifecycle (create/read/update/list/delete), owners,
# predecessors and concurrent updates, bad input, persistence across a restart, SIGTERM.
source "$(dirname "$0")/lib.sh" "$@"

A=$T/a.pem
B=$T/b.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
IDA=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" cas identity --out "$B"
expect_rc 1 "$SCPCTL" cas identity --out "$A" # never overwrites
start_cas --admin "$A" --read-timeout-ms 1500
grep -q "NOT protected" "$T/cas.err" || fail "sim mode does not say that memory is not protected"
[ "$(stat -c %a "$T/data/master.key")" = 600 ] || fail "master key is not 0600"
grep -q "PRIVATE KEY" "$T/data"/* && fail "a private key is stored in plaintext"

# pinning: the right pin works and is remembered; a wrong one is refused (exit 3)
WRONG=$(echo "$PIN" | tr '0-9a-f' '1-9a-f0')
expect_err 3 "does not match" "$SCPCTL" cas status --cas "$ADDR" --pin "$WRONG"
expect_rc 0 "$SCPCTL" cas status --cas "$ADDR" --pin "$PIN"
grep -q '"memory_protected": false' "$T/last.out" || fail "status does not say memory is unprotected"
grep -q "pin=$PIN" "$SCP_HOME/cas.conf" || fail "pin not remembered"
(unset SCP_CAS SCP_CAS_PIN; expect_rc 0 "$SCPCTL" cas status) || exit 1

M=0000000000000000000000000000000000000000000000000000000000000001
cat >"$T/s.yaml" <<YAML
name: shop
services:
  - name: web
    measurements: [$M]
    command: [/bin/web, --marker-lifecycle-77f1, "--pw=\$\$SCP::pw\$\$"]
secrets:
  - {name: pw, kind: explicit, value: "EXPLICIT-SECRET-0a9c"}
YAML
expect_rc 0 "$SCPCTL" session create "$T/s.yaml" --identity "$A"
H1=$(sed -n 's/^hash //p' "$T/last.out")
[ ${#H1} -eq 64 ] || fail "no hash printed"
[ "$H1" = "$(sha256sum <"$T/s.yaml" | cut -c1-64)" ] || fail "hash is not the SHA-256 of the document"
expect_err 1 "exists" "$SCPCTL" session create "$T/s.yaml" --identity "$A"

# malformed YAML and invalid policies: 400 with a message, nothing changes, CAS lives
printf 'name: [unclosed\n' >"$T/bad1.yaml"
printf 'name: x\nservices: [{name: a}]\n' >"$T/bad2.yaml"
printf 'name: x\nservices: [{name: a, measurements: [%s], command: ["$$SCP::missing$$"]}]\n' $M >"$T/bad3.yaml"
head -c 3000 /dev/urandom >"$T/bad4.yaml"
for f in bad1 bad2 bad3; do
    expect_err 1 "400 bad_policy" "$SCPCTL" session create "$T/$f.yaml" --identity "$A"
done
expect_rc 1 "$SCPCTL" session create "$T/bad4.yaml" --identity "$A"
alive
expect_rc 0 "$SCPCTL" session list --identity "$A"
[ "$(wc -l <"$T/last.out")" -eq 1 ] || fail "a refused policy left a session behind"

# owner only
expect_rc 0 "$SCPCTL" session show shop --identity "$A"
grep -q "\"owner\": \"$IDA\"" "$T/last.out" || fail "owner is not the creator's identity"
expect_err 1 "403 not_owner" "$SCPCTL" session show shop --identity "$B"
expect_rc 0 "$SCPCTL" session list --identity "$B"
[ -s "$T/last.out" ] && fail "another identity sees the session in its list"
(unset SCP_IDENTITY; HOME=$T/nohome SCP_HOME=$T/nohome expect_err 1 "401 no_identity" "$SCPCTL" session list) || exit 1

# updates need the owner and the current hash as predecessor
sed 's/marker-lifecycle-77f1/marker-lifecycle-v2/' "$T/s.yaml" >"$T/s2.yaml"
expect_err 1 "no_predecessor" "$SCPCTL" session update "$T/s2.yaml" --identity "$A"
expect_err 1 "403 not_owner" "$SCPCTL" session update "$T/s2.yaml" --predecessor "$H1" --identity "$B"
expect_rc 0 "$SCPCTL" session update "$T/s2.yaml" --predecessor "$H1" --identity "$A"
H2=$(sed -n 's/^hash //p' "$T/last.out")
[ "$H2" != "$H1" ] || fail "hash did not change"
expect_err 1 "409 stale_predecessor" "$SCPCTL" session update "$T/s2.yaml" --predecessor "$H1" --identity "$A"
expect_rc 0 "$SCPCTL" session show shop --identity "$A"
grep -q "\"predecessor\": \"$H1\"" "$T/last.out" || fail "predecessor not recorded"

# concurrent updates from the same predecessor: exactly one wins, the others fail clearly
for i in 1 2 3 4 5 6; do
    sed "s/marker-lifecycle-v2/marker-concurrent-$i/" "$T/s2.yaml" >"$T/c$i.yaml"
done
pids=()
for i in 1 2 3 4 5 6; do
    "$SCPCTL" session update "$T/c$i.yaml" --predecessor "$H2" --identity "$A" >"$T/c$i.out" 2>"$T/c$i.err" &
    pids+=($!)
done
ok=0
for i in 0 1 2 3 4 5; do
    if wait "${pids[$i]}"; then ok=$((ok + 1)); else grep -q "409 stale_predecessor" "$T/c$((i + 1)).err" || fail "a losing update failed without 409: $(cat "$T/c$((i + 1)).err")"; fi
done
[ $ok -eq 1 ] || fail "$ok of 6 concurrent updates from one predecessor succeeded, want exactly 1"

# HTTP-level bad input: JSON errors, right status codes, the daemon lives
expect_rc 0 "$PROBE" raw "$ADDR" "$PIN" 'GARBAGE\r\n\r\n' 400
expect_rc 0 "$PROBE" raw "$ADDR" "$PIN" 'POST /v1/sessions HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n' 413
expect_rc 0 "$PROBE" raw "$ADDR" "$PIN" 'POST /v1/sessions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n' 501
expect_rc 0 "$PROBE" raw "$ADDR" "$PIN" 'GET /v2/nothing HTTP/1.1\r\n\r\n' 404
expect_rc 0 "$PROBE" raw "$ADDR" "$PIN" 'POST /v1/attest HTTP/1.1\r\nContent-Length: 5\r\n\r\n{"a":' 400
expect_rc 0 "$PROBE" raw "$ADDR" "$PIN" 'POST /v1/platforms HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}' 401
expect_rc 0 "$PROBE" slow "$ADDR" "$PIN" 408 5
alive

# no secret or policy text in plaintext in the database files
db_grep "shop" >/dev/null || fail "the store's files were not searched (the session's name is not in them)"
F=$(db_grep "EXPLICIT-SECRET-0a9c" "marker-lifecycle" "marker-concurrent") && fail "plaintext found in $F"
grep -q "EXPLICIT-SECRET-0a9c" "$T/cas.out" "$T/cas.err" && fail "a secret is in the daemon's output"

# restart keeps everything (same CA, same session and hash); SIGTERM exits 0
expect_rc 0 "$SCPCTL" session show shop --identity "$A"
HCUR=$(sed -n 's/.*"hash": "\([0-9a-f]*\)".*/\1/p' "$T/last.out")
OLDPIN=$PIN
stop_cas
start_cas --admin "$A"
[ "$PIN" = "$OLDPIN" ] || fail "the CA changed across a restart"
expect_rc 0 "$SCPCTL" session show shop --identity "$A"
grep -q "\"hash\": \"$HCUR\"" "$T/last.out" || fail "session hash changed across a restart"
expect_rc 0 "$SCPCTL" session show shop --policy --identity "$A"
grep -q "marker-concurrent" "$T/last.out" || fail "policy text not returned to its owner"

# a crash (SIGKILL) loses nothing that was acknowledged
kill -KILL "$CAS_PID"
wait "$CAS_PID" 2>/dev/null
CAS_PID=
start_cas --admin "$A"
[ "$PIN" = "$OLDPIN" ] || fail "the CA changed across a crash"
expect_rc 0 "$SCPCTL" session show shop --identity "$A"
grep -q "\"hash\": \"$HCUR\"" "$T/last.out" || fail "session lost or changed across a crash"
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify --identity "$A"

# slow clients cannot hold every worker: with 2 workers both held by slow clients, a third
# client is still served within a few seconds (under contention a request gets 2 s, not 10)
stop_cas
start_cas --admin "$A" --workers 2 --read-timeout-ms 10000
"$PROBE" slow "$ADDR" "$PIN" 408 13 &
S1=$!
"$PROBE" slow "$ADDR" "$PIN" 408 13 &
S2=$!
sleep 0.5
t0=$(date +%s%N)
expect_rc 0 "$SCPCTL" cas status
t1=$(date +%s%N)
[ $(((t1 - t0) / 1000000)) -lt 5000 ] || fail "a client waited $(((t1 - t0) / 1000000)) ms behind slow clients"
wait $S1 || fail "a slow client was not answered 408 within the read timeout"
wait $S2 || fail "a slow client was not answered 408 within the read timeout"

# delete: owner only
expect_err 1 "403 not_owner" "$SCPCTL" session delete shop --identity "$B"
expect_rc 0 "$SCPCTL" session delete shop --identity "$A"
expect_err 1 "404 unknown_session" "$SCPCTL" session show shop --identity "$A"

# a request in flight when SIGTERM arrives is answered, then the daemon exits 0
expect_rc 0 "$PROBE" inflight "$ADDR" "$PIN" "$CAS_PID"
wait "$CAS_PID"
rc=$?
CAS_PID=
[ $rc -eq 0 ] || fail "cas serve exited $rc after SIGTERM with a request in flight"
echo "cas_lifecycle: ok"
