#!/bin/bash
# tests/attest/cas_tee.sh SCPCTL HW_FORGE - hardware evidence through the real CAS daemon over
# TLS, produced by the runtime's tdx/snp backends from a fake configfs-tsm entry
# (fake_tsm.sh) whose reports hw_forge signs under the test PKI (mkpki.sh); CAS trusts the test
# roots only because it is started with --test-snp-ark / --test-sgx-root. Granted with the
# right launch measurement, program measurement, nonce and key; refused and audited: unknown
# platform (the message names the identity to enroll), wrong MEASUREMENT/MRTD/RTMR, no section
# for the platform, report data for another nonce, debug guest/TD, TCB below the minimum, a
# TCB status the service does not accept, missing collateral, a revoked platform, another
# writer of the report entry, a CAS without the test roots; --tee tdx/snp/auto on this machine.
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../cas/lib.sh" "$1" none
client_leaks_off # (lib.sh: dozens of short client commands; the daemon keeps the leak check)
FORGE=$2
PIDS=()
stop_fakes() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap 'stop_fakes; cleanup' EXIT

bash "$here/mkpki.sh" "$T/pki" >/dev/null 2>&1 || fail "mkpki.sh failed"
ARK=$(cat "$T/pki/ark.sha256")
ROOT=$(cat "$T/pki/sgx/root.sha256")
C=$T/coll
mkdir -p "$C/snp" "$C/sgx"
cp -r "$T/pki/collateral/snp/Milan" "$C/snp/"
cp "$T/pki/sgxcoll/sgx/"* "$C/sgx/"
"$FORGE" tdx-collateral "$T/pki" "$C" UpToDate || fail "tdx-collateral"

A=$T/a.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A" --collateral "$C" --test-snp-ark "$ARK" --test-sgx-root "$ROOT"
grep -q "TEST ROOTS TRUSTED" "$T/cas.err" || fail "CAS does not warn that it trusts test roots"

for b in snp tdx; do
    : >"$T/ctl-$b"
    bash "$here/fake_tsm.sh" "$FORGE" "$T/pki" "$T/tsm-$b" "$b" "$T/ctl-$b" &
    PIDS+=($!)
done
for _ in $(seq 100); do [ -p "$T/tsm-snp/outblob" ] && [ -p "$T/tsm-tdx/outblob" ] && break; sleep 0.05; done
ctl() { echo "$2" >"$T/ctl-$1"; } # hw_forge options for the next reports of backend $1

printf 'program image\n' >"$T/prog"
expect_rc 0 "$SCPCTL" platform measure "$T/prog"
M=$(cat "$T/last.out")
printf 'another program\n' >"$T/prog2"
expect_rc 0 "$SCPCTL" platform measure "$T/prog2"
M2=$(cat "$T/last.out")

