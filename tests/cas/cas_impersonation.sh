#!/bin/bash
# CAS impersonation (issue 10, item 1): an ordinary identity obtains a session certificate,
# runs a real TLS server (openssl s_server) with it, and CAS's clients, with their normal pin,
# must refuse it (exit 3) before sending anything: the impostor never sees the policy. Session
# certificates naming CAS are refused at create/update; CAS's server certificate alone carries
# CAS's marker; a data directory without a service CA is migrated and keeps its pin.
source "$(dirname "$0")/lib.sh" "$@"

S_PID=
trap '[ -n "$S_PID" ] && kill "$S_PID" 2>/dev/null; cleanup' EXIT
CAS_EKU=2.25.25278868328406106895184340165727908207

A=$T/a.pem # owner of the victim session, admin
B=$T/b.pem # the attacker: an ordinary identity
expect_rc 0 "$SCPCTL" cas identity --out "$A"
expect_rc 0 "$SCPCTL" cas identity --out "$B"
export SCP_IDENTITY=$A
start_cas --admin "$A"
REAL_CAS=$ADDR

expect_rc 0 "$SCPCTL" platform create-key "$T/p.key"
expect_rc 0 "$SCPCTL" platform enroll --name p --key "$T/p.key"
printf 'attacker program\n' >"$T/prog"
expect_rc 0 "$SCPCTL" platform measure "$T/prog"
M=$(cat "$T/last.out")

# session certificates cannot carry CAS's name, at create or update (4xx, nothing stored)
mitm_policy() { # NAME CN DNS
    cat <<YAML
name: $1
services:
  - name: svc
    measurements: [$M]
    files:
      - {path: /tls.crt, content: "\$\$SCP::t:crt\$\$"}
      - {path: /tls.key, content: "\$\$SCP::t:key\$\$"}
secrets:
  - {name: t, kind: x509, common_name: $2, dns: [$3], ip: [127.0.0.1]}
YAML
}
mitm_policy mitm scp-cas localhost >"$T/mitm.yaml"
expect_err 1 "403 reserved_name" "$SCPCTL" session create "$T/mitm.yaml" --identity "$B"
grep -q "scp-cas" "$T/last.err" || fail "the refusal does not say which name is reserved"
for dns in SCP-CAS scp-cas. api.scp-cas '"*"'; do
    mitm_policy mitm other.example "$dns" >"$T/mitm.yaml"
    expect_err 1 "403 reserved_name" "$SCPCTL" session create "$T/mitm.yaml" --identity "$B"
done
mitm_policy mitm impostor localhost >"$T/mitm.yaml"
expect_rc 0 "$SCPCTL" session create "$T/mitm.yaml" --identity "$B"
H=$(sed -n 's/^hash //p' "$T/last.out")
mitm_policy mitm scp-cas localhost >"$T/mitm2.yaml"
expect_err 1 "403 reserved_name" "$SCPCTL" session update "$T/mitm2.yaml" --predecessor "$H" --identity "$B"

# the attacker attests its session (any command, on an enrolled platform) and gets a certificate
# and key for localhost/127.0.0.1 issued by CAS
expect_rc 0 "$SCPCTL" platform attest --key "$T/p.key" --session mitm --service svc --measurement "$M" --identity "$B"
python3 - "$T/last.out" "$T" <<'PY' || fail "no certificate in the attested configuration"
import json, sys
files = {f["path"]: f["content"] for f in json.load(open(sys.argv[1]))["files"]}
open(sys.argv[2] + "/leaf.pem", "w").write(files["/tls.crt"])
open(sys.argv[2] + "/leaf.key", "w").write(files["/tls.key"])
PY
openssl x509 -in "$T/leaf.pem" -noout -text >"$T/leaf.txt" || fail "the issued certificate does not parse"
grep -q "$CAS_EKU" "$T/leaf.txt" && fail "a session certificate carries CAS's marker"
# what anyone can fetch from the real CAS: its chain (the attacker serves the root with its leaf)
openssl s_client -connect "$REAL_CAS" -showcerts </dev/null 2>/dev/null >"$T/chain.txt"
awk '/BEGIN CERT/{n++; in_cert=1} in_cert{print > (dir "/real" n ".pem")} /END CERT/{in_cert=0}' dir="$T" "$T/chain.txt"
[ -s "$T/real1.pem" ] && [ -s "$T/real2.pem" ] || fail "cannot fetch CAS's chain"
openssl x509 -in "$T/real1.pem" -noout -text | grep -q "$CAS_EKU" || fail "CAS's server certificate lacks its marker"
[ "$(openssl x509 -in "$T/real2.pem" -outform DER | sha256sum | cut -c1-64)" = "$PIN" ] ||
    fail "the last certificate of CAS's chain is not the pinned root"

# start_impostor CERT KEY: a real TLS server with CERT (and the real root in its chain) on a
# free loopback port; sets IMPOSTOR (its address), S_PID, and its output goes to $T/s.out
start_impostor() {
    [ -n "$S_PID" ] && kill "$S_PID" && wait "$S_PID" 2>/dev/null
    rm -f "$T/s.out"
    openssl s_server -accept 127.0.0.1:0 -tls1_3 -cert "$1" -key "$2" -cert_chain "$T/real2.pem" \
        <"$T/s.in" >"$T/s.out" 2>"$T/s.err" &
    S_PID=$!
    for _ in $(seq 100); do
        grep -q '^ACCEPT' "$T/s.out" 2>/dev/null && break
        sleep 0.05
    done
    IMPOSTOR=127.0.0.1:$(sed -n 's/^ACCEPT 127.0.0.1:\([0-9]*\)$/\1/p' "$T/s.out")
    [ "$IMPOSTOR" != 127.0.0.1: ] || fail "s_server did not start: $(cat "$T/s.err")"
}
mkfifo "$T/s.in"
exec 9<>"$T/s.in" # keeps s_server's stdin open and silent
start_impostor "$T/leaf.pem" "$T/leaf.key"

