#!/usr/bin/env bash
# tests/attest/run_test.sh BINARY DATA_DIR - make a test PKI with openssl in a temporary
# directory (tests/attest/mkpki.sh), then run the verifier test binary against it.
set -euo pipefail
bin=$1 data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash "$(dirname "$0")/mkpki.sh" "$tmp/pki"
mkdir "$tmp/work"
"$bin" "$data" "$tmp/pki" "$tmp/work"
