#!/bin/bash
# tests/shield/exec_volume.sh SCPCTL MKVOL - an exec of a path inside a protected volume
# (src/shield/exec_script.c), compared with what the kernel does on a plain directory: a
# script's "#!" line runs its interpreter with the script's path (an argument on the line, env,
# a relative and an absolute path, execvp through PATH), a file without "#!" runs as a shell
# script (ENOEXEC, the shell's fallback), a missing execute bit is refused, a link out of the
# volume runs its target (a Python venv's bin/python), and git runs a hook stored in a
# repository in the volume. An ELF image inside the volume runs from a sealed in-memory copy
# (a program copied in, one compiled there by gcc, an interpreter in the volume, from Python's
# subprocess); its bytes on disk are ciphertext. Refused where the kernel would run it: a
# script whose interpreter is a script in the volume (EACCES, exit 126).
. "$(dirname "$0")/lib.sh"
setup "$@"
export SCP_QUIET=1
command -v python3 >/dev/null && command -v git >/dev/null || { echo "SKIP: needs python3 and git"; exit 77; }
PLAIN=$T/plain
mkdir -p "$PLAIN"
# The same script in the plain directory and in the volume: the outputs must be equal.
CASES='
printf "#!/bin/sh\necho sh \"\$0\" \"\$@\"\n" > s.sh && chmod +x s.sh && ./s.sh a "b c" && "$PWD/s.sh" d
printf "#!/usr/bin/env python3\nimport sys; print(\"py\", sys.argv[1:])\n" > p.py && chmod +x p.py && ./p.py x
printf "#!/bin/sh -e  \necho sh-e; false; echo not-here\n" > e.sh && chmod +x e.sh; ./e.sh; echo "e rc $?"
printf "echo no-hash-bang \$1\n" > n.sh && chmod +x n.sh && ./n.sh arg
printf "#!/bin/sh\necho not-run\n" > nox.sh && ./nox.sh 2>/dev/null; echo "nox rc $?"
mkdir bin && printf "#!/bin/sh\necho via-path\n" > bin/tool && chmod +x bin/tool && PATH=$PWD/bin:$PATH tool
ln -s /bin/echo ech && ./ech link-out
cp /bin/echo e && ./e an ELF image copied in && bin/../e "a" "b c"; printf "%s\n" "#!$PWD/e -n" > ie.sh && chmod +x ie.sh && ./ie.sh x; echo
python3 -c "import subprocess; print(subprocess.run([\"./s.sh\", \"sub\"], capture_output=True, text=True).stdout, end=\"\")"
python3 -c "import subprocess; print(subprocess.run([\"./e\", \"elf-sub\"], capture_output=True, text=True).stdout, end=\"\")"
python3 -c "import subprocess, os; print(subprocess.run([\"pwd\"], cwd=\"bin\", capture_output=True, text=True).stdout.strip().rsplit(\"/\", 1)[-1])"
python3 -c "import os; fd = os.open(\"e\", os.O_RDONLY); os.execve(fd, [\"e\", \"by-fexecve\"], dict(os.environ))"
python3 -c "import os; fd = os.open(\"s.sh\", os.O_RDONLY); os.set_inheritable(fd, True); os.execve(fd, [\"s.sh\", \"fexecve-script\"], dict(os.environ))"
'
# (a protected descriptor's number lies in the shield's reserved range: /dev/fd/N)
want=$(cd "$PLAIN" && bash -c "$CASES" 2>&1 | sed "s|$PLAIN|DIR|g; s|/dev/fd/[0-9]*|/dev/fd/N|g"; echo "exit ${PIPESTATUS[0]}")
got=$(run bash -c "cd $MNT && $CASES" 2>&1 | sed "s|$MNT|DIR|g; s|/dev/fd/[0-9]*|/dev/fd/N|g"; echo "exit ${PIPESTATUS[0]}")
[ "$got" = "$want" ] || fail "scripts in the volume gave
$got
where a plain directory gives
$want"
note "scripts, ENOEXEC, no execute bit, PATH, a link out, subprocess, fexecve: as on a plain directory"

# a venv in the volume: bin/python is a link to the system's interpreter
out=$(run bash -c "python3 -m venv --without-pip $MNT/venv && $MNT/venv/bin/python -c 'import sys; print(sys.prefix)'" 2>&1) ||
    fail "a venv in the volume: $out"
[ "$out" = "$MNT/venv" ] || fail "the venv's python runs with prefix '$out'"
note "a venv's bin/python (a link out of the volume) runs"

