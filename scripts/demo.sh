#!/usr/bin/env bash
# The main job on embedded defaults: create a protected volume, write through it, show that the
# disk holds only ciphertext, read it back, and show that tampering is detected.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SCPCTL:-build/src/scpctl}
work=$(mktemp -d /tmp/scp-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. a key (32 random bytes, mode 0600) and an empty volume"
$S volume keygen "$work/key"
$S volume create "$work/vol" --key-file "$work/key"

step "2. import a plain tree with a known marker and a secret file name"
mkdir -p "$work/plain/reports"
echo "TOP-SECRET-MARKER: quarterly numbers" > "$work/plain/reports/salaries-2026.txt"
head -c 2000000 /dev/urandom > "$work/plain/blob.bin"
$S volume import "$work/plain" "$work/vol" --key-file "$work/key"
$S volume ls "$work/vol" -R -l --key-file "$work/key"

step "3. what the untrusted disk holds"
find "$work/vol" -type f | sed "s|$work/||" | sort
if grep -rqa -e TOP-SECRET-MARKER -e salaries "$work/vol"; then
  echo "FAIL: plaintext found on disk"; exit 1
fi
echo "no marker and no file name on disk: the volume holds ciphertext only"

step "4. read it back through the volume"
$S volume cat "$work/vol" reports/salaries-2026.txt --key-file "$work/key"
$S volume info "$work/vol" --key-file "$work/key"

step "5. an attacker flips one byte of the largest object"
victim=$(ls -S "$work"/vol/objects/*.d | head -1)
b=$(od -An -tu1 -j 5000 -N1 "$victim" | tr -d ' ')
printf "$(printf '\\%03o' $((b ^ 255)))" | dd of="$victim" bs=1 seek=5000 conv=notrunc status=none
set +e
$S volume verify "$work/vol" --key-file "$work/key"; rc=$?
set -e
echo "verify exit code: $rc (3 = integrity failure)"
[ "$rc" -eq 3 ] || { echo "FAIL: tampering not detected"; exit 1; }

step "6. the wrong key is refused"
$S volume keygen "$work/other-key" 2>/dev/null
set +e
$S volume ls "$work/vol" --key-file "$work/other-key"; rc=$?
set -e
echo "exit code: $rc (4 = wrong key)"
echo
echo "demo ok"
