#!/bin/sh
# Static programs on a protected volume: busybox-static (sh with a pipeline, cp, tar) and a Go
# program built here (create, write, fsync, rename, read back, readdir), static and with cgo
# (dynamic at a fixed address, its file calls raw). None can take the preloaded shield; scpctl run serves them from a supervisor by seccomp user notification
# (src/runtime/notify.c). Each step must store its bytes (read back with `scpctl volume cat`,
# the backing store scanned for the plaintext marker), and a static program killed by SIGKILL
# mid-write must leave the last fsynced contents, never a torn file.
# The supervisor reads the program's memory as hostile: bad pointers give EFAULT, long paths
# ENAMETOOLONG, files above the size limit EFBIG (shield-static-helper MOUNT probe).
# usage: static.sh SCPCTL MKVOL [STATIC_HELPER]
. "$(dirname "$0")/lib.sh"
static_setup "$1" "$2"
HELPER=${3:-}
# stored RC NAME CONTENT: the step succeeded and the volume holds exactly CONTENT
stored() {
    [ "$1" -lt 128 ] || fail "$2: killed by signal $(($1 - 128))"
    [ "$1" -eq 0 ] || fail "$2: failed (exit $1), nothing stored"
    [ "$(cat_vol "$2")" = "$3" ] || fail "$2: reported success, the volume holds '$(cat_vol "$2")'"
    echo "ok   $2 (stored)"
}
# mode_of PATH: the mode the volume records, as a dynamic (preloaded) program sees it
mode_of() { run stat -c %a "$MNT/$1"; }
mkdir "$T/src"
# a static program started from a shielded shell (dash is dynamic): it inherits the shell's
# filters, which must not kill it (exec, rt_sigprocmask), and is served like the others
srun() { run sh -c '"$@"' sh "$@"; }
if [ -n "$BB" ]; then
    # a pipeline: busybox sh forks and execs busybox cat, whose stdout is the served file
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
        "$BB" sh -c 'echo SCPSTATIC_sh | "$0" cat > "$1/sh.txt"' "$BB" "$MNT"
    stored $? sh.txt SCPSTATIC_sh
    echo SCPSTATIC_cp > "$T/src/cp.txt"
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$BB" cp "$T/src/cp.txt" "$MNT/cp.txt"
    stored $? cp.txt SCPSTATIC_cp
    # appending to an existing file opens it write-only without O_TRUNC: the served copy must
    # start as the file's content (the supervisor reads it through a write-only open: EBADF)
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
        "$BB" sh -c 'echo SCPSTATIC_app1 > "$1/app.txt" && echo SCPSTATIC_app2 >> "$1/app.txt"' sh "$MNT"
    stored $? app.txt "SCPSTATIC_app1
SCPSTATIC_app2"
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
        "$BB" sh -c 'echo SCPSTATIC_app3 >> "$1/app.txt"' sh "$MNT"
    stored $? app.txt "SCPSTATIC_app1
SCPSTATIC_app2
SCPSTATIC_app3"
    # write-only without O_TRUNC or O_APPEND: bytes in place, the rest kept
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
        "$BB" sh -c 'printf XX | "$0" dd of="$1/app.txt" conv=notrunc 2>/dev/null' "$BB" "$MNT"
    stored $? app.txt "XXPSTATIC_app1
SCPSTATIC_app2
SCPSTATIC_app3"
    # two processes that open one file for writing see one file: a subshell (another
    # process) appends between two writes of its parent's open descriptor, and two background
    # loops append at once; every line must be stored (a copy per open lost the other's lines)
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$BB" sh -c '
        exec 3>>"$1/two.txt"; echo SCPSTATIC_two_A >&3
        (echo SCPSTATIC_two_B >> "$1/two.txt"); echo SCPSTATIC_two_C >&3; exec 3>&-' sh "$MNT"
    stored $? two.txt "SCPSTATIC_two_A
