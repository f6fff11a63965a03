#!/usr/bin/env bash
# The main job on embedded defaults. First the volume on its own: create a protected volume,
# write through it, show that the disk holds only ciphertext, read it back, and show that
# tampering and a wrong key are refused. Then the secure run: start CAS on SQLite, enroll this
# machine's sim platform, create a redis session (a password CAS generates goes into redis's
# command line, /data is a protected volume), run Debian's unmodified redis-server attested by
# CAS, write and read with redis-cli using the password the owner reads from CAS, restart and
# read the data back, and show that a modified redis-server gets nothing.
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

step "7. the secure run: CAS on SQLite, this machine's sim platform enrolled"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  { echo "FAIL: redis-server and redis-cli are needed (bash scripts/install-deps.sh installs them)"; exit 1; }
export SCP_HOME=$work/home
$S cas identity --out "$work/owner.pem" >/dev/null 2>&1
$S cas serve --data "$work/cas" --listen 127.0.0.1:0 --port-file "$work/cas.port" \
  --admin "$work/owner.pem" >"$work/cas.out" 2>"$work/cas.err" &
caspid=$!
for _ in $(seq 100); do [ -s "$work/cas.port" ] && break; sleep 0.05; done
[ -s "$work/cas.port" ] || { echo "FAIL: CAS did not start"; cat "$work/cas.err"; exit 1; }
export SCP_CAS=127.0.0.1:$(cat "$work/cas.port") SCP_IDENTITY=$work/owner.pem
export SCP_CAS_PIN=$(sed -n 's/.*fingerprint (pin this): \([0-9a-f]*\).*/\1/p' "$work/cas.out")
sed -n '1,3p' "$work/cas.err"
echo "CAS listens on $SCP_CAS; clients pin its root $SCP_CAS_PIN"
$S platform create-key "$work/platform.key" >/dev/null 2>&1
$S platform enroll --name demo-host --key "$work/platform.key" >/dev/null 2>&1
echo "platform enrolled (sim: a software TEE; memory is NOT protected)"

step "8. the session: what may run (its measurement), its command, a generated password, a volume"
redis=$(command -v redis-server)
m=$($S platform measure -- "$redis")
echo "measurement of $redis with its loader, libraries and the shield: $m"
port=$(( 20000 + RANDOM % 20000 ))
cat > "$work/shop.yaml" <<YAML
name: shop
services:
  - name: redis
    measurements: [$m]
    command: [redis-server, --port, "$port", --bind, 127.0.0.1, --dir, /data, --appendonly, "yes",
              --appendfsync, everysec, --save, "", --requirepass, "\$\$SCP::pw\$\$"]
    cwd: /data
    volumes: [data]
secrets:
  - {name: pw, kind: ascii, size: 24}
volumes:
  - {name: data, path: /data}
YAML
sed -n '1,20p' "$work/shop.yaml"
$S session create "$work/shop.yaml"

step "9. redis-server, unmodified, attested by CAS: it gets its command, password and volume key"
RUN=($S run --session shop --service redis --platform-key "$work/platform.key" --volume-dir "$work/vols")
pw=$($S session secret shop pw)
echo "the owner reads the password CAS generated (an audited read): ${pw:0:4}..."
cli() { redis-cli -p "$port" --no-auth-warning -a "$pw" "$@"; }
start_redis() {
  "${RUN[@]}" -- "$redis" >"$work/redis.log" 2>&1 &
  rpid=$!
  for _ in $(seq 100); do [ "$(cli ping 2>/dev/null)" = PONG ] && return 0; kill -0 $rpid 2>/dev/null || break; sleep 0.1; done
  echo "FAIL: redis did not start"; cat "$work/redis.log"; exit 1
}
start_redis
grep -m1 "NOT protected" "$work/redis.log" || true
cli set customer:42 "TOP-SECRET-MARKER card 4111" >/dev/null
echo "redis-cli SET customer:42 with the password: $(cli get customer:42)"
if redis-cli -p "$port" get customer:42 2>&1 | grep -q TOP-SECRET; then echo "FAIL: redis answered without the password"; exit 1; fi
echo "without the password: $(redis-cli -p "$port" get customer:42 2>&1 | head -1)"
if grep -qa -- "$pw" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null; then
  echo "FAIL: the password is visible in a /proc/PID/cmdline or environ on the host"; exit 1
fi
echo "the password is in no /proc/*/cmdline or /proc/*/environ on the host"
cli bgrewriteaof >/dev/null; sleep 1.5
kill -TERM $rpid; wait $rpid || true

step "10. what the untrusted host holds: ciphertext in the volume, nothing in CAS's files"
find "$work/vols" -type f | sed "s|$work/||" | sort | head -12
if grep -rqa -e TOP-SECRET-MARKER -e "$pw" "$work/vols" "$work/cas"; then
  echo "FAIL: plaintext on disk"; exit 1
fi
echo "no marker and no password in the volume or in CAS's data directory"
$S session show shop | grep -A1 expected_tag | head -2 || true

step "11. restart: attested again, the volume opened against the tag CAS holds, the data back"
start_redis
echo "redis-cli GET customer:42: $(cli get customer:42)"
[ "$(cli get customer:42)" = "TOP-SECRET-MARKER card 4111" ] || { echo "FAIL: data not back"; exit 1; }
kill -TERM $rpid; wait $rpid || true

step "12. a redis-server with one byte changed gets nothing and does not start"
cp "$redis" "$work/redis-server"
printf '\x01' | dd of="$work/redis-server" bs=1 seek=4096 conv=notrunc status=none
set +e
"${RUN[@]}" -- "$work/redis-server" >"$work/bad.out" 2>"$work/bad.err"; rc=$?
set -e
echo "exit $rc: $(grep -v 'NOT protected' "$work/bad.err" | tail -1)"
[ "$rc" -eq 1 ] || { echo "FAIL: a modified program was not refused"; exit 1; }

step "13. every decision is in CAS's hash-chained audit log"
# the audit log's last rows, then the verdict, which goes to stderr
rc=0
$S cas audit --verify >"$work/audit.out" 2>"$work/audit.err" || rc=$?
tail -4 "$work/audit.out"
cat "$work/audit.err"
[ "$rc" -eq 0 ] && grep -q "verified" "$work/audit.err" || { echo "FAIL: the audit log does not verify"; exit 1; }
kill -TERM $caspid; wait $caspid || true

echo
echo "demo ok"
