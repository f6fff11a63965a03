#!/usr/bin/env bash
# .ci/lint.sh - static analysis of src/ with cppcheck and clang-tidy.
#
# Uses $LINT_BUILD_DIR/compile_commands.json (default build/), configured here with
# CMAKE_EXPORT_COMPILE_COMMANDS=ON. Exits non-zero only when cppcheck reports an error, warning
# or portability problem, or library code prints to stderr (below); clang-tidy findings (checks in .clang-tidy) and cppcheck style notes
# are printed for people to read, and do not fail the job.
#
#   LINT_TIDY=0     skip clang-tidy
#   LINT_ANALYZER=1 clang-tidy with the clang static analyzer's checks (clang-analyzer-* in
#                   .clang-tidy): 88% of clang-tidy's time, about 160 s at two jobs on
#                   session 27's machine, so CI (.ci/run) leaves them out; run by hand
#   LINT_STYLE=1    also print cppcheck style/performance notes
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${LINT_BUILD_DIR:-build}
gen=(-G Ninja)
[ -f "$BUILD/CMakeCache.txt" ] && gen=() # keep the generator of an existing build directory
if ! cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null; then
    echo "lint: cmake configure of $BUILD failed" >&2
    exit 2
fi
db="$BUILD/compile_commands.json"
src="$PWD/src"
# Only the translation units of src/ (cppcheck's --file-filter does not combine with --project
# in the cppcheck of Debian 12).
srcdb="$BUILD/compile_commands.src.json"
python3 - "$db" "$src" "$srcdb" <<'PY'
import json, sys
db, src, out = sys.argv[1:4]
entries = [e for e in json.load(open(db)) if e["file"].startswith(src + "/")]
json.dump(entries, open(out, "w"), indent=1)
PY
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] && jobs=2

# Library code reports through scp_err / scp_log (include/scp/err.h, src/common/log.h) or a
# callback of its caller, and never prints to stderr or stdout itself: only the programs' main
# files may (scpctl and scp-cas in src/cli, scp-entry, scp-ms-instr, scp-ms-autoinit). The
# shield's and the memsafe runtime's last words before they stop a program are raw write(2)s,
# not matched here.
echo "== library code printing to stderr or stdout (gating)"
stderr_hits=$(grep -rnE '\b(v?fprintf|fputs|fputc|putc|fwrite)\b[^;]*\b(stderr|stdout)\b|\bperror[[:space:]]*\(|\b(v?printf|puts|putchar)\(' src \
    --include='*.c' --include='*.h' --exclude-dir=cli --exclude=entry_main.c --exclude=instr.c --exclude=autoinit.c)
stderr_rc=0
if [ -n "$stderr_hits" ]; then
    printf '%s\n' "$stderr_hits"
    echo "lint: library code prints: use scp_log (src/common/log.h), return an scp_err, or give the caller a callback"
    stderr_rc=1
fi

echo "== cppcheck (warning, portability; gating)"
cppcheck --project="$srcdb" --enable=warning,portability --std=c11 \
    --inline-suppr --suppress=missingIncludeSystem --error-exitcode=1 --quiet -j "$jobs" \
    --template='{file}:{line}: {severity} ({id}): {message}'
cpp_rc=$?

if [ "${LINT_STYLE:-0}" = 1 ]; then
    echo "== cppcheck (style, performance; informational)"
    cppcheck --project="$srcdb" --enable=style,performance --std=c11 \
        --inline-suppr --suppress=missingIncludeSystem --quiet -j "$jobs" \
        --template='{file}:{line}: {severity} ({id}): {message}'
fi

tidy_count=0
if [ "${LINT_TIDY:-1}" != 0 ]; then
    tidy_checks=()
    if [ "${LINT_ANALYZER:-0}" = 1 ]; then
        echo "== clang-tidy (checks from .clang-tidy; informational)"
    else
        echo "== clang-tidy (checks from .clang-tidy without clang-analyzer-*; LINT_ANALYZER=1 for those; informational)"
        tidy_checks=(--checks=-clang-analyzer-*)
    fi
    files=$(python3 -c 'import json,sys
for e in json.load(open(sys.argv[1])): print(e["file"])' "$srcdb" | sort -u)
    out=$(echo "$files" | xargs -r -P "$jobs" -n 4 clang-tidy -p "$BUILD" --quiet "${tidy_checks[@]}" 2>/dev/null)
    printf '%s\n' "$out" | grep -E '^/.*: (warning|error):' | sort -u | sed "s|^$PWD/||"
    tidy_count=$(printf '%s\n' "$out" | grep -E '^/.*: (warning|error):' | sort -u | wc -l)
fi

echo "lint: cppcheck $([ $cpp_rc -eq 0 ] && echo clean || echo 'FOUND PROBLEMS'), stderr $([ $stderr_rc -eq 0 ] && echo clean || echo 'FOUND PROBLEMS'), clang-tidy $tidy_count finding(s)"
[ $cpp_rc -ne 0 ] && exit $cpp_rc
exit $stderr_rc