SCPSTATIC_two_B
SCPSTATIC_two_C"
    timeout 120 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$BB" sh -c '
        loop() { i=0; while [ $i -lt 40 ]; do echo "SCPSTATIC_$2_$i" >> "$1/both.txt"; i=$((i + 1)); done; }
        loop "$1" p & loop "$1" q & wait' sh "$MNT"
    rc=$?
    [ $rc -eq 0 ] || fail "both.txt: two appending processes failed (exit $rc)"
    got=$(cat_vol both.txt | sort | tr '\n' ' ')
    want=$(i=0; while [ $i -lt 40 ]; do echo "SCPSTATIC_p_$i"; echo "SCPSTATIC_q_$i"; i=$((i + 1)); done | sort | tr '\n' ' ')
    [ "$got" = "$want" ] || fail "both.txt: of 80 lines appended by two processes the volume holds $(cat_vol both.txt | wc -l)"
    echo "ok   both.txt (80 lines appended by two processes at once, all stored)"
    # a dynamic program (coreutils cp) started by the static shell runs without the shield and
    # is served by the same supervisor (cp compares fstat of what it opened with stat)
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$BB" sh -c 'cp "$1/cp.txt" "$1/dyn.txt"' sh "$MNT"
    stored $? dyn.txt SCPSTATIC_cp
    # one device for the volume whether a static program asks (the supervisor) or a dynamic one
    # (the shield), and another for a second volume: the supervisor numbered its volumes 0xfc:i,
    # so two static servers, each on its first volume, saw one (st_dev, st_ino) for their roots
    VOL2=$T/vol2
    "$MKVOL" "$T/key2" "$VOL2" || fail "cannot create a second volume"
    devs() { timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" \
        --volume "$VOL2:$T/mnt2:$T/key2" -- "$@" stat -c %d "$MNT" "$MNT/cp.txt" "$T/mnt2" | tr '\n' ' '; }
    ds=$(devs "$BB"); dd=$(devs)
    set -- $ds
    [ $# = 3 ] && [ "$1" = "$2" ] && [ "$1" != "$3" ] || fail "static stat: devices '$ds' (mount, file, second mount)"
    [ "$ds" = "$dd" ] || fail "a static program sees devices '$ds', a dynamic one '$dd'"
    echo "ok   devices (static and dynamic agree: $ds)"
    mkdir -p "$T/tree/d/e"
    echo SCPSTATIC_tar_top > "$T/tree/top.txt"; chmod 750 "$T/tree/top.txt"
    echo SCPSTATIC_tar_a > "$T/tree/d/a.txt"; chmod 640 "$T/tree/d/a.txt"
    echo SCPSTATIC_tar_b > "$T/tree/d/e/b.txt"; chmod 600 "$T/tree/d/e/b.txt"
    chmod 710 "$T/tree/d/e"
    tar cf "$T/src.tar" -C "$T/tree" top.txt d || fail "cannot make the tar file"
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$BB" tar xf "$T/src.tar" -C "$MNT"
    rc=$?
    stored $rc top.txt SCPSTATIC_tar_top
    stored $rc d/a.txt SCPSTATIC_tar_a
    stored $rc d/e/b.txt SCPSTATIC_tar_b
    modes=$(mode_of top.txt; mode_of d/a.txt; mode_of d/e; mode_of d/e/b.txt)
    [ "$(echo $modes)" = "750 640 710 600" ] || fail "tar: modes in the volume are '$(echo $modes)', not 750 640 710 600"
    echo "ok   tar modes ($(echo $modes))"
    # the same from a shielded shell
    srun "$BB" sh -c 'echo SCPSTATIC_srun | "$0" cat > "$1/srun.txt"' "$BB" "$MNT"
    stored $? srun.txt SCPSTATIC_srun
    # after a builtin's redirection into the volume (bash's `echo x > f` moves stdout to an alias
    # of the protected file and back: the number keeps a filter of its own for good), a static
    # program that writes to stdout runs, never killed (SIGSYS, 159); one whose stdout is such an
    # alias is handed the file by the supervisor (it got EBADF before, and a program that
    # ignores write errors exited 0 with the file empty)
    out=$(run bash -c 'echo SCPSTATIC_redir > "$2/redir.txt"; "$1" cat "$2/redir.txt"
        exec 1>"$2/alias.txt"; "$1" echo SCPSTATIC_alias; echo "rc $?" >&2' sh "$BB" "$MNT" 2>&1)
    [ "$(echo $out)" = "SCPSTATIC_redir rc 0" ] || fail "a static program after a builtin's redirection: '$out'"
    stored 0 alias.txt SCPSTATIC_alias
    # redirections a shielded shell makes for a static program: the supervisor serves the
    # descriptions it hands on, at their offsets, and the shell's later writes go on after the
    # program's (one offset, as the kernel's description); `<` and `exec 3>` alike
    out=$(srun sh -c '{ echo SCPSTATIC_r1; "$0" echo SCPSTATIC_r2; echo SCPSTATIC_r3; } > "$1/redir2.txt"
        "$0" echo SCPSTATIC_r4 >> "$1/redir2.txt"; "$0" wc -l < "$1/redir2.txt"
        { read a; "$0" head -n 1; read b; echo "$a $b"; } < "$1/redir2.txt"
        exec 3> "$1/redir3.txt"; "$0" echo SCPSTATIC_x >&3; echo SCPSTATIC_y >&3; "$0" echo SCPSTATIC_z >&3
        "$0" cat /etc/hostname > "$1/redir4.txt"' "$BB" "$MNT" 2>&1)
    [ "$out" = "4
SCPSTATIC_r2
SCPSTATIC_r1 SCPSTATIC_r3" ] || fail "redirections of a shielded shell for a static program: '$out'"
    stored 0 redir2.txt "SCPSTATIC_r1
SCPSTATIC_r2
SCPSTATIC_r3
SCPSTATIC_r4"
    stored 0 redir3.txt "SCPSTATIC_x
SCPSTATIC_y
SCPSTATIC_z"
    stored 0 redir4.txt "$(cat /etc/hostname)"
    # one description at a slot and at 1 and 2 (python's os.open, made inheritable, then dup2):
    # handed on once, for both numbers
    if [ -x /usr/bin/python3 ]; then
        run /usr/bin/python3 -c 'import os, sys
fd = os.open(sys.argv[2] + "/py.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.set_inheritable(fd, True)
os.write(fd, b"SCPSTATIC_p1\n")
os.dup2(fd, 1); os.dup2(fd, 2)
os.execv(sys.argv[1], ["busybox", "sh", "-c", "echo SCPSTATIC_p2; echo SCPSTATIC_p3 >&2"])' "$BB" "$MNT"
        stored $? py.txt "SCPSTATIC_p1
SCPSTATIC_p2
SCPSTATIC_p3"
    fi
    # started in a subdirectory of the volume (the shell's working directory there is the
    # shield's view; the kernel's is the mount point): relative names, pwd, cd and getcwd
    # follow the view, in the static image and in what it forks; a relative name that leaves
    # the volume where the kernel's cwd would take it elsewhere is refused (EXDEV)
    out=$(run bash -c 'mkdir -p "$2/cw/deep" && cd "$2/cw" && echo SCPSTATIC_sub > f && echo SCPSTATIC_root > ../f
        "$1" cat f; "$1" pwd; "$1" sh -c "echo SCPSTATIC_new > new.txt; cat f; cd deep && pwd && echo SCPSTATIC_deep > d.txt &&
            cd .. && cd .. && pwd && cat f && cd $2/cw && cat f; cd / && pwd"
        "$1" cat ../../nonexistent-outside 2>&1' sh "$BB" "$MNT" 2>&1)
    want="SCPSTATIC_sub
$MNT/cw
SCPSTATIC_sub
$MNT/cw/deep
$MNT
SCPSTATIC_root
SCPSTATIC_sub
/
cat: can't open '../../nonexistent-outside': Invalid cross-device link"
    [ "$out" = "$want" ] || fail "a static program in a subdirectory of the volume: '$out'"
    [ "$(cat_vol cw/new.txt)" = SCPSTATIC_new ] && [ "$(cat_vol cw/deep/d.txt)" = SCPSTATIC_deep ] ||
        fail "a static program in a subdirectory: its new files are not where it made them: $(run ls -R "$MNT/cw")"
    echo "ok   a static program in a subdirectory of the volume (relative names, pwd, cd, its children)"
    # a dynamic program below a static one below a shielded shell: served by the supervisor,
    # alive through the traps of the shell's filter (dash's signal mask, its exec of cat)
    out=$(srun "$BB" sh -c '/bin/sh -c "cat $0/sh.txt && cp $0/sh.txt $0/dash.txt"' "$MNT" 2>&1)
    rc=$?
    [ "$out" = SCPSTATIC_sh ] || fail "dash below busybox below a shielded shell (exit $rc): '$out'"
    stored $rc dash.txt SCPSTATIC_sh
else
    echo "SKIP busybox: busybox-static is not installed"
fi
if [ -n "$GO" ]; then
    build_gofiles
    out=$(timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$T/gofiles" "$MNT")
    rc=$?
    echo "$out"
    for i in 0 1 2; do stored $rc "go$i.txt" "SCPGO_marker_$i"; done
    echo "$out" | grep -q "^readdir: .*go0.txt go1.txt go2.txt gosub/" || fail "go: readdir did not list the files"
    echo "$out" | grep -q "^stat: 15 bytes, mode -rw-r--r--" || fail "go: stat of a stored file is wrong"
    # killed by SIGKILL after an fsync and an overwrite: the fsynced contents stay
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$T/gofiles" "$MNT" kill
    rc=$?
    [ $rc -eq 137 ] || fail "go kill: exit $rc, expected 137 (SIGKILL)"
    [ "$(cat_vol kill.txt)" = "SCPGO_synced_contents" ] || fail "go kill: the volume holds '$(cat_vol kill.txt)', not the fsynced contents"
    echo "ok   kill.txt (the fsynced contents survive a SIGKILL)"
    # close after fsync: the supervisor stores the bytes again only if they changed since
    gen() { "$SCPCTL" volume info "$VOL" --key-file "$KEY" | awk '/^generation:/ {print $2}'; }
    g0=$(gen)
    "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$T/gofiles" "$MNT" write wc.txt SCPGO_write_close || fail "go write+close"
    g1=$(gen)
    "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$T/gofiles" "$MNT" write wsc.txt SCPGO_write_sync_close sync || fail "go write+fsync+close"
    g2=$(gen)
    "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$T/gofiles" "$MNT" write wsoc.txt SCPGO_synced_first sync SCPGO_changed_next || fail "go write+fsync+overwrite+close"
    stored 0 wc.txt SCPGO_write_close
    stored 0 wsc.txt SCPGO_write_sync_close
    stored 0 wsoc.txt SCPGO_changed_next # same size as the fsynced bytes: must not be taken for them
    echo "ok   volume commits: write+close $((g1 - g0)), write+fsync+close $((g2 - g1))"
    [ $((g2 - g1)) -eq $((g1 - g0)) ] || fail "a close right after an fsync committed the same bytes again"
    # from a shielded shell: Go sets its signal mask by raw rt_sigprocmask at start
    srun "$T/gofiles" "$MNT/gosub" >/dev/null
    stored $? gosub/go1.txt SCPGO_marker_1
    # the same program built with cgo (Debian's own `go` is such a build): dynamic, at a fixed
    # address, its file calls still its own raw ones, so the supervisor serves it too
    GOCACHE=$T/gocache GOPATH=$T/gopath GO111MODULE=off CGO_ENABLED=1 \
        "$GO" build -ldflags=-linkmode=external -o "$T/gocgo" "$(dirname "$0")/go/gofiles.go" || fail "go build (cgo) failed"
    file "$T/gocgo" | grep -q "dynamically linked" || fail "the cgo build is not dynamically linked: $(file "$T/gocgo")"
    run mkdir "$MNT/cgo" "$MNT/cgo2" || fail "mkdir"
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$T/gocgo" "$MNT/cgo" >/dev/null
    stored $? cgo/go1.txt SCPGO_marker_1
    # from a shielded shell: served too, its libc's traps of the shell's filter (its SIGSYS
    # handler, set by Go's cgo runtime through libc) carried out by the forwarding library
    srun "$T/gocgo" "$MNT/cgo2" >/dev/null
    stored $? cgo2/go2.txt SCPGO_marker_2
    # its output redirected into the volume by the shielded shell: handed to its supervisor
    # (before: EBADF, and Go's fmt ignores the error: exit 0 and an empty file)
    srun sh -c 'mkdir "$1" && "$0" "$1" > "$1/out.txt"' "$T/gocgo" "$MNT/cgo3"
    [ "$(cat_vol cgo3/out.txt | tail -n 1)" = ok ] || fail "a cgo Go program's redirected output: '$(cat_vol cgo3/out.txt)'"
    echo "ok   a cgo Go program's output redirected into the volume by a shielded shell"
    # scpctl run itself as an ordinary user: the supervisor reads the exec's path from scpctl,
    # which is not dumpable (it failed with EFAULT as anyone without CAP_SYS_PTRACE)
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
        U=$(mktemp -d /tmp/scp-static-user.XXXXXX) || fail "mktemp"
        chmod 755 "$U"
        cp "$T/gofiles" "$T/gocgo" "$U/"
        "$MKVOL" "$U/key" "$U/vol" >/dev/null || fail "cannot create the user's volume"
        chown -R 65534:65534 "$U"
        urun() { setpriv --reuid=65534 --regid=65534 --clear-groups "$SCPCTL" run --volume "$U/vol:$U/mnt" --key-file "$U/key" -- "$@"; }
        urun sh -c "mkdir $U/mnt/s $U/mnt/c $U/mnt/s2 $U/mnt/c2" || fail "mkdir as nobody"
        # each started by scpctl run, and by a shielded shell (whose exec starts the supervisor
        # without capabilities: its directory views are made in a namespace of their own)
        for p in gofiles:s gocgo:c gofiles:s2 gocgo:c2; do
            prog=$U/${p%:*} dir=$U/mnt/${p#*:}
            case $p in
            *2) urun sh -c '"$0" "$1"' "$prog" "$dir" > "$U/out" 2>&1 ;;
            *) urun "$prog" "$dir" > "$U/out" 2>&1 ;;
            esac || fail "${p%:*} run by nobody into ${p#*:}: $(cat "$U/out")"
            grep -q "^readdir: go0.txt go1.txt go2.txt gosub/" "$U/out" || fail "${p%:*} run by nobody: readdir: $(cat "$U/out")"
            got=$("$SCPCTL" volume cat --key-file "$U/key" "$U/vol" "${p#*:}/go1.txt" 2>&1)
            [ "$got" = SCPGO_marker_1 ] || fail "${p%:*} run by nobody: the volume holds '$got'"
            echo "ok   ${p%:*} run by nobody into ${p#*:} (stored, listed)"
        done
        rm -rf "$U"
    fi
else
    echo "SKIP go: golang-go is not installed"
fi
if [ -n "$HELPER" ]; then
    head -c 2000000 /dev/zero > "$T/big"
    "$SCPCTL" volume put "$VOL" big "$T/big" --key-file "$KEY" >/dev/null || fail "cannot put the big file"
    SCP_STATIC_MAX_MB=1 timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$HELPER" "$MNT" probe ||
        fail "hostile arguments: the supervisor did not answer as the kernel would (above)"
    [ "$(cat_vol probe.txt)" = "x" ] || fail "probe.txt: the volume holds '$(cat_vol probe.txt)'"
    # a call the supervisor carried out is not carried out again when a signal restarts it
    timeout 120 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$HELPER" "$MNT" signals ||
        fail "renames and exclusive creates under a signal storm failed (above)"
fi
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
check_no_plaintext SCPSTATIC
check_no_plaintext SCPGO
[ -z "$(ls -A "$MNT" 2>/dev/null)" ] || fail "files appeared at the mount point on the host: $(ls -A "$MNT")"
echo PASS
