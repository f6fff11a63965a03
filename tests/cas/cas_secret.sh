#!/bin/bash
# CAS: the owner reads a session's secret (scpctl session secret), nobody else does; every read
# is in the audit log; an x509 secret yields its certificate and never its key.
source "$(dirname "$0")/lib.sh" "$@"

A=$T/a.pem
B=$T/b.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
expect_rc 0 "$SCPCTL" cas identity --out "$B"
start_cas --admin "$A"

M=0000000000000000000000000000000000000000000000000000000000000001
cat >"$T/s.yaml" <<YAML
name: shop
services:
  - name: db
    measurements: [$M]
    command: [/bin/db, "--requirepass", "\$\$SCP::pw\$\$"]
secrets:
  - {name: pw, kind: ascii, size: 24}
  - {name: k, kind: random, size: 16}
  - {name: given, kind: explicit, value: "EXPLICIT-VALUE-5d1e"}
  - {name: tls, kind: x509, common_name: db.shop, dns: [db.shop]}
  - {name: imp, kind: imported, session: other, secret: x}
YAML
cat >"$T/o.yaml" <<YAML
name: other
services: [{name: s, measurements: [$M]}]
secrets: [{name: x, kind: random, size: 8, export: [shop]}]
YAML
expect_rc 0 "$SCPCTL" session create "$T/o.yaml" --identity "$A"
expect_rc 0 "$SCPCTL" session create "$T/s.yaml" --identity "$A"

# the owner reads the generated password; it is what attestation renders into the command
expect_rc 0 "$SCPCTL" session secret shop pw --identity "$A"
PW=$(cat "$T/last.out")
[[ "$PW" =~ ^[A-Za-z0-9]{24}$ ]] || fail "the password read back is not 24 characters of [A-Za-z0-9]: '$PW'"
expect_rc 0 "$SCPCTL" session secret shop pw --identity "$A"
[ "$(cat "$T/last.out")" = "$PW" ] || fail "a second read gives another value"
expect_rc 0 "$SCPCTL" platform create-key "$T/platform.key"
expect_rc 0 "$SCPCTL" platform enroll --name h --key "$T/platform.key" --identity "$A"
expect_rc 0 "$SCPCTL" platform attest --key "$T/platform.key" --session shop --service db --measurement "$M"
grep -q -- "$PW" "$T/last.out" || fail "the password the owner read is not the one the service gets"

# kinds: random as hex, explicit as given, x509 as its certificate and never its key
expect_rc 0 "$SCPCTL" session secret shop k --identity "$A"
[[ "$(cat "$T/last.out")" =~ ^[0-9a-f]{32}$ ]] || fail "a random secret does not read as 32 hex digits"
expect_rc 0 "$SCPCTL" session secret shop given --identity "$A"
[ "$(cat "$T/last.out")" = "EXPLICIT-VALUE-5d1e" ] || fail "explicit secret read back wrong"
expect_rc 0 "$SCPCTL" session secret shop tls --identity "$A"
grep -q "BEGIN CERTIFICATE" "$T/last.out" || fail "x509 secret: no certificate"
grep -q "PRIVATE KEY" "$T/last.out" && fail "x509 secret: the service's private key was handed out"
openssl x509 -noout -subject <"$T/last.out" | grep -q "db.shop" || fail "x509 secret: not the service's certificate"

# refusals: another identity, no identity, unknown names, imported secrets
expect_err 1 "only the owner" "$SCPCTL" session secret shop pw --identity "$B"
grep -q -- "$PW" "$T/last.out" "$T/last.err" && fail "another identity saw the password"
expect_err 1 "defines no secret" "$SCPCTL" session secret shop nope --identity "$A"
expect_err 1 "no session" "$SCPCTL" session secret nosuch pw --identity "$A"
expect_err 1 "imported" "$SCPCTL" session secret shop imp --identity "$A"
expect_rc 2 "$SCPCTL" session secret shop
code=$(curl -s -o "$T/anon.out" -w '%{http_code}' --cacert "$T/data/ca.crt" "https://$ADDR/v1/sessions/shop/secrets/pw")
[ "$code" = 401 ] || fail "an anonymous read got HTTP $code, want 401"
grep -q -- "$PW" "$T/anon.out" && fail "an anonymous client saw the password"
# the router's answers: unknown endpoint 404, known path under another method 405, a bad
# name in a path 400, each a JSON error body
http() { curl -s -o "$T/http.out" -w '%{http_code}' --cacert "$T/data/ca.crt" "$@"; }
[ "$(http "https://$ADDR/v1/nosuch")" = 404 ] || fail "an unknown endpoint did not get 404"
[ "$(http -X PATCH "https://$ADDR/v1/sessions/shop")" = 405 ] || fail "PATCH on a session did not get 405"
grep -q '"error":"method_not_allowed"' "$T/http.out" || fail "405 without its JSON error: $(cat "$T/http.out")"
[ "$(http "https://$ADDR/v1/sessions/bad%01name/secrets/pw")" = 400 ] || [ "$(http "https://$ADDR/v1/sessions/b..d/secrets/pw")" = 400 ] \
    || fail "a bad session name did not get 400: $(cat "$T/http.out")"
[ "$(http -X DELETE "https://$ADDR/v1/platforms/xyz")" = 400 ] || fail "a malformed platform id did not get 400"

# every read is audited, with the secret's name and never its value
expect_rc 0 "$SCPCTL" cas audit --identity "$A"
[ "$(grep -c 'secret.read.*ok.*secret pw' "$T/last.out")" -eq 2 ] || fail "the two reads of pw are not in the audit log: $(grep secret.read "$T/last.out")"
grep -q 'secret.read.*denied.*only the owner' "$T/last.out" || fail "the refused read is not in the audit log"
grep -q -- "$PW" "$T/last.out" && fail "the audit log holds the password"
grep -rqa -- "$PW" "$T/data" && fail "the password is in plaintext in CAS's data directory"
F=$(db_grep "$PW") && fail "the password is in plaintext in the store ($F)"
stop_cas
echo "cas_secret ok"
