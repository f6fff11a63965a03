#!/usr/bin/env bash
# test_usage.sh - scpctl's commands with subcommands (volume, cas, session, platform, image)
# answer as git does: `scpctl CMD SUB --help` (or -h) prints SUB's own usage on stdout, exit 0,
# and not the other subcommands'; `scpctl CMD --help` prints all of them; a usage error in SUB
# prints the error and SUB's usage on stderr, exit 2. `scpctl volume import` given its
# arguments the wrong way round (a plain directory with files as the target, a volume or nothing
# as the source) says that the source comes first, and creates nothing.
# Usage: test_usage.sh PATH/TO/scpctl
. "$(dirname "$0")/lib.sh"
cli_setup test_usage.sh "$@"
# Under the sanitizers (.ci/sanitize.sh) each of this test's ~150 short scpctl runs paid
# LeakSanitizer's scan at exit, 30-50 ms on CI's kind of machine (it reads libasan's 5.6 MB of
# .bss, a page fault per page): 28 s against 9 in the gcc pass. Here only the leak check is
# off; ASan's and UBSan's checks stay on, and every other test keeps the leak check for the
# commands' real work.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
# run WANT_EXIT CMD...: output in $T/out and $T/err
run() { exits "$1" "${*:2}" "${@:2}"; }
has() { grep -q -- "$2" "$T/$1" || { fail "$3: '$2' not on std$1"; sed 's/^/    | /' "$T/$1" | head -8 >&2; }; }
hasnt() { if grep -q -- "$2" "$T/$1"; then fail "$3: '$2' on std$1"; fi; }

# CMD and its subcommands: each SUB's --help and -h name SUB and no other subcommand
check_cmd() {
    local cmd=$1; shift
    run 0 "$SCPCTL" "$cmd" --help
    for sub in "$@"; do has out "scpctl $cmd $sub" "'$cmd --help' lists $sub"; done
    run 2 "$SCPCTL" "$cmd"
    has err "scpctl $cmd $1" "'$cmd' alone prints its usage on stderr"
    run 2 "$SCPCTL" "$cmd" no-such-sub
    has err "unknown subcommand '$cmd no-such-sub'" "an unknown subcommand of $cmd"
    for sub in "$@"; do
        for h in --help -h; do
            run 0 "$SCPCTL" "$cmd" "$sub" "$h"
            has out "^usage: scpctl $cmd $sub" "'$cmd $sub $h' starts with its own usage"
            [ -s "$T/err" ] && fail "'$cmd $sub $h' wrote to stderr"
            for other in "$@"; do
                [ "$other" = "$sub" ] || hasnt out "scpctl $cmd $other " "'$cmd $sub $h' shows only $sub"
            done
        done
        # --help after other arguments too
        run 0 "$SCPCTL" "$cmd" "$sub" some-arg --help
        has out "^usage: scpctl $cmd $sub" "'$cmd $sub ARG --help'"
    done
}
check_cmd volume keygen create import export ls cat put mkdir rm verify info
check_cmd cas serve status identity audit collateral
check_cmd session create update show list delete set-tag secret
check_cmd platform create-key id enroll revoke list measure attest report-tag serve evidence
check_cmd image build inspect verify

# a usage error in a subcommand: the error, then that subcommand's usage, on stderr
usage_error() { # CMD SUB ARGS...: exit 2, the subcommand's usage on stderr and nothing on stdout
    local cmd=$1 sub=$2; shift 2
    run 2 "$SCPCTL" "$cmd" "$sub" "$@"
    has err "^scpctl: " "'$cmd $sub $*' names the error"
    has err "^usage: scpctl $cmd $sub" "'$cmd $sub $*' prints $sub's usage"
    [ -s "$T/out" ] && fail "'$cmd $sub $*' wrote to stdout"
}
usage_error volume import onlyone --key-file k
usage_error volume create v --bogus
usage_error volume ls v --key-file k --expect-tag abc
usage_error cas serve --workers 0
usage_error cas audit --limit 0
usage_error session show
usage_error session create a b
usage_error platform create-key
usage_error platform revoke
usage_error platform serve --bogus x
usage_error image inspect
usage_error image build x

# run --cas's seconds: no value, an empty one, a word, out of range: exit 2 before any connection
for v in "" x 5x -1 100000; do
    run 2 "$SCPCTL" run --cas 127.0.0.1:1 --session s --service r --cas-timeout "$v" -- /bin/true
    has err "cas-timeout wants 0..86400 seconds, not '$v'" "run --cas-timeout '$v'"
done
run 2 "$SCPCTL" run --cas 127.0.0.1:1 --session s --service r --renew-interval 0.5 -- /bin/true
has err "renew-interval wants 1..86400 seconds, not '0.5'" "run --renew-interval 0.5"
run 2 "$SCPCTL" run --cas 127.0.0.1:1 --session s --service r --renew-interval
has err "renew-interval needs seconds" "run --renew-interval without a value"

# volume import the wrong way round
"$SCPCTL" volume keygen k >/dev/null 2>&1 || fail "keygen"
mkdir site && echo page > site/index.html
run 0 "$SCPCTL" volume import site vol --key-file k
for src in vol missing; do # the source a volume, or missing; the target a directory with files
    run 2 "$SCPCTL" volume import "$src" site --key-file k
    has err "the source comes first" "import $src site: the order named"
    has err "scpctl volume import site $src" "import $src site: the command meant"
    [ -e site/scpvol.hdr ] && fail "import $src site made site a volume"
    [ "$(ls site)" = index.html ] || fail "import $src site changed site: $(ls site)"
done
[ -e missing ] && fail "import missing site created 'missing'"
# the right order into a directory with files that is no volume: the old message, exit 1
mkdir full && echo x > full/f
run 1 "$SCPCTL" volume import site full --key-file k
has err "not empty" "import into a directory with files"
hasnt err "source comes first" "import site full (the order is right)"
# the right order into the existing volume: imports again
run 0 "$SCPCTL" volume import site vol --key-file k

cli_finish test_usage.sh
