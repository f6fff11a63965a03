#!/bin/bash
# CAS attestation: platform enrolment and revocation, the sim verifier, configuration release
# with every kind of secret, volume keys and tags, and every refusal (wrong measurement,
# unknown/revoked/disallowed platform, replayed/expired/forged nonce, tampered or malformed
# evidence, unknown session/service, import not exported). No secret in plaintext on disk.
source "$(dirname "$0")/lib.sh" "$@"

A=$T/a.pem
B=$T/b.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
expect_rc 0 "$SCPCTL" cas identity --out "$B"
export SCP_IDENTITY=$A
start_cas --admin "$A" --nonce-ttl-ms 1000

expect_rc 0 "$SCPCTL" platform create-key "$T/p1.key"
P1=$(cat "$T/last.out")
[ "$(stat -c %a "$T/p1.key")" = 600 ] || fail "platform key is not 0600"
expect_rc 0 "$SCPCTL" platform create-key "$T/p2.key"
P2=$(cat "$T/last.out")
expect_err 1 "403 not_admin" "$SCPCTL" platform enroll --name p1 --key "$T/p1.key" --identity "$B"
expect_rc 0 "$SCPCTL" platform enroll --name p1 --key "$T/p1.key"
expect_err 1 "409" "$SCPCTL" platform enroll --name p1again --key "$T/p1.key"
expect_rc 0 "$SCPCTL" platform list
grep -q "$P1.*active" "$T/last.out" || fail "enrolled platform not listed"

printf 'program image v1\n' >"$T/prog"
printf 'shield runtime\n' >"$T/shield.so"
expect_rc 0 "$SCPCTL" platform measure "$T/prog" "$T/shield.so"
M=$(cat "$T/last.out")
printf 'program image v2 (changed)\n' >"$T/prog2"
expect_rc 0 "$SCPCTL" platform measure "$T/prog2" "$T/shield.so"
M2=$(cat "$T/last.out")
[ "$M" != "$M2" ] || fail "measurement does not depend on the program"

cat >"$T/exporter.yaml" <<YAML
name: exporter
services: [{name: none, measurements: [$M2]}]
secrets:
  - {name: shared, kind: ascii, size: 24, export: [app]}
  - {name: private, kind: ascii, size: 24}
YAML
cat >"$T/app.yaml" <<YAML
name: app
services:
  - name: web
    measurements: [$M]
    command: [/bin/web, "--password=\$\$SCP::pw\$\$"]
    environment:
      API_KEY: "\$\$SCP::api\$\$"
      RAW: "\$\$SCP::raw\$\$"
      SHARED: "\$\$SCP::imp\$\$"
    cwd: /srv
    files:
      - path: /etc/web/tls.crt
        content: "\$\$SCP::tls:crt\$\$"
      - path: /etc/web/tls.key
        content: "\$\$SCP::tls:key\$\$"
      - path: /etc/web/ca.crt
        content: "\$\$SCP::tls:ca\$\$"
    volumes: [data]
  - name: pinned
    measurements: [$M]
    platforms: [$P2]
  - name: thief
    measurements: [$M]
    environment: {X: "\$\$SCP::stolen\$\$"}
secrets:
  - {name: pw, kind: ascii, size: 32}
  - {name: raw, kind: random, size: 32}
  - {name: api, kind: explicit, value: "EXPLICIT-API-KEY-5d1e"}
  - {name: tls, kind: x509, common_name: web.app, dns: [web.app], ip: [127.0.0.1]}
  - {name: imp, kind: imported, session: exporter, secret: shared}
  - {name: stolen, kind: imported, session: exporter, secret: private}
volumes:
  - {name: data, path: /data}
YAML
expect_rc 0 "$SCPCTL" session create "$T/exporter.yaml"
expect_rc 0 "$SCPCTL" session create "$T/app.yaml"

