# bench/net/lib.sh - helpers of the network benchmarks (run.sh, apps.sh); sourced after they
# set T (a scratch directory), PIDS (processes to stop) and BENCH (the name in messages).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
die() { echo "$BENCH: $*" >&2; exit 1; }
# a process and its descendants
tree() { echo "$1"; for c in $(pgrep -P "$1"); do tree "$c"; done; }
# utime+stime (clock ticks) of the given processes, as far as they still exist
cpu_of() { local t=0 p; for p in "$@"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
TCK=$(getconf CLK_TCK)

# A CAS of the benchmark's own (SCP_CAS, SCP_CAS_PIN, SCP_IDENTITY exported) with a sim
# platform enrolled ($T/p.key).
bench_cas() {
    export SCP_HOME=$T/home
    unset SCP_CAS SCP_CAS_PIN SCP_IDENTITY
    "$SCPCTL" cas identity --out "$T/admin.pem" >/dev/null 2>&1 || die "cas identity"
    export SCP_IDENTITY=$T/admin.pem
    "$SCPCTL" cas serve --data "$T/data" --listen 127.0.0.1:0 --port-file "$T/port" --admin "$T/admin.pem" >"$T/cas.out" 2>"$T/cas.err" &
    PIDS+=($!)
    for _ in $(seq 200); do [ -s "$T/port" ] && break; sleep 0.05; done
    export SCP_CAS=127.0.0.1:$(cat "$T/port")
    export SCP_CAS_PIN=$(sed -n 's/.*fingerprint (pin this): \([0-9a-f]*\).*/\1/p' "$T/cas.out")
    "$SCPCTL" platform create-key "$T/p.key" >/dev/null 2>&1 && "$SCPCTL" platform enroll --name b --key "$T/p.key" >/dev/null 2>&1 ||
        die "platform"
}
