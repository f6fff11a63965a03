/* shield/exec_script.c - an exec of a path under a protected mount.
 *
 * The kernel cannot run what a volume holds: it would read the ciphertext of the backing
 * store, and the mount point it sees is empty. So the shield does what the kernel's exec would
 * have done with the plaintext, where it can:
 *   - a path whose symbolic links lead out of the volumes execs their target (a Python venv in
 *     a volume: its bin/python is a link to the system's interpreter);
 *   - a script (a first line "#!interpreter [argument]") execs its interpreter with the
 *     script's path, as the kernel's binfmt_script does; the interpreter, a shielded image,
 *     reads the script through the shield (a git hook, an application's scripts);
 *   - an ELF image is refused (EACCES): its pages would have to be mapped from plaintext that
 *     only the shield holds;
 *   - anything else is not a format the kernel knows (ENOEXEC), and a shell or execvp then
 *     runs the file as a shell script itself, reading it through the shield.
 * In a vfork or posix_spawn child the file is run through /bin/sh (below, sh_exec_in_volume).
 * The interpreter must lie outside the volumes (or be reached by a link out of them): a script
 * whose interpreter is itself in a volume is refused (EACCES). The permission checks are the
 * kernel's: search on the path, execute on the file for the effective ids (root: some execute
 * bit), a regular file (EACCES otherwise); read permission too, which the interpreter needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shield/internal.h"
#include "shield/core.h"

/* binfmt_script's buffer: the "#!" line is read from the first 256 bytes */
#define SCRIPT_HEAD 256

/* (dirfd, path), classified under a mount, followed through its links: 2 with out set to a
 * path outside the volumes, 1 with vol and rel naming a volume's entry, or -errno. */
static int resolve(int dirfd, const char *path, int follow_last, int *vol, char *rel, char *out) {
    int c = sh_classify(dirfd, path, vol, rel, PATH_MAX);
    if (c < 0) return c;
    if (c == 0) { /* (not under a mount after all: another thread's rename of a mount cannot
                   * happen, but a copy of the path is what the caller classified) */
        if (snprintf(out, PATH_MAX, "%s", path) >= PATH_MAX) return -ENAMETOOLONG;
        return 2;
    }
    return sh_follow_links(vol, rel, PATH_MAX, follow_last, out, PATH_MAX);
}

/* The next image's argument vector: pre[0..npre), the script's name, argv[1...]. In memory
 * of its own (mmap: argv may be long); *size for the munmap when the exec returns. */
