/* shield/trusted.c - trusted files: what the program runs, maps executable or reads from a
 * listed path must be what was measured (docs/runtime.md "Trusted files").
 *
 * scpctl run --cas hands the shield a manifest (SCP_SHIELD_ENV_TRUSTED_FD, scp/shield.h): every
 * measured file with its SHA-256 (scp_sha256_fd, the measurement's own per-file hash), its
 * size, its path as the program sees it and the stamp (device, inode, size, mtime, ctime) it
 * had when it was measured. The shield then checks:
 *
 * - at start, every file mapped executable into this image before the shield ran (program,
 *   loader, libraries, the shield itself): listed, and unchanged;
 * - every exec: the binary must be listed and unchanged, else EACCES;
 * - every mapping that the loader makes of a file (dlopen; a seccomp filter traps the mmap
 *   calls made from the loader's text): a listed file is mapped from a sealed in-memory copy
 *   whose hash was checked, so what runs is what was hashed; an unlisted file may be mapped
 *   only without PROT_EXEC (the loader's cache), else EACCES. The program's own executable
 *   mmap and mprotect(PROT_EXEC) of a file through libc are checked the same way;
 * - every open through libc of a listed file (by device and inode, or by the path it is opened
 *   by when that is its listed or real path, so a file replaced under a listed path is caught
 *   too): changed content fails with EACCES.
 *
 * A refusal writes one line naming the file to standard error. "Unchanged" is a stamp equal to
 * the measured one (or to one this process verified), otherwise a fresh hash of the file.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "shield/internal.h"

struct tfile {
    scp_shield_trusted m; /* as measured */
    struct stat ok;       /* the last stamp this process verified (ok_set) */
    int ok_set;
    int copy;             /* sealed memfd with the verified content (mappings), -1: none */
    struct stat copy_of;  /* the stamp of the file it was copied from */
};

static struct {
    int on;               /* a manifest was given: check */
    char *raw;            /* the manifest as received (passed on at exec) */
    size_t rawlen;
    struct tfile *f;
    uint32_t n;
    uint32_t *by_id, *by_path, *by_given; /* indexes of f sorted by (dev, ino), path, given path */
    pthread_mutex_t mu;   /* ok, copy */
} tr = {.mu = PTHREAD_MUTEX_INITIALIZER};


static int64_t ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static int same(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           ns(a->st_mtim) == ns(b->st_mtim) && ns(a->st_ctim) == ns(b->st_ctim);
}

static int measured_stamp(const struct tfile *t, const struct stat *st) {
    return (uint64_t)st->st_dev == t->m.dev && (uint64_t)st->st_ino == t->m.ino && (uint64_t)st->st_size == t->m.size &&
           ns(st->st_mtim) == t->m.mtime_ns && ns(st->st_ctim) == t->m.ctime_ns;
}

/* ---- looking a file up: sorted indexes, so that a manifest of a whole image (thousands of
 * files) costs a binary search per open, not a scan ------------------------------------------- */

static int cmp_id(const void *a, const void *b) {
    const scp_shield_trusted *x = &tr.f[*(const uint32_t *)a].m, *y = &tr.f[*(const uint32_t *)b].m;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}
static int cmp_path(const void *a, const void *b) {
    return strcmp(tr.f[*(const uint32_t *)a].m.path, tr.f[*(const uint32_t *)b].m.path);
}
static int cmp_given(const void *a, const void *b) {
    return strcmp(tr.f[*(const uint32_t *)a].m.given, tr.f[*(const uint32_t *)b].m.given);
}

static uint32_t *sorted_index(int (*cmp)(const void *, const void *)) {
    uint32_t *ix = malloc(((size_t)tr.n + 1) * sizeof *ix);
    if (!ix) return NULL;
    for (uint32_t i = 0; i < tr.n; i++) ix[i] = i;
    qsort(ix, tr.n, sizeof *ix, cmp);
    return ix;
}

static int index_manifest(void) {
    tr.by_id = sorted_index(cmp_id);
    tr.by_path = sorted_index(cmp_path);
    tr.by_given = sorted_index(cmp_given);
    return tr.by_id && tr.by_path && tr.by_given ? 0 : -1;
}

/* Binary search of index ix for an entry that cmp_key (key vs entry) calls equal. */
static struct tfile *lookup(const uint32_t *ix, const void *key, int (*cmp_key)(const void *, const scp_shield_trusted *)) {
    size_t lo = 0, hi = tr.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_key(key, &tr.f[ix[mid]].m);
        if (!c) return &tr.f[ix[mid]];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}
