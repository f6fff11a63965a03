#!/bin/sh
# bench/shield/run.sh BUILD_DIR - the shield's per-call costs, plain vs shielded.
set -eu
B=${1:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol"
mkdir -p "$T/plain"
echo "== plain (no shield), files in an ordinary directory"
"$B/bench/shield/shield-trapbench" "$T/plain" "${N:-200000}"
echo "== under scpctl run, files in a protected volume"
"$B/src/scpctl" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- \
    "$B/bench/shield/shield-trapbench" "$T/mnt" "${N:-200000}"
