#!/bin/bash
# Trusted files (docs/runtime.md "Trusted files"): scpctl run --cas measures the files given with
# --trusted along with the program, and the shield checks them while the program runs. A small
# program built here, with a library it dlopens, a data file it reads and a helper it executes:
# - unchanged, all three work;
# - an exec of a binary that is not in the manifest is refused (EACCES), with a log line;
# - after measurement (the program is running), one byte changed in the library: its dlopen
#   fails and the log names it; one byte changed in the data file (in place, or a changed copy
#   put in its place): its open fails with EACCES and the log names it (read-write too; write-only
#   is not checked: nothing is read through it); one byte changed in the helper: its exec is refused;
# - a library that is not listed cannot be dlopened, nor mapped executable by the program;
# - 'platform measure' prints the configuration's hash; --net and --trusted change the measurement;
# - a library replaced after measurement (before the loader runs) is not what gets loaded;
# - a loader replaced after measurement stops the run before exec.
source "$(dirname "$0")/lib.sh" "$@"
command -v cc >/dev/null || { echo "no C compiler: skipped"; exit 77; }

A=$T/admin.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p1.key"
expect_rc 0 "$SCPCTL" platform enroll --name p1 --key "$T/p1.key"

# outside /tmp: the program runs in a container whose /tmp is private
U=$(mktemp -d /var/tmp/scp-cas-trusted.XXXXXX)
trap 'cleanup; rm -rf "$U"' EXIT
chmod 755 "$U"
cat >"$U/app.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int i = 1;
    /* procfd PATH: an O_PATH descriptor of PATH taken now (before a wait), reopened for reading
     * through /proc/self/fd later */
    int pre = -1;
    for (int k = 1; k + 1 < argc; k++)
        if (!strcmp(argv[k], "procfd")) pre = open(argv[k + 1], O_PATH);
    if (argc > 3 && !strcmp(argv[1], "wait")) { /* wait DIR: say ready, wait for DIR/go */
        char p[4096];
        snprintf(p, sizeof p, "%s/ready", argv[2]);
        close(open(p, O_CREAT | O_WRONLY, 0644));
        snprintf(p, sizeof p, "%s/go", argv[2]);
        for (int k = 0; k < 300 && access(p, F_OK) != 0; k++) usleep(100000);
        i = 3;
    }
    if (argc < i + 2) return 9;
    const char *mode = argv[i], *path = argv[i + 1];
    setvbuf(stdout, NULL, _IONBF, 0);
    /* copyexec SRC DST, copydlopen SRC DST: SRC copied to DST, run or loaded */
    if ((!strcmp(mode, "copyexec") || !strcmp(mode, "copydlopen")) && argc > i + 2) {
        char buf[65536];
        ssize_t n;
        int in = open(path, O_RDONLY), out = open(argv[i + 2], O_WRONLY | O_CREAT | O_TRUNC, 0755);
        while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n) return 3;
        if (in < 0 || out < 0 || close(out) != 0) { printf("copy failed: %s\n", strerror(errno)); return 3; }
        path = argv[i + 2];
        mode = strcmp(mode, "copyexec") ? "dlopen" : "exec";
    }
    if (!strcmp(mode, "dlopen")) {
        void *h = dlopen(path, RTLD_NOW);
        if (!h) { printf("dlopen failed: %s\n", dlerror()); return 2; }
        int (*f)(void) = (int (*)(void))dlsym(h, "plug_answer");
        printf("dlopen ok: %d\n", f ? f() : -1);
        return 0;
    }
    if (!strcmp(mode, "open") || !strcmp(mode, "procfd")) {
        char buf[128] = "", link[64];
        if (pre >= 0) {
            snprintf(link, sizeof link, "/proc/self/fd/%d", pre);
            path = link;
        }
        int fd = open(path, O_RDONLY);
        if (fd < 0) { printf("open failed: %s\n", strerror(errno)); return 2; }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        printf("open ok: %.*s\n", n > 0 ? (int)strcspn(buf, "\n") : 0, buf);
        return 0;
    }
    if (!strcmp(mode, "wronly") || !strcmp(mode, "rdwr")) { /* open for writing, write nothing */
        int fd = open(path, strcmp(mode, "wronly") ? O_RDWR : O_WRONLY);
        if (fd < 0) { printf("open failed: %s\n", strerror(errno)); return 2; }
        printf("%s ok\n", mode);
        return 0;
    }
    if (!strcmp(mode, "fopen")) {
        char buf[128] = "";
        FILE *f = fopen(path, "r");
        if (!f) { printf("open failed: %s\n", strerror(errno)); return 2; }
        if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
        printf("open ok: %.*s\n", (int)strcspn(buf, "\n"), buf);
        return 0;
    }
    if (!strcmp(mode, "mmapx") || !strcmp(mode, "mprotect")) { /* the program's own code mapping */
        int fd = open(path, O_RDONLY);
        if (fd < 0) { printf("open failed: %s\n", strerror(errno)); return 2; }
        int x = !strcmp(mode, "mmapx");
        void *p = mmap(NULL, 4096, PROT_READ | (x ? PROT_EXEC : 0), MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { printf("%s failed: %s\n", mode, strerror(errno)); return 2; }
        if (!x && mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) { printf("%s failed: %s\n", mode, strerror(errno)); return 2; }
        printf("%s ok\n", mode);
        return 0;
    }
    if (!strcmp(mode, "fexecve")) {
        int fd = open(path, O_RDONLY);
        char *av[] = {(char *)path, NULL}, *ev[] = {NULL};
        if (fd >= 0) fexecve(fd, av, ev);
        printf("exec failed: %s\n", strerror(errno));
        return 2;
    }
    if (!strcmp(mode, "exec")) {
        execl(path, path, (char *)NULL);
        printf("exec failed: %s\n", strerror(errno));
        return 2;
    }
    return 9;
}
C
printf 'const char plug_marker[] = "PLUGMARK-original";\nint plug_answer(void) { return 42; }\n' >"$U/plug.c"
cc -o "$U/app" "$U/app.c" -ldl && cc -shared -fPIC -o "$U/libplug.so" "$U/plug.c" || fail "cannot build the test program"
cp "$U/libplug.so" "$U/libother.so"
cp "$(readlink -f /bin/true)" "$U/helper"
cp "$(readlink -f /bin/true)" "$U/unlisted"
echo "setting=original" >"$U/data.conf"

