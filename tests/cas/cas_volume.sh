#!/bin/bash
# CAS + protected volumes, end to end: the volume key comes from CAS (never shown elsewhere),
# the runtime reports each committed tag, and after the disk is rolled back to an older state
# the tag CAS hands back makes the volume library refuse it.
source "$(dirname "$0")/lib.sh" "$@"

A=$T/a.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p.key"
expect_rc 0 "$SCPCTL" platform enroll --name p --key "$T/p.key"
M=3333333333333333333333333333333333333333333333333333333333333333
printf 'name: db\nservices: [{name: redis, measurements: [%s], volumes: [data]}]\nvolumes: [{name: data, path: /data}]\n' $M >"$T/s.yaml"
expect_rc 0 "$SCPCTL" session create "$T/s.yaml"

attest() {
    expect_rc 0 "$SCPCTL" platform attest --key "$T/p.key" --session db --service redis --measurement $M
    python3 "$(dirname "$0")/volkey.py" "$T/vol.key" <"$T/last.out" >/dev/null || fail "no volume key in the configuration"
    python3 - "$T/last.out" "$T" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
open(sys.argv[2] + "/expected", "w").write(c["volumes"][0]["expected_tag"] or "")
open(sys.argv[2] + "/token", "w").write(c["volume_token"])
PY
}
vol_tag() { "$SCPCTL" volume info "$T/vol" --key-file "$T/vol.key" | sed -n 's/^tag: *//p'; }
report() {
    expect_rc 0 "$SCPCTL" platform report-tag --session db --service redis --volume data --tag "$(vol_tag)" --token-file "$T/token"
}

attest
[ -s "$T/expected" ] && fail "a new volume already has an expected tag"
expect_rc 0 "$SCPCTL" volume create "$T/vol" --key-file "$T/vol.key"
echo "balance=100" | "$SCPCTL" volume put "$T/vol" acct.txt --key-file "$T/vol.key" >/dev/null 2>&1 || fail "put failed"
report
cp -a "$T/vol" "$T/vol.old" # the attacker keeps a copy of the older state
echo "balance=0" | "$SCPCTL" volume put "$T/vol" acct.txt --key-file "$T/vol.key" >/dev/null 2>&1 || fail "put failed"
report
NEW=$(vol_tag)

# next start: CAS gives the latest tag; the current state opens, the rolled-back one does not
attest
[ "$(cat "$T/expected")" = "$NEW" ] || fail "CAS did not hand back the latest tag"
expect_rc 0 "$SCPCTL" volume info "$T/vol" --key-file "$T/vol.key" --expect-tag "$(cat "$T/expected")"
rm -rf "$T/vol"
mv "$T/vol.old" "$T/vol"
expect_rc 3 "$SCPCTL" volume cat "$T/vol" acct.txt --key-file "$T/vol.key" --expect-tag "$(cat "$T/expected")"
# and the old state cannot be reported to CAS either
expect_err 3 "409 rollback" "$SCPCTL" platform report-tag --session db --service redis --volume data --tag "$(vol_tag)" --token-file "$T/token"
# the volume key is not stored in plaintext by CAS
KEYHEX=$(od -An -tx1 "$T/vol.key" | tr -d ' \n')
for f in "$T/data"/*; do grep -a -q "$KEYHEX" "$f" && fail "volume key in plaintext in $f"; done
for f in "$T/data"/*; do
    python3 -c "import sys; d=open(sys.argv[1],'rb').read(); sys.exit(1 if bytes.fromhex(sys.argv[2]) in d else 0)" "$f" "$KEYHEX" || fail "raw volume key in $f"
done
echo "cas_volume: ok"
