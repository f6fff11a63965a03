/* tests/volume/testutil.h - small helpers shared by the protected-volume test suites.
 *
 * Header-only (everything is static inline). CHECK-style macros print "FAIL file:line: ..." and
 * count the failure; the test's main returns tu_exit_code() so that any failure makes the binary
 * exit non-zero. REQUIRE-style macros stop the binary at once (for states where going on makes
 * no sense). A deterministic PRNG (splitmix64) makes every run reproducible from its seed.
 */
#ifndef SCP_TESTS_VOLUME_TESTUTIL_H
#define SCP_TESTS_VOLUME_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "scp/err.h"
#include "scp/volume.h"

/* ---- failure accounting ----------------------------------------------------------------- */

static int tu_failures __attribute__((unused));
static const char *tu_context __attribute__((unused)) = ""; /* printed with each failure */

static inline void tu_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void tu_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s:%d: %s%s", file, line, tu_context, tu_context[0] ? ": " : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
    if (++tu_failures >= 25) {
        fprintf(stderr, "too many failures, stopping\n");
        exit(1);
    }
}

static inline int tu_exit_code(const char *name) {
    if (tu_failures) {
        fprintf(stderr, "%s: %d failure(s)\n", name, tu_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) tu_fail_at(__FILE__, __LINE__, "check failed: %s", #cond);             \
    } while (0)
#define CHECKF(cond, ...)                                                                    \
    do {                                                                                     \
        if (!(cond)) tu_fail_at(__FILE__, __LINE__, __VA_ARGS__);                           \
    } while (0)
#define REQUIRE(cond)                                                                        \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            tu_fail_at(__FILE__, __LINE__, "required: %s", #cond);                           \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)
/* expr returns < 0 / NULL on failure and fills scp_err e. */
#define CHECK_OK(expr, e)                                                                    \
    do {                                                                                     \
        if ((expr) < 0)                                                                      \
            tu_fail_at(__FILE__, __LINE__, "%s failed: %s (%s, sys %d)", #expr, (e).msg,     \
                       scp_code_name((e).code), (e).sys);                                    \
    } while (0)
#define REQUIRE_OK(expr, e)                                                                  \
    do {                                                                                     \
        if ((expr) < 0) {                                                                    \
            tu_fail_at(__FILE__, __LINE__, "%s failed: %s (%s, sys %d)", #expr, (e).msg,     \
                       scp_code_name((e).code), (e).sys);                                    \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)
#define REQUIRE_PTR(expr, e)                                                                 \
    __extension__({                                                                          \
        __typeof__(expr) tu_p_ = (expr);                                                     \
        if (!tu_p_) {                                                                        \
            tu_fail_at(__FILE__, __LINE__, "%s failed: %s (%s, sys %d)", #expr, (e).msg,     \
                       scp_code_name((e).code), (e).sys);                                    \
            exit(1);                                                                         \
        }                                                                                    \
        tu_p_;                                                                               \
    })

static inline void tu_die(const char *what) {
    fprintf(stderr, "FATAL: %s: %s\n", what, strerror(errno));
    exit(2);
}

static inline void tu_err_clear(scp_err *e) {
    memset(e, 0, sizeof *e);
}

/* ---- PRNG (splitmix64) ------------------------------------------------------------------- */

typedef struct tu_rng {
    uint64_t s;
} tu_rng;

static inline uint64_t tu_next(tu_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* uniform in [0, n) (n > 0) */
static inline uint64_t tu_below(tu_rng *r, uint64_t n) { return n ? tu_next(r) % n : 0; }
static inline uint64_t tu_range(tu_rng *r, uint64_t lo, uint64_t hi) { /* [lo, hi] */
    return lo + tu_below(r, hi - lo + 1);
}
static inline int tu_pct(tu_rng *r, unsigned pct) { return tu_below(r, 100) < pct; }
static inline void tu_fill(tu_rng *r, void *buf, size_t n) {
    uint8_t *p = buf;
    while (n >= 8) {
        uint64_t v = tu_next(r);
        memcpy(p, &v, 8);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = tu_next(r);
        memcpy(p, &v, n);
    }
}
static inline void tu_key(tu_rng *r, uint8_t key[SCP_VOLUME_KEY_LEN]) {
    tu_fill(r, key, SCP_VOLUME_KEY_LEN);
}

static inline double tu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The chunk size a suite that honours it gives its volume: $SCP_TEST_CHUNK when set (a power
 * of two the library accepts, checked by scp_volume_create), else dflt. The crash, power-cut
 * and fork suites run once more with 8192 in ctest: the chunk size docs/volume-format.md
 * advises for PostgreSQL's 8 KiB pages, whose records, slots and tables then differ from the
 * 4096-byte default's. */
static inline uint32_t tu_test_chunk(uint32_t dflt) {
    const char *s = getenv("SCP_TEST_CHUNK");
    if (!s || !*s) return dflt;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || s[0] < '0' || s[0] > '9' || v > UINT32_MAX) { /* (not "the default", silently) */
        fprintf(stderr, "SCP_TEST_CHUNK='%s' is not a chunk size\n", s);
        exit(2);
    }
    return (uint32_t)v;
}

/* ---- files and directories ------------------------------------------------------------- */

/* A fresh directory under $TMPDIR (or /tmp). Returns a malloc'd path. */
static inline char *tu_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + strlen(tag) + 32;
    char *p = malloc(n);
    if (!p) tu_die("malloc");
    snprintf(p, n, "%s/scpvt-%s-XXXXXX", base, tag);
    if (!mkdtemp(p)) tu_die("mkdtemp");
    return p;
}

static inline char *tu_path(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (!p) tu_die("malloc");
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static inline void tu_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *de;
            while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
                char *c = tu_path(path, de->d_name);
                tu_rm_rf(c);
                free(c);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Read a whole host file. Returns malloc'd buffer (NULL and *len = 0 if it cannot be read). */
static inline uint8_t *tu_read_file(const char *path, size_t *len) {
    *len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    if (!b) tu_die("malloc");
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap);
            if (!b) tu_die("realloc");
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            free(b);
            close(fd);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    *len = n;
    return b;
}

static inline int tu_write_file(const char *path, const void *buf, size_t len, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) return -1;
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd);
}