static int key_id(const void *k, const scp_shield_trusted *e) {
    const struct stat *st = k;
    if ((uint64_t)st->st_dev != e->dev) return (uint64_t)st->st_dev < e->dev ? -1 : 1;
    return (uint64_t)st->st_ino < e->ino ? -1 : (uint64_t)st->st_ino > e->ino;
}
static int key_path(const void *k, const scp_shield_trusted *e) { return strcmp(k, e->path); }
static int key_given(const void *k, const scp_shield_trusted *e) { return strcmp(k, e->given); }

int sh_trusted_load(scp_err *err) {
    const char *v = getenv(SCP_SHIELD_ENV_TRUSTED_FD);
    if (!v) return 0;
    char *end;
    long fd = strtol(v, &end, 10);
    if (*end || fd < 0 || fd > INT_MAX) return scp_fail(err, SCP_E_FORMAT, EINVAL, "bad " SCP_SHIELD_ENV_TRUSTED_FD);
    unsetenv(SCP_SHIELD_ENV_TRUSTED_FD);
    struct stat st;
    if (sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) < 0 || st.st_size < 10 || st.st_size > (16 << 20)) {
        sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "bad trusted-file manifest descriptor");
    }
    tr.rawlen = (size_t)st.st_size;
    tr.raw = malloc(tr.rawlen);
    size_t got = 0;
    while (tr.raw && got < tr.rawlen) {
        long r = sh_gate(SYS_pread64, fd, (long)(tr.raw + got), (long)(tr.rawlen - got), (long)got, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    /* as many entries as the header announces (parse checks it against the content) */
    size_t cap = got == tr.rawlen ? (size_t)((uint8_t)tr.raw[6] | (uint8_t)tr.raw[7] << 8 | (uint8_t)tr.raw[8] << 16 |
                                             (uint32_t)(uint8_t)tr.raw[9] << 24)
                                  : 0;
    if (cap > SCP_SHIELD_TRUSTED_MAX) cap = 0;
    tr.f = calloc(cap + 1, sizeof *tr.f);
    scp_shield_trusted *e = calloc(cap + 1, sizeof *e);
    long n = tr.raw && tr.f && e && got == tr.rawlen ? scp_shield_trusted_parse(tr.raw, tr.rawlen, e, cap) : -2;
    if (n < 0) {
        free(e);
        return scp_fail(err, SCP_E_FORMAT, EINVAL, n == -2 ? "cannot read the trusted-file manifest"
                                                           : "malformed trusted-file manifest");
    }
    for (long i = 0; i < n; i++) {
        tr.f[i].m = e[i];
        tr.f[i].copy = -1;
    }
    free(e);
    tr.n = (uint32_t)n;
    if (index_manifest() < 0) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory for the trusted-file manifest");
    tr.on = 1;
    /* OpenSSL initializes itself on first use (it may read its configuration): here, not inside
     * the SIGSYS handler that serves a mapping while the loader holds its lock */
    uint8_t d[32];
    scp_sha256_buf("", 0, d);
    return 0;
}

int sh_trusted_to_memfd(void) {
    if (!tr.on) return -1;
    long fd = sh_gate(SYS_memfd_create, (long)"scp-trusted", MFD_ALLOW_SEALING, 0, 0, 0, 0);
    if (fd < 0) return -2;
    size_t off = 0;
    while (off < tr.rawlen) {
        long r = sh_gate(SYS_pwrite64, fd, (long)(tr.raw + off), (long)(tr.rawlen - off), (long)off, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        off += (size_t)r;
    }
    if (off != tr.rawlen ||
        sh_gate(SYS_fcntl, fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL, 0, 0, 0) < 0) {
        sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
        return -2;
    }
    return (int)fd;
}

/* The real path of what fd refers to, as this process sees it. */
static int fd_path(int fd, char *out, size_t n) {
    char link[40];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    long l = sh_gate(SYS_readlinkat, AT_FDCWD, (long)link, (long)out, (long)n - 1, 0, 0);
    if (l <= 0) return -1;
    out[l] = 0;
    return 0;
}

/* The manifest's entry for the file st (same device and inode) or, failing that, for its path
 * (a file put in place of a listed one): its real path or the path it was listed by. */
static struct tfile *find(const struct stat *st, const char *path) {
    struct tfile *t = lookup(tr.by_id, st, key_id);
    if (!t && path) t = lookup(tr.by_path, path, key_path);
    if (!t && path) t = lookup(tr.by_given, path, key_given);
    return t;
}

/* Is the content of fd (whose stamp is st) the measured one? */
static int verify(struct tfile *t, int fd, const struct stat *st) {
    if (measured_stamp(t, st)) return 0;
    pthread_mutex_lock(&tr.mu);
    int known = t->ok_set && same(&t->ok, st);
    pthread_mutex_unlock(&tr.mu);
    if (known) return 0;
    uint8_t d[32];
    uint64_t size;
    if (scp_sha256_fd(fd, d, &size) < 0 || size != t->m.size || scp_ct_cmp(d, t->m.digest, 32) != 0) return -1;
    pthread_mutex_lock(&tr.mu);
    t->ok = *st;
    t->ok_set = 1;
    pthread_mutex_unlock(&tr.mu);
    return 0;
}

static long refuse(const char *what, const char *path, const char *why) {
    sh_log("%s of %s refused: %s (EACCES)", what, path, why);
    return -EACCES;
}
#define DIFFERS "its content differs from the measured trusted-file manifest"
#define UNLISTED "it is not in the measured trusted-file manifest"

/* fd is open on a file: refuse it if it is listed and changed, or (must_list) not listed.
 * opened_as: the absolute path it was opened by (NULL: look up its real path, which costs a
 * readlink of /proc/self/fd/N, several microseconds, too much for every open). */
static long check_fd(int fd, const char *what, int must_list, const char *opened_as) {
    struct stat st;
    char buf[PATH_MAX];
    const char *path = opened_as;
    if (sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) < 0 || !S_ISREG(st.st_mode)) return 0;
    if (!path) {
        if (fd_path(fd, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "(descriptor %d)", fd);
        path = buf;
    }
    struct tfile *t = find(&st, path);
    if (!t) return must_list ? refuse(what, path, UNLISTED) : 0;
    return verify(t, fd, &st) < 0 ? refuse(what, path, DIFFERS) : 0;
}

long sh_trusted_check_open(int fd, int dirfd, const char *path, long flags) {
    if (!tr.on || fd < 0) return 0;
    /* Why one fstat per open, and when none (docs/shield.md "Trusted files: the open check").
     * What must be refused is a descriptor through which the program reads a listed file whose
     * content is not the measured one. The only name-independent identity of what the kernel
     * opened is the inode of the open description: a symbolic link, a hard link, a bind mount,
     * a reopen through /proc/self/fd/N or /proc/PID/root, ".." across a mount, all end at the
     * same (st_dev, st_ino), and no name the program used can rule them out. So any test by
     * the name, or by the device the name's mount point suggests, would be unsound, and the
     * inode costs one system call: fstat is the cheapest that tells it (statx with
     * AT_EMPTY_PATH and only STATX_INO costs more: it looks the empty path up), and no open
     * flag returns it. The check is skipped only where the kernel itself guarantees that no
     * listed content can be read through the descriptor: O_PATH (read and mmap fail with EBADF;
     * a reopen through /proc/self/fd is an open of its own, checked, and an exec of it is
     * checked at exec), O_DIRECTORY (a directory or nothing), and O_CREAT|O_EXCL or O_TMPFILE
     * (a file that did not exist before this open is no measured file, even when it got the
     * inode number of a deleted one), and O_WRONLY (no content is read through it: read,
     * pread, sendfile, splice and copy_file_range from it fail with EBADF and mmap with
     * EACCES; a reopen through /proc/self/fd is an open of its own, checked, and an exec of
     * it is checked at exec; the access mode of a description never changes). */
    if ((flags & (O_PATH | O_DIRECTORY)) || (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL) ||
        (flags & O_ACCMODE) == O_WRONLY)
        return 0; /* (O_TMPFILE includes O_DIRECTORY's bit) */
    char abs[PATH_MAX];
    /* the path as the program named it, made absolute and normalized (inside the open's path
     * call: the classification's answer for the same copy of the path, no second look) */
    return check_fd(fd, "open", 0, sh_abspath(dirfd, path, abs, sizeof abs) > 0 ? abs : "");
}

long sh_trusted_exec_check(int dirfd, const char *path, int flags) {
    if (!tr.on) return 0;
    if ((flags & AT_EMPTY_PATH) && path && !path[0]) return check_fd(dirfd, "exec", 1, NULL);
    long fd = sh_gate(SYS_openat, dirfd, (long)path,
                      O_RDONLY | O_CLOEXEC | ((flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0), 0, 0, 0);
    if (fd < 0) return fd == -EACCES ? fd : 0; /* the kernel reports a missing file (execvp goes on) */
    long r = check_fd((int)fd, "exec", 1, NULL);
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    return r;
}

long sh_trusted_unlisted(const char *what, const char *path) { return tr.on ? refuse(what, path, UNLISTED) : 0; }

/* A sealed in-memory copy of the file open at fd, checked against t: the mapping then shows
 * exactly the bytes that were hashed, whatever happens to the file afterwards. Kept (in the
 * volume library's descriptor zone, out of the program's reach) while the file's stamp stays. */
static int verified_copy(struct tfile *t, int fd, const struct stat *st) {
    pthread_mutex_lock(&tr.mu);
    if (t->copy >= 0 && same(&t->copy_of, st)) {
        int c = t->copy;
        pthread_mutex_unlock(&tr.mu);
        return c;
    }
    long m = sh_gate(SYS_memfd_create, (long)"scp-trusted", MFD_CLOEXEC | MFD_ALLOW_SEALING, 0, 0, 0, 0);
    int ok = m >= 0;
    for (long long off = 0; ok && off < (long long)st->st_size;) {
        long r = sh_gate(SYS_sendfile, m, fd, (long)&off, (long)((long long)st->st_size - off), 0, 0);
        if (r == -EINTR) continue;
        ok = r > 0;
    }
    uint8_t d[32];
    uint64_t size;
    ok = ok &&
         sh_gate(SYS_fcntl, m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL, 0, 0, 0) == 0 &&
         scp_sha256_fd((int)m, d, &size) == 0 && size == t->m.size && scp_ct_cmp(d, t->m.digest, 32) == 0;
    if (ok) m = sh_own_fd(m); /* away from the numbers the program uses, and kept from its close */
    if (!ok) {
        if (m >= 0) sh_gate(SYS_close, m, 0, 0, 0, 0, 0);
        pthread_mutex_unlock(&tr.mu);
        return -1;
    }
    if (t->copy >= 0) sh_close_own(t->copy); /* the file changed and is still right: the old copy goes (mappings keep it) */
    t->copy = (int)m;
    t->copy_of = *st;
    pthread_mutex_unlock(&tr.mu);
    return (int)m;
}

int sh_trusted_mmap(const long a[6], int exec_only, long *ret) {
    int fd = (int)a[4], prot = (int)a[2];
    if (!tr.on || (a[3] & MAP_ANONYMOUS) || fd < 0 || sh_is_prot(fd)) return 0;
    if (exec_only && !(prot & PROT_EXEC)) return 0;
    struct stat st;
    char path[PATH_MAX];
    if (sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) < 0 || !S_ISREG(st.st_mode)) return 0;
    if (fd_path(fd, path, sizeof path) < 0) snprintf(path, sizeof path, "(descriptor %d)", fd);
    struct tfile *t = find(&st, path);
    if (!t) {
        if (!(prot & PROT_EXEC)) return 0; /* data the loader reads: ld.so.cache */
        *ret = refuse("executable mapping", path, UNLISTED);
        return 1;
    }
    int copy = verified_copy(t, fd, &st);
    *ret = copy < 0 ? refuse(prot & PROT_EXEC ? "executable mapping" : "mapping", path, DIFFERS)
                    : sh_gate(SYS_mmap, a[0], a[1], a[2], a[3], copy, a[5]);
    return 1;
}

/* ---- the mappings of this image made before the shield ran ------------------------------ */

/* One line of /proc/PID/maps: "START-END PERMS OFFSET MAJ:MIN INODE [PATH]". Returns 0 when it
 * parses; *path points into line (empty when the mapping has no name). */
struct maps_line {
    unsigned long start, end, ino;
    unsigned maj, min;
    int exec;
    const char *path;
};
static int parse_maps_line(const char *line, struct maps_line *m) {
    char *e;
    m->start = strtoul(line, &e, 16);
    if (*e != '-') return -1;
    m->end = strtoul(e + 1, &e, 16);
    if (*e != ' ' || strlen(e) < 6) return -1;
    m->exec = e[3] == 'x'; /* " rwxp " */
    e += 6;
    (void)strtoul(e, &e, 16); /* the offset */
    m->maj = (unsigned)strtoul(e, &e, 16);
    if (*e != ':') return -1;
    m->min = (unsigned)strtoul(e + 1, &e, 16);
    if (*e != ' ') return -1;
    m->ino = strtoul(e, &e, 10);
    while (*e == ' ') e++;
    m->path = e;
    return 0;
}

/* The descriptors scpctl run measured (first image only): [first, first + count). */
static int measured_first = -1, measured_count;

static void measured_take(void) {
    const char *v = getenv(SCP_SHIELD_ENV_MEASURED_FDS);
    if (!v) return;
    char *e;
    long first = strtol(v, &e, 10), count = *e == ':' ? strtol(e + 1, &e, 10) : 0;
    if (!*e && first > 2 && first < INT_MAX - (long)SCP_SHIELD_TRUSTED_MAX && count > 0 &&
        count <= (long)SCP_SHIELD_TRUSTED_MAX) {
        measured_first = (int)first;
        measured_count = (int)count;
    }
    unsetenv(SCP_SHIELD_ENV_MEASURED_FDS);
    const char *lp = getenv("LD_LIBRARY_PATH"); /* the launcher's, for this image's loader only */
    if (lp && !strcmp(lp, SCP_SHIELD_MEASURED_LIB_DIR)) unsetenv("LD_LIBRARY_PATH");
}

static void measured_close(void) {
    for (int i = 0; i < measured_count; i++) sh_gate(SYS_close, measured_first + i, 0, 0, 0, 0, 0);
    measured_count = 0;
}

/* One executable mapping of inode ino on device maj:min, named path: the measured descriptor of
 * that inode if there is one (the first image), else the file at path (inside this container),
 * which must still be that inode. */
static int check_mapping(unsigned maj, unsigned min, unsigned long ino, const char *path, scp_err *err) {
    struct stat st;
    for (int i = 0; i < measured_count; i++) {
        int fd = measured_first + i;
        if (sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) == 0 && (unsigned long)st.st_ino == ino &&
            major(st.st_dev) == maj && minor(st.st_dev) == min) {
            struct tfile *t = find(&st, NULL);
            if (!t) return scp_fail(err, SCP_E_INTEGRITY, EACCES, "%s is mapped executable but %s", path, UNLISTED);
            if (verify(t, fd, &st) < 0)
                return scp_fail(err, SCP_E_INTEGRITY, EACCES, "%s is mapped executable but %s", path, DIFFERS);
            return 0;
        }
    }
    long f = strstr(path, " (deleted)") ? -ENOENT : sh_gate(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    int rc = 0;
    if (f < 0 || sh_gate(SYS_fstat, f, (long)&st, 0, 0, 0, 0) < 0 || (unsigned long)st.st_ino != ino) {
        rc = scp_fail(err, SCP_E_INTEGRITY, EACCES, "%s is mapped executable but is not the file at that path now",
                      path);
    } else {
        struct tfile *t = find(&st, path);
        if (!t) rc = scp_fail(err, SCP_E_INTEGRITY, EACCES, "%s is mapped executable but %s", path, UNLISTED);
        else if (verify(t, (int)f, &st) < 0)
            rc = scp_fail(err, SCP_E_INTEGRITY, EACCES, "%s is mapped executable but %s", path, DIFFERS);
    }
    if (f >= 0) sh_gate(SYS_close, f, 0, 0, 0, 0, 0);
    return rc;
}

/* Check every file that /proc/self/maps shows mapped executable: the program, its loader, its
 * libraries and the shield, all mapped before the shield ran. */
static int64_t check_mapped_ns; /* SCP_RUN_TIMING */

static int check_mapped(scp_err *err);
int sh_trusted_check_mapped(scp_err *err) {
    int64_t t0 = scp_now_ns();
    int r = check_mapped(err);
    check_mapped_ns = scp_now_ns() - t0;
    return r;
}

static int check_mapped(scp_err *err) {
    measured_take();
    if (!tr.on) {
        measured_close();
        return 0;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = (char *)sh_gate(SYS_mmap, 0, (long)cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((unsigned long)buf > -4096ul) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    long fd = sh_gate(SYS_openat, AT_FDCWD, (long)"/proc/self/maps", O_RDONLY | O_CLOEXEC, 0, 0, 0);
    for (long r = 1; fd >= 0 && r > 0 && len < cap - 1;) {
        r = sh_gate(SYS_read, fd, (long)(buf + len), (long)(cap - 1 - len), 0, 0, 0);
        if (r > 0) len += (size_t)r;
    }
    if (fd >= 0) sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    buf[len] = 0;
    int rc = fd < 0 || len >= cap - 1 ? scp_fail(err, SCP_E_SYS, EIO, "cannot read /proc/self/maps") : 0;
    for (char *line = buf; !rc && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        struct maps_line m;
        if (parse_maps_line(line, &m) == 0 && m.exec && m.ino && m.path[0] == '/')
            rc = check_mapping(m.maj, m.min, m.ino, m.path, err);
        line = nl ? nl + 1 : NULL;
    }
    sh_gate(SYS_munmap, (long)buf, (long)cap, 0, 0, 0, 0);
    measured_close();
    return rc;
}

/* ---- the loader's mappings after start (dlopen) --------------------------------------- */

/* The shield's filter (gate.c) traps mmap of a descriptor made from the loader's text
 * (AT_BASE's executable segment), which this finds. The rule is inherited by the images this
 * one executes, whose loaders lie elsewhere (address space randomization), so it does not fire
 * before their own shield is up; with randomization off (personality ADDR_NO_RANDOMIZE) there
 * is no such rule. */
int sh_trusted_arm(uintptr_t *lo_out, uintptr_t *hi_out, scp_err *err) {
    *lo_out = *hi_out = 0;
    if (!tr.on) return 0;
    long pers = syscall(SYS_personality, 0xffffffffL);
    if (pers >= 0 && (pers & 0x0040000)) { /* ADDR_NO_RANDOMIZE */
        sh_trace("trusted files: address randomization is off; the loader's mappings are not trapped");
        return 0;
    }
    uintptr_t base = (uintptr_t)getauxval(AT_BASE), lo = 0, hi = 0;
    if (!base) return 0; /* no loader (a static program) */
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    for (unsigned i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X)) {
            lo = base + ph[i].p_vaddr;
            hi = lo + ph[i].p_memsz;
        }
    /* (a text that crosses a 4 GiB line is fine: the filter's range test splits at such lines,
     * gate.c ip_range_test; refusing it made about 1 start in 30,000 fail, once in CI) */
    if (!lo) return scp_fail(err, SCP_E_INVAL, EINVAL, "cannot locate the loader's code to watch its mappings");
    *lo_out = lo;
    *hi_out = hi;
    return 0;
}

/* mprotect adding PROT_EXEC to a mapping of a file: only for a listed, unchanged file (or the
 * shield's verified copies). Anonymous memory (JIT compilers) is not a file's business. */
static long check_protect(uintptr_t addr, size_t len) {
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return -EACCES;
    char line[PATH_MAX + 128];
    long r = 0;
    while (!r && fgets(line, sizeof line, f)) {
        struct maps_line m;
        line[strcspn(line, "\n")] = 0;
        if (parse_maps_line(line, &m) < 0 || m.end <= addr || m.start >= addr + len || !m.ino || m.path[0] != '/')
            continue;
        const char *path = m.path;
        unsigned long ino = m.ino;
        if (!strncmp(path, "/memfd:scp-trusted", 18)) continue;
        long fd = sh_gate(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
        struct stat st;
        if (fd < 0 || sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) < 0 || (unsigned long)st.st_ino != ino) {
            r = refuse("mprotect(PROT_EXEC)", path, "the mapped file was replaced");
        } else {
            struct tfile *t = find(&st, path);
            r = !t ? refuse("mprotect(PROT_EXEC)", path, UNLISTED)
                   : verify(t, (int)fd, &st) < 0 ? refuse("mprotect(PROT_EXEC)", path, DIFFERS) : 0;
        }
        if (fd >= 0) sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    }
    fclose(f);
    return r;
}

SH_EXPORT int mprotect(void *addr, size_t len, int prot) {
    if (tr.on && (prot & PROT_EXEC)) {
        long r = check_protect((uintptr_t)addr, len);
        if (r < 0) {
            errno = (int)-r;
            return -1;
        }
    }
    return (int)syscall(SYS_mprotect, addr, len, prot);
}

/* ---- SCP_RUN_TIMING ------------------------------------------------------------------------- */

void sh_trusted_timing(void) {
    const char *v = getenv(SCP_SHIELD_ENV_TIMING);
    if (!v) return;
    long long t0 = strtoll(v, NULL, 10);
    unsetenv(SCP_SHIELD_ENV_TIMING);
    char line[256];
    int n = snprintf(line, sizeof line,
                     "scp-shield: timing: shield start %.1f ms (exec, loader, shield; of which start-up trusted-file "
                     "check %.2f ms)\n",
                     (double)(scp_now_ns() - t0) / 1e6, (double)check_mapped_ns / 1e6);
    if (n > 0 && (size_t)n < sizeof line) sh_gate(SYS_write, 2, (long)line, n, 0, 0, 0);
}