# the victim, with its normal pin, talks to the impostor (its address hijacked)
MARK=POLICY-MARKER-impersonation-4b1f
cat >"$T/victim.yaml" <<YAML
name: victim
services: [{name: web, measurements: [$M], command: [/bin/web, "--pw=\$\$SCP::pw\$\$"]}]
secrets:
  - {name: pw, kind: explicit, value: "$MARK"}
YAML
# expect_pin_refusal CMD...: exit 3, a pin/identity message, within the client's own timeouts
expect_pin_refusal() {
    timeout 20 "$@" >"$T/last.out" 2>"$T/last.err"
    local rc=$?
    grep -q "$MARK" "$T/s.out" && fail "the impostor received the policy: $(grep -a "$MARK" "$T/s.out" | head -2)"
    [ $rc -eq 3 ] || fail "'$*' against the impostor exited $rc, want 3: $(cat "$T/last.err")"
    grep -q "not issued by the pinned CA\|not CAS's server certificate" "$T/last.err" ||
        fail "'$*': no pin/identity error: $(cat "$T/last.err")"
}
expect_pin_refusal "$SCPCTL" session create "$T/victim.yaml" --cas "$IMPOSTOR" --pin "$PIN"
# (s_server writes its line once it has read the client's Finished, which may be after the
# client has already refused and exited: a loaded machine showed it late)
for _ in $(seq 100); do grep -q "CIPHER is" "$T/s.out" && break; sleep 0.05; done
grep -q "CIPHER is" "$T/s.out" || fail "the client never completed a handshake with the impostor (test is void)"
expect_pin_refusal "$SCPCTL" platform attest --key "$T/p.key" --session victim --service web --measurement "$M" \
    --cas "$IMPOSTOR" --pin "$PIN"
# the remembered pin (cas.conf) is the same check
expect_pin_refusal "$SCPCTL" cas status --cas "$IMPOSTOR" --pin "$PIN"
(unset SCP_CAS SCP_CAS_PIN
 expect_rc 0 "$SCPCTL" cas status --cas "$REAL_CAS" --pin "$PIN"
 sed -i "s/^cas=.*/cas=$IMPOSTOR/" "$SCP_HOME/cas.conf"
 expect_pin_refusal "$SCPCTL" session create "$T/victim.yaml") || exit 1
grep -q "$MARK" "$T/s.out" && fail "the impostor received the policy"

# a certificate that a CAS from before the service CA issued (signed by the root itself, CN
# scp-cas): clients refuse it too, for it lacks CAS's marker
expect_rc 0 "$PROBE" legacy-cert "$T/data" "$T/legacy.pem" "$T/legacy.key"
openssl verify -CAfile "$T/data/ca.crt" "$T/legacy.pem" >/dev/null || fail "the legacy certificate is not the root's"
start_impostor "$T/legacy.pem" "$T/legacy.key"
expect_pin_refusal "$SCPCTL" session create "$T/victim.yaml" --cas "$IMPOSTOR" --pin "$PIN"
grep -q "not CAS's server certificate" "$T/last.err" || fail "the marker check did not refuse: $(cat "$T/last.err")"
expect_pin_refusal "$SCPCTL" platform attest --key "$T/p.key" --session victim --service web --measurement "$M" \
    --cas "$IMPOSTOR" --pin "$PIN"
kill "$S_PID"
wait "$S_PID" 2>/dev/null
S_PID=

# the real CAS still works with the same pin
expect_rc 0 "$SCPCTL" session create "$T/victim.yaml" --cas "$REAL_CAS" --pin "$PIN"

# migration: a data directory without a service CA (from before it existed) gets one at start,
# keeps its root (the pin), and new session certificates come from the new service CA
stop_cas
OLD_PIN=$PIN
rm "$T/data/service-ca.crt" "$T/data/service-ca.key.enc"
start_cas --admin "$A"
[ "$PIN" = "$OLD_PIN" ] || fail "the pin changed across the migration"
grep -q "migrated the data directory: created the service CA" "$T/cas.out" || fail "the migration is not reported"
[ -s "$T/data/service-ca.crt" ] && [ -s "$T/data/service-ca.key.enc" ] || fail "no service CA after migration"
grep -q "PRIVATE KEY" "$T/data/service-ca.key.enc" && fail "the service CA key is stored in plaintext"
mitm_policy fresh web.fresh web.fresh >"$T/fresh.yaml"
expect_rc 0 "$SCPCTL" session create "$T/fresh.yaml" --identity "$B"
expect_rc 0 "$SCPCTL" platform attest --key "$T/p.key" --session fresh --service svc --measurement "$M" --identity "$B"
python3 -c 'import json,sys; print({f["path"]: f["content"] for f in json.load(open(sys.argv[1]))["files"]}["/tls.crt"], end="")' \
    "$T/last.out" >"$T/fresh.pem"
openssl verify -CAfile "$T/data/service-ca.crt" "$T/fresh.pem" >/dev/null || fail "new certificate not from the new service CA"
alive
echo "cas_impersonation: ok"