/* Copy a directory tree (regular files and directories). Files that vanish while being
 * copied are skipped (the copy may run while a writer changes the source). */
static inline int tu_copy_tree(const char *src, const char *dst) {
    if (mkdir(dst, 0700) != 0 && errno != EEXIST) return -1;
    DIR *d = opendir(src);
    if (!d) return -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *s = tu_path(src, de->d_name), *t = tu_path(dst, de->d_name);
        struct stat st;
        if (lstat(s, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                if (tu_copy_tree(s, t) != 0) rc = -1;
            } else if (S_ISREG(st.st_mode)) {
                size_t n;
                uint8_t *b = tu_read_file(s, &n);
                if (b) {
                    if (tu_write_file(t, b, n, st.st_mode & 0777) != 0) rc = -1;
                    free(b);
                }
            }
        }
        free(s);
        free(t);
    }
    closedir(d);
    return rc;
}

/* Does `hay` contain `needle`? */
static inline int tu_memmem(const void *hay, size_t hn, const void *needle, size_t nn) {
    return memmem(hay, hn, needle, nn) != NULL;
}

/* ---- volume helpers --------------------------------------------------------------------- */

/* The bytes this process has read through system calls so far (rchar of /proc/self/io), or -1:
 * what a load or a repair read, as a difference of two readings. */
static inline long long tu_rchar(void) {
    FILE *io = fopen("/proc/self/io", "r");
    if (!io) return -1;
    char line[128];
    long long n = -1;
    while (fgets(line, sizeof line, io))
        if (sscanf(line, "rchar: %lld", &n) == 1) break;
    fclose(io);
    return n;
}

/* The backing objects of volume directory `dir` whose names end in `ext` (".d", ".j"...): how
 * many there are, and their bytes in *bytes when bytes is not NULL. -1 if objects/ cannot be
 * read. */
static inline int tu_objects(const char *dir, const char *ext, uint64_t *bytes) {
    char *objs = tu_path(dir, "objects");
    DIR *d = opendir(objs);
    if (!d) {
        free(objs);
        return -1;
    }
    int n = 0;
    uint64_t total = 0;
    size_t el = strlen(ext);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= el || strcmp(de->d_name + l - el, ext) != 0) continue;
        n++;
        char *p = tu_path(objs, de->d_name);
        struct stat st;
        if (bytes && stat(p, &st) == 0) total += (uint64_t)st.st_size;
        free(p);
    }
    closedir(d);
    free(objs);
    if (bytes) *bytes = total;
    return n;
}

/* The path of the one backing object of volume directory `dir` whose name ends in `ext`
 * (caller frees); fails the test if there is none or more than one. */
static inline char *tu_only_object(const char *dir, const char *ext) {
    char *objs = tu_path(dir, "objects"), *found = NULL;
    DIR *d = opendir(objs);
    REQUIRE(d);
    size_t el = strlen(ext);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= el || strcmp(de->d_name + l - el, ext) != 0) continue;
        REQUIRE(!found);
        found = tu_path(objs, de->d_name);
    }
    closedir(d);
    free(objs);
    REQUIRE(found);
    return found;
}

