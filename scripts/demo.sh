#!/usr/bin/env bash
# The main job on embedded defaults: create a protected volume, write through it, show that the
# disk holds only ciphertext, read it back, and show that tampering is detected; run an
# unmodified redis-server with its data in a protected volume; start CAS (on SQLite) and show
# that a secret goes only to the measurement that the session policy names.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SCPCTL:-build/src/scpctl}
work=$(mktemp -d /tmp/scp-demo.XXXXXX)
trap 'kill ${rpid:-} ${caspid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. a key (32 random bytes, mode 0600) and an empty volume"
$S volume keygen "$work/key"
$S volume create "$work/vol" --key-file "$work/key"

step "2. import a plain tree with a known marker and a secret file name"
mkdir -p "$work/plain/reports"
echo "TOP-SECRET-MARKER: quarterly numbers" > "$work/plain/reports/salaries-2026.txt"
head -c 2000000 /dev/urandom > "$work/plain/blob.bin"
$S volume import "$work/plain" "$work/vol" --key-file "$work/key"
$S volume ls "$work/vol" -R -l --key-file "$work/key"

step "3. what the untrusted disk holds"
find "$work/vol" -type f | sed "s|$work/||" | sort
if grep -rqa -e TOP-SECRET-MARKER -e salaries "$work/vol"; then
  echo "FAIL: plaintext found on disk"; exit 1
fi
echo "no marker and no file name on disk: the volume holds ciphertext only"

step "4. read it back through the volume"
$S volume cat "$work/vol" reports/salaries-2026.txt --key-file "$work/key"
$S volume info "$work/vol" --key-file "$work/key"

step "5. an attacker flips one byte of the largest object"
victim=$(ls -S "$work"/vol/objects/*.d | head -1)
b=$(od -An -tu1 -j 5000 -N1 "$victim" | tr -d ' ')
printf "$(printf '\\%03o' $((b ^ 255)))" | dd of="$victim" bs=1 seek=5000 conv=notrunc status=none
set +e
$S volume verify "$work/vol" --key-file "$work/key"; rc=$?
set -e
echo "verify exit code: $rc (3 = integrity failure)"
[ "$rc" -eq 3 ] || { echo "FAIL: tampering not detected"; exit 1; }

step "6. the wrong key is refused"
$S volume keygen "$work/other-key" 2>/dev/null
set +e
$S volume ls "$work/vol" --key-file "$work/other-key"; rc=$?
set -e
echo "exit code: $rc (4 = wrong key)"

step "7. redis-server, unmodified, in a shielded process: its AOF and RDB land in the volume"
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  $S volume create "$work/redisvol" --key-file "$work/key"
  port=$(( 20000 + RANDOM % 20000 ))
  cat > "$work/redis.conf" <<CONF
port $port
bind 127.0.0.1
dir /data
appendonly yes
appendfsync everysec
save ""
logfile ""
CONF
  start_redis() {
    SCP_QUIET=${1:-} $S run --volume "$work/redisvol:/data" --key-file "$work/key" -- \
      redis-server "$work/redis.conf" >"$work/redis.log" 2>&1 &
    rpid=$!
    for _ in $(seq 50); do redis-cli -p $port ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "FAIL: redis did not start"; cat "$work/redis.log"; exit 1
  }
  start_redis
  grep -m1 "scpctl run" "$work/redis.log" || true
  redis-cli -p $port set customer:42 "TOP-SECRET-MARKER card 4111" >/dev/null
  redis-cli -p $port bgrewriteaof >/dev/null; sleep 1.5
  redis-cli -p $port shutdown >/dev/null 2>&1; wait $rpid || true
  $S volume ls "$work/redisvol" -R -l --key-file "$work/key"
  if grep -rqa TOP-SECRET-MARKER "$work/redisvol"; then echo "FAIL: plaintext on disk"; exit 1; fi
  echo "the AOF on disk holds no marker; after a restart redis reads it back:"
  start_redis 1
  redis-cli -p $port get customer:42
  redis-cli -p $port shutdown >/dev/null 2>&1; wait $rpid || true
else
  echo "(redis-server not installed: skipped; 'make deps' installs it)"
fi

step "8. CAS releases a secret only to the measurement the policy names"
export SCP_HOME=$work/home
$S cas identity --out "$work/admin.pem" >/dev/null 2>&1
$S cas serve --data "$work/cas" --listen 127.0.0.1:0 --port-file "$work/cas.port" \
  --admin "$work/admin.pem" >"$work/cas.out" 2>"$work/cas.err" &
caspid=$!
for _ in $(seq 100); do [ -s "$work/cas.port" ] && break; sleep 0.05; done
export SCP_CAS=127.0.0.1:$(cat "$work/cas.port") SCP_IDENTITY=$work/admin.pem
export SCP_CAS_PIN=$(sed -n 's/.*fingerprint (pin this): \([0-9a-f]*\).*/\1/p' "$work/cas.out")
sed -n '1,3p' "$work/cas.err"
$S platform create-key "$work/platform.key" 2>/dev/null
$S platform enroll --name demo-host --key "$work/platform.key" 2>/dev/null
printf 'redis-server image v1\n' > "$work/prog"
good=$($S platform measure "$work/prog" 2>/dev/null)
cat > "$work/session.yaml" <<YAML
name: shop
services: [{name: redis, measurements: [$good], environment: {DB_PASSWORD: "\$\$SCP::pw\$\$"}}]
secrets: [{name: pw, kind: ascii, size: 24}]
YAML
$S session create "$work/session.yaml" 2>/dev/null
if $S platform attest --key "$work/platform.key" --session shop --service redis \
     --measurement "$good" > "$work/granted.json" 2>/dev/null && grep -q DB_PASSWORD "$work/granted.json"; then
  echo "measurement $good...: configuration released (DB_PASSWORD rendered, not shown here)"
else
  echo "FAIL: the named measurement got no configuration"; exit 1
fi
printf 'redis-server image v1, patched by an attacker\n' > "$work/prog2"
bad=$($S platform measure "$work/prog2" 2>/dev/null)
set +e
$S platform attest --key "$work/platform.key" --session shop --service redis --measurement "$bad" >/dev/null 2>"$work/denied.err"; rc=$?
set -e
echo "measurement $bad...: refused (exit $rc): $(tail -1 "$work/denied.err")"
[ "$rc" -ne 0 ] || { echo "FAIL: a wrong measurement got a secret"; exit 1; }
# the audit log's last rows, then the verdict, which goes to stderr
rc=0
$S cas audit --verify >"$work/audit.out" 2>"$work/audit.err" || rc=$?
tail -2 "$work/audit.out"
cat "$work/audit.err"
[ "$rc" -eq 0 ] && grep -q "audit chain verified" "$work/audit.err" || { echo "FAIL: the audit log does not verify"; exit 1; }
kill -TERM $caspid; wait $caspid || true

echo
echo "demo ok"
