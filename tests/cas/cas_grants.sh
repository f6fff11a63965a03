#!/bin/bash
# CAS grants and incarnations (issue 10 items 2-3, issue 18 item 3), each attack as the issue
# describes it, against the real daemon over TLS:
#  1. export squatting: a session name that an export names is free (never created, or deleted by
#     its owner); anyone creates it importing the secret, and attestation must not release it;
#  2. a volume token outlives its session: the attacker's token from a deleted session must not
#     report tags for the owner's re-created session of the same names;
#  3. the expected tag is kept in cas.db: clearing, lowering or moving it with sqlite3 must be
#     an integrity error, never "no tag yet"; and a database from before tag MACs is migrated.
source "$(dirname "$0")/lib.sh" "$@"
client_leaks_off # (lib.sh: dozens of short client commands; the daemon keeps the leak check)
command -v sqlite3 >/dev/null || fail "sqlite3 is not installed (.ci/packages.txt)"

A=$T/a.pem # owner of the exporting session and of the victim session
B=$T/b.pem # the legitimate importer
C=$T/c.pem # the attacker: an ordinary client identity
expect_rc 0 "$SCPCTL" cas identity --out "$A"
IDA=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" cas identity --out "$B"
IDB=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" cas identity --out "$C"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p.key"
expect_rc 0 "$SCPCTL" platform enroll --name p --key "$T/p.key"
M=4444444444444444444444444444444444444444444444444444444444444444

attest() { # SESSION SERVICE: the configuration in $T/last.out
    expect_rc 0 "$SCPCTL" platform attest --key "$T/p.key" --session "$1" --service "$2" --measurement $M
}
# A's secret: an explicit value, so that its absence from every refused answer can be checked
SECRET=A-SHOP-SECRET-91c3e0
shop_yaml() { # EXPORT-LIST [PREDECESSOR]
    {
        [ -n "${2:-}" ] && echo "predecessor: $2"
        echo "name: shop"
        echo "services: [{name: none, measurements: [$M]}]"
        echo "secrets: [{name: mine, kind: explicit, value: $SECRET, export: $1}]"
    }
}
importer_yaml() { # [EXTRA KEYS OF THE IMPORT]
    echo "name: bsess"
    echo "services: [{name: svc, measurements: [$M], environment: {S: \"\$\$SCP::s\$\$\"}}]"
    echo "secrets: [{name: s, kind: imported, session: shop, secret: mine${1:-}}]"
}
no_secret() { grep -q -- "$SECRET" "$T/last.out" "$T/last.err" && fail "$1: A's secret was released"; return 0; }

# ---- 1a. the short form names a session that does not exist yet: the attacker takes the name
shop_yaml "[bsess]" >"$T/shop.yaml"
expect_rc 0 "$SCPCTL" session create "$T/shop.yaml"
importer_yaml >"$T/squat.yaml"
expect_rc 0 "$SCPCTL" session create "$T/squat.yaml" --identity "$C"
expect_err 1 "403 import_refused" "$SCPCTL" platform attest --key "$T/p.key" --session bsess --service svc --measurement $M
no_secret "squatting a free export name"
# even when the attacker's import names A as the exporting owner
importer_yaml ", owner: $IDA" >"$T/squat2.yaml"
expect_rc 0 "$SCPCTL" session delete bsess --identity "$C"
expect_rc 0 "$SCPCTL" session create "$T/squat2.yaml" --identity "$C"
expect_err 1 "403 import_refused" "$SCPCTL" platform attest --key "$T/p.key" --session bsess --service svc --measurement $M
no_secret "squatting a free export name (import naming the exporter's owner)"
expect_rc 0 "$SCPCTL" session delete bsess --identity "$C"

