/* common/util.c - see util.h. */
#include "common/util.h"

#include <assert.h>
#include <signal.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "crypto/crypto.h"

#define NOTIME_MASK (STATX_TYPE | STATX_MODE | STATX_NLINK | STATX_UID | STATX_GID | \
                     STATX_INO | STATX_SIZE | STATX_BLOCKS)

int scp_fstatat_notime(int dirfd, const char *path, int flags, struct stat *st) {
    struct statx sx;
    if (statx(dirfd, path, flags, NOTIME_MASK, &sx) < 0) {
        /* (ENOSYS: a kernel before 4.11; EPERM: a seccomp profile that predates statx, as old
         * container engines' defaults did) */
        if (errno != ENOSYS && errno != EPERM) return -1;
        return *path ? fstatat(dirfd, path, st, flags) : fstat(dirfd, st);
    }
    memset(st, 0, sizeof *st);
    st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    st->st_ino = (ino_t)sx.stx_ino;
    st->st_mode = sx.stx_mode;
    st->st_nlink = (nlink_t)sx.stx_nlink;
    st->st_uid = sx.stx_uid;
    st->st_gid = sx.stx_gid;
    st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
    st->st_size = (off_t)sx.stx_size;
    st->st_blksize = (blksize_t)sx.stx_blksize;
    st->st_blocks = (blkcnt_t)sx.stx_blocks;
    return 0;
}

int scp_fstat_notime(int fd, struct stat *st) {
    return scp_fstatat_notime(fd, "", AT_EMPTY_PATH, st);
}

