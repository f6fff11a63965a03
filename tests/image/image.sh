#!/bin/sh
# tests/image/image.sh - scpctl image build/inspect/verify (docs/image.md) with a real Docker
# engine, docker load, skopeo and podman: a secure image of Debian's redis-server is built from a
# `docker save` archive and from the engine by name; the same inputs give the same bytes; Docker
# skopeo and podman read it (both the Docker and the OCI form); verify recomputes its trusted-files
# manifest and measurement and refuses an archive rewritten with one byte of redis-server changed
# (digests recomputed, as an attacker would); bad input gets a clear error and nothing escapes
# the staging root.
# Usage: image.sh SCPCTL
set -u
SCPCTL=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../tamper.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }
sh "$HERE/../../scripts/start-docker.sh" || fail "no Docker engine (scripts/start-docker.sh)"
command -v skopeo >/dev/null || fail "skopeo is not installed (.ci/packages.txt)"
command -v podman >/dev/null || fail "podman is not installed (.ci/packages.txt)"

T=$(mktemp -d "${TMPDIR:-/tmp}/scp-image-test.XXXXXX") || exit 1
TAG=scptest-$$
trap 'rm -rf "$T"; docker rmi -f $TAG/redis-base:1 $TAG/redis-secure:1 $TAG/redis-secure:2 >/dev/null 2>&1' EXIT
export TMPDIR=$T

note "a base image: Debian's redis-server and the libraries it links (docker import, docker save)"
R=$T/root
mkdir -p "$R/usr/bin" "$R/data" "$R/etc" "$R/tmp" "$R/srv/conf"
cp /usr/bin/redis-server "$R/usr/bin/"
for l in $(ldd /usr/bin/redis-server | grep -o '/[^ ]*'); do
    mkdir -p "$R$(dirname "$l")"
    cp -L "$l" "$R$l"
done
echo 'root:x:0:0::/:/bin/sh' > "$R/etc/passwd"
ln -s redis-server "$R/usr/bin/redis" # for --trusted's check of symbolic links
CONF_MARK=scp-conf-marker-$$-$(od -An -N4 -tx4 /dev/urandom | tr -d " ")
printf 'bind 127.0.0.1\n# %s\n' "$CONF_MARK" > "$R/srv/conf/redis.conf"
tar -C "$R" -c . | docker import -c 'ENTRYPOINT ["/usr/bin/redis-server"]' -c 'CMD ["--port", "6390"]' - \
    $TAG/redis-base:1 >/dev/null || fail "docker import"
docker save $TAG/redis-base:1 -o "$T/base.tar" || fail "docker save"

note "build from the archive: measurement printed, template written"
"$SCPCTL" image build "$T/base.tar" -t $TAG/redis-secure:1 --session redis --service redis --protect /data \
    -o "$T/secure.tar" > "$T/out" 2> "$T/err" || { cat "$T/err"; fail "image build"; }
M=$(awk '/^measurement /{print $2}' "$T/out")
echo "$M" | grep -Eq '^[0-9a-f]{64}$' || fail "no measurement printed: $(cat "$T/out")"
grep -q "measurements: \[$M\]" "$T/secure.tar.session.yaml" || fail "template lacks the measurement"
grep -q 'path: "/data"' "$T/secure.tar.session.yaml" || fail "template lacks the volume"
grep -q 'command: \["/usr/bin/redis-server", "--port", "6390"\]' "$T/secure.tar.session.yaml" \
    || fail "template lacks the original command: $(cat "$T/secure.tar.session.yaml")"

note "reproducible: the same inputs give the same bytes"
"$SCPCTL" image build "$T/base.tar" -t $TAG/redis-secure:1 --session redis --service redis --protect /data \
    -o "$T/again.tar" > /dev/null 2>&1 || fail "second build"
cmp -s "$T/secure.tar" "$T/again.tar" || fail "two builds of the same inputs differ"

