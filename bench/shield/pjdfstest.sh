#!/bin/sh
# bench/shield/pjdfstest.sh PJDFSTEST_DIR [BUILD_DIR] - the POSIX semantics suite (issue 12).
# Runs pjdfstest's prove suite (prove -r PJDFSTEST_DIR/tests, as root) twice in the same run:
# in a directory of a protected volume under `scpctl run`, and in a plain tmpfs directory
# (/dev/shm, or TMPFS_DIR). Prints passed/failed assertions per syscall family and in total,
# plus the test files whose plan was not met (crashed or stopped early).
# PJDFSTEST_DIR is a built pjdfstest checkout (the `pjdfstest` binary beside `tests/`); it is
# never part of this repository. FAMILIES="chmod rename" restricts the run; LOGDIR keeps logs;
# TMPFS=0 leaves the tmpfs side out.
set -eu
P=$(cd "${1:?usage: pjdfstest.sh PJDFSTEST_DIR [BUILD_DIR]}" && pwd)
B=$(cd "${2:-build}" && pwd)
[ -x "$P/pjdfstest" ] && [ -d "$P/tests" ] || { echo "no built pjdfstest in $P" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "pjdfstest needs root" >&2; exit 2; }
command -v prove >/dev/null || { echo "prove (perl) is missing" >&2; exit 2; }

T=$(mktemp -d "${BASE:-/var/tmp}/scp-pjdfs.XXXXXX")
PL=$(mktemp -d "${TMPFS_DIR:-/dev/shm}/scp-pjdfs.XXXXXX")
trap 'rm -rf "$T" "$PL"' EXIT
LOG=${LOGDIR:-$T}
mkdir -p "$LOG"
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null

targets=""
for f in ${FAMILIES:-$(ls "$P/tests")}; do
    [ -d "$P/tests/$f" ] && targets="$targets $P/tests/$f"
done

# one run: cd DIR, prove -v every family; the verbose TAP goes to LOG/NAME.tap
# (both runs at once: the figures are counts, not times; JOBS=N runs N test files at a time each).
# One prove per family: a test file that bails out (utimensat/09.t when atime is not kept)
# stops only the rest of its own family, and the summary lists it.
suite='cd "$1" && shift && for f in "$@"; do prove -j "$J" -v -r "$f"; done'
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s)
# shellcheck disable=SC2086
if [ "${TMPFS:-1}" = 1 ]; then # TMPFS=0: the protected side only
    J=${JOBS:-1} sh -c "$suite" sh "$PL" $targets > "$LOG/tmpfs.tap" 2>&1 &
else
    : > "$LOG/tmpfs.tap"
fi
mkdir -p "$T/mnt"
# shellcheck disable=SC2086
J=${JOBS:-1} SCP_QUIET=1 "$B/src/scpctl" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- \
    sh -c "$suite" sh "$T/mnt" $targets > "$LOG/protected.tap" 2>&1 || true
wait || true
t1=$(date +%s)
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); both runs took $((t1 - t0)) s"

# count ok / not ok per family (tests/FAMILY/NN.t), and files whose plan failed
count() {
    awk -v tests="$P/tests/" '
        /^\/.*\.t \.\./ { f = $1; sub(tests, "", f); sub(/\/.*/, "", f); fam = f; next }
        /^ok [0-9]/      { ok[fam]++; next }
        /^not ok [0-9]/  { bad[fam]++; next }
        END { for (k in ok) print k, ok[k] + 0, bad[k] + 0;
              for (k in bad) if (!(k in ok)) print k, 0, bad[k] }' "$1" | sort
}
count "$LOG/tmpfs.tap" > "$T/c.tmpfs"
count "$LOG/protected.tap" > "$T/c.prot"
printf '%-16s %22s %22s\n' family "protected pass/total" "tmpfs pass/total"
join -a1 -a2 -e 0 -o 0,1.2,1.3,2.2,2.3 "$T/c.prot" "$T/c.tmpfs" | awk '
    { printf "%-16s %10d/%-5d fail %-5d %10d/%-5d fail %-5d\n", $1, $2, $2+$3, $3, $4, $4+$5, $5
      pp += $2; pf += $3; tp += $4; tf += $5 }
    END { printf "%-16s %10d/%-5d fail %-5d %10d/%-5d fail %-5d\n", "TOTAL", pp, pp+pf, pf, tp, tp+tf, tf
          printf "protected: %d of %d pass (%.1f%%); tmpfs: %d of %d (%.1f%%)\n",
              pp, pp+pf, (pp+pf) ? 100*pp/(pp+pf) : 0, tp, tp+tf, (tp+tf) ? 100*tp/(tp+tf) : 0 }'
for n in protected tmpfs; do
    # prove's summary: "FILE (Wstat: N Tests: ...)" then "  Parse errors: ..." for a broken plan
    bad=$(awk -v tests="$P/tests/" '
        /\.t +\(Wstat: / { f = $1; sub(tests, "", f); w = $0; sub(/.*Wstat: /, "", w); sub(/ .*/, "", w)
                           if (w != "0") print f " (wait status " w ")"; next }
        /Parse errors:/   { print f " (" $0 ")" }
        /^\/.*\.t \.\./    { h = $1; sub(tests, "", h) }
        /^Bailout called/ { sub(/\/.*/, "", h); print "a test of " h " bailed out (the rest of " h " did not run)" }' "$LOG/$n.tap" | sed 's/  */ /g' | sort -u)
    echo "$n: test files that crashed or broke their plan: ${bad:-none}"
done
