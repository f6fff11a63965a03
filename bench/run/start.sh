#!/bin/bash
# bench/run/start.sh BUILD [N] - time from `scpctl run --cas ...` to redis-server answering PING,
# against starting the same redis-server natively, with CAS on the same host (real daemon over
# TLS on loopback, sim platform). N runs each (default 10); prints median and min in ms, and the
# split that scpctl and the shield print with SCP_RUN_TIMING=1 (measurement, attestation round
# trip, container setup, shield start). Not a test.
set -u
BUILD=${1:-build}
N=${2:-10}
SCPCTL=$(readlink -f "$BUILD/src/scpctl")
T=$(mktemp -d /tmp/scp-bench-run.XXXXXX)
export SCP_HOME=$T/home
CAS_PID=
cleanup() { [ -n "$CAS_PID" ] && kill "$CAS_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
"$SCPCTL" cas identity --out "$T/a.pem" >/dev/null 2>&1
export SCP_IDENTITY=$T/a.pem
"$SCPCTL" cas serve --data "$T/data" --listen 127.0.0.1:0 --port-file "$T/port" --admin "$T/a.pem" >"$T/cas.out" 2>"$T/cas.err" &
CAS_PID=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
export SCP_CAS=127.0.0.1:$(cat "$T/port") SCP_CAS_PIN=$(sed -n 's/.*fingerprint (pin this): \([0-9a-f]*\).*/\1/p' "$T/cas.out")
"$SCPCTL" platform create-key "$T/p.key" >/dev/null
"$SCPCTL" platform enroll --name p --key "$T/p.key" >/dev/null
M=$("$SCPCTL" platform measure -- redis-server 2>/dev/null)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/s.yaml" <<YAML
name: bench
services:
  - name: redis
    measurements: [$M]
    command: [redis-server, --port, "$PORT", --bind, 127.0.0.1, --dir, /data, --appendonly, "yes", --save, "",
              --requirepass, "\$\$SCP::pw\$\$"]
    volumes: [data]
secrets: [{name: pw, kind: ascii, size: 32}]
volumes: [{name: data, path: /data}]
YAML
"$SCPCTL" session create "$T/s.yaml" >/dev/null
mkdir -p "$T/native"
now() { date +%s%N; }
wait_ping() { # PID -> 0 when redis answers (auth errors count: the server is up)
    for _ in $(seq 4000); do
        redis-cli -p "$PORT" ping 2>/dev/null | grep -qE 'PONG|NOAUTH' && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.002
    done
    return 1
}
stat() { sort -n | awk '{a[NR]=$1} END {printf "median %.1f ms  min %.1f ms  (n=%d)\n", a[int((NR+1)/2)]/1e6, a[1]/1e6, NR}'; }
: >"$T/native.t"; : >"$T/scp.t"; : >"$T/split"
for _ in $(seq "$N"); do
    t0=$(now)
    redis-server --port "$PORT" --bind 127.0.0.1 --dir "$T/native" --appendonly yes --save "" >/dev/null 2>&1 &
    p=$!
    wait_ping $p || { echo "native redis did not start" >&2; exit 1; }
    echo $(( $(now) - t0 )) >>"$T/native.t"
    kill $p; wait $p 2>/dev/null
    t0=$(now)
    SCP_RUN_TIMING=1 "$SCPCTL" run --session bench --service redis --platform-key "$T/p.key" --volume-dir "$T/vols" \
        -- redis-server >/dev/null 2>"$T/run.err" &
    p=$!
    wait_ping $p || { echo "scpctl run did not start redis: $(cat "$T/run.err")" >&2; exit 1; }
    echo $(( $(now) - t0 )) >>"$T/scp.t"
    grep timing "$T/run.err" >>"$T/split"
    kill $p; wait $p 2>/dev/null
done
echo "native redis-server to PING:   $(stat <"$T/native.t")"
echo "scpctl run --cas to PING:       $(stat <"$T/scp.t")"
med() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]}'; }
echo "  split (median): measurement $(sed -n 's/.*measure \([0-9.]*\) ms.*/\1/p' "$T/split" | med) ms ($(sed -n 's/.*(\([0-9]*\) files).*/\1/p' "$T/split" | head -1) files)," \
     "attestation round trip $(sed -n 's/.*attest \([0-9.]*\) ms.*/\1/p' "$T/split" | med) ms," \
     "volumes $(sed -n 's/.*volumes \([0-9.]*\) ms.*/\1/p' "$T/split" | med) ms (open against CAS's tag, first report)," \
     "container setup $(sed -n 's/.*container setup \([0-9.]*\) ms.*/\1/p' "$T/split" | med) ms (fork to exec: namespaces, mounts, relay, init)," \
     "shield start $(sed -n 's/.*shield start \([0-9.]*\) ms.*/\1/p' "$T/split" | med) ms (exec, loader, shield;" \
     "start-up trusted-file check $(sed -n 's/.*trusted-file check \([0-9.]*\) ms.*/\1/p' "$T/split" | med) ms);" \
     "the rest is redis's own start"
echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
