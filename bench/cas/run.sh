#!/bin/bash
# bench/cas/run.sh - start a CAS on a free loopback port (temp data dir), enroll a sim
# platform, create a session with a few secrets and a volume, and measure attestations/s and
# p50/p99 latency at 1, 16 and 64 concurrent clients (the clients run on the same machine and
# share its cores with the daemon). Appends the results to bench/RESULTS.md.
#
#   bench/cas/run.sh [BUILD_DIR] [SECONDS_PER_POINT]     (defaults: build, 10)
#   CAS_STORE=CONNINFO: CAS on that PostgreSQL database (an empty one; bench/cas/store.sh)
#   NO_RESULTS=1: print the table only, without appending it to bench/RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build}
SECS=${2:-10}
S=$B/src/scpctl
BENCH=$B/bench/cas/casbench
T=$(mktemp -d /tmp/scp-casbench.XXXXXX)
export SCP_HOME=$T/home
PID=
cleanup() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT
ID=$("$S" cas identity --out "$T/admin.pem" 2>/dev/null)
"$S" cas serve --data "$T/data" ${CAS_STORE:+--store "$CAS_STORE"} --listen 127.0.0.1:0 --port-file "$T/port" --admin "$ID" >"$T/out" 2>"$T/err" &
PID=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
export SCP_CAS=127.0.0.1:$(cat "$T/port") SCP_IDENTITY=$T/admin.pem
export SCP_CAS_PIN=$(sed -n 's/.*fingerprint (pin this): \([0-9a-f]*\).*/\1/p' "$T/out")
"$S" platform create-key "$T/p.key" >/dev/null
"$S" platform enroll --name bench --key "$T/p.key" >/dev/null
M=$(head -c 1000 /dev/urandom | sha256sum | cut -c1-64)
cat >"$T/s.yaml" <<YAML
name: bench
services:
  - name: app
    measurements: [$M]
    command: [/usr/bin/app, "--password=\$\$SCP::pw\$\$"]
    environment: {API_KEY: "\$\$SCP::api\$\$", TOKEN: "\$\$SCP::tok\$\$"}
    files: [{path: /etc/app.conf, content: "key=\$\$SCP::tok\$\$\n"}]
    volumes: [data]
secrets:
  - {name: pw, kind: ascii, size: 32}
  - {name: api, kind: explicit, value: "benchmark-api-key"}
  - {name: tok, kind: random, size: 32}
volumes: [{name: data, path: /data}]
YAML
"$S" session create "$T/s.yaml" >/dev/null
"$BENCH" "$SCP_CAS" "$SCP_CAS_PIN" "$T/p.key" bench app "$M" 4 1 >/dev/null 2>&1 || true # warm-up
CMD="bench/cas/run.sh $B $SECS"
{
    echo
    echo "## CAS attestations ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo ?))"
    echo
    echo "Command: \`$CMD\`. Full runtime flow per attestation (nonce, sim evidence signed with the"
    echo "platform key, TLS 1.3 keep-alive, verification, policy, secrets rendered, config sealed"
    echo "to the runtime's X25519 key and decrypted, two audit rows). Clients and daemon share the"
    echo "machine. Target: >= 2000/s and p99 < 20 ms at 16 clients."
    echo
    echo "| clients | attestations | per second | p50 ms | p99 ms | failures |"
    echo "|---:|---:|---:|---:|---:|---:|"
} >"$T/results.md"
for n in 1 16 64; do
    line=$("$BENCH" "$SCP_CAS" "$SCP_CAS_PIN" "$T/p.key" bench app "$M" $n "$SECS")
    echo "$line"
    echo "$line" | awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' >>"$T/results.md"
done
{
    echo
    echo "Server CPU alone (\`$B/bench/cas/casbench_inproc 2000\`: handlers in-process, no TLS or client):"
    # (with CAS_STORE, the database is the running CAS's: bench/cas/store.sh runs this part on
    # an empty one)
    [ -n "${CAS_STORE:-}" ] || echo "$("$B/bench/cas/casbench_inproc" 2000)."
    echo "Load average when done: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)."
} >>"$T/results.md"
if [ -z "${NO_RESULTS:-}" ]; then
    [ -f bench/RESULTS.md ] || echo "# Benchmark results" >bench/RESULTS.md
    cat "$T/results.md" >>bench/RESULTS.md
fi
cat "$T/results.md"