# ---- 1b. an export to B's session: B gets it; after B deletes it, the attacker does not
HS=$(sha256sum <"$T/shop.yaml" | cut -c1-64)
shop_yaml "[{session: bsess, owner: $IDB}]" "$HS" >"$T/shop2.yaml"
expect_rc 0 "$SCPCTL" session update "$T/shop2.yaml"
HS=$(sha256sum <"$T/shop2.yaml" | cut -c1-64)
importer_yaml ", owner: $IDA" >"$T/b.yaml"
expect_rc 0 "$SCPCTL" session create "$T/b.yaml" --identity "$B"
attest bsess svc
grep -q "\"S\":\"$SECRET\"" "$T/last.out" || fail "the owner-bound export was not released to its importer"
# B's import without 'owner' trusts only its own sessions: shop belongs to A, so it is refused
importer_yaml >"$T/b-noowner.yaml"
expect_rc 0 "$SCPCTL" session delete bsess --identity "$B"
expect_rc 0 "$SCPCTL" session create "$T/b-noowner.yaml" --identity "$B"
expect_err 1 "403 import_refused" "$SCPCTL" platform attest --key "$T/p.key" --session bsess --service svc --measurement $M
expect_rc 0 "$SCPCTL" session delete bsess --identity "$B"
# B deleted bsess: the attacker re-creates it (with the import exactly as B had it)
expect_rc 0 "$SCPCTL" session create "$T/b.yaml" --identity "$C"
expect_err 1 "403 import_refused" "$SCPCTL" platform attest --key "$T/p.key" --session bsess --service svc --measurement $M
no_secret "re-creating a deleted importer"
expect_rc 0 "$SCPCTL" session delete bsess --identity "$C"
# the deletion ended the grant, even for B: A must grant again (a newer version of shop)
expect_rc 0 "$SCPCTL" session create "$T/b.yaml" --identity "$B"
expect_err 1 "403 import_refused" "$SCPCTL" platform attest --key "$T/p.key" --session bsess --service svc --measurement $M
grep -q "deleted" "$T/last.err" || fail "the refusal does not say the grant ended with the deletion"
no_secret "an importer re-created after the grant ended"
sed "1s/.*/predecessor: $HS/" "$T/shop2.yaml" >"$T/shop3.yaml"
expect_rc 0 "$SCPCTL" session update "$T/shop3.yaml"
attest bsess svc
grep -q "\"S\":\"$SECRET\"" "$T/last.out" || fail "a new grant after the deletion does not work"
# an exporter re-created by someone else: B's import names A, so C's 'shop' is not a source
expect_rc 0 "$SCPCTL" session delete shop
shop_yaml "[{session: bsess, owner: $IDB}]" | sed "s/$SECRET/ATTACKER-CHOSEN-VALUE/" >"$T/fake-shop.yaml"
expect_rc 0 "$SCPCTL" session create "$T/fake-shop.yaml" --identity "$C"
expect_err 1 "403 import_refused" "$SCPCTL" platform attest --key "$T/p.key" --session bsess --service svc --measurement $M
grep -q ATTACKER-CHOSEN-VALUE "$T/last.out" && fail "an importer took a secret from a squatted exporter"
alive

# ---- 2. a volume token outlives its session
victim_yaml() {
    printf 'name: victim\nservices: [{name: web, measurements: [%s], volumes: [data]}]\nvolumes: [{name: data, path: /data}]\n' $M
}
token_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["volume_token"])' "$T/last.out" >"$1"; }
tag() { printf '%016x%064d' "$1" "$2"; } # generation, MAC stand-in
report() { # TOKEN-FILE TAG
    "$SCPCTL" platform report-tag --session victim --service web --volume data --tag "$2" --token-file "$1" \
        >"$T/last.out" 2>"$T/last.err"
}
victim_yaml >"$T/victim.yaml"
expect_rc 0 "$SCPCTL" session create "$T/victim.yaml" --identity "$C"
attest victim web
token_of "$T/old.token"
expect_rc 0 "$SCPCTL" session delete victim --identity "$C"
report "$T/old.token" "$(tag 1 9)"
[ $? -eq 1 ] && grep -q "403 bad_token" "$T/last.err" || fail "a report for a deleted session was not refused: $(cat "$T/last.err")"
expect_rc 0 "$SCPCTL" session create "$T/victim.yaml" --identity "$A"
report "$T/old.token" "$(tag 1 9)"
[ $? -eq 1 ] && grep -q "403 bad_token" "$T/last.err" || fail "the old token reported for the re-created session: $(cat "$T/last.err")"
report "$T/old.token" "$(printf 'f%.0s' $(seq 80))"
grep -q "403 bad_token" "$T/last.err" || fail "the old token planted an all-ff generation"
# A's genuine first report is accepted, and A's volume still has no expected tag before it
attest victim web
grep -q '"expected_tag":null' "$T/last.out" || fail "the old token changed the re-created volume's tag"
token_of "$T/new.token"
cmp -s "$T/old.token" "$T/new.token" && fail "the re-created session has the old token"
report "$T/new.token" "$(tag 1 1)" || fail "A's first report was refused: $(cat "$T/last.err")"
# an update keeps the incarnation (and so the token)
HV=$(sha256sum <"$T/victim.yaml" | cut -c1-64)
{ echo "predecessor: $HV"; sed 's|path: /data|path: /data2|' "$T/victim.yaml"; } >"$T/victim2.yaml"
expect_rc 0 "$SCPCTL" session update "$T/victim2.yaml"
report "$T/new.token" "$(tag 2 1)" || fail "an update killed the token: $(cat "$T/last.err")"