TRUST=(--trusted "$U/libplug.so" --trusted "$U/data.conf" --trusted "$U/helper")
expect_rc 0 "$SCPCTL" platform measure "${TRUST[@]}" -- "$U/app"
M=$(cat "$T/last.out")
grep -q "^configuration [0-9a-f]\{64\} " "$T/last.err" || fail "platform measure prints no configuration hash: $(cat "$T/last.err")"
CFG=$(sed -n 's/^configuration \([0-9a-f]*\) .*/\1/p' "$T/last.err")
# the configuration is part of the measurement: --net none and a different manifest change it
expect_rc 0 "$SCPCTL" platform measure --net none "${TRUST[@]}" -- "$U/app"
[ "$(cat "$T/last.out")" = "$M" ] && fail "--net none does not change the measurement"
grep -q "^configuration $CFG " "$T/last.err" && fail "--net none does not change the configuration hash"
expect_rc 0 "$SCPCTL" platform measure --trusted "$U/libplug.so" -- "$U/app"
[ "$(cat "$T/last.out")" = "$M" ] && fail "the trusted-file manifest does not change the measurement"

cat >"$T/t.yaml" <<YAML
name: t
services:
  - {name: app, measurements: [$M], command: [app], append_args: true}
YAML
expect_rc 0 "$SCPCTL" session create "$T/t.yaml"
RUN=("$SCPCTL" run --session t --service app --platform-key "$T/p1.key" --volume-dir "$T/vols" "${TRUST[@]}")