note "on a terminal: a line per step and a progress bar while the layers are applied"
script -qec "'$SCPCTL' image build '$T/base.tar' -t $TAG/redis-secure:1 --session redis --service redis -o '$T/tty.tar'" \
    /dev/null > "$T/tty.out" 2>&1 || fail "build on a terminal: $(cat "$T/tty.out")"
grep -qa 'layers   \[#*\.*\] 100%' "$T/tty.out" || fail "no progress bar on a terminal: $(cat -v "$T/tty.out" | head -5)"
grep -qa 'scpctl: hashing' "$T/tty.out" || fail "no step lines on a terminal"

note "docker load and skopeo read it, in the Docker and the OCI form"
docker load -i "$T/secure.tar" > "$T/load" 2>&1 || { cat "$T/load"; fail "docker load"; }
L=$(docker image inspect -f '{{index .Config.Labels "org.scp.measurement"}}' $TAG/redis-secure:1) \
    || fail "docker image inspect"
[ "$L" = "$M" ] || fail "label $L is not the measurement $M"
EP=$(docker image inspect -f '{{json .Config.Entrypoint}}' $TAG/redis-secure:1)
echo "$EP" | grep -q '/scp/bin/scp-entry' || fail "entrypoint is not the SCP entry: $EP"
note "the /scp layer is small: scp-entry and what it links, not scpctl's image builder (libarchive, ICU)"
SCPL=$(python3 -c 'import json,sys,tarfile; t=tarfile.open(sys.argv[1]); m=json.load(t.extractfile("manifest.json")); print(t.getmember(m[0]["Layers"][-1]).size)' "$T/secure.tar")
echo "   /scp layer: $SCPL bytes"
# (a sanitizer build's scp-entry carries ASan's runtime and instrumentation: about 27 MB)
LIMIT=16000000
ldd "$(dirname "$SCPCTL")/scp-entry" 2>/dev/null | grep -q libasan && LIMIT=40000000
[ "$SCPL" -lt $LIMIT ] || fail "the /scp layer is $SCPL bytes (limit $LIMIT)"
skopeo inspect "docker-archive:$T/secure.tar" | grep -q "$M" || fail "skopeo (docker-archive) does not see the label"
skopeo inspect "oci-archive:$T/secure.tar" | grep -q "$M" || fail "skopeo (oci-archive) does not see the label"
note "podman loads it too (load: the Docker form; pull oci-archive: the OCI form), and sees the measurement and the entry"
podman load -q -i "$T/secure.tar" > "$T/pload" 2>&1 || fail "podman load: $(cat "$T/pload")"
P1=$(awk '/Loaded image/{print $NF}' "$T/pload" | tail -1)
podman pull -q "oci-archive:$T/secure.tar" > "$T/ppull" 2>&1 || fail "podman pull oci-archive: $(cat "$T/ppull")"
P2=$(tail -1 "$T/ppull")
for PI in "$P1" "$P2"; do
    [ -n "$PI" ] || fail "podman named no image: $(cat "$T/pload" "$T/ppull")"
    PL=$(podman image inspect -f '{{index .Config.Labels "org.scp.measurement"}} {{json .Config.Entrypoint}}' "$PI") ||
        fail "podman image inspect $PI"
    case $PL in "$M "*scp-entry*) ;; *) fail "podman ($PI) sees '$PL', not the measurement $M and the entry" ;; esac
done
podman rmi -f "$P1" "$P2" >/dev/null 2>&1

note "build from the engine by name, loaded straight into the engine: the same measurement"
"$SCPCTL" image build $TAG/redis-base:1 -t $TAG/redis-secure:2 --session redis --service redis --protect /data \
    --template "$T/t2.yaml" > "$T/out2" 2>&1 || { cat "$T/out2"; fail "build from the engine"; }
L2=$(docker image inspect -f '{{index .Config.Labels "org.scp.measurement"}}' $TAG/redis-secure:2) \
    || fail "the engine does not have the image built from it"
