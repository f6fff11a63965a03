/* shield/injected.c - files that exist only inside the program (policy `files`).
 *
 * scpctl run --cas passes the rendered files in a sealed memfd (SCP_SHIELD_ENV_FILES_FD,
 * layout in scp/shield.h). They are kept in one region that is locked in RAM (where the limit
 * allows), left out of core dumps and wiped at exit. An open of an injected path for reading
 * gets a fresh sealed memfd with the content; stat, access and the like report a regular
 * read-only file; every change is refused with EROFS. Paths are matched by name, after the
 * same normalization as protected mounts (a symbolic link elsewhere that points at one is not
 * followed into memory). Nothing here is on any file system the host can list: the only way
 * to the bytes from outside is this process's memory or its descriptors, and the process is
 * made non-dumpable (docs/shield.md "Injected files").
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "shield/internal.h"

struct inj_file {
    const char *path; /* NUL-terminated, inside the region */
    const uint8_t *data;
    uint32_t len, mode;
};

static struct {
    uint8_t *region; /* the memfd's bytes as received: also what is passed on at exec */
    size_t size;
    uint32_t n;
    struct inj_file f[SCP_SHIELD_FILES_MAX];
    int64_t loaded_ns;
} inj;

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int parse(scp_err *err) {
    const uint8_t *p = inj.region, *end = inj.region + inj.size;
    if (inj.size < 10 || memcmp(p, "SCPF1\n", 6) != 0) goto bad;
    uint32_t n = get32(p + 6);
    if (n > SCP_SHIELD_FILES_MAX) goto bad;
    p += 10;
    for (uint32_t i = 0; i < n; i++) {
        if ((size_t)(end - p) < 12) goto bad;
        uint32_t mode = get32(p), plen = get32(p + 4), clen = get32(p + 8);
        p += 12;
        if (mode > 07777 || plen < 2 || plen > PATH_MAX || (size_t)(end - p) < plen ||
            (size_t)(end - p) - plen < clen)
            goto bad;
        const char *path = (const char *)p;
        char norm[PATH_MAX];
        /* absolute, normalized, one NUL at its end: matching is a plain string compare */
        if (path[0] != '/' || memchr(path, 0, plen) != path + plen - 1 ||
            scp_shield_path_normalize(path, norm, sizeof norm) || strcmp(norm, path) != 0 || !strcmp(path, "/"))
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "an injected file's path is not absolute and normalized");
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(inj.f[j].path, path)) return scp_fail(err, SCP_E_FORMAT, EINVAL, "an injected file twice");
        inj.f[i] = (struct inj_file){path, p + plen, clen, mode};
        p += plen + clen;
    }
    if (p != end) goto bad;
    inj.n = n;
    return 0;
bad:
    return scp_fail(err, SCP_E_FORMAT, EINVAL, "malformed injected-files descriptor");
}