# unchanged: all work
expect_rc 0 "${RUN[@]}" -- "$U/app" dlopen "$U/libplug.so"
grep -qx "dlopen ok: 42" "$T/last.out" || fail "dlopen of the listed library: $(cat "$T/last.out" "$T/last.err")"
expect_rc 0 "${RUN[@]}" -- "$U/app" open "$U/data.conf"
grep -qx "open ok: setting=original" "$T/last.out" || fail "open of the listed file: $(cat "$T/last.out" "$T/last.err")"
expect_rc 0 "${RUN[@]}" -- "$U/app" exec "$U/helper"

# an exec of a binary that is not in the manifest
expect_rc 2 "${RUN[@]}" -- "$U/app" exec "$U/unlisted"
grep -qx "exec failed: Permission denied" "$T/last.out" || fail "exec of an unlisted binary: $(cat "$T/last.out")"
grep -q "exec of $U/unlisted refused: it is not in the measured trusted-file manifest" "$T/last.err" ||
    fail "no log line for the refused exec: $(cat "$T/last.err")"
# the same through fexecve (execveat of a descriptor)
expect_rc 2 "${RUN[@]}" -- "$U/app" fexecve "$U/unlisted"
grep -qx "exec failed: Permission denied" "$T/last.out" || fail "fexecve of an unlisted binary: $(cat "$T/last.out")"
expect_rc 0 "${RUN[@]}" -- "$U/app" fexecve "$U/helper"
# a program inside a protected volume: never measured, so refused like any unlisted binary
# (without a manifest the shield runs it from a sealed copy: tests/shield/exec_volume.sh)
cat >"$T/tv.yaml" <<YAML
name: tv
services:
  - {name: app, measurements: [$M], command: [app], append_args: true, volumes: [data]}
volumes:
  - {name: data, path: /data}
YAML
expect_rc 0 "$SCPCTL" session create "$T/tv.yaml"
expect_rc 2 "$SCPCTL" run --session tv --service app --platform-key "$T/p1.key" --volume-dir "$T/vols" "${TRUST[@]}" \
    -- "$U/app" copyexec "$U/helper" /data/inside
grep -qx "exec failed: Permission denied" "$T/last.out" || fail "exec of a program in the volume: $(cat "$T/last.out" "$T/last.err")"
grep -q "exec of /data/inside refused: it is not in the measured trusted-file manifest" "$T/last.err" ||
    fail "no log line for the refused exec in the volume: $(cat "$T/last.err")"
# a library inside the volume (without a manifest loaded from a sealed copy: tests/shield/libs_volume.sh)
expect_rc 2 "$SCPCTL" run --session tv --service app --platform-key "$T/p1.key" --volume-dir "$T/vols" "${TRUST[@]}" \
    -- "$U/app" copydlopen "$U/libplug.so" /data/inside.so
grep -q "^dlopen failed" "$T/last.out" || fail "dlopen of a library in the volume: $(cat "$T/last.out" "$T/last.err")"
grep -q "dlopen of /data/inside.so refused: it is not in the measured trusted-file manifest" "$T/last.err" ||
    fail "no log line for the refused dlopen in the volume: $(cat "$T/last.err")"
# a library that is not listed
expect_rc 2 "${RUN[@]}" -- "$U/app" dlopen "$U/libother.so"
grep -q "^dlopen failed" "$T/last.out" || fail "dlopen of an unlisted library: $(cat "$T/last.out")"
grep -q "mapping of $U/libother.so refused: it is not in the measured" "$T/last.err" ||
    fail "no log line for the unlisted library: $(cat "$T/last.err")"