# granted: the configuration carries every secret, rendered
expect_rc 0 "$SCPCTL" platform attest --key "$T/p1.key" --session app --service web --measurement "$M"
CFG=$T/cfg.json
cp "$T/last.out" "$CFG"
grep -q "NOT protected" "$T/last.err" || fail "the sim client does not warn that memory is not protected"
python3 - "$CFG" "$T" <<'PY' || fail "configuration content is wrong"
import json, sys, re, subprocess
c = json.load(open(sys.argv[1]))
assert c["session"] == "app" and c["service"] == "web" and c["cwd"] == "/srv"
pw = c["command"][1].split("=", 1)[1]
assert re.fullmatch(r"[A-Za-z0-9]{32}", pw), pw
env = c["environment"]
assert env["API_KEY"] == "EXPLICIT-API-KEY-5d1e"
assert re.fullmatch(r"[0-9a-f]{64}", env["RAW"]), env["RAW"]
assert re.fullmatch(r"[A-Za-z0-9]{24}", env["SHARED"])
files = {f["path"]: f["content"] for f in c["files"]}
assert files["/etc/web/tls.crt"].startswith("-----BEGIN CERTIFICATE-----")
assert files["/etc/web/tls.key"].startswith("-----BEGIN " + "PRIVATE KEY-----")
assert "$$SCP::" not in json.dumps(c)
v = c["volumes"][0]
assert v["name"] == "data" and v["path"] == "/data" and re.fullmatch(r"[0-9a-f]{64}", v["key"])
assert v["expected_tag"] is None
assert re.fullmatch(r"[0-9a-f]{64}", c["volume_token"])
open(sys.argv[2] + "/secrets.txt", "w").write("\n".join([pw, env["RAW"], env["SHARED"], v["key"], "EXPLICIT-API-KEY-5d1e"]) + "\n")
open(sys.argv[2] + "/cert.pem", "w").write(files["/etc/web/tls.crt"])
open(sys.argv[2] + "/token", "w").write(c["volume_token"])
PY
# the certificate is issued by the service CA (not by the root clients pin) for the CN and SANs of the policy
openssl verify -CAfile "$T/data/service-ca.crt" "$T/cert.pem" >/dev/null || fail "x509 secret not issued by the service CA"
openssl verify -CAfile "$T/data/ca.crt" "$T/cert.pem" >/dev/null 2>&1 && fail "x509 secret verifies under CAS's root"
cmp -s <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["files"][2]["content"], end="")' "$CFG") \
    "$T/data/service-ca.crt" || fail "\$\$SCP::tls:ca\$\$ is not the service CA certificate"
openssl x509 -in "$T/cert.pem" -noout -ext subjectAltName | grep -q "DNS:web.app, IP Address:127.0.0.1" ||
    fail "x509 secret lacks the SANs"

# refusals: each a 4xx with a JSON error, and no configuration
expect_err 1 "403 wrong_measurement" "$SCPCTL" platform attest --key "$T/p1.key" --session app --service web --measurement "$M2"
expect_err 1 "403 unknown_platform" "$SCPCTL" platform attest --key "$T/p2.key" --session app --service web --measurement "$M"
expect_err 1 "404 unknown_session" "$SCPCTL" platform attest --key "$T/p1.key" --session nosuch --service web --measurement "$M"
expect_err 1 "404 unknown_service" "$SCPCTL" platform attest --key "$T/p1.key" --session app --service nosuch --measurement "$M"
expect_err 1 "403 platform_not_allowed" "$SCPCTL" platform attest --key "$T/p1.key" --session app --service pinned --measurement "$M"
expect_err 1 "403 import_refused" "$SCPCTL" platform attest --key "$T/p1.key" --session app --service thief --measurement "$M"
[ -s "$T/last.out" ] && fail "a refused attestation printed a configuration"
expect_rc 0 "$PROBE" ok "$ADDR" "$PIN" "$T/p1.key" app web "$M"
expect_rc 0 "$PROBE" replay "$ADDR" "$PIN" "$T/p1.key" app web "$M"
expect_rc 0 "$PROBE" expired "$ADDR" "$PIN" "$T/p1.key" app web "$M" 1300
expect_rc 0 "$PROBE" forged-nonce "$ADDR" "$PIN" "$T/p1.key" app web "$M"
expect_rc 0 "$PROBE" tamper "$ADDR" "$PIN" "$T/p1.key" app web "$M"
expect_rc 0 "$PROBE" garbage "$ADDR" "$PIN" "$T/p1.key" app web "$M"
alive