/* Write a whole file into a volume (create/truncate) and close it (a commit). */
static inline int tu_vput(scp_volume *v, const char *path, const void *buf, size_t len,
                          scp_err *e) {
    scp_vfile *f = scp_vfile_open(v, path, O_RDWR | O_CREAT | O_TRUNC, 0644, e);
    if (!f) return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = scp_vfile_pwrite(f, (const uint8_t *)buf + off, len - off, off, e);
        if (w <= 0) {
            scp_err tmp;
            scp_vfile_close(f, &tmp);
            return -1;
        }
        off += (size_t)w;
    }
    return scp_vfile_close(f, e);
}

/* Read a whole file from a volume. Returns malloc'd buffer or NULL (e filled). */
/* A fresh volume of `chunk`-byte chunks (0: the default) in a new temp dir tagged `tag`, with a
 * key drawn from rng, opened. *root and *vd (the volume directory, root/vol) are the caller's
 * to free. */
static inline scp_volume *tu_new_volume_chunk(tu_rng *rng, const char *tag, uint32_t chunk,
                                              uint8_t key[SCP_VOLUME_KEY_LEN], char **root, char **vd) {
    scp_err e;
    tu_key(rng, key);
    *root = tu_tmpdir(tag);
    *vd = tu_path(*root, "vol");
    REQUIRE_OK(scp_volume_create(*vd, key, chunk, &e), e);
    return REQUIRE_PTR(scp_volume_open(*vd, key, NULL, &e), e);
}
/* A new volume of 4096-byte chunks at base/name (its path written to dir, dirlen bytes) with
 * key, opened. */
static inline scp_volume *tu_create_open(const char *base, const char *name,
                                         const uint8_t key[SCP_VOLUME_KEY_LEN], char *dir,
                                         size_t dirlen) {
    scp_err e;
    snprintf(dir, dirlen, "%s/%s", base, name);
    REQUIRE_OK(scp_volume_create(dir, key, 4096, &e), e);
    return REQUIRE_PTR(scp_volume_open(dir, key, NULL, &e), e);
}
static inline scp_volume *tu_new_volume(tu_rng *rng, const char *tag, uint8_t key[SCP_VOLUME_KEY_LEN],
                                        char **root, char **vd) {
    return tu_new_volume_chunk(rng, tag, 0, key, root, vd);
}

static inline uint8_t *tu_vget(scp_volume *v, const char *path, size_t *len, scp_err *e) {
    *len = 0;
    scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, e);
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    if (!b) tu_die("malloc");
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap);
            if (!b) tu_die("realloc");
        }
        ssize_t r = scp_vfile_pread(f, b + n, cap - n, n, e);
        if (r < 0) {
            scp_err tmp;
            free(b);
            scp_vfile_close(f, &tmp);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    scp_err tmp;
    scp_vfile_close(f, &tmp);
    *len = n;
    return b;
}

/* The volume file path reads exactly the string want (a failure counted otherwise). */
static inline void tu_check_content(scp_volume *v, const char *path, const char *want) {
    size_t n;
    scp_err e;
    uint8_t *b = tu_vget(v, path, &n, &e);
    CHECKF(b && n == strlen(want) && memcmp(b, want, n) == 0, "'%s' reads '%.*s', want '%s' (%s)", path,
           b ? (int)n : 0, b ? (const char *)b : "", want, b ? "" : e.msg);
    free(b);
}

/* The link count of the volume's path, or 0 if it cannot be stat'ed. */
static inline uint32_t tu_nlink(scp_volume *v, const char *path) {
    scp_vstat st;
    scp_err e;
    if (scp_volume_stat(v, path, &st, &e) < 0) return 0;
    return st.nlink;
}

static inline uint64_t tu_be64(const uint8_t *p) {
    uint64_t g = 0;
    for (int i = 0; i < 8; i++) g = (g << 8) | p[i];
    return g;
}

static inline uint64_t tu_tag_gen(const scp_volume_tag *t) {
    uint64_t g = 0;
    for (int i = 0; i < 8; i++) g = (g << 8) | t->bytes[i];
    return g;
}

/* ---- two processes taking turns ------------------------------------------------------------
 * fn(ctx, me, in, out) runs in this process as 0 and in a forked child as 1 (which dies with
 * this process), each reading the other's results from in and writing its own to out
 * (cross-wired pipes). Returns fn's result in this process; *status: the child's wait status.
 * A turn's read of the other's result (tu_turn_read) exits with 3 when the other is gone. */
