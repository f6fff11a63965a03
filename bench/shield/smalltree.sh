#!/usr/bin/env bash
# bench/shield/smalltree.sh TAR N - write to TAR a tar of N one-byte files ("x") named
# dNNN/fNNNNNN, 1,000 to a directory: what an image layer, a source checkout or node_modules
# unpacks, and the many entries of a large volume. Used by untar.sh and apps.sh (FILL).
set -euo pipefail
out=$1 n=$2
src=$(mktemp -d "$(dirname "$out")/smalltree.XXXXXX")
trap 'rm -rf "$src"' EXIT
python3 - "$src" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 1000))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "w") as f:
        f.write("x")
PY
tar -cf "$out" -C "$src" .