ssize_t scp_pread_full(int fd, void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

int scp_pwrite_full(int fd, const void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, (const uint8_t *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

int scp_write_full(int fd, const void *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, (const uint8_t *)buf + done, n - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

/* scp_read_file and scp_read_file_mapped: the file opened with oflags, read whole into a
 * malloc'd buffer or (mapped) a private anonymous mapping filled before the read. */
static int read_file_into(int dirfd, const char *name, size_t max, int oflags, int mapped,
                          uint8_t **out, size_t *out_len, scp_err *err) {
    int fd = openat(dirfd, name, oflags);
    if (fd < 0) return scp_fail_errno(err, "cannot open '%s'", name);
    struct stat st; /* (without the times: a volume's journals are read whole here) */
    if (scp_fstat_notime(fd, &st) < 0) {
        scp_fail_errno(err, "cannot stat '%s'", name);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        close(fd);
        return scp_fail(err, SCP_E_FORMAT, EIO, "'%s' is not a regular file of at most %zu bytes",
                        name, max);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf;
    if (mapped) {
        void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        buf = p == MAP_FAILED ? NULL : p;
    } else {
        buf = malloc(len ? len : 1);
    }
    if (!buf) {
        close(fd);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading '%s'", name);
    }
    ssize_t r = scp_pread_full(fd, buf, len, 0);
    close(fd);
    if (r < 0 || (size_t)r != len) {
        if (mapped) scp_file_copy_free(buf, len);
        else free(buf);
        return scp_fail(err, SCP_E_SYS, EIO, "short read of '%s'", name);
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int scp_read_file(int dirfd, const char *name, size_t max, uint8_t **out, size_t *out_len,
                  scp_err *err) {
    return read_file_into(dirfd, name, max, O_RDONLY | O_CLOEXEC | O_NONBLOCK /* never block on a FIFO */,
                          0, out, out_len, err);
}

int scp_read_file_mapped(int dirfd, const char *name, size_t max, uint8_t **out,
                         size_t *out_len, scp_err *err) {
    return read_file_into(dirfd, name, max, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 1,
                          out, out_len, err);
}

void scp_file_copy_free(uint8_t *buf, size_t len) {
    if (buf) munmap(buf, len ? len : 1);
}

void scp_hex(const uint8_t *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int scp_unhex(const char *in, uint8_t *out, size_t n) {
    if (strlen(in) != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void *scp_grow(void *buf, size_t *cap, size_t need, size_t first) {
    if (buf && need <= *cap) return buf;
    size_t c = *cap ? *cap : first ? first : 1;
    while (c < need) {
        if (c > SIZE_MAX / 2) return NULL;
        c *= 2;
    }
    void *p = realloc(buf, c);
    if (p) *cap = c;
    return p;
}

void scp_wipe(void *p, size_t n) {
    /* explicit_bzero is memset's speed with a barrier the compiler cannot drop (a volatile byte
     * loop cost 10% of a random-write workload once dirty chunks were wiped before free). */
    explicit_bzero(p, n);
}

int scp_key_file_read(const char *path, uint8_t key[32], scp_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return scp_fail(err, SCP_E_KEY, ENOENT,
                            "key file '%s' does not exist; create one with 'scpctl volume keygen %s'",
                            path, path);
        return scp_fail_errno(err, "cannot open key file '%s'", path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        scp_fail_errno(err, "cannot stat key file '%s'", path);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return scp_fail(err, SCP_E_KEY, EINVAL, "key file '%s' is not a regular file", path);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return scp_fail(err, SCP_E_KEY, EPERM,
                        "key file '%s' is accessible by group or others (mode %03o); "
                        "run 'chmod 600 %s'",
                        path, (unsigned)(st.st_mode & 0777), path);
    }
    uint8_t buf[33];
    ssize_t r = scp_pread_full(fd, buf, sizeof buf, 0);
    close(fd);
    if (r != 32) {
        scp_wipe(buf, sizeof buf);
        return scp_fail(err, SCP_E_KEY, EINVAL,
                        "key file '%s' must hold exactly 32 bytes; make one with "
                        "'scpctl volume keygen FILE'",
                        path);
    }
    memcpy(key, buf, 32);
    scp_wipe(buf, sizeof buf);
    return 0;
}

int scp_key_file_generate(const char *path, scp_err *err) {
    uint8_t key[32];
    if (scp_random(key, sizeof key, err) < 0) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        scp_wipe(key, sizeof key);
        if (errno == EEXIST)
            return scp_fail(err, SCP_E_EXIST, EEXIST,
                            "'%s' already exists; refusing to overwrite a key", path);
        return scp_fail_errno(err, "cannot create key file '%s'", path);
    }
    int rc = scp_write_full(fd, key, sizeof key);
    scp_wipe(key, sizeof key);
    if (rc < 0 || fsync(fd) < 0) {
        scp_fail_errno(err, "cannot write key file '%s'", path);
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    return 0;
}

int64_t scp_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void *scp_secure_alloc(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, n, MADV_DONTDUMP);
    (void)mlock(p, n); /* best effort: RLIMIT_MEMLOCK may be small */
    return p;
}

void scp_secure_free(void *p, size_t n) {
    if (!p) return;
    scp_wipe(p, n);
    munlock(p, n);
    munmap(p, n);
}

void scp_no_core_dumps(void) {
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int scp_read_path(const char *path, size_t max, char **out, size_t *len, scp_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return scp_fail_errno(err, "cannot open '%s'", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        return scp_fail(err, SCP_E_INVAL, EINVAL, "'%s' is not a regular file of at most %zu bytes", path, max);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return scp_fail_errno(err, "cannot read '%s'", path);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

int scp_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, scp_err *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "path too long: '%s'", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) return scp_fail_errno(err, "cannot create '%s'", tmp);
    if (fchmod(fd, mode) < 0) goto fail;
    const uint8_t *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) goto fail;
        off += (size_t)w;
    }
    if (fsync(fd) < 0) goto fail;
    close(fd);
    if (rename(tmp, path) < 0) {
        unlink(tmp);
        return scp_fail_errno(err, "cannot rename to '%s'", path);
    }
    return 0;
fail:
    scp_fail_errno(err, "cannot write '%s'", tmp);
    close(fd);
    unlink(tmp);
    return -1;
}

int scp_path_within(const char *p, const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n == 1 && dir[0] == '/') return 1;
    return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

int scp_openat2(int dir, const char *path, int flags, unsigned long long resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags | O_CLOEXEC;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dir, *path ? path : ".", &how, sizeof how);
}

int scp_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
    assert(min <= max);
    if (!s || !*s || isspace((unsigned char)*s)) {
        errno = EINVAL;
        return -1;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end) {
        errno = EINVAL;
        return -1;
    }
    if (errno == ERANGE || v < min || v > max) {
        errno = ERANGE;
        return -1;
    }
    *out = v;
    return 0;
}

char *scp_escape_text(const char *in, char *out, size_t outsz) {
    assert(outsz > 0);
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char e[12];
        int n;
        if (*p == '\\') n = snprintf(e, sizeof e, "\\\\");
        else if (*p == '\n') n = snprintf(e, sizeof e, "\\n");
        else if (*p == '\t') n = snprintf(e, sizeof e, "\\t");
        else if (*p == '\r') n = snprintf(e, sizeof e, "\\r");
        else if (*p < 0x20 || *p == 0x7f) n = snprintf(e, sizeof e, "\\x%02x", *p);
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) n = snprintf(e, sizeof e, "\\xc2\\x%02x", *++p);
        else n = snprintf(e, sizeof e, "%c", *p);
        if (o + (size_t)n >= outsz) break;
        memcpy(out + o, e, (size_t)n);
        o += (size_t)n;
    }
    out[o] = 0;
    return out;
}

int scp_exit_code(int wstatus, const char *who) {
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    if (!WIFSIGNALED(wstatus)) return 1;
    int sig = WTERMSIG(wstatus);
    if (sig != SIGINT && sig != SIGPIPE)
        scp_log(SCP_LOG_WARN, who, "the program was killed by signal %d (%s)%s", sig, strsignal(sig),
                WCOREDUMP(wstatus) ? ", core dumped" : "");
    return 128 + sig;
}

#ifdef __GLIBC__
/* The id glibc's locks record for the calling thread: the one its thread descriptor caches,
 * which is not gettid() in a child made by a raw clone (the shield's supervisor, the static
 * programs it serves), where no fork handler updated the copy. Read back from a lock taken
 * here, so both sides of the compare come from the same place. */
static int lock_owner_id(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&m);
    int id = m.__data.__owner;
    pthread_mutex_unlock(&m);
    return id;
}
#endif

int scp_mutex_held(pthread_mutex_t *mu) {
#ifdef __GLIBC__
    /* __owner: set by pthread_mutex_lock after it took the lock, cleared by unlock before it
     * lets go, for every mutex type (glibc's nptl); only the holder can see its own id there */
    return __atomic_load_n(&mu->__data.__owner, __ATOMIC_RELAXED) == lock_owner_id();
#else
    (void)mu;
    return 1;
#endif
}

int scp_rwlock_wrheld(pthread_rwlock_t *rw) {
#ifdef __GLIBC__
    /* __cur_writer: the writer's thread id, set by pthread_rwlock_wrlock once it holds the
     * lock and cleared by the unlock (glibc checks it for EDEADLK) */
    return __atomic_load_n(&rw->__data.__cur_writer, __ATOMIC_RELAXED) == lock_owner_id();
#else
    (void)rw;
    return 1;
#endif
}
