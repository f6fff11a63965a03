#!/usr/bin/env bash
# .ci/sanitize.sh - build everything with ASan + UBSan in build-asan/ and run the test suite.
#
#   CC=gcc|clang          compiler (default: cc)
#   SANITIZE_BUILD_DIR    build directory (default build-asan)
#   CTEST_ARGS            extra ctest arguments (e.g. "-L quick" or "-E crash")
#
# Any sanitizer report aborts the test that hit it, so the suite fails. Exits non-zero on a
# configure, build or test failure.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${SANITIZE_BUILD_DIR:-build-asan}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER="${CC:-cc}" -DSCP_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The tests run Debian's programs (python3, git, the servers): Debian's directories first, so
# that a version manager's shim does not stand in for them (pyenv's python3 is a bash script
# that execs env, bash and a dozen more scripts before python starts: under the shield that deep
# an exec chain meets the odds of docs/shield.md, "Why the instruction pointer").
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
# A curated image's server under ASan starts slower than its 30 s wait allows when the three
# image tests run beside each other and the rest of the suite (session 27's machine: image_redis,
# _nginx and _memcached did not answer in 30 s, each passed alone in 50-90 s): a readiness wait,
# not a timing assertion (tests/image/curated_lib.sh, start).
export START_SECS=${START_SECS:-120}
# test_volume_crash kills its workload until 300 kills or 90 s (a floor for loaded or sanitized
# runs): under ASan the 90 s ran out first (volume_crash 91 s, _sole 70 s in session 27's CI).
# 45 s gave 159 kills under ASan at load 3.7 here (session 28), so 30 s leaves about 100; the
# test wants at least 50. The gcc and clang passes make the full 300.
export SCP_CRASH_SECONDS=${SCP_CRASH_SECONDS:-30}
# shellcheck disable=SC2086  # CTEST_ARGS is a word list
ctest --test-dir "$BUILD" --output-on-failure -j2 --no-tests=error ${CTEST_ARGS:-}
