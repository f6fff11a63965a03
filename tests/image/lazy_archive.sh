#!/bin/sh
# tests/image/lazy_archive.sh SCPCTL - scpctl maps libarchive (and the libraries it brings:
# libxml2, ICU, libstdc++...) only for an image command that reads or writes a layer
# (src/image/archive_lazy.c), not at the start of every command: `scpctl run` pays for none of
# it. The image tests (image_build...) show that the image commands still load it.
set -u
SCPCTL=$1
out=$(LD_DEBUG=files "$SCPCTL" --help 2>&1 >/dev/null)
echo "$out" | grep -q 'file=libc.so' || { echo "FAIL: LD_DEBUG shows no loading at all (cannot test)"; exit 1; }
if echo "$out" | grep -E 'file=(libarchive|libxml2|libicuuc|libstdc\+\+)'; then
    echo "FAIL: scpctl --help mapped the image builder's libraries at start"
    exit 1
fi
if readelf -d "$SCPCTL" 2>/dev/null | grep -E 'NEEDED.*(libarchive|libxml2|libicu)'; then
    echo "FAIL: scpctl needs the image builder's libraries"
    exit 1
fi
echo "PASS: scpctl starts without libarchive"
