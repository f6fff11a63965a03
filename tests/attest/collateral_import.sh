#!/usr/bin/env bash
# tests/attest/collateral_import.sh SCPCTL DATA_DIR - `scpctl cas collateral import` files each
# kind of collateral where the verifiers read it (compared with the test data's own layout),
# and refuses what it does not recognise with a message and a non-zero exit.
set -euo pipefail
scpctl=$1 data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
c=$data/collateral
cat "$c/snp/Milan/ask.pem" "$c/snp/Milan/ark.pem" >"$tmp/milan_cert_chain"   # as AMD KDS serves it
openssl crl -inform DER -in "$c/sgx/pckcrl-platform.der" -out "$tmp/pckcrl.pem"  # a PEM CRL
"$scpctl" cas collateral import --dir "$tmp/coll" "$tmp/milan_cert_chain" "$data/snp/virtee-milan-vcek.der" \
    "$c/sgx/rootcrl.der" "$tmp/pckcrl.pem" "$c/sgx/pckcrl-processor.der" "$c/sgx/tcbinfo-tdx-50806f000000.json" \
    "$c/sgx/qeidentity-tdx.json" "$c/sgx/tcb-signing-chain.pem" >"$tmp/out"
cat "$tmp/out"
fp() { openssl x509 -in "$1" -inform "${2:-PEM}" -noout -fingerprint -sha256; }
for f in ark ask; do
    [ "$(fp "$tmp/coll/snp/Milan/$f.pem")" = "$(fp "$c/snp/Milan/$f.pem")" ] || fail "Milan $f.pem"
done
vcek=$tmp/coll/snp/vcek/d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6-7308000000000003.der
cmp "$vcek" "$data/snp/virtee-milan-vcek.der" || fail "VCEK not at its chip id and TCB"
for f in rootcrl.der pckcrl-platform.der pckcrl-processor.der tcbinfo-tdx-50806f000000.json qeidentity-tdx.json; do
    cmp "$tmp/coll/sgx/$f" "$c/sgx/$f" || fail "sgx/$f"
done
[ "$(openssl crl2pkcs7 -nocrl -certfile "$tmp/coll/sgx/tcb-signing-chain.pem" | openssl pkcs7 -print_certs -noout | grep -c subject)" = 2 ] \
    || fail "TCB signing chain"
# Refusals: garbage, a single ARK without its ASK, and a bad directory argument.
printf '\x30\x03\x02\x01 not collateral\n' >"$tmp/garbage"
if "$scpctl" cas collateral import --dir "$tmp/coll" "$tmp/garbage" 2>"$tmp/err"; then fail "garbage imported"; fi
grep -q "not a CRL, signed JSON or certificates" "$tmp/err" || { cat "$tmp/err"; fail "garbage message"; }
if "$scpctl" cas collateral import --dir "$tmp/coll" "$c/snp/Milan/ark.pem" 2>"$tmp/err"; then fail "lone ARK imported"; fi
grep -q "unrecognised certificates" "$tmp/err" || { cat "$tmp/err"; fail "lone ARK message"; }
if "$scpctl" cas collateral import "$c/sgx/rootcrl.der" 2>/dev/null; then fail "no --dir accepted"; fi
echo "collateral import: ok"