static char **script_argv(const char *const *pre, int npre, const char *name, char *const argv[], size_t *size) {
    size_t argc = 0;
    while (argv && argv[argc]) argc++;
    *size = (argc + (size_t)npre + 2) * sizeof(char *);
    char **v = (char **)syscall(SYS_mmap, NULL, *size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((unsigned long)v > -4096ul) return NULL;
    size_t k = 0;
    for (int i = 0; i < npre; i++) v[k++] = (char *)pre[i];
    v[k++] = (char *)name;
    for (size_t i = 1; i < argc; i++) v[k++] = argv[i];
    v[k] = NULL;
    return v;
}

long sh_exec_in_volume(int dirfd, const char *path, char *const argv[], char *const envp[], int flags) {
    if (!path || !*path) return -EACCES; /* (fexecve of a protected descriptor: no name to run) */
    char rel[PATH_MAX], out[PATH_MAX];
    int vol;
    int f = resolve(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), &vol, rel, out);
    if (f < 0) return f;
    if (f == 2) { /* a link out of the volumes: the kernel runs its target */
        sh_trace("exec of '%s': a link out of the volumes to '%s'", path, out);
        return sh_execve(AT_FDCWD, out, argv, envp, flags & ~AT_SYMLINK_NOFOLLOW);
    }
    scp_vstat v;
    long r = sh_path_vstat(vol, rel, &v);
    if (r) return r;
    if (v.type == SCP_VTYPE_LINK) return -ELOOP; /* AT_SYMLINK_NOFOLLOW on a link */
    if (v.type != SCP_VTYPE_FILE) return -EACCES;
    if ((r = sh_cred_access(&v, 1))) return r;
    if (!(v.mode & 0111)) return -EACCES; /* root too needs an execute bit */
    /* the script's name as the kernel passes it: the path given, or /dev/fd/N/path */
    char name[PATH_MAX + 32];
    if (path[0] == '/' || dirfd == AT_FDCWD) snprintf(name, sizeof name, "%s", path);
    else snprintf(name, sizeof name, "/dev/fd/%d/%s", dirfd, path);
    size_t size;
    char **nargv;
    if (sh_in_vfork_child()) {
        /* A vfork or posix_spawn child (Python's subprocess) shares the shield's memory with
         * its parent and may not open a protected file (path.c). So a shell, exec'd in its
         * place as a process of its own, execs the file again and this code reads it there:
         * the interpreter gets the same arguments, one exec later. (An ELF image or a file
         * without "#!" then fails in that shell, exit 126, or runs as a shell script, where
         * the kernel's exec would have failed with EACCES or ENOEXEC.) */
        static const char *const tramp[] = {"/bin/sh", "-c", "exec \"$0\" \"$@\""};
        if (!(nargv = script_argv(tramp, 3, name, argv, &size))) return -ENOMEM;
        sh_trace("exec of '%s' in a vfork child: through /bin/sh", path);
        r = sh_execve(AT_FDCWD, "/bin/sh", nargv, envp, 0);
        syscall(SYS_munmap, nargv, size);
        return r;
    }

    /* the first bytes, through the shield's own open (read permission, as the interpreter's) */
    char abs[PATH_MAX], head[SCRIPT_HEAD + 1];
    if (snprintf(abs, sizeof abs, "%s%s%s", sh.vol[vol].mount, rel[0] ? "/" : "", rel) >= (int)sizeof abs)
        return -ENAMETOOLONG;
    long oa[6] = {AT_FDCWD, (long)abs, O_RDONLY | O_CLOEXEC, 0, 0, 0};
    long fd = sh_path_syscall(SYS_openat, oa, 0);
    if (fd < 0) return fd;
    long ra[6] = {fd, (long)head, SCRIPT_HEAD, 0, 0, 0}, ca[6] = {fd, 0, 0, 0, 0, 0};
    long n = sh_syscall(SYS_pread64, ra);
    sh_syscall(SYS_close, ca);
    if (n < 0) return n;
    head[n] = 0;
    if (n >= 4 && !memcmp(head, "\177ELF", 4)) {
        sh_trace("exec of '%s': a program inside a protected volume refused", path);
        return -EACCES;
    }
    if (n < 2 || head[0] != '#' || head[1] != '!') return -ENOEXEC;

    /* "#!", blanks, the interpreter up to a blank, then one argument: the rest of the line
     * without its surrounding blanks (the kernel's reading; a line longer than the buffer
     * whose interpreter name is cut is ENOEXEC) */
    char *end = memchr(head, '\n', (size_t)n);
    if (!end) {
        if (n == SCRIPT_HEAD) return -ENOEXEC;
        end = head + n;
    }
    *end = 0;
    char *p = head + 2;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) return -ENOEXEC;
    char *interp = p;
    while (*p && *p != ' ' && *p != '\t') p++;
    char *arg = NULL;
    if (*p) {
        *p++ = 0;
        while (*p == ' ' || *p == '\t') p++;
        char *q = p + strlen(p);
        while (q > p && (q[-1] == ' ' || q[-1] == '\t')) *--q = 0;
        if (*p) arg = p;
    }
    /* the interpreter: outside the volumes, or a link out of them */
    int ivol;
    f = resolve(AT_FDCWD, interp, 1, &ivol, rel, out);
    if (f < 0) return f;
    if (f != 2) {
        sh_trace("exec of '%s': its interpreter '%s' is inside a protected volume: refused", path, interp);
        return -EACCES;
    }
    const char *pre[2] = {interp, arg};
    if (!(nargv = script_argv(pre, arg ? 2 : 1, name, argv, &size))) return -ENOMEM;
    sh_trace("exec of script '%s': interpreter '%s'", path, out);
    r = sh_execve(AT_FDCWD, out, nargv, envp, 0);
    syscall(SYS_munmap, nargv, size);
    return r;
}
