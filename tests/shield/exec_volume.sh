#!/bin/bash
# tests/shield/exec_volume.sh SCPCTL MKVOL - an exec of a path inside a protected volume
# (src/shield/exec_script.c), compared with what the kernel does on a plain directory: a
# script's "#!" line runs its interpreter with the script's path (an argument on the line, env,
# a relative and an absolute path, execvp through PATH), a file without "#!" runs as a shell
# script (ENOEXEC, the shell's fallback), a missing execute bit is refused, a link out of the
# volume runs its target (a Python venv's bin/python), and git runs a hook stored in a
# repository in the volume. Refused where the kernel would run it: an ELF image inside the
# volume, and a script whose interpreter lies in the volume (EACCES, exit 126).
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
python3 -c "import subprocess; print(subprocess.run([\"./s.sh\", \"sub\"], capture_output=True, text=True).stdout, end=\"\")"
python3 -c "import subprocess, os; print(subprocess.run([\"pwd\"], cwd=\"bin\", capture_output=True, text=True).stdout.strip().rsplit(\"/\", 1)[-1])"
'
want=$(cd "$PLAIN" && bash -c "$CASES" 2>&1 | sed "s|$PLAIN|DIR|g"; echo "exit ${PIPESTATUS[0]}")
got=$(run bash -c "cd $MNT && $CASES" 2>&1 | sed "s|$MNT|DIR|g"; echo "exit ${PIPESTATUS[0]}")
[ "$got" = "$want" ] || fail "scripts in the volume gave
$got
where a plain directory gives
$want"
note "scripts, ENOEXEC, no execute bit, PATH, a link out, subprocess: as on a plain directory"

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

# refused: an ELF image in the volume, and a script whose interpreter is in the volume
out=$(run bash -c "cd $MNT && cp /bin/true t && chmod +x t && ./t; echo rc \$?" 2>&1)
echo "$out" | grep -q "rc 126" || fail "an ELF image in the volume: $out"
out=$(run bash -c "cd $MNT && cp /bin/sh mysh && printf '#!$MNT/mysh\necho ran\n' > i.sh && chmod +x mysh i.sh && ./i.sh; echo rc \$?" 2>&1)
echo "$out" | grep -q "rc 126" || fail "a script with its interpreter in the volume: $out"
echo "$out" | grep -q "^ran" && fail "a script with its interpreter in the volume ran"
note "an ELF image in the volume and an interpreter in it: refused (126)"
check_no_plaintext SCPHOOK_ran
echo PASS
