# tests/cli/lib.sh - what scpctl's command-line tests share (sourced by bash):
#   cli_setup NAME "$@"      SCPCTL from the first argument, T a temporary directory (removed
#                            at exit) that becomes the working directory, FAILS 0
#   fail MSG                 count a failure and say it
#   exits WANT WHAT CMD...   run CMD with stdout in $T/out and stderr in $T/err; a failure
#                            (with stderr's first lines) unless it exited WANT
#   cli_finish NAME          the summary line; exit 1 when a check failed
set -u

cli_setup() {
    local name=$1
    SCPCTL=${2:?usage: $name PATH/TO/scpctl}
    T=$(mktemp -d "${TMPDIR:-/tmp}/scp-$name-XXXXXX") || exit 1
    trap 'rm -rf "$T"' EXIT
    FAILS=0
    cd "$T" || exit 1
}

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }

exits() {
    local want=$1 what=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    [ "$got" = "$want" ] && return 0
    fail "$what: exit $got, want $want"
    sed 's/^/    | /' "$T/err" | head -5 >&2
    return 1
}

cli_finish() {
    if [ "$FAILS" -ne 0 ]; then
        echo "$1: $FAILS failure(s)" >&2
        exit 1
    fi
    echo "$1: all checks passed"
}
