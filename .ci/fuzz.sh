#!/usr/bin/env bash
# .ci/fuzz.sh - build the libFuzzer targets (clang, ASan + UBSan) in build-fuzz/ and run each
# one for a bounded time against its seed corpus (fuzz/corpus/<target>/).
#
#   FUZZ_SECONDS=20   seconds per target (libFuzzer -max_total_time)
#   FUZZ_TARGETS=...  a subset, e.g. "fuzz_path fuzz_journal"
#   FUZZ_BUILD_DIR    build directory (default build-fuzz)
#
# New inputs found during a run go to $FUZZ_BUILD_DIR/fuzz-work/<target>/ (never into the
# registered corpus); crashes, leaks and timeouts to $FUZZ_BUILD_DIR/fuzz-artifacts/<target>/.
# Prints one summary line per target; exits non-zero if any target crashed, leaked, timed out or
# did not run.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-20}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=${FUZZ_TARGETS:-"fuzz_volhdr fuzz_manifest fuzz_mlog fuzz_journal fuzz_path fuzz_volume_open fuzz_cas_http fuzz_cas_policy fuzz_cas_evidence fuzz_cas_api fuzz_elf fuzz_snp_report fuzz_hw_chain fuzz_dcap_quote fuzz_collateral_import fuzz_image fuzz_hw_evidence fuzz_sealed_stream fuzz_net_start fuzz_tls_record fuzz_fdlist"}

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER=clang -DSCP_FUZZ=ON -DSCP_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086  # TARGETS is a word list
cmake --build "$BUILD" --target $TARGETS

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# One target: runs it, writes its summary line to $BUILD/fuzz-logs/<target>.summary, and
# returns non-zero when it crashed, leaked, timed out or did not run.
fuzz_one() {
    local t=$1
    local work="$BUILD/fuzz-work/$t" art="$BUILD/fuzz-artifacts/$t" log="$BUILD/fuzz-logs/$t.log"
    mkdir -p "$work" "$art" "$(dirname "$log")"
    rm -f "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*
    local extra=()
    case "$t" in
        fuzz_path) extra+=(-max_len=8300) ;;   # room for paths past SCP_MAX_PATH
        fuzz_journal) extra+=(-max_len=8192) ;;
        fuzz_elf) extra+=(-max_len=65536) ;;
        fuzz_image) extra+=(-max_len=65536) ;;
        fuzz_sealed_stream) extra+=(-max_len=16384) ;;
        fuzz_tls_record) extra+=(-max_len=40000) ;;   # room for records of 2^14 + 256 bytes
    esac
    local seeds=()
    [ -d "fuzz/corpus/$t" ] && seeds+=("fuzz/corpus/$t")
    set +e
    "$BUILD/fuzz/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" "${extra[@]}" \
        "$work" "${seeds[@]}" >"$log" 2>&1
    local rc=$?
    set -e
    local runs cov eps found result
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    found=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o \
        -name 'timeout-*' -o -name 'oom-*' \) | head -1)
    if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
        result=ok
    else
        result="FAILED (exit $rc${found:+, input $found})"
        { echo "==== $t: last lines of $log ===="; tail -n 60 "$log"; } >&2
    fi
    printf 'fuzz %-18s %4ss  runs %-10s exec/s %-7s %-22s %s\n' "$t" "$SECONDS_EACH" \
        "${runs:-?}" "${eps:-?}" "${cov:-cov: ?}" "$result" >"$BUILD/fuzz-logs/$t.summary"
    [ "$result" = ok ]
}

# The targets run side by side, one per core (each libFuzzer process is single-threaded and
# -max_total_time is wall-clock time, so each still gets about a core for its seconds).
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p "$BUILD/fuzz-logs"
for t in $TARGETS; do
    rm -f "$BUILD/fuzz-logs/$t.summary"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    fuzz_one "$t" &
done
wait
fail=0
summary=()
for t in $TARGETS; do
    if [ -f "$BUILD/fuzz-logs/$t.summary" ]; then
        summary+=("$(cat "$BUILD/fuzz-logs/$t.summary")")
        grep -q ' ok$' "$BUILD/fuzz-logs/$t.summary" || fail=1
    else
        summary+=("fuzz $t: no summary (the run did not finish)")
        fail=1
    fi
done
printf '%s\n' "${summary[@]}"
exit "$fail"
