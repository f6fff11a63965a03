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
 *   - an ELF image runs from a sealed in-memory copy of its plaintext (exec_copy): the
 *     kernel maps a program's pages from the file it execs, and the volume's file is
 *     ciphertext to it;
 *   - anything else is not a format the kernel knows (ENOEXEC), and a shell or execvp then
 *     runs the file as a shell script itself, reading it through the shield.
 * In a vfork or posix_spawn child the file is run through /bin/sh (below, sh_exec_in_volume).
 * An interpreter inside a volume runs the same way when it is an ELF image (a script's
 * interpreter that is itself a script is refused, EACCES). The permission checks are the
 * kernel's: search on the path, execute on the file for the effective ids (root: some execute
 * bit), a regular file (EACCES otherwise); read permission too, which the interpreter needs
 * (and which the copy needs: the kernel execs a file it cannot read, this code cannot).
 * Under a trusted-file manifest (scpctl run --cas) nothing inside a volume is measured: an ELF
 * image there is refused (EACCES), as any unlisted program is.
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

/* The kernel's checks of an exec of the volume's entry (vol, rel): a regular file (a link
 * here: AT_SYMLINK_NOFOLLOW named one, ELOOP), execute permission for the effective ids (root:
 * some execute bit). 0 or -errno. */
static long exec_checks(int vol, const char *rel) {
    scp_vstat v;
    long r = sh_path_vstat(vol, rel, &v);
    if (r) return r;
    if (v.type == SCP_VTYPE_LINK) return -ELOOP;
    if (v.type != SCP_VTYPE_FILE) return -EACCES;
    if ((r = sh_cred_access(&v, 1))) return r;
    return v.mode & 0111 ? 0 : -EACCES; /* root too needs an execute bit */
}

/* The first up to max bytes of the file open at fd into head, NUL-terminated: their count or
 * -errno. */
static long file_head(long fd, char *head, long max) {
    long ra[6] = {fd, (long)head, max, 0, 0, 0};
    long n = sh_syscall(SYS_pread64, ra);
    if (n >= 0) head[n] = 0;
    return n;
}

static int is_elf(const char *head, long n) { return n >= 4 && !memcmp(head, "\177ELF", 4); }

/* An ELF image inside a volume (open at fd; path: as the program named it): its plaintext,
 * read through the shield, goes into a memfd that is then sealed (nothing can change it after
 * the copy: what runs is what the volume authenticated), and the kernel execs that
 * (execveat, AT_EMPTY_PATH; close-on-exec, so that the new image does not inherit it),
 * shielded as every image. What differs from the kernel's exec of the file: the copy costs
 * memory and a read per exec; set-user-ID and set-group-ID bits give nothing (the memfd has
 * none); /proc/self/exe names the memfd ("/memfd:NAME (deleted)"). Returns only on failure,
 * -errno. */
static long exec_copy(long fd, const char *path, int vol, const char *rel, char *const argv[], char *const envp[]) {
    long r = sh_trusted_unlisted("exec", path);
    if (r < 0) return r;
    /* its $ORIGIN, for the libraries it needs from the volumes (libs.c): its directory, with
     * its links followed, as the loader takes it from /proc/self/exe */
    char origin[PATH_MAX];
    const char *slash = strrchr(rel, '/');
    if (snprintf(origin, sizeof origin, "%s%s%.*s", sh.vol[vol].mount, slash ? "/" : "",
                 slash ? (int)(slash - rel) : 0, rel) >= (int)sizeof origin)
        return -ENAMETOOLONG;
    long m = sh_sealed_copy(fd, path, 1);
    if (m < 0) return m;
    sh_trace("exec of '%s': a program inside a protected volume, run from a sealed copy", path);
    r = sh_execve_image((int)m, argv, envp, origin);
    sh_gate(SYS_close, m, 0, 0, 0, 0, 0);
    return r;
}

/* The script's name as the kernel passes it: the path given, or /dev/fd/N/path. */
static void exec_name(int dirfd, const char *path, char *name, size_t sz) {
    if (path[0] == '/' || dirfd == AT_FDCWD) snprintf(name, sz, "%s", path);
    else snprintf(name, sz, "/dev/fd/%d/%s", dirfd, path);
}

/* A vfork or posix_spawn child (Python's subprocess; dash runs every command from one) shares
 * the shield's memory with its parent and may not open a protected file (path.c), nor a
 * volume the parent has not opened yet. So a shell, exec'd in its place as a process of its
 * own, execs the file again, and sh_exec_in_volume reads it there (or libs.c copies the
 * libraries it needs from the volumes): the program gets the same arguments, one exec later.
 * (A file without "#!" then runs as a shell script, and one that cannot be run fails in that
 * shell, exit 126 or 127, where the kernel's exec would have failed with ENOEXEC, EACCES or
 * ENOENT.) */
long sh_exec_through_shell(int dirfd, const char *path, char *const argv[], char *const envp[]) {
    static const char *const tramp[] = {"/bin/sh", "-c", "exec \"$0\" \"$@\""};
    char name[PATH_MAX + 32];
    exec_name(dirfd, path, name, sizeof name);
    size_t size;
    char **nargv = script_argv(tramp, 3, name, argv, &size);
    if (!nargv) return -ENOMEM;
    sh_trace("exec of '%s' in a vfork child: through /bin/sh", path);
    long r = sh_execve_shell(nargv, envp);
    syscall(SYS_munmap, nargv, size);
    return r;
}