# the program's own executable mapping of a file (mmap with PROT_EXEC, or mprotect adding it)
for mode in mmapx mprotect; do
    expect_rc 0 "${RUN[@]}" -- "$U/app" $mode "$U/libplug.so"
    grep -qx "$mode ok" "$T/last.out" || fail "$mode of the listed library: $(cat "$T/last.out" "$T/last.err")"
    expect_rc 2 "${RUN[@]}" -- "$U/app" $mode "$U/libother.so"
    grep -qx "$mode failed: Permission denied" "$T/last.out" || fail "$mode of an unlisted file: $(cat "$T/last.out")"
    grep -q "$U/libother.so refused: it is not in the measured" "$T/last.err" || fail "$mode: no log line"
done

# changed after measurement, while the program runs: ARGS... run after FILE got one byte changed
changed_run() { # FILE OFFSET ARGS...
    local f=$1 off=$2
    shift 2
    rm -f "$U/ready" "$U/go"
    "${RUN[@]}" -- "$U/app" wait "$U" "$@" >"$T/last.out" 2>"$T/last.err" &
    local pid=$!
    for _ in $(seq 1 100); do
        [ -e "$U/ready" ] && break
        kill -0 $pid 2>/dev/null || fail "the program did not start: $(cat "$T/last.err")"
        sleep 0.1
    done
    cp -p "$f" "$f.orig"
    if [ "${HOW:-}" = replace ]; then # a new file (another inode) put at the listed path
        cp "$f" "$f.new" && printf 'X' | dd of="$f.new" bs=1 seek="$off" conv=notrunc 2>/dev/null && mv "$f.new" "$f"
    else
        printf 'X' | dd of="$f" bs=1 seek="$off" conv=notrunc 2>/dev/null
    fi
    touch "$U/go"
    wait $pid
    RC=$?
    cp -p "$f.orig" "$f" # back as measured (the content; the stamp is new)
}
off=$(grep -obaF PLUGMARK-original "$U/libplug.so" | head -1 | cut -d: -f1)
[ -n "$off" ] || fail "test setup: no marker in the library"
changed_run "$U/libplug.so" "$off" dlopen "$U/libplug.so"
[ $RC -eq 2 ] && grep -q "^dlopen failed" "$T/last.out" || fail "dlopen of a changed library: rc $RC: $(cat "$T/last.out")"
grep -q "mapping of $U/libplug.so refused: its content differs from the measured trusted-file manifest" "$T/last.err" ||
    fail "no log line naming the changed library: $(cat "$T/last.err")"
changed_run "$U/data.conf" 8 open "$U/data.conf"
[ $RC -eq 2 ] && grep -qx "open failed: Permission denied" "$T/last.out" ||
    fail "open of a changed trusted file: rc $RC: $(cat "$T/last.out")"
grep -q "open of $U/data.conf refused: its content differs from the measured trusted-file manifest (EACCES)" "$T/last.err" ||
    fail "no log line naming the changed file: $(cat "$T/last.err")"
# Write-only: no content can be read through the descriptor, so the open is not checked (no
# fstat: trusted.c); read-write is checked like read-only.
changed_run "$U/data.conf" 8 wronly "$U/data.conf"
[ $RC -eq 0 ] && grep -qx "wronly ok" "$T/last.out" || fail "O_WRONLY open of a changed trusted file: rc $RC: $(cat "$T/last.out")"
changed_run "$U/data.conf" 8 rdwr "$U/data.conf"
[ $RC -eq 2 ] && grep -qx "open failed: Permission denied" "$T/last.out" ||
    fail "O_RDWR open of a changed trusted file: rc $RC: $(cat "$T/last.out")"
HOW=replace changed_run "$U/data.conf" 8 open "$U/data.conf"
[ $RC -eq 2 ] && grep -qx "open failed: Permission denied" "$T/last.out" ||
    fail "open of a trusted file replaced by another: rc $RC: $(cat "$T/last.out")"
