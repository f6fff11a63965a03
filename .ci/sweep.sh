#!/usr/bin/env bash
# Power cuts at new runs, for a bounded time. ctest's volume_powercut* tests replay the same
# runs every time (0-11, 0-5 shared, ...), so a bug that only some workloads reach stays hidden
# until someone happens on its run number: session 14 found a shared-mode one at runs 5084 and
# 5240 by a sweep by hand. Here each CI run tries runs it picks at random, in the six variants
# (private, shared and sole-holder mode; the normal and the "tight" build, whose small journal
# and manifest log limits take the in-place and fold paths), and prints each so that a failure
# reproduces:
#   SCP_TEST_CHUNK=4096|8192 BUILD/tests/volume/test_volume_powercut[_tight] 1 RUN [shared|sole]
# Every second pass over the six variants gives the volume 8 KiB chunks (the size advised for
# PostgreSQL; docs/volume-format.md, "Choosing the chunk size").
# Usage: .ci/sweep.sh [BUILD_DIR]   (SWEEP_SECONDS, default 120: when to stop starting runs)
set -uo pipefail
B=${1:-build}
SECS=${SWEEP_SECONDS:-120}
T=$B/tests/volume
for x in test_volume_powercut test_volume_powercut_tight; do
    [ -x "$T/$x" ] || { echo "sweep.sh: $T/$x not built" >&2; exit 2; }
done
end=$(( $(date +%s) + SECS ))
n=0
variants=("test_volume_powercut" "test_volume_powercut shared" "test_volume_powercut sole"
          "test_volume_powercut_tight" "test_volume_powercut_tight shared"
          "test_volume_powercut_tight sole")
while [ "$(date +%s)" -lt "$end" ]; do
    set -- ${variants[n % 6]}
    run=$(( (RANDOM << 15 | RANDOM) % 1000000 + 1000 ))
    chunk=$(( n / 6 % 2 ? 8192 : 4096 ))
    cmd="SCP_TEST_CHUNK=$chunk $T/$1 1 $run ${2:-}" # (what runs, and what a failure prints)
    # shellcheck disable=SC2086  # cmd is a word list (T has no spaces: mktemp's)
    if ! out=$(timeout 300 env $cmd 2>&1); then
        printf '%s\n' "$out" | tail -20
        echo "sweep.sh: FAILED: $cmd"
        exit 1
    fi
    echo "ok: $cmd"
    n=$((n + 1))
done
echo "sweep.sh: $n power-cut runs passed in ${SECS}s"
