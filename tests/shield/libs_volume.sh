#!/bin/bash
# tests/shield/libs_volume.sh SCPCTL MKVOL - shared libraries stored inside a protected volume
# (src/shield/libs.c), compared with what the loader does on a plain directory: a program
# built in the volume against two libraries there finds them through LD_LIBRARY_PATH (from
# bash, and from dash's vfork child), through DT_RUNPATH with $ORIGIN and with an absolute
# path, and a program outside the volume through LD_LIBRARY_PATH; dlopen of a path in the
# volume (and again: the same handle; dlclose and dlopen again; RTLD_NOLOAD), of a bare name
# through LD_LIBRARY_PATH, of a garbage file and of a library with an undefined symbol (both
# fail with the loader's message); Python's ctypes, and a C extension module imported from the
# volume. The libraries' bytes on disk are ciphertext.
. "$(dirname "$0")/lib.sh"
setup "$@"
export SCP_QUIET=1
command -v gcc >/dev/null || { echo "SKIP: needs gcc"; exit 77; }
PLAIN=$T/plain
mkdir -p "$PLAIN"

cat > "$T/dl.c" <<'C'
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
/* dl PATH...: for each, dlopen RTLD_NOW and call foo(1), or print that it failed */
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int noload = !strncmp(argv[i], "noload:", 7);
        const char *p = noload ? argv[i] + 7 : argv[i];
        void *h = dlopen(p, RTLD_NOW | (noload ? RTLD_NOLOAD : 0));
        if (!h) {
            const char *e = dlerror();
            printf("%s: fails (%s)\n", argv[i], e ? e : "no message");
            continue;
        }
        int (*foo)(int) = (int (*)(int))dlsym(h, "foo");
        void *again = dlopen(p, RTLD_NOW);
        printf("%s: foo(1)=%d same-handle=%d\n", argv[i], foo ? foo(1) : -1, again == h);
        dlclose(again);
        dlclose(h);
    }
    return 0;
}
C
# the same steps in the plain directory and in the volume: the outputs must be equal
CASES='
printf "int dep(void) { return 7; }\n" > dep.c
printf "const char *mark = \"SCPLIB_marker\";\nint dep(void);\nint foo(int x) { return x * 6 + dep(); }\n" > foo.c
printf "#include <stdio.h>\nint foo(int);\nint main(void) { printf(\"foo=%%d\\\\n\", foo(6)); return 0; }\n" > main.c
printf "int missing_symbol(void);\nint foo(int x) { return missing_symbol() + x; }\n" > bad.c
mkdir -p lib && echo garbage > lib/garbage.so
gcc -shared -fPIC -o lib/libdep.so -Wl,-soname,libdep.so dep.c
gcc -shared -fPIC -o lib/libfoo.so -Wl,-soname,libfoo.so foo.c -Llib -ldep -Wl,-rpath,\$ORIGIN
gcc -shared -fPIC -o lib/libbad.so bad.c
gcc -o main main.c -Llib -lfoo
gcc -o main_origin main.c -Llib -lfoo -Wl,-rpath,\$ORIGIN/lib
gcc -o main_abs main.c -Llib -lfoo -Wl,-rpath,$PWD/lib
cp main ../main_outside
gcc -o dl "$DLC" -ldl
echo "LD_LIBRARY_PATH: $(LD_LIBRARY_PATH=lib ./main)"
echo "\$ORIGIN: $(./main_origin)"
echo "absolute RUNPATH: $(./main_abs)"
echo "outside program: $(LD_LIBRARY_PATH=$PWD/lib ../main_outside)"
echo "LD_LIBRARY_PATH outside the volume: $(LD_LIBRARY_PATH=/usr/lib:/nonexistent ./main_origin)"
LD_LIBRARY_PATH=/usr/lib:/nonexistent ./dl libm.so.6
echo "from dash: $(LD_LIBRARY_PATH=lib sh -c "./main; ../main_outside")"
./main 2>/dev/null; echo "no search path: rc $?"
./dl $PWD/lib/libfoo.so lib/libfoo.so noload:$PWD/lib/libdep.so lib/garbage.so lib/libbad.so lib/nonexistent.so
LD_LIBRARY_PATH=$PWD/lib ./dl libfoo.so
python3 -c "import ctypes; a = ctypes.CDLL(\"./lib/libfoo.so\"); b = ctypes.CDLL(\"$PWD/lib/libfoo.so\"); print(\"ctypes\", a.foo(2), a._handle == b._handle)"
'
want=$(cd "$PLAIN" && DLC=$T/dl.c bash -c "$CASES" 2>&1 | sed "s|$PLAIN|DIR|g"; echo "exit ${PIPESTATUS[0]}")
got=$(run env DLC=$T/dl.c bash -c "cd $MNT && $CASES" 2>&1 | sed "s|$MNT|DIR|g"; echo "exit ${PIPESTATUS[0]}")
[ "$got" = "$want" ] || fail "libraries in the volume gave
$got
where a plain directory gives
$want"
echo "$got" | grep -q "^LD_LIBRARY_PATH: foo=43$" || fail "the cases did not run: $got"
note "LD_LIBRARY_PATH, \$ORIGIN, an absolute RUNPATH, an outside program, dash, dlopen, ctypes: as on a plain directory"

# a C extension module for Python, imported from the volume (the import's dlopen of its path)
PYINC=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)
if [ -f "$PYINC/Python.h" ]; then
    cat > "$T/spam.c" <<'C'
#include <Python.h>
static PyObject *twice(PyObject *self, PyObject *arg) { (void)self; return PyLong_FromLong(2 * PyLong_AsLong(arg)); }
static PyMethodDef methods[] = {{"twice", twice, METH_O, "2x"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "spam", "SCPLIB_pymark", -1, methods, NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit_spam(void) { return PyModule_Create(&mod); }
C
    ext=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
    out=$(run bash -c "mkdir -p $MNT/pkg && gcc -shared -fPIC -I$PYINC -o $MNT/pkg/spam$ext $T/spam.c &&
      PYTHONPATH=$MNT/pkg /usr/bin/python3 -c 'import spam; print(spam.twice(21), spam.__doc__, spam.__file__)'" 2>&1)
    [ "$out" = "42 SCPLIB_pymark $MNT/pkg/spam$ext" ] || fail "a C extension module in the volume: '$out'"
    note "a C extension module in the volume imports"
else
    note "no Python.h (python3-dev): the extension module skipped"
fi
check_no_plaintext SCPLIB_marker
check_no_plaintext SCPLIB_pymark
echo PASS