grep -q "open of $U/data.conf refused: its content differs" "$T/last.err" || fail "no log line for the replaced file"
# The same file changed while the program runs, opened by another name: the check goes by the
# opened file's device and inode, so every alias of a listed file is caught (trusted.c,
# check_fd): fopen, a symbolic link, a hard link, a reopen through /proc/self/fd of an O_PATH
# descriptor taken before the change, and (as root) a bind mount of the file elsewhere.
ln -sf "$U/data.conf" "$U/alias-sym"
ln -f "$U/data.conf" "$U/alias-hard"
ROUTES=("fopen $U/data.conf" "open $U/alias-sym" "open $U/alias-hard" "procfd $U/data.conf")
BIND=
if [ "$(id -u)" = 0 ] && : >"$U/alias-bind" && mount --bind "$U/data.conf" "$U/alias-bind" 2>/dev/null; then
    BIND=$U/alias-bind
    trap 'umount "$BIND" 2>/dev/null; cleanup; rm -rf "$U"' EXIT
    ROUTES+=("open $BIND")
else
    echo "cas_trusted: not root (or no mount): the bind-mount alias is not tested"
fi
for route in "${ROUTES[@]}"; do
    # unchanged: every route opens the file
    expect_rc 0 "${RUN[@]}" -- "$U/app" $route
    grep -qx "open ok: setting=original" "$T/last.out" || fail "$route of the unchanged file: $(cat "$T/last.out" "$T/last.err")"
    # changed in place (the hard link and the bind mount see the same inode)
    changed_run "$U/data.conf" 8 $route
    [ $RC -eq 2 ] && grep -qx "open failed: Permission denied" "$T/last.out" ||
        fail "$route of a changed trusted file: rc $RC: $(cat "$T/last.out" "$T/last.err")"
    grep -q "refused: its content differs from the measured trusted-file manifest (EACCES)" "$T/last.err" ||
        fail "$route: no log line for the changed file: $(cat "$T/last.err")"
done
[ -n "$BIND" ] && umount "$BIND"
changed_run "$U/helper" 200 exec "$U/helper"
[ $RC -eq 2 ] && grep -qx "exec failed: Permission denied" "$T/last.out" || fail "exec of a changed binary: rc $RC: $(cat "$T/last.out")"
grep -q "exec of $U/helper refused: its content differs" "$T/last.err" || fail "no log line for the changed binary"

# restored content (new stamp): accepted again after a fresh hash
expect_rc 0 "${RUN[@]}" -- "$U/app" dlopen "$U/libplug.so"
grep -qx "dlopen ok: 42" "$T/last.out" || fail "the restored library is refused: $(cat "$T/last.err")"
# The loader reads the libraries that were measured, not what lies at their paths at exec time:
# a library that links at start (RUNPATH $ORIGIN) is replaced (rename) after scpctl run measured
# it, while attestation waits (CAS stopped); the replacement's constructor must never run.
printf '#include <stdio.h>\n__attribute__((constructor)) static void c(void) { printf("START-original\\n"); }\nint start_answer(void) { return 7; }\n' >"$U/start.c"
printf '#include <stdio.h>\n#include <fcntl.h>\n#include <unistd.h>\n__attribute__((constructor)) static void c(void) { printf("START-swapped\\n"); close(open("%s/swapped-ran", O_CREAT | O_WRONLY, 0644)); }\nint start_answer(void) { return 8; }\n' "$U" >"$U/swapped.c"
printf 'int start_answer(void);\nint main(void) { return start_answer() == 7 ? 0 : 5; }\n' >"$U/app2.c"
cc -shared -fPIC -Wl,-soname,libstart.so -o "$U/libstart.so" "$U/start.c" &&
    cc -shared -fPIC -Wl,-soname,libstart.so -o "$U/libswapped.so" "$U/swapped.c" &&
    cc -o "$U/app2" "$U/app2.c" -L"$U" -lstart -Wl,--enable-new-dtags,-rpath,'$ORIGIN' || fail "cannot build app2"