static inline void tu_turn_read(int fd, void *b, size_t n) {
    size_t g = 0;
    while (g < n) {
        ssize_t r = read(fd, (uint8_t *)b + g, n - g);
        if (r <= 0) exit(3); /* the other process failed */
        g += (size_t)r;
    }
}
static inline void tu_turn_write(int fd, const void *b, size_t n) {
    if (write(fd, b, n) != (ssize_t)n) tu_die("pipe write");
}
static inline int tu_two_procs(int (*fn)(void *ctx, int me, int in, int out), void *ctx, int *status) {
    int to1[2], to0[2];
    if (pipe(to1) < 0 || pipe(to0) < 0) tu_die("pipe");
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(to1[1]);
        close(to0[0]);
        _exit(fn(ctx, 1, to1[0], to0[1]));
    }
    close(to1[0]);
    close(to0[1]);
    int rc = fn(ctx, 0, to0[0], to1[1]);
    close(to1[1]);
    if (waitpid(pid, status, 0) < 0) tu_die("waitpid");
    close(to0[0]);
    return rc;
}

/* A seeded run of turns on the empty file "f" of a new volume (tag names its directory): turns
 * runs in this process as 0 and in a forked child as 1 (tu_two_procs) with the volume's
 * directory in *vd meanwhile (the turns open it; freed here after); the child must exit 0, or
 * 3 when this process finished first; then a fresh open must read f whole. */
typedef int (*tu_turns_fn)(uint64_t seed, int nops, int me, int in, int out);
struct tu_turns_args {
    tu_turns_fn turns;
    uint64_t seed;
    int nops;
};
static inline int tu_turns_call(void *ctx, int me, int in, int out) {
    struct tu_turns_args *a = ctx;
    return a->turns(a->seed, a->nops, me, in, out);
}
static inline void tu_two_procs_on_f(const char *tag, tu_turns_fn turns, uint64_t seed, int nops,
                                     uint8_t key[SCP_VOLUME_KEY_LEN], char **vd) {
    tu_rng rng = {seed};
    char *root;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, tag, key, &root, vd);
    REQUIRE_OK(tu_vput(v, "f", "", 0, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    struct tu_turns_args a = {turns, seed, nops};
    int st;
    int rc = tu_two_procs(tu_turns_call, &a, &st);
    CHECKF(rc == 0 && WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3),
           "seed %llu: process 1 failed (status %d)", (unsigned long long)seed, st);
    v = REQUIRE_PTR(scp_volume_open(*vd, key, NULL, &e), e); /* (a fresh process's view) */
    size_t n;
    uint8_t *got = tu_vget(v, "f", &n, &e);
    CHECKF(got, "seed %llu: a fresh open cannot read f: %s", (unsigned long long)seed, e.msg);
    free(got);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(*vd);
    *vd = NULL;
}

/* ---- sqlite's rollback-journal transaction ------------------------------------------------ */

/* Page n of the database of tu_delete_txn: 4096 bytes, at page n % 64. */
static inline void tu_page_bytes(int n, uint8_t buf[4096]) {
    memset(buf, (n * 13 + 5) & 0xff, 4096);
    memcpy(buf, &n, sizeof n);
}

/* One rollback-journal (DELETE mode) transaction as sqlite makes it: "db-journal" created (it
 * must read empty), written and fsynced twice (its records, then its header's count), page n
 * of db written and fsynced, the journal closed and removed. */
static inline void tu_delete_txn(scp_volume *v, scp_vfile *db, int n) {
    scp_err e;
    uint8_t buf[4096], back[16];
    scp_vfile *j = REQUIRE_PTR(scp_vfile_open(v, "db-journal", O_RDWR | O_CREAT, 0644, &e), e);
    CHECKF(scp_vfile_pread(j, back, sizeof back, 0, &e) == 0, "transaction %d: a new journal "
           "file is not empty", n);
    memset(buf, 0xa5, 512);
    memcpy(buf, &n, sizeof n);
    REQUIRE_OK(scp_vfile_pwrite(j, buf, 512, 0, &e), e);
    REQUIRE_OK(scp_vfile_fsync(j, &e), e);
    REQUIRE_OK(scp_vfile_pwrite(j, "count", 5, 0, &e), e);
    REQUIRE_OK(scp_vfile_fsync(j, &e), e);
    tu_page_bytes(n, buf);
    REQUIRE_OK(scp_vfile_pwrite(db, buf, sizeof buf, 4096 * (uint64_t)(n % 64), &e), e);
    REQUIRE_OK(scp_vfile_fsync(db, &e), e);
    REQUIRE_OK(scp_vfile_close(j, &e), e);
    REQUIRE_OK(scp_volume_unlink(v, "db-journal", &e), e);
}

#endif
