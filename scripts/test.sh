#!/usr/bin/env bash
# Build (if needed) and run the whole test suite through ctest; ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
# The tests run Debian's programs (python3, git, the servers): Debian's directories first, so
# that a version manager's shim does not stand in for them (pyenv's python3 is a bash script
# that execs env, bash and a dozen more scripts before python starts: under the shield that deep
# an exec chain meets the odds of docs/shield.md, "Why the instruction pointer").
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
cmake -S . -B "$BUILD" -G Ninja >/dev/null && ninja -C "$BUILD" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
# One more test than cores (at most 8): many tests wait (fsyncs on the disk, servers starting,
# kill timers) rather than compute, and a third job on two cores fills those waits. Session 48,
# this suite on a 2-core machine, /tmp on the disk: 620-640 s at -j2 (session 47's CI runs),
# 467 s at -j3 with the cores 3.7% idle and 6.2% in iowait (bench/RESULTS.md, "Session 48").
# JOBS=N overrides.
if [ -z "${JOBS:-}" ]; then
    JOBS=$(( $(nproc 2>/dev/null || echo 1) + 1 ))
    [ "$JOBS" -gt 8 ] && JOBS=8
fi
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$log" | tail -1)
failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
rm -f "$log"
if [ -z "$total" ]; then echo "0 passed, 1 failed"; exit 1; fi
if [ "$total" -eq 0 ]; then echo "0 passed, 1 failed (no tests ran)"; exit 1; fi
echo "$((total - failed)) passed, $failed failed"
exit "$rc"