# a venv with pip: ensurepip runs the venv's python in a subprocess whose cwd is in the volume
# (a vfork child's chdir), pip's scripts start "#!<venv>/bin/python" (a link out), and pip's
# package directory lists its files (a sibling pip-23.0.1.dist-info hid them until session 50)
if python3 -c 'import ensurepip' 2>/dev/null; then
    out=$(run bash -c "python3 -m venv $MNT/vp && $MNT/vp/bin/pip --version &&
      $MNT/vp/bin/python -c 'import os, pip; print(sorted(os.listdir(os.path.dirname(pip.__file__)))[:2])'" 2>&1) ||
        fail "a venv with pip in the volume: $out"
    echo "$out" | grep -q "^pip .* from $MNT/vp/" || fail "the venv's pip: $out"
    echo "$out" | grep -q "'__init__.py', '__main__.py'" || fail "pip's package directory lists: $out"
    note "a venv with pip in the volume: pip runs, its package directory lists"
else
    note "no ensurepip (python3-venv): the venv with pip skipped"
fi

# git runs a pre-commit hook that lives in the repository (in the volume)
out=$(run bash -c "cd $MNT && git init -q repo && cd repo && git config user.email t@t && git config user.name t &&
  printf '#!/bin/sh\necho SCPHOOK_ran >> hook.log\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit &&
  echo x > f && git add f && git commit -q -m one && cat hook.log" 2>&1) || fail "git commit with a hook: $out"
[ "$out" = SCPHOOK_ran ] || fail "the pre-commit hook did not run: $out"
note "git runs a hook stored in the volume"

# a program compiled in the volume runs, with its arguments, exit status and environment; its
# /proc/self/exe is the sealed copy; the volume holds it as ciphertext
if command -v gcc >/dev/null; then
    cat > "$T/m.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int c, char **v) {
    char exe[256] = "", line[64] = "-";
    const char *e = getenv("E");
    if (readlink("/proc/self/exe", exe, sizeof exe - 1) < 0) strcpy(exe, "-");
    FILE *f = fopen("src/m.c", "r"); /* its own source, in the volume: read through the shield */
    if (f && fgets(line, sizeof line, f)) line[strcspn(line, "\n")] = 0;
    printf("SCPELF_ran %s %s %s %s %s\n", v[0], c > 1 ? v[1] : "-", e ? e : "-", exe, line);
    return 7;
}
C
    out=$(run bash -c "cd $MNT && mkdir -p src && cp $T/m.c src/ && gcc -o src/m src/m.c && E=env-ok ./src/m arg1; echo rc \$?; src/m | cat" 2>&1)
    want="SCPELF_ran ./src/m arg1 env-ok /memfd:m (deleted) #include <stdio.h>
rc 7
SCPELF_ran src/m - - /memfd:m (deleted) #include <stdio.h>"
    [ "$out" = "$want" ] || fail "a program compiled in the volume: '$out'"
    grep -rqa "SCPELF_ran" "$VOL" && fail "the compiled program's bytes are in plaintext on disk"
    note "a program compiled in the volume by gcc runs (arguments, exit status, environment; it reads its source in the volume); ciphertext on disk"
    # gcc run from outside the volume with its output inside: its driver opens the volume in a
    # trap handler (a private holding whose watcher waits for a call outside one) and then
    # waits for `as`, which opens the volume: the holding's watcher starts at the vfork
    out=$(run bash -c "cd $T && timeout 60 gcc -c -o $MNT/outside.o m.c" 2>&1; echo "rc $?")
    [ "$out" = "rc 0" ] || fail "gcc outside the volume, its output inside: '$out' (rc 124: hung)"
    note "gcc outside the volume writes its output inside (its as does not wait forever)"
fi
# the image it runs is shielded: its own volume calls work (cat, a copied ELF, reads the volume)
out=$(run bash -c "cd $MNT && cp /bin/cat mycat && echo SCPELF_data > d.txt && ./mycat d.txt && ./mycat < d.txt && ./mycat /proc/self/cmdline | tr '\\0' ' '; echo" 2>&1)
[ "$out" = "SCPELF_data
SCPELF_data
./mycat /proc/self/cmdline " ] || fail "a copied cat in the volume: '$out'"
note "a copied cat in the volume reads the volume (it is shielded)"
# dash runs every command from a vfork child, which may not open a volume its parent has not
# opened: the program and a script are then run through a shell, which opens it
out=$(run sh -c "$MNT/e dash-first-touch; $MNT/s.sh dash; $MNT/missing; echo rc \$?" 2>&1)
[ "$(echo "$out" | sed 's/^.*missing.*not found$/missing/')" = "dash-first-touch
sh $MNT/s.sh dash
missing
rc 127" ] || fail "dash's first touch of the volume is an exec: '$out'"
note "dash's first touch of the volume is an exec from its vfork child: runs (a missing file: 127)"
# a static image in the volume (busybox-static): run from the copy, served by a supervisor
BB=$(command -v busybox || true)
if [ -n "$BB" ]; then
    out=$(run bash -c "cd $MNT && cp $BB busybox && ./busybox cat d.txt" 2>&1)
    [ "$out" = SCPELF_data ] || fail "a static busybox in the volume: '$out'"
    note "busybox in the volume runs and reads the volume"
fi
# scpctl run's own command stored in the volume (the launcher cannot see it: a shell execs it)
out=$(run "$MNT/e" direct "a b" 2>&1; echo "rc $?")
[ "$out" = "direct a b
rc 0" ] || fail "scpctl run -- a program in the volume: '$out'"
out=$(run "$MNT/s.sh" direct-script 2>&1; echo "rc $?")
[ "$out" = "sh $MNT/s.sh direct-script
rc 0" ] || fail "scpctl run -- a script in the volume: '$out'"
out=$(run "$MNT/missing" 2>&1; echo "rc $?")
echo "$out" | grep -q "rc 127" || fail "scpctl run -- a missing program in the volume: '$out'"
note "scpctl run's command stored in the volume (a program, a script) runs; a missing one: 127"
# refused: no execute bit; a script whose interpreter is itself a script in the volume
out=$(run bash -c "cd $MNT && cp /bin/true nx && chmod 644 nx && ./nx; echo rc \$?" 2>&1)
echo "$out" | grep -q "rc 126" || fail "an ELF image without an execute bit: $out"
out=$(run bash -c "cd $MNT && printf '#!/bin/sh\necho inner\n' > in.sh && printf '#!$MNT/in.sh\necho ran\n' > o.sh && chmod +x in.sh o.sh && ./o.sh; echo rc \$?" 2>&1)
echo "$out" | grep -q "rc 126" || fail "a script with a script in the volume as its interpreter: $out"
echo "$out" | grep -q "^ran" && fail "a script with a script in the volume as its interpreter ran"
note "an ELF image without an execute bit, a script as another script's interpreter: refused (126)"
check_no_plaintext SCPHOOK_ran
echo PASS