int sh_injected_load(scp_err *err) {
    const char *v = getenv(SCP_SHIELD_ENV_FILES_FD);
    if (!v) return 0;
    char *end;
    long fd = strtol(v, &end, 10);
    if (*end || fd < 0 || fd > INT_MAX) return scp_fail(err, SCP_E_FORMAT, EINVAL, "bad " SCP_SHIELD_ENV_FILES_FD);
    unsetenv(SCP_SHIELD_ENV_FILES_FD);
    struct stat st;
    if (sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) < 0 || st.st_size < 10 ||
        (uint64_t)st.st_size > SCP_SHIELD_LAUNCH_MAX) {
        sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "bad injected-files descriptor");
    }
    inj.size = (size_t)st.st_size;
    inj.region = scp_secure_alloc(inj.size);
    if (!inj.region) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    size_t got = 0;
    while (got < inj.size) {
        long r = sh_gate(SYS_pread64, fd, (long)(inj.region + got), (long)(inj.size - got), (long)got, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    if (got != inj.size || parse(err) < 0) {
        if (got != inj.size) scp_fail(err, SCP_E_FORMAT, EIO, "short injected-files descriptor");
        scp_secure_free(inj.region, inj.size);
        inj.region = NULL;
        return -1;
    }
    /* the files hold secrets: nobody but root reads this process's memory or descriptors */
    if (inj.n) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    inj.loaded_ns = scp_now_ns();
    return 0;
}

/* Wiped, not unmapped: another thread may still be inside an open while the process exits. */
__attribute__((destructor)) static void injected_wipe(void) {
    if (!inj.region) return;
    __atomic_store_n(&inj.n, 0, __ATOMIC_SEQ_CST);
    scp_wipe(inj.region, inj.size);
}

int sh_injected_to_memfd(void) {
    if (!inj.n) return -1;
    long fd = sh_gate(SYS_memfd_create, (long)"scp-files", MFD_ALLOW_SEALING, 0, 0, 0, 0);
    if (fd < 0) return -2;
    size_t off = 0;
    while (off < inj.size) {
        long r = sh_gate(SYS_pwrite64, fd, (long)(inj.region + off), (long)(inj.size - off), (long)off, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        off += (size_t)r;
    }
    if (off != inj.size ||
        sh_gate(SYS_fcntl, fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL, 0, 0, 0) < 0) {
        sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
        return -2;
    }
    return (int)fd;
}

/* The injected file at abs, or one that abs lies below (*below set). */
static const struct inj_file *lookup(const char *abs, int *below) {
    for (uint32_t i = 0; i < inj.n; i++) {
        size_t pl = strlen(inj.f[i].path);
        if (strncmp(abs, inj.f[i].path, pl) != 0) continue;
        if (abs[pl] == 0 || abs[pl] == '/') {
            *below = abs[pl] == '/';
            return &inj.f[i];
        }
    }
    return NULL;
}

static const struct inj_file *find(int dirfd, const char *path, int *below, long *err) {
    char abs[PATH_MAX];
    *err = 0;
    if (!inj.n) return NULL;
    int a = sh_abspath(dirfd, path, abs, sizeof abs);
    if (a < 0) *err = a;
    return a > 0 ? lookup(abs, below) : NULL;
}

/* A fresh memfd with the content, sealed against every change, reopened read-only where /proc
 * allows (otherwise the seals alone refuse writes with EPERM). */
static long open_file(const struct inj_file *f, int flags) {
    int cloexec = (flags & O_CLOEXEC) != 0;
    long fd = sh_gate(SYS_memfd_create, (long)"scp-injected", MFD_ALLOW_SEALING | (cloexec ? MFD_CLOEXEC : 0), 0, 0,
                      0, 0);
    if (fd < 0) return fd;
    size_t off = 0;
    while (off < f->len) {
        long r = sh_gate(SYS_pwrite64, fd, (long)(f->data + off), (long)(f->len - off), (long)off, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        off += (size_t)r;
    }
    if (off != f->len || sh_gate(SYS_fchmod, fd, f->mode & 07777, 0, 0, 0, 0) < 0 ||
        sh_gate(SYS_fcntl, fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL, 0, 0, 0) < 0) {
        sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
        return -EIO;
    }
    char link[40];
    snprintf(link, sizeof link, "/proc/self/fd/%ld", fd);
    long ro = sh_gate(SYS_openat, AT_FDCWD, (long)link,
                      O_RDONLY | (cloexec ? O_CLOEXEC : 0) | (flags & (O_NONBLOCK | O_NOATIME)), 0, 0, 0);
    if (ro >= 0) {
        sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
        fd = ro;
    }
    return fd;
}

static void fill_stat(const struct inj_file *f, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_dev = makedev(SCP_SHIELD_DEV_MAJOR, SCP_SHIELD_DEV_MINOR_INJECTED);
    st->st_ino = (ino_t)(f - inj.f + 1);
    st->st_mode = S_IFREG | (f->mode & 07777);
    st->st_nlink = 1;
    st->st_uid = geteuid();
    st->st_gid = getegid();
    st->st_size = (off_t)f->len;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((f->len + 511) / 512);
    st->st_mtim.tv_sec = st->st_atim.tv_sec = st->st_ctim.tv_sec = (time_t)(inj.loaded_ns / 1000000000);
}

static void fill_statx(const struct inj_file *f, struct statx *sx) {
    struct stat st;
    fill_stat(f, &st);
    sh_statx_from_stat(&st, sx);
}

static long access_file(const struct inj_file *f, int how) {
    if (how & W_OK) return -EROFS;
    if ((how & R_OK) && !(f->mode & 0444)) return -EACCES;
    if ((how & X_OK) && !(f->mode & 0111)) return -EACCES;
    return 0;
}

static long open_flags(const struct inj_file *f, int flags) {
    if (flags & O_DIRECTORY) return -ENOTDIR;
    if ((flags & O_CREAT) && (flags & O_EXCL)) return -EEXIST;
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) return -EROFS;
    return open_file(f, flags);
}

int sh_injected_call(long nr, const long a[6], long *ret) {
    if (!inj.n) return 0;
    int below = 0;
    long e;
    const struct inj_file *f;
    const struct sh_sysent *s = sh_sys(nr);
    if (!s || s->path < 0) return 0;
    /* the table says where the paths are */
    f = find(s->dirfd < 0 ? AT_FDCWD : (int)a[s->dirfd], (const char *)a[s->path], &below, &e);
    if (!f && !e && s->path2 >= 0)
        f = find(s->dirfd2 < 0 ? AT_FDCWD : (int)a[s->dirfd2], (const char *)a[s->path2], &below, &e);
    if (!f) return 0; /* errors in resolving are the mount classification's to report */
    long r;
    if (below) r = nr == SYS_mkdirat || nr == SYS_openat || nr == SYS_openat2 || nr == SYS_newfstatat ||
                           nr == SYS_statx || nr == SYS_faccessat || nr == SYS_faccessat2
                       ? -ENOTDIR
                       : -EROFS;
    else switch (nr) {
        case SYS_openat: r = open_flags(f, (int)a[2]); break;
        case SYS_openat2: r = open_flags(f, (int)((const uint64_t *)a[2])[0]); break;
        case SYS_newfstatat: fill_stat(f, (struct stat *)a[2]); r = 0; break;
        case SYS_statx: fill_statx(f, (struct statx *)a[4]); r = 0; break;
        case SYS_faccessat:
        case SYS_faccessat2: r = access_file(f, (int)a[2]); break;
        case SYS_readlinkat: r = -EINVAL; break;
        case SYS_execve:
        case SYS_execveat: r = -EACCES; break;
        case SYS_inotify_add_watch:
        case SYS_name_to_handle_at: r = -EOPNOTSUPP; break;
        case SYS_mkdirat: r = -EEXIST; break;
        default: r = -EROFS; /* unlink, rename, link, chmod, chown, utimes, truncate, mknod, symlink */
        }
    sh_trace("%s of an injected file = %ld", sh_sysname(nr), r);
    *ret = r;
    return 1;
}
