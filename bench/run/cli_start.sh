#!/bin/bash
# bench/run/cli_start.sh BUILD [ROUNDS] - scpctl's own start-up against another build's, in the
# same rounds (AB=OTHER_BUILD, required): the CPU (task-clock) of `scpctl run --volume ... --
# /bin/true` (perf stat -r 30) and of `scpctl --version` (-r 100), alternating the two builds in
# each round, medians over the rounds (default 9) and their ratio; then the dynamic loader's own
# start-up (LD_DEBUG=statistics: cycles, median of 31 runs; relocations) and the libraries each
# scpctl loads. Not a test. The machine is shared: say the load average with the figures.
set -u
BUILD=${1:?usage: AB=OTHER_BUILD bench/run/cli_start.sh BUILD [ROUNDS]}
ROUNDS=${2:-9}
# (A and B are read through ${!who})
A=$(readlink -f "${AB:?set AB to the build to compare against}/src/scpctl") && export A
B=$(readlink -f "$BUILD/src/scpctl") && export B
MKVOL=$(readlink -f "$BUILD/tests/shield/shield-mkvol")
T=$(mktemp -d /tmp/scp-bench-clistart.XXXXXX)
trap 'rm -rf "$T"' EXIT
"$MKVOL" "$T/key" "$T/vol" || exit 1
export SCP_QUIET=1
cd / || exit 1
tc() { perf stat -x, -e task-clock -r "$1" "${@:2}" 2>&1 >/dev/null | awk -F, '/task-clock/{printf "%.3f", $1}'; }
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "start: $(uptime | sed 's/.*load/load/')"
for _ in $(seq "$ROUNDS"); do
    for who in A B; do
        S=${!who}
        echo "$who run $(tc 30 "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- /bin/true)" >>"$T/raw"
        echo "$who ver $(tc 100 "$S" --version)" >>"$T/raw"
    done
done
for k in run ver; do
    a=$(awk -v k=$k '$1=="A" && $2==k {print $3}' "$T/raw" | med)
    b=$(awk -v k=$k '$1=="B" && $2==k {print $3}' "$T/raw" | med)
    what=$([ $k = run ] && echo "scpctl run --volume ... -- /bin/true" || echo "scpctl --version")
    echo "$what: AB $a ms, BUILD $b ms of CPU (medians of $ROUNDS rounds), BUILD/AB $(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b/a}')x"
    echo "  AB rounds:    $(awk -v k=$k '$1=="A" && $2==k {printf "%s ", $3}' "$T/raw")"
    echo "  BUILD rounds: $(awk -v k=$k '$1=="B" && $2==k {printf "%s ", $3}' "$T/raw")"
done
for who in A B; do
    S=${!who}
    cyc=$(for _ in $(seq 31); do LD_DEBUG=statistics "$S" --version 2>&1 >/dev/null |
        sed -n 's/.*total startup time in dynamic loader: \([0-9]*\) cycles.*/\1/p'; done | med)
    st=$(LD_DEBUG=statistics "$S" --version 2>&1 >/dev/null)
    rel=$(echo "$st" | sed -n 's/.* number of relocations: \([0-9]*\).*/\1/p' | head -1)
    libs=$(ldd "$S" | awk '/=>/{print $1}' | tr '\n' ' ')
    echo "$([ $who = A ] && echo AB || echo BUILD) loader: $cyc cycles (median of 31), $rel symbol relocations; $libs"
done
echo "end: $(uptime | sed 's/.*load/load/')"