expect_rc 0 "$SCPCTL" platform measure -- "$U/app2"
M2=$(cat "$T/last.out")
printf 'name: t2\nservices: [{name: app2, measurements: [%s], command: [app2]}]\n' "$M2" >"$T/t2.yaml"
expect_rc 0 "$SCPCTL" session create "$T/t2.yaml"
kill -STOP "$CAS_PID"
"$SCPCTL" run --session t2 --service app2 --platform-key "$T/p1.key" --volume-dir "$T/vols" -- "$U/app2" \
    >"$T/app2.out" 2>"$T/app2.err" &
A2=$!
# measured: scpctl holds the library open and talks to CAS (it connects after measuring)
measured() { ls -l /proc/$A2/fd 2>/dev/null | grep -q "$U/libstart.so" && ls -l /proc/$A2/fd | grep -q socket:; }
for _ in $(seq 1 200); do
    measured && break
    sleep 0.05
done
measured || { kill -CONT "$CAS_PID"; fail "scpctl run did not measure app2: $(cat "$T/app2.err")"; }
mv "$U/libswapped.so" "$U/libstart.so"
kill -CONT "$CAS_PID"
wait $A2
RC=$?
[ -e "$U/swapped-ran" ] && fail "the library put in place after measurement ran: $(cat "$T/app2.out" "$T/app2.err")"
[ $RC -eq 0 ] && grep -qx START-original "$T/app2.out" || fail "app2: rc $RC: $(cat "$T/app2.out" "$T/app2.err")"

# The program's loader (PT_INTERP, opened by the kernel by path) replaced after measurement: the
# run stops before exec, so the replacement never runs.
LDSO=$(readlink -f /lib64/ld-linux-x86-64.so.2)
[ -f "$LDSO" ] || { echo "cas_trusted: ok (no x86-64 loader: the loader case skipped)"; exit 0; }
cp "$LDSO" "$U/ld.so" && cp "$LDSO" "$U/ld-swapped.so"
printf 'X' | dd of="$U/ld-swapped.so" bs=1 seek=1000 conv=notrunc 2>/dev/null
cc -o "$U/app3" "$U/app2.c" -L"$U" -lstart -Wl,--enable-new-dtags,-rpath,'$ORIGIN' -Wl,--dynamic-linker="$U/ld.so" ||
    fail "cannot build app3"
mv "$U/libstart.so" "$U/libstart.swapped" && cc -shared -fPIC -Wl,-soname,libstart.so -o "$U/libstart.so" "$U/start.c"
expect_rc 0 "$SCPCTL" platform measure -- "$U/app3"
M3=$(cat "$T/last.out")
printf 'name: t3\nservices: [{name: app3, measurements: [%s], command: [app3]}]\n' "$M3" >"$T/t3.yaml"
expect_rc 0 "$SCPCTL" session create "$T/t3.yaml"
RUN3=("$SCPCTL" run --session t3 --service app3 --platform-key "$T/p1.key" --volume-dir "$T/vols" -- "$U/app3")
expect_rc 0 "${RUN3[@]}"
grep -qx START-original "$T/last.out" || fail "app3 with its own loader: $(cat "$T/last.out" "$T/last.err")"
kill -STOP "$CAS_PID"
"${RUN3[@]}" >"$T/app3.out" 2>"$T/app3.err" &
A2=$!
measured() { ls -l /proc/$A2/fd 2>/dev/null | grep -q "$U/ld.so" && ls -l /proc/$A2/fd | grep -q socket:; }
for _ in $(seq 1 200); do
    measured && break
    sleep 0.05
done
measured || { kill -CONT "$CAS_PID"; fail "scpctl run did not measure app3: $(cat "$T/app3.err")"; }
mv "$U/ld-swapped.so" "$U/ld.so"
kill -CONT "$CAS_PID"
wait $A2
RC=$?
[ $RC -eq 126 ] && grep -q "loader $U/ld.so changed since it was measured; not starting" "$T/app3.err" ||
    fail "a loader replaced after measurement: rc $RC: $(cat "$T/app3.out" "$T/app3.err")"
grep -q START "$T/app3.out" && fail "the program ran with a replaced loader"
echo "cas_trusted: ok"
