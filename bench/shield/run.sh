#!/bin/sh
# bench/shield/run.sh BUILD_DIR - the shield's per-call costs: native (files in an ordinary
# directory) against shielded (under scpctl run, files in a protected volume), same run, with
# the ratio shielded / native of the wall time and of the CPU time (load-independent), and the
# load average. N iterations per loop (default 200000; fewer on a loaded machine).
set -eu
B=${1:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null
mkdir -p "$T/plain"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$B/bench/shield/shield-trapbench" "$T/plain" "${N:-200000}" > "$T/native"
SCP_QUIET=1 "$B/src/scpctl" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- \
    "$B/bench/shield/shield-trapbench" "$T/mnt" "${N:-200000}" > "$T/shielded"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# lines: NAME  W ns/op  cpu C ns/op
# two lines print "W ns/op C cpu-ns/op": the same form as the others for the parser
for f in "$T/native" "$T/shielded"; do sed -i 's|ns/op *\([0-9.]*\) cpu-ns/op|ns/op  cpu \1 ns/op|' "$f"; done
paste -d'|' "$T/native" "$T/shielded" | awk -F'|' '
    function parse(l, r) { n = split(l, f, " "); r["name"] = l; sub(/ +[0-9.]+ ns\/op.*/, "", r["name"]);
                           r["w"] = f[n - 4]; r["c"] = f[n - 1] }
    BEGIN { printf "%-30s %23s %23s %15s\n", "call (ns/op)", "native wall / cpu", "shielded wall / cpu", "ratio wall/cpu" }
    { parse($1, a); parse($2, b)
      printf "%-30s %11.1f / %9.1f %11.1f / %9.1f %7.1fx / %4.1fx\n", a["name"], a["w"], a["c"], b["w"], b["c"],
             b["w"] / a["w"], b["c"] / a["c"] }'