[ "$L2" = "$M" ] || fail "engine build measures $L2, archive build $M"

note "local attestation service: evidence for the image's own runtime only, measured by the service"
"$SCPCTL" platform create-key "$T/platform.key" > /dev/null || fail "platform key"
mkdir "$T/sock"
"$SCPCTL" platform serve --key "$T/platform.key" --socket "$T/sock/attest.sock" > "$T/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; rm -rf "$T"; docker rmi -f $TAG/redis-base:1 $TAG/redis-secure:1 $TAG/redis-secure:2 >/dev/null 2>&1' EXIT
i=0; while [ ! -S "$T/sock/attest.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
N=$(openssl rand -hex 32); P=$(openssl rand -hex 32)
in_image() { # ENV-OPTS... -- ARGS: run the image's runtime in a container of the image
    docker run --rm -v "$T/sock:/run/scp" "$@"
}
in_image --entrypoint /scp/lib/ld-linux-x86-64.so.2 $TAG/redis-secure:1 --library-path /scp/lib \
    /scp/bin/scp-entry platform evidence --nonce "$N" --pubkey "$P" > "$T/ev" 2> "$T/err" \
    || fail "the image's runtime got no evidence: $(cat "$T/err") / $(cat "$T/serve.log")"
grep -q "^measurement $M" "$T/ev" || fail "the service measured otherwise: $(cat "$T/ev")"
grep -q "^nonce bound" "$T/ev" || fail "the evidence does not bind the nonce and key"
note "the same runtime with a library of the image preloaded: refused"
LZF=$(cd "$R" && find . -name 'liblzf.so.1' | head -1 | cut -c2-)
in_image -e LD_PRELOAD="$LZF" --entrypoint /scp/lib/ld-linux-x86-64.so.2 $TAG/redis-secure:1 --library-path /scp/lib \
    /scp/bin/scp-entry platform evidence --nonce "$N" --pubkey "$P" > /dev/null 2> "$T/err" && fail "a preloaded caller got evidence"
# (a sanitizer build of scpctl cannot start with a library preloaded before its runtime: it
# stops before it asks, which also gets it nothing)
grep -q "not the image's runtime\|ASan runtime does not come first" "$T/err" || fail "preloaded caller: $(cat "$T/err")"
note "a process outside any secure image: refused"
"$SCPCTL" platform evidence --socket "$T/sock/attest.sock" --nonce "$N" --pubkey "$P" > /dev/null 2> "$T/err" \
    && fail "a host process got evidence"
grep -q "refused" "$T/err" || fail "host caller: $(cat "$T/err")"

note "inspect and verify"
"$SCPCTL" image inspect "$T/secure.tar" > "$T/insp" || fail "inspect"
grep -q "\"measurement\": \"$M\"" "$T/insp" || fail "inspect lacks the measurement: $(cat "$T/insp")"
grep -q '"/data"' "$T/insp" || fail "inspect lacks the protected path"
"$SCPCTL" image verify "$T/secure.tar" > "$T/ver" || fail "verify of an untouched image: $(cat "$T/ver")"
grep -q '^verified' "$T/ver" || fail "verify said: $(cat "$T/ver")"
"$SCPCTL" image inspect "$T/base.tar" > /dev/null 2> "$T/err"
[ $? -ne 0 ] && grep -q 'not a secure image' "$T/err" || fail "inspect of a plain image: $(cat "$T/err")"

note "one byte of redis-server changed, every digest recomputed: verify refuses (3), naming the file"
python3 "$HERE/archive.py" tamper "$T/secure.tar" "$T/tampered.tar" usr/bin/redis-server || fail "tamper"
"$SCPCTL" image verify "$T/tampered.tar" > /dev/null 2> "$T/err"
rc=$?
[ $rc -eq 3 ] || fail "verify of a tampered image exited $rc: $(cat "$T/err")"
grep -q '/usr/bin/redis-server' "$T/err" || fail "the refusal does not name the file: $(cat "$T/err")"
note "a bit flipped in a layer blob without recomputing: the digest check refuses (3)"
mkdir "$T/flip" && tar -C "$T/flip" -xf "$T/secure.tar"
B=$(ls -S "$T/flip/blobs/sha256" | head -1)
flip_byte "$T/flip/blobs/sha256/$B" 5000 || fail "flip a blob byte"
"$SCPCTL" image verify "$T/flip" > /dev/null 2> "$T/err"
rc=$?
[ $rc -eq 3 ] && grep -q 'does not match its digest' "$T/err" || fail "flipped blob: exit $rc: $(cat "$T/err")"

note "bad input: clear errors, non-zero exits"
expect_err() { # WHAT PATTERN ARGS...
    what=$1; pat=$2; shift 2
    "$SCPCTL" image build "$@" > /dev/null 2> "$T/err"
    rc=$?
    [ $rc -ne 0 ] || fail "$what: exit 0"
    grep -q "$pat" "$T/err" || fail "$what: no '$pat' in: $(cat "$T/err")"
}
expect_err "missing archive" "no image archive" /nonexistent.tar -t x:1 --session s --service s -o "$T/x.tar"
head -c 10000 /dev/urandom > "$T/junk.tar"
expect_err "malformed archive" "not an image archive\|malformed\|no files" "$T/junk.tar" -t x:1 --session s --service s -o "$T/x.tar"
# names Docker or CAS would refuse only later (at the load, at the first start): refused now,
# and nothing written
for bad in "" "Redis" "a b" "a..b" "a:" "x/:1" "reg:abc/x"; do
    expect_err "image name '$bad'" "is not an image name" "$T/base.tar" -t "$bad" --session s --service s -o "$T/bad.tar"
    [ $rc -eq 2 ] || fail "image name '$bad': exit $rc, not 2 (a usage error)"
done
expect_err "session '../s'" "session name '../s' is not one CAS accepts" "$T/base.tar" -t x:1 --session ../s --service s -o "$T/bad.tar"
[ $rc -eq 2 ] || fail "session '../s': exit $rc, not 2 (a usage error)"
expect_err "service 'a b'" "service name 'a b' is not one CAS accepts" "$T/base.tar" -t x:1 --session s --service "a b" -o "$T/bad.tar"
[ $rc -eq 2 ] || fail "service 'a b': exit $rc, not 2 (a usage error)"
[ -e "$T/bad.tar" ] && fail "a refused build wrote its output"
expect_err "protected path missing" "no such directory in the image" "$T/base.tar" -t x:1 --session s --service s --protect /nope -o "$T/x.tar"
note "files under a protected path: sealed into /scp/seed, gone from the layers, their key only in the template"
"$SCPCTL" image build "$T/base.tar" -t $TAG/redis-conf:1 --session s --service s --protect /srv/conf --protect /data \
    --trusted /usr/bin/redis-server --trusted /lib -o "$T/conf.tar" > "$T/conf.out" 2> "$T/err" ||
    fail "build with files under a protected path: $(cat "$T/err")"
"$SCPCTL" image inspect "$T/conf.tar" | tr -d ' \n' | grep -q '"trusted_paths":\["/usr/bin/redis-server","/lib"\]' ||
    fail "image.json lacks the --trusted paths: $("$SCPCTL" image inspect "$T/conf.tar")"
grep -qa "$CONF_MARK" "$T/base.tar" || fail "the test's marker is not in the input"
grep -qa "$CONF_MARK" "$T/conf.tar" && fail "the secure image holds the protected file in plaintext"
grep -q 'SCP_SEED_conf: "\$\$SCP::scp_seed_conf\$\$"' "$T/conf.tar.session.yaml" || fail "template lacks the seed: $(cat "$T/conf.tar.session.yaml")"
grep -Eq 'name: scp_seed_conf, kind: explicit, value: "[0-9a-f]{64}"' "$T/conf.tar.session.yaml" || fail "template lacks the seed key"
[ "$(stat -c %a "$T/conf.tar.session.yaml")" = 600 ] || fail "the template (it holds a key) is not 0600"
"$SCPCTL" image inspect "$T/conf.tar" | grep -q '"/scp/seed/0"' || fail "image.json lacks the seed"
"$SCPCTL" image verify "$T/conf.tar" > /dev/null 2> "$T/err" || fail "verify of a seeded image: $(cat "$T/err")"
skopeo inspect "oci-archive:$T/conf.tar" > /dev/null || fail "skopeo does not read the seeded image"
expect_err "trusted path missing" "no such file or directory in the image" "$T/base.tar" -t x:1 --session s --service s --trusted /usr/bin/nope -o "$T/x.tar"
expect_err "trusted path under a protected one" "is under --protect /srv/conf" "$T/base.tar" -t x:1 --session s --service s --protect /srv/conf --trusted /srv/conf/redis.conf -o "$T/x.tar"
expect_err "trusted path through a symlink" "a symbolic link is on the way" "$T/base.tar" -t x:1 --session s --service s --trusted /usr/bin/redis -o "$T/x.tar"
expect_err "trusted path reserved" "the runtime's or the kernel's" "$T/base.tar" -t x:1 --session s --service s --trusted /proc/self -o "$T/x.tar"
expect_err "relative protected path" "absolute path" "$T/base.tar" -t x:1 --session s --service s --protect data -o "$T/x.tar"
expect_err "image not in the engine" "refused\|No such image" $TAG/absent:9 -t x:1 --session s --service s -o "$T/x.tar"
expect_err "secure image as input" "already has /scp" "$T/secure.tar" -t x:1 --session s --service s -o "$T/x.tar"
# a statically linked entrypoint: no shield would start in it (its arguments, secrets, sealed
# console and protected paths are the shield's); refused at the build, not at the first run
if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
    mkdir -p "$T/sroot/bin"
    cp /bin/busybox "$T/sroot/bin/"
    tar -C "$T/sroot" -c . | docker import -c 'ENTRYPOINT ["/bin/busybox", "sleep", "1"]' - $TAG/static-base:1 >/dev/null ||
        fail "docker import (static)"
    docker save $TAG/static-base:1 -o "$T/static.tar" || fail "docker save (static)"
    docker rmi -f $TAG/static-base:1 >/dev/null 2>&1
    expect_err "static entrypoint" "is statically linked" "$T/static.tar" -t x:1 --session s --service s -o "$T/x.tar"
fi
[ ! -e "$T/x.tar" ] || fail "a failed build left its output behind"

note "a layer cannot write outside the staging root (symlinks to host paths, '..')"
mkdir "$T/hostdir"
python3 "$HERE/archive.py" layer-escape "$T/escape.tar" "$T/hostdir" || fail "craft"
"$SCPCTL" image build "$T/escape.tar" -t x:1 --session s --service s -o "$T/x.tar" > /dev/null 2> "$T/err"
[ -z "$(ls -A "$T/hostdir")" ] || fail "a layer wrote into the host through a symlink: $(ls "$T/hostdir")"
grep -q 'entrypoint' "$T/err" || fail "escape archive: expected to stop at the entrypoint (a script), got: $(cat "$T/err")"
python3 "$HERE/archive.py" layer-escape "$T/escape.dotdot.tar" "$T/hostdir" || fail "craft"
expect_err "'..' in a layer" "unsafe name" "$T/escape.dotdot.tar" -t x:1 --session s --service s -o "$T/x.tar"
[ ! -e "$T/escaped" ] && [ ! -e "$(dirname "$T")/escaped" ] || fail "'..' escaped"
left=$(ls "$T" | grep "^scp-stage-\|^scp-image-")
[ -z "$left" ] || fail "staging or spool directories left behind: $left"
echo "image: ok"