# ---- 3. the expected tag row in cas.db, changed by a host with CAS's disk
cat >"$T/db.yaml" <<YAML
name: db
services: [{name: redis, measurements: [$M], volumes: [data, logs]}]
volumes: [{name: data, path: /data}, {name: logs, path: /logs}]
YAML
expect_rc 0 "$SCPCTL" session create "$T/db.yaml"
attest db redis
token_of "$T/db.token"
rep() { expect_rc 0 "$SCPCTL" platform report-tag --session db --service redis --volume "$1" --tag "$2" --token-file "$T/db.token"; }
rep data "$(tag 7 1)"
rep logs "$(tag 3 5)"
sql() { db_sql "$1" || fail "SQL '$1' failed"; }
tampered() { # WHAT: CAS (restarted) must refuse to trust the tag of volume data, saying why
    start_cas --admin "$A"
    expect_err 1 "500 tag_integrity" "$SCPCTL" platform attest --key "$T/p.key" --session db --service redis --measurement $M
    [ -s "$T/last.out" ] && fail "$1: a configuration was released"
    expect_err 1 "500 tag_integrity" "$SCPCTL" platform report-tag --session db --service redis --volume data \
        --tag "$(tag 1 1)" --token-file "$T/db.token"
    expect_rc 0 "$SCPCTL" session show db
    grep -q '"integrity_error"' "$T/last.out" || fail "$1: session show does not flag the tag"
    stop_cas
    sql "UPDATE volumes SET tag = '$ORIG_TAG', mac = '$ORIG_MAC' WHERE session = 'db' AND name = 'data'"
}
stop_cas
ORIG_TAG=$(sql "SELECT tag FROM volumes WHERE session = 'db' AND name = 'data'")
ORIG_MAC=$(sql "SELECT mac FROM volumes WHERE session = 'db' AND name = 'data'")
[ "$ORIG_TAG" = "$(tag 7 1)" ] || fail "unexpected stored tag '$ORIG_TAG'"
sql "UPDATE volumes SET tag = '' WHERE session = 'db' AND name = 'data'"
tampered "cleared tag"
sql "UPDATE volumes SET tag = '', mac = '' WHERE session = 'db' AND name = 'data'"
tampered "cleared tag and MAC"
sql "UPDATE volumes SET tag = '$(tag 2 1)' WHERE session = 'db' AND name = 'data'"
tampered "lowered tag"
sql "UPDATE volumes SET (tag, mac) = (SELECT tag, mac FROM volumes WHERE session = 'db' AND name = 'logs') WHERE session = 'db' AND name = 'data'"
tampered "tag and MAC of another volume"
sql "UPDATE volumes SET (tag, mac) = (SELECT tag, mac FROM volumes WHERE session = 'victim' AND name = 'data') WHERE session = 'db' AND name = 'data'"
tampered "tag and MAC of another session"
# untouched: CAS hands back the tag; the owner can re-set a tag after a check (recovery)
start_cas --admin "$A"
attest db redis
grep -q "\"expected_tag\":\"$(tag 7 1)\"" "$T/last.out" || fail "the untouched tag is not handed back"
stop_cas
sql "UPDATE volumes SET tag = '' WHERE session = 'db' AND name = 'data'"
start_cas --admin "$A"
expect_err 1 "500 tag_integrity" "$SCPCTL" platform attest --key "$T/p.key" --session db --service redis --measurement $M
expect_rc 0 "$SCPCTL" session set-tag db data "$(tag 7 1)"
attest db redis
grep -q "\"expected_tag\":\"$(tag 7 1)\"" "$T/last.out" || fail "the owner's set-tag did not recover the volume"

# ---- 3b. a database from before incarnations and tag MACs: migrated at start (SQLite's only:
# a PostgreSQL store was never without them)
if [ -n "${CAS_STORE:-}" ]; then
    alive
    echo "cas_grants: ok (PostgreSQL store; 3b is SQLite's)"
    exit 0
fi
stop_cas
sql "DROP INDEX IF EXISTS sessions_seq; ALTER TABLE volumes DROP COLUMN mac; ALTER TABLE sessions DROP COLUMN incarnation; ALTER TABLE sessions DROP COLUMN seq"
start_cas --admin "$A"
attest db redis
grep -q "\"expected_tag\":\"$(tag 7 1)\"" "$T/last.out" || fail "the migrated tag is not handed back"
token_of "$T/db2.token"
expect_err 1 "403 bad_token" "$SCPCTL" platform report-tag --session db --service redis --volume data --tag "$(tag 8 1)" --token-file "$T/db.token"
expect_err 3 "409 rollback" "$SCPCTL" platform report-tag --session db --service redis --volume data --tag "$(tag 6 1)" --token-file "$T/db2.token"
expect_rc 0 "$SCPCTL" platform report-tag --session db --service redis --volume data --tag "$(tag 8 1)" --token-file "$T/db2.token"
stop_cas
[ -n "$(sql "SELECT mac FROM volumes WHERE session = 'db' AND name = 'logs'")" ] || fail "the migration left a tag without its MAC"
# after the migration, a blanked MAC is an integrity error again (not a second migration)
sql "UPDATE volumes SET tag = '', mac = '' WHERE session = 'db' AND name = 'data'"
start_cas --admin "$A"
expect_err 1 "500 tag_integrity" "$SCPCTL" platform attest --key "$T/p.key" --session db --service redis --measurement $M
alive
echo "cas_grants: ok"