/* The file of volume vol at rel, open at fd (which the caller closes), exec'd as the kernel
 * would: an ELF image from a sealed copy, a script by its interpreter with name as the
 * script's path. path: as the program named it (for the messages). Returns only on failure. */
static long exec_file(long fd, const char *name, const char *path, int vol, const char *rel, char *const argv[],
                      char *const envp[]) {
    char head[SCRIPT_HEAD + 1], rel2[PATH_MAX], out[PATH_MAX];
    long n = file_head(fd, head, SCRIPT_HEAD);
    if (n < 0) return n;
    if (is_elf(head, n)) return exec_copy(fd, path, vol, rel, argv, envp);
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
    /* the interpreter: outside the volumes (or a link out of them), or an ELF image inside */
    int ivol;
    int f = resolve(AT_FDCWD, interp, 1, &ivol, rel2, out);
    if (f < 0) return f;
    char ihead[8];
    long ifd = -1;
    if (f != 2) {
        long r = exec_checks(ivol, rel2);
        if (r || (ifd = sh_volume_file_open(ivol, rel2)) < 0) return r ? r : ifd;
        if ((r = file_head(ifd, ihead, 4)) < 0 || !is_elf(ihead, r)) {
            sh_volume_file_close(ifd);
            sh_trace("exec of '%s': its interpreter '%s' is not a program: refused", path, interp);
            return r < 0 ? r : -EACCES;
        }
    }
    const char *pre[2] = {interp, arg};
    size_t size;
    char **nargv = script_argv(pre, arg ? 2 : 1, name, argv, &size);
    long r = -ENOMEM;
    if (nargv) {
        sh_trace("exec of script '%s': interpreter '%s'", path, f == 2 ? out : interp);
        r = f == 2 ? sh_execve(AT_FDCWD, out, nargv, envp, 0) : exec_copy(ifd, interp, ivol, rel2, nargv, envp);
        syscall(SYS_munmap, nargv, size);
    }
    if (ifd >= 0) sh_volume_file_close(ifd);
    return r;
}

/* fexecve, execveat(fd, "", AT_EMPTY_PATH), of a protected descriptor: its file as by a path
 * (exec_file), after the kernel's checks on the file (a regular file, execute permission for
 * the effective ids); a script's interpreter gets /dev/fd/N as the script's name, as from the
 * kernel (so the descriptor must survive the exec: one opened close-on-exec fails in the
 * interpreter, as on a plain file system). Not from a vfork child (EACCES): the copy needs the
 * process's own descriptor table. */
static long exec_descriptor(int fd, char *const argv[], char *const envp[], int flags) {
    if (!(flags & AT_EMPTY_PATH) || !sh_is_prot(fd) || sh_in_vfork_child()) return -EACCES;
    long e;
    pfile *pf = sh_pf_get(fd, &e);
    if (!pf) return e;
    scp_vstat v;
    long r = pf->kind != PF_FILE ? -EACCES : sh_pf_vstat(pf, &v);
    if (!r && v.type != SCP_VTYPE_FILE) r = -EACCES;
    if (!r) r = sh_cred_access(&v, 1);
    if (!r && !(v.mode & 0111)) r = -EACCES; /* root too needs an execute bit */
    char name[32], rel[PATH_MAX];
    int vol = pf->vol;
    snprintf(name, sizeof name, "/dev/fd/%d", fd);
    snprintf(rel, sizeof rel, "%s", pf->path ? pf->path : "");
    sh_pf_put(pf);
    if (r) return r;
    return exec_file(fd, name, name, vol, rel, argv, envp);
}

long sh_exec_in_volume(int dirfd, const char *path, char *const argv[], char *const envp[], int flags) {
    if (!path || !*path) return exec_descriptor(dirfd, argv, envp, flags);
    char name[PATH_MAX + 32];
    exec_name(dirfd, path, name, sizeof name);
    char rel[PATH_MAX], out[PATH_MAX];
    int vol, vfork_child = sh_in_vfork_child();
    /* (in a vfork child the links and the checks need a volume this process has open: the
     * classification's error is that the child may not open it, sh_volume_ready) */
    if (vfork_child && sh_classify(dirfd, path, &vol, rel, PATH_MAX) < 0)
        return sh_exec_through_shell(dirfd, path, argv, envp);
    int f = resolve(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), &vol, rel, out);
    if (f < 0) return f;
    if (f == 2) { /* a link out of the volumes: the kernel runs its target */
        sh_trace("exec of '%s': a link out of the volumes to '%s'", path, out);
        return sh_execve(AT_FDCWD, out, argv, envp, flags & ~AT_SYMLINK_NOFOLLOW);
    }
    long r = exec_checks(vol, rel);
    if (r) return r;
    if (vfork_child) return sh_exec_through_shell(dirfd, path, argv, envp);

    long fd = sh_volume_file_open(vol, rel);
    if (fd < 0) return fd;
    r = exec_file(fd, name, path, vol, rel, argv, envp);
    sh_volume_file_close(fd);
    return r;
}