# volume tags: reported with the token, only forward; CAS hands back the expected tag
tr 0-9a-f 1-9a-f0 <"$T/token" >"$T/badtoken"
tag() { printf '%016x%064d' "$1" "$2"; } # generation, MAC stand-in
expect_err 1 "403 bad_token" "$SCPCTL" platform report-tag --session app --service web --volume data --tag "$(tag 5 1)" --token-file "$T/badtoken"
expect_err 1 "403 not_mounted" "$SCPCTL" platform report-tag --session app --service web --volume other --tag "$(tag 5 1)" --token-file "$T/token"
expect_rc 0 "$SCPCTL" platform report-tag --session app --service web --volume data --tag "$(tag 5 1)" --token-file "$T/token"
expect_err 3 "409 rollback" "$SCPCTL" platform report-tag --session app --service web --volume data --tag "$(tag 4 1)" --token-file "$T/token"
expect_err 3 "409 fork" "$SCPCTL" platform report-tag --session app --service web --volume data --tag "$(tag 5 2)" --token-file "$T/token"
expect_rc 0 "$SCPCTL" platform report-tag --session app --service web --volume data --tag "$(tag 6 1)" --token-file "$T/token"
expect_rc 0 "$SCPCTL" platform attest --key "$T/p1.key" --session app --service web --measurement "$M"
grep -q "\"expected_tag\":\"$(tag 6 1)\"" "$T/last.out" || fail "CAS does not hand back the last reported tag"
expect_rc 0 "$SCPCTL" session show app
grep -q "\"expected_tag\": \"$(tag 6 1)\"" "$T/last.out" || fail "the owner does not see the expected tag"
grep -q '"key"' "$T/last.out" && fail "session show reveals a volume key"
expect_err 1 "403 not_owner" "$SCPCTL" session set-tag app data --clear --identity "$B"
expect_rc 0 "$SCPCTL" session set-tag app data "$(tag 2 7)"
expect_rc 0 "$SCPCTL" platform attest --key "$T/p1.key" --session app --service web --measurement "$M"
grep -q "\"expected_tag\":\"$(tag 2 7)\"" "$T/last.out" || fail "owner override of the expected tag not applied"
# generations are unsigned 64-bit: 2^63 and 2^64-1 compare above 2 and are reported back exactly
# (the JSON as a real TLS client sees it)
report_raw() {
    printf '{"session":"app","service":"web","volume":"data","tag":"%s","token":"%s"}' "$1" "$(cat "$T/token")" |
        curl -sk --max-time 20 -o "$T/last.out" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @- \
            "https://$ADDR/v1/volumes/tag"
}
[ "$(report_raw "$(tag 0x8000000000000000 1)")" = 200 ] || fail "generation 2^63 refused: $(cat "$T/last.out")"
grep -q '"generation":"9223372036854775808"' "$T/last.out" || fail "generation 2^63 reported as: $(cat "$T/last.out")"
[ "$(report_raw "$(tag 0xffffffffffffffff 1)")" = 200 ] || fail "generation 2^64-1 refused: $(cat "$T/last.out")"
grep -q '"generation":"18446744073709551615"' "$T/last.out" || fail "generation 2^64-1 reported as: $(cat "$T/last.out")"
[ "$(report_raw "$(tag 0x8000000000000000 1)")" = 409 ] || fail "a rollback from 2^64-1 to 2^63 accepted: $(cat "$T/last.out")"
grep -q 'at generation 18446744073709551615; refusing older generation 9223372036854775808' "$T/last.out" ||
    fail "rollback message: $(cat "$T/last.out")"

# an update keeps secret values whose definition did not change; also for a row written before
# the stored definition digest was keyed (cas_secret_spec, unkeyed: kind|size|value hash|cn|days|import)
ZERO=$(printf '%064d' 0)
LEGACY_PW=$(printf '2|32|%s||365|||' "$ZERO" | sha256sum | cut -c1-64)
db_sql "UPDATE secrets SET spec='$LEGACY_PW' WHERE session='app' AND name='pw'" || fail "update failed"
HASH=$(sha256sum <"$T/app.yaml" | cut -c1-64)
sed 's|cwd: /srv|cwd: /srv2|' "$T/app.yaml" >"$T/app2.yaml"
expect_rc 0 "$SCPCTL" session update "$T/app2.yaml" --predecessor "$HASH"
expect_rc 0 "$SCPCTL" platform attest --key "$T/p1.key" --session app --service web --measurement "$M"
grep -q "$(head -1 "$T/secrets.txt")" "$T/last.out" || fail "an unchanged secret changed value on update"
grep -q '"cwd":"/srv2"' "$T/last.out" || fail "update not applied"
[ "$(db_sql "SELECT spec FROM secrets WHERE session='app' AND name='pw'")" != "$LEGACY_PW" ] ||
    fail "the legacy digest was not replaced"

# no secret in plaintext: database files, daemon output
[ "$(grep -c . "$T/secrets.txt")" -eq 5 ] || fail "secrets were not collected"
while read -r s; do
    for f in "$T/data"/*; do
        grep -a -q -- "$s" "$f" && fail "secret '$s' in plaintext in $f"
    done
    F=$(db_grep "$s") && fail "secret '$s' in plaintext in $F"
    grep -q -- "$s" "$T/cas.out" "$T/cas.err" && fail "secret '$s' in the daemon's output"
done <"$T/secrets.txt"
# nor an unkeyed digest an offline guess could be checked against (the stored definition digest
# of an explicit secret hashes its value)
VH=$(printf %s EXPLICIT-API-KEY-5d1e | sha256sum | cut -c1-64)
PLAIN=$(printf '3|0|%s||365|||' "$VH" | sha256sum | cut -c1-64)
F=$(db_grep "$VH" "$PLAIN") && fail "the store ($F) holds an unkeyed digest of an explicit secret"

# restart: same secrets, same volume key
stop_cas
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform attest --key "$T/p1.key" --session app --service web --measurement "$M"
while read -r s; do grep -q -- "$s" "$T/last.out" || fail "secret '$s' lost across a restart"; done <"$T/secrets.txt"

# revocation
expect_err 1 "403 not_admin" "$SCPCTL" platform revoke "$P1" --identity "$B"
expect_rc 0 "$SCPCTL" platform revoke "$P1"
expect_err 1 "403 revoked_platform" "$SCPCTL" platform attest --key "$T/p1.key" --session app --service web --measurement "$M"
expect_err 1 "409" "$SCPCTL" platform enroll --name again --key "$T/p1.key"
alive
echo "cas_attest: ok"