# the identity to enroll, from the machine's own report; auto says what it picked
SCP_TSM_REPORT=$T/tsm-snp expect_rc 0 "$SCPCTL" platform id --tee auto
grep -q "tee auto: using snp (configfs-tsm provider sev_guest)" "$T/last.err" || fail "auto did not say snp: $(cat "$T/last.err")"
ISNP=$(sed -n 's/^pubkey //p' "$T/last.out")
SCP_TSM_REPORT=$T/tsm-tdx expect_rc 0 "$SCPCTL" platform id --tee tdx
ITDX=$(sed -n 's/^pubkey //p' "$T/last.out")
[ ${#ISNP} = 64 ] && [ ${#ITDX} = 64 ] || fail "no hardware identities"

X96() { printf "$1%.0s" $(seq 48); }
X64() { printf "$1%.0s" $(seq 32); }
cat >"$T/hw.yaml" <<YAML
name: hw
services:
  - name: web
    measurements: [$M]
    environment: {KEY: "\$\$SCP::k\$\$"}
    snp: {measurement: $(X96 ab), host_data: $(X64 cd), min_tcb: {bootloader: 3, tee: 0, snp: 8, microcode: 115}}
    tdx: {mrtd: $(X96 42), rtmr0: $(X96 60), rtmr3: $(X96 63), accept_tcb: [UpToDate]}
  - name: wrong
    measurements: [$M]
    snp: {measurement: $(X96 ac)}
    tdx: {mrtd: $(X96 43)}
    sgx: {mrenclave: $(X64 45), mrsigner: $(X64 44)}
  - name: enclave
    measurements: [$M]
    sgx: {mrenclave: $(X64 43), mrsigner: $(X64 44), min_isvsvn: 5}
  - name: wronghost
    measurements: [$M]
    snp: {measurement: $(X96 ab), host_data: $(X64 ce)}
    tdx: {mrtd: $(X96 42), rtmr1: $(X96 70)}
  - name: simonly
    measurements: [$M]
  - name: lenient
    measurements: [$M]
    tdx: {mrtd: $(X96 42), accept_tcb: [UpToDate, SWHardeningNeeded]}
secrets:
  - {name: k, kind: ascii, size: 24}
YAML
expect_rc 0 "$SCPCTL" session create "$T/hw.yaml"
# policy keys are checked
sed "s/min_tcb: {bootloader: 3/min_tcb: {bootloder: 3/" "$T/hw.yaml" | sed 's/^name: hw/name: hw2/' >"$T/bad.yaml"
expect_err 1 "unknown key 'bootloder' in min_tcb" "$SCPCTL" session create "$T/bad.yaml"
sed "s/accept_tcb: \[UpToDate\]/accept_tcb: [Revoked]/" "$T/hw.yaml" | sed 's/^name: hw/name: hw2/' >"$T/bad.yaml"
expect_err 1 "'Revoked' is not an acceptable TCB status" "$SCPCTL" session create "$T/bad.yaml"
sed "s/snp: {measurement: $(X96 ab), host_data/snp: {measurement: $(X96 ab), measurement: $(X96 ac), host_data/" "$T/hw.yaml" |
    sed 's/^name: hw/name: hw2/' >"$T/bad.yaml"
grep -q "measurement: $(X96 ac), host_data" "$T/bad.yaml" || fail "test setup: no duplicate key"
expect_err 1 "duplicate key 'measurement'" "$SCPCTL" session create "$T/bad.yaml"

att() { # att snp|tdx SERVICE [MEASUREMENT]
    SCP_TSM_REPORT=$T/tsm-$1 "$SCPCTL" platform attest --tee "$1" --session hw --service "$2" --measurement "${3:-$M}" \
        >"$T/last.out" 2>"$T/last.err"
}
want() { # want RC PATTERN snp|tdx SERVICE [MEASUREMENT]
    local rc=$1 pat=$2
    shift 2
    att "$@"
    local got=$?
    [ $got = "$rc" ] || fail "attest $*: exit $got, want $rc: $(cat "$T/last.err")"
    grep -q -- "$pat" "$T/last.err" "$T/last.out" || fail "attest $*: lacks '$pat': $(cat "$T/last.err")"
}

# not enrolled: refused, and the runtime names what to enroll
want 1 "403 unknown_platform" snp web
grep -q -- "--backend snp --pubkey $ISNP" "$T/last.err" || fail "no enrolment hint: $(cat "$T/last.err")"
expect_rc 0 "$SCPCTL" platform enroll --name snp1 --backend snp --pubkey "$ISNP"
PSNP=$(sed -n 's/^enrolled platform \([0-9a-f]*\).*/\1/p' "$T/last.out")
expect_rc 0 "$SCPCTL" platform enroll --name tdx1 --backend tdx --pubkey "$ITDX"
PTDX=$(sed -n 's/^enrolled platform \([0-9a-f]*\).*/\1/p' "$T/last.out")

# a service that names a hardware platform refuses the sim; one that names none takes it
expect_rc 0 "$SCPCTL" platform create-key "$T/sim.key"
expect_rc 0 "$SCPCTL" platform enroll --name sim1 --key "$T/sim.key"
expect_err 1 "403 tee_not_allowed.*accepts hardware evidence only (its policy names snp tdx" \
    "$SCPCTL" platform attest --key "$T/sim.key" --session hw --service web --measurement "$M"
expect_rc 0 "$SCPCTL" platform attest --key "$T/sim.key" --session hw --service simonly --measurement "$M"

# SEV-SNP
want 0 '"KEY":"' snp web
grep -q '"session":"hw"' "$T/last.out" || fail "snp: no configuration"
want 1 "403 wrong_measurement.*snp MEASUREMENT \(ab\)\{48\} is not the one service 'wrong' allows" snp wrong
want 1 "403 wrong_measurement.*snp HOST_DATA \(cd\)\{32\}" snp wronghost
want 1 "403 tee_not_allowed.*accepts no snp platform" snp simonly
want 1 "403 wrong_measurement.*measurement $M2 is not allowed" snp web "$M2"
ctl snp --flip-rd
want 1 "403 bad_evidence.*report data" snp web
ctl snp --debug
want 1 "403 tee_policy.*debug" snp web
ctl snp --old-tcb
want 1 "403 tcb_too_low.*bootloader 2 is below the minimum 3" snp web
ctl snp --no-vcek
want 1 "403 missing_collateral.*snp/vcek/1111" snp web
ctl snp ""
touch "$T/ctl-snp.race"
want 1 "another process used the report entry" snp web
rm "$T/ctl-snp.race"
want 0 '"KEY":"' snp web

# TDX
want 0 '"KEY":"' tdx web
want 1 "403 wrong_measurement.*tdx MRTD \(42\)\{48\} is not the one service 'wrong' allows" tdx wrong
want 1 "403 wrong_measurement.*tdx RTMR1 \(61\)\{48\}" tdx wronghost
want 1 "403 tee_not_allowed.*accepts no tdx platform" tdx simonly
ctl tdx --flip-rd
want 1 "403 bad_evidence.*report data" tdx web
ctl tdx --debug
want 1 "403 tee_policy.*debug TD" tdx web
ctl tdx ""
"$FORGE" tdx-collateral "$T/pki" "$C" SWHardeningNeeded || fail "tdx-collateral"
want 1 "403 tcb_too_low.*tdx TCB status SWHardeningNeeded is not accepted by service 'web'" tdx web
want 0 '"session":"hw"' tdx lenient
"$FORGE" tdx-collateral "$T/pki" "$C" Revoked || fail "tdx-collateral"
want 1 "403 tee_policy.*Revoked" tdx lenient
rm "$C/sgx/tcbinfo-tdx-50806f000000.json"
want 1 "403 missing_collateral.*tcbinfo-tdx-50806f000000.json" tdx web
"$FORGE" tdx-collateral "$T/pki" "$C" UpToDate || fail "tdx-collateral"
want 0 '"KEY":"' tdx web

# SGX: CAS's side only (the runtime side is a documented seam): evidence that hw_forge makes
# with CAS's nonce stands in for it, posted by curl as a real TLS client; the tdx enrolment
# (the same Intel machine, the same PPID) serves
"$FORGE" sgx-collateral "$T/pki" "$C" UpToDate || fail "sgx-collateral"
PUB=$(printf '09%062d' 0)
sgx_attest() { # sgx_attest SERVICE [hw_forge options]: prints the HTTP status; body in $T/last.out
    local svc=$1 n
    shift
    n=$(curl -sk -X POST -H 'Content-Type: application/json' -d '{}' "https://$ADDR/v1/attest/nonce" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["nonce"])')
    "$FORGE" sgx-evidence "$T/pki" "$n" "$PUB" "$M" "$@" >"$T/ev.bin" || fail "sgx-evidence"
    printf '{"session":"hw","service":"%s","evidence":"%s"}' "$svc" "$(base64 -w0 "$T/ev.bin")" |
        curl -sk -o "$T/last.out" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @- \
            "https://$ADDR/v1/attest"
}
sgx_want() { # sgx_want STATUS PATTERN SERVICE [hw_forge options]
    local st=$1 pat=$2 got
    shift 2
    got=$(sgx_attest "$@")
    [ "$got" = "$st" ] && grep -q -- "$pat" "$T/last.out" || fail "sgx $*: $got $(cat "$T/last.out"), want $st '$pat'"
}
sgx_want 200 '"ciphertext"' enclave
sgx_want 403 "wrong_measurement.*sgx MRENCLAVE \(43\)\{32\} is not the one service 'wrong' allows" wrong
sgx_want 403 "tee_not_allowed.*accepts no sgx platform" simonly
sgx_want 403 "tcb_too_low.*sgx ISVSVN 4 is below the minimum 5" enclave --isvsvn 4
sgx_want 403 "tee_policy.*debug enclave" enclave --debug
sgx_want 403 "bad_evidence.*report data" enclave --flip-rd
"$FORGE" sgx-collateral "$T/pki" "$C" OutOfDate || fail "sgx-collateral"
sgx_want 403 "tcb_too_low.*sgx TCB status OutOfDate is not accepted" enclave
"$FORGE" sgx-collateral "$T/pki" "$C" UpToDate || fail "sgx-collateral"
sgx_want 200 '"ciphertext"' enclave

# the whole run: scpctl run --tee auto picks snp (the fake entry), attests, and the program in
# its container gets the configuration; no sim warning
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$T/bin"
    cp "$(readlink -f /bin/sh)" "$T/bin/sh"
    expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/sh"
    MSH=$(cat "$T/last.out")
    cat >"$T/run.yaml" <<YAML
name: run
services:
  - name: sh
    measurements: [$MSH]
    command: [sh, -c, 'echo "key=\$KEY"']
    environment: {KEY: "\$\$SCP::k\$\$"}
    snp: {measurement: $(X96 ab)}
secrets:
  - {name: k, kind: ascii, size: 24}
YAML
    expect_rc 0 "$SCPCTL" session create "$T/run.yaml"
    expect_rc 0 "$SCPCTL" session secret run k
    K=$(cat "$T/last.out")
    SCP_TSM_REPORT=$T/tsm-snp expect_rc 0 "$SCPCTL" run --session run --service sh --volume-dir "$T/vols" -- "$T/bin/sh"
    grep -qx "key=$K" "$T/last.out" || fail "the program did not get its configuration: $(cat "$T/last.out" "$T/last.err")"
    grep -q "tee auto: using snp" "$T/last.err" || fail "run --tee auto did not say snp: $(cat "$T/last.err")"
    grep -q "NOT protected" "$T/last.err" && fail "a hardware run printed the sim warning"
    # and without the fake entry, auto falls back to sim and says so (no platform key: exit 1)
    if [ ! -e /sys/kernel/config/tsm/report ]; then
        expect_rc 1 "$SCPCTL" run --session run --service sh --volume-dir "$T/vols" -- "$T/bin/sh"
        grep -q "tee auto: no TDX or SEV-SNP guest interface (configfs-tsm) on this machine; using sim" "$T/last.err" ||
            fail "run --tee auto did not say sim: $(cat "$T/last.err")"
    fi
fi

# revocation
expect_rc 0 "$SCPCTL" platform revoke "$PTDX"
want 1 "403 revoked_platform" tdx web

# the audit log: each decision with its backend and TCB
expect_rc 0 "$SCPCTL" cas audit --verify
grep -P "attest\thw\tweb\t$M\t$PSNP\tgranted\ttee snp Milan, reported TCB bootloader 3 tee 0 snp 8 microcode 115" "$T/last.out" >/dev/null ||
    fail "no granted snp row with its TCB: $(grep attest "$T/last.out" | head -3)"
grep -P "attest\thw\tweb\t.*\tdenied\t403 .*bootloader 2 is below.*\[tee snp Milan, reported TCB bootloader 2 " "$T/last.out" >/dev/null ||
    fail "the TCB refusal row lacks the backend and TCB"
grep -P "attest\thw\tweb\t$M\t$PTDX\tgranted\ttee tdx, TCB status UpToDate" "$T/last.out" >/dev/null || fail "no granted tdx row"
grep -P "\tdenied\t403 .*SWHardeningNeeded is not accepted.*\[tee tdx, TCB status SWHardeningNeeded\]" "$T/last.out" >/dev/null ||
    fail "the TCB status refusal row lacks the status"
grep -P "\tdenied\t403 .*tcbinfo-tdx.*\[tee tdx\]" "$T/last.out" >/dev/null || fail "the missing collateral row lacks the backend"

# without the test roots, the same evidence is not AMD's
stop_cas
start_cas --admin "$A" --collateral "$C"
want 1 "403 bad_evidence.*AMD" snp web

# this machine: no TDX or SEV-SNP (no configfs-tsm)
if [ ! -e /sys/kernel/config/tsm/report ]; then
    expect_err 1 "tee tdx: this machine is not a TDX guest" "$SCPCTL" platform attest --tee tdx --session hw --service web --measurement "$M"
    expect_err 1 "tee snp: this machine is not an SEV-SNP guest" "$SCPCTL" run --cas "$ADDR" --session hw --service web --tee snp -- /bin/true
    expect_err 1 "tee auto: no TDX or SEV-SNP guest interface (configfs-tsm) on this machine; using sim" \
        "$SCPCTL" platform id --tee auto
fi
alive
echo "cas_tee: ok"
