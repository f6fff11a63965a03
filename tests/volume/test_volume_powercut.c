/* test_volume_powercut - simulated power cuts: unsynced writes are dropped.
 *
 * The test binary is linked with -Wl,--wrap for every call through which libscp changes the
 * volume directory (open/openat with O_CREAT or O_TRUNC, write, pwrite, ftruncate, unlink(at),
 * mkdir(at)) and for fsync/fdatasync. While recording, a model of the disk is kept next to the
 * real files (which play the page cache):
 *   - a file's durable content is its content at its last fsync/fdatasync;
 *   - a name created or removed in a directory is durable once that directory is fsynced;
 *   - everything else is pending: writes (split into 4 KiB-aligned pieces), truncations and
 *     name changes since the last sync.
 * At random instants (before a random intercepted call, so also in the middle of a commit) a
 * crash image is written: durable state plus a random subset of the pending operations (each
 * piece kept or dropped independently, in order), i.e. the disk after a power cut that lost
 * some unsynced writes in any combination.
 *
 * The workload (in-process, one volume, three files, chunk 4096): pwrite, truncate, fsync,
 * close+reopen, close+reopen with O_TRUNC, atomic replace (write "c/tmp", rename over the file).
 * For each image, asserted:
 *   - the volume opens with, as `expected`, the tag of the last commit that had returned before
 *     the cut (a tag is only handed out once its state is durable), and verify finds nothing;
 *   - each file reads exactly its state at its last commit that returned before the cut, or,
 *     if the cut fell inside a commit of that file, a state of that commit (before or after).
 * With "shared" (third argument), the volume is in shared mode (scp_volume_set_shared, what
 * the shield sets at a program's first fork): every write and truncate is a lazy commit
 * (published, unsynced; fresh and filled-hole chunks written in place), and only an fsync (or
 * a sync) is certainly durable, for every file; then each file must read a state it had
 * between the last fsync that returned before the cut and the op in progress.
 * With "sole", the workload's process takes the volume's private lock (scp_volume_go_private,
 * what the shield does for a program that has not forked): the sole holder's commits skip the
 * cross-process lock and catch-up (docs/volume-format.md, "Sole holder"); the images are
 * checked as without it.
 * With "lazyclose", the volume closes new files lazily (scp_volume_set_lazy_close, what the
 * shield sets): the atomic replace's temporary file is then published at its close and durable
 * only at the next sync; the images are checked as without it (the replace without a sync was
 * durable only at the next commit already).
 * "sole+lazyclose" is both, as the shield runs a program that has not forked.
 * Usage: test_volume_powercut [runs [first run [shared|sole|lazyclose|sole+lazyclose]]]
 */
#include <stdarg.h>

#include "testutil.h"
#define WL_MAXSZ (96u * 1024)
#include "workload.h"

/* ---- the wrappers ------------------------------------------------------------------------ */

int __real_open(const char *path, int flags, ...);
int __real_openat(int dirfd, const char *path, int flags, ...);
int __real_close(int fd);
ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_ftruncate(int fd, off_t len);
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_unlink(const char *path);
int __real_unlinkat(int dirfd, const char *path, int flags);
int __real_mkdir(const char *path, mode_t mode);
int __real_mkdirat(int dirfd, const char *path, mode_t mode);
int __real_dup(int fd);
int __wrap_open(const char *path, int flags, ...);
int __wrap_openat(int dirfd, const char *path, int flags, ...);
int __wrap_close(int fd);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __wrap_ftruncate(int fd, off_t len);
int __wrap_fsync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_unlink(const char *path);
int __wrap_unlinkat(int dirfd, const char *path, int flags);
int __wrap_mkdir(const char *path, mode_t mode);
int __wrap_mkdirat(int dirfd, const char *path, mode_t mode);
int __wrap_dup(int fd);
int __real_syncfs(int fd);
int __wrap_syncfs(int fd);

#define MAXFD 1024
#define PIECE 4096u

enum { P_WRITE, P_TRUNC };
typedef struct pend {
    int type;
    uint64_t off, len; /* write: piece; trunc: new size in off */
    uint8_t *data;
} pend;

typedef struct mfile {
    char *rel;           /* path relative to the volume directory */
    int is_dir;
    int durable_exists;
    uint8_t *dur;        /* durable content */
    size_t dur_n;
    pend *p;             /* pending operations in order */
    size_t np, pcap;
} mfile;

enum { NS_CREATE, NS_REMOVE };
typedef struct nsop {
    int type;
    mfile *f;
    char *parent; /* rel path of the directory */
} nsop;

static struct {
    int on;             /* recording */
    char *root;         /* absolute volume directory */
    size_t rootlen;
    char *fdpath[MAXFD];
    mfile **files;
    size_t nfiles, fcap;
    nsop *ns;
    size_t nns, nscap;
    unsigned long calls;
    unsigned long next_cut;
    tu_rng rng;
    void (*on_cut)(void);
    int trace; /* PCUT_TRACE=1: every intercepted call, op and cut on stderr */
} W;

static char *xstrdup(const char *s) {
    char *p = strdup(s);
    if (!p) tu_die("strdup");
    return p;
}

/* Relative path under the volume root of an absolute path, or NULL. */
static const char *rel_of(const char *abs) {
    if (!W.root || strncmp(abs, W.root, W.rootlen)) return NULL;
    if (abs[W.rootlen] == 0) return "";
    if (abs[W.rootlen] != '/') return NULL;
    return abs + W.rootlen + 1;
}

static char *join_at(int dirfd, const char *path) {
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        if (path[0] == '/') return xstrdup(path);
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) return xstrdup(path);
        char *p = malloc(strlen(cwd) + strlen(path) + 2);
        sprintf(p, "%s/%s", cwd, path);
        return p;
    }
    const char *d = dirfd >= 0 && dirfd < MAXFD ? W.fdpath[dirfd] : NULL;
    if (!d) return NULL;
    char *p = malloc(strlen(d) + strlen(path) + 2);
    sprintf(p, "%s/%s", d, path);
    return p;
}

static mfile *find_file(const char *rel, int create) {
    for (size_t i = 0; i < W.nfiles; i++)
        if (!strcmp(W.files[i]->rel, rel)) return W.files[i];
    if (!create) return NULL;
    if (W.nfiles == W.fcap) {
        W.fcap = W.fcap ? 2 * W.fcap : 64;
        W.files = realloc(W.files, W.fcap * sizeof *W.files);
    }
    mfile *f = calloc(1, sizeof *f);
    f->rel = xstrdup(rel);
    W.files[W.nfiles++] = f;
    return f;
}

static void pend_add(mfile *f, int type, uint64_t off, uint64_t len, const void *data) {
    if (f->np == f->pcap) {
        f->pcap = f->pcap ? 2 * f->pcap : 64;
        f->p = realloc(f->p, f->pcap * sizeof *f->p);
    }
    pend *p = &f->p[f->np++];
    p->type = type;
    p->off = off;
    p->len = len;
    p->data = NULL;
    if (data) {
        p->data = malloc(len ? len : 1);
        memcpy(p->data, data, len);
    }
}

static void pend_clear(mfile *f) {
    for (size_t i = 0; i < f->np; i++) free(f->p[i].data);
    f->np = 0;
}

static void ns_add(int type, mfile *f) {
    if (W.nns == W.nscap) {
        W.nscap = W.nscap ? 2 * W.nscap : 64;
        W.ns = realloc(W.ns, W.nscap * sizeof *W.ns);
    }
    char *parent = xstrdup(f->rel);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = 0;
    else parent[0] = 0;
    W.ns[W.nns++] = (nsop){type, f, parent};
}

static uint8_t *read_real(const char *abs, size_t *n) {
    int was = W.on;
    W.on = 0;
    uint8_t *b = tu_read_file(abs, n);
    W.on = was;
    return b;
}

static void write_image(void);
static size_t ncuts_now(void);

static void trace_call(const char *what, int fd, uint64_t off, uint64_t len) {
    if (!W.trace || !W.on) return;
    const char *rel = fd >= 0 && fd < MAXFD && W.fdpath[fd] ? rel_of(W.fdpath[fd]) : NULL;
    fprintf(stderr, "  call %lu: %s %s off %llu len %llu\n", W.calls, what, rel ? rel : "?",
            (unsigned long long)off, (unsigned long long)len);
}

/* Every intercepted mutating call passes here first: maybe a power cut now. */
static void tick(void) {
    if (!W.on) return;
    W.calls++;
    if (W.calls == W.next_cut) {
        if (W.trace) fprintf(stderr, "  cut before call %lu: img%zu\n", W.calls, ncuts_now());
        write_image();
        W.next_cut = W.calls + 1 + tu_below(&W.rng, 40);
    }
}

static void track_fd(int fd, char *abs) {
    if (fd < 0 || fd >= MAXFD) {
        free(abs);
        return;
    }
    free(W.fdpath[fd]);
    W.fdpath[fd] = abs;
}

static int after_open(int fd, char *abs, int flags, int existed) {
    if (fd < 0 || !abs) {
        free(abs);
        return fd;
    }
    const char *rel = W.on ? rel_of(abs) : NULL;
    if (rel && *rel) {
        struct stat st;
        int isdir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
        if (!isdir) {
            mfile *f = find_file(rel, 1);
            if (!existed) {
                ns_add(NS_CREATE, f);
            }
            if ((flags & O_TRUNC) && existed) pend_add(f, P_TRUNC, 0, 0, NULL);
        }
    }
    track_fd(fd, abs);
    return fd;
}

int __wrap_open(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    char *abs = join_at(AT_FDCWD, path);
    int existed = 1;
    if (W.on && (flags & (O_CREAT | O_TRUNC))) {
        tick();
        existed = access(path, F_OK) == 0;
    }
    int fd = __real_open(path, flags, mode);
    return after_open(fd, abs, flags, existed);
}

int __wrap_openat(int dirfd, const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    char *abs = join_at(dirfd, path);
    int existed = 1;
    if (W.on && (flags & (O_CREAT | O_TRUNC))) {
        tick();
        existed = faccessat(dirfd, path, F_OK, 0) == 0;
    }
    int fd = __real_openat(dirfd, path, flags, mode);
    return after_open(fd, abs, flags, existed);
}

int __wrap_dup(int fd) {
    int r = __real_dup(fd);
    if (r >= 0 && fd >= 0 && fd < MAXFD && W.fdpath[fd]) track_fd(r, xstrdup(W.fdpath[fd]));
    return r;
}

int __wrap_close(int fd) {
    if (fd >= 0 && fd < MAXFD) {
        free(W.fdpath[fd]);
        W.fdpath[fd] = NULL;
    }
    return __real_close(fd);
}

static mfile *file_of_fd(int fd) {
    if (!W.on || fd < 0 || fd >= MAXFD || !W.fdpath[fd]) return NULL;
    const char *rel = rel_of(W.fdpath[fd]);
    if (!rel || !*rel) return NULL;
    return find_file(rel, 1);
}

static void record_write(mfile *f, const uint8_t *buf, size_t n, uint64_t off) {
    /* split into pieces at 4 KiB boundaries: each may reach the disk or not */
    while (n) {
        uint64_t end = (off / PIECE + 1) * PIECE;
        size_t k = (size_t)(end - off) < n ? (size_t)(end - off) : n;
        pend_add(f, P_WRITE, off, k, buf);
        buf += k;
        off += k;
        n -= k;
    }
}

ssize_t __wrap_write(int fd, const void *buf, size_t n) {
    mfile *f = file_of_fd(fd);
    if (!f) return __real_write(fd, buf, n);
    tick();
    off_t off = lseek(fd, 0, SEEK_CUR);
    ssize_t r = __real_write(fd, buf, n);
    if (r > 0 && off >= 0) record_write(f, buf, (size_t)r, (uint64_t)off);
    return r;
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
    mfile *f = file_of_fd(fd);
    if (!f) return __real_pwrite(fd, buf, n, off);
    tick();
    trace_call("pwrite", fd, (uint64_t)off, n);
    ssize_t r = __real_pwrite(fd, buf, n, off);
    if (r > 0) record_write(f, buf, (size_t)r, (uint64_t)off);
    return r;
}

int __wrap_ftruncate(int fd, off_t len) {
    mfile *f = file_of_fd(fd);
    if (!f) return __real_ftruncate(fd, len);
    tick();
    trace_call("ftruncate", fd, (uint64_t)len, 0);
    int r = __real_ftruncate(fd, len);
    if (r == 0) pend_add(f, P_TRUNC, (uint64_t)len, 0, NULL);
    return r;
}

static void sync_fd_model(int fd) {
    if (!W.on || fd < 0 || fd >= MAXFD || !W.fdpath[fd]) return;
    const char *rel = rel_of(W.fdpath[fd]);
    if (!rel) return;
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        /* name changes in this directory become durable */
        size_t k = 0;
        for (size_t i = 0; i < W.nns; i++) {
            if (!strcmp(W.ns[i].parent, rel)) {
                W.ns[i].f->durable_exists = W.ns[i].type == NS_CREATE;
                free(W.ns[i].parent);
            } else {
                W.ns[k++] = W.ns[i];
            }
        }
        W.nns = k;
        return;
    }
    mfile *f = find_file(rel, 1);
    size_t n;
    uint8_t *b = read_real(W.fdpath[fd], &n);
    if (!b) return;
    free(f->dur);
    f->dur = b;
    f->dur_n = n;
    pend_clear(f);
}

int __wrap_fsync(int fd) {
    tick();
    trace_call("fsync", fd, 0, 0);
    int r = __real_fsync(fd);
    if (r == 0) sync_fd_model(fd);
    return r;
}
int __wrap_fdatasync(int fd) {
    tick();
    trace_call("fdatasync", fd, 0, 0);
    int r = __real_fdatasync(fd);
    if (r == 0) sync_fd_model(fd);
    return r;
}

/* syncfs: every file and every name change of the file system is durable (lazy_sync's bulk
 * flush, many lazily closed files). */
int __wrap_syncfs(int fd) {
    tick();
    trace_call("syncfs", fd, 0, 0);
    int r = __real_syncfs(fd);
    if (r != 0 || !W.on) return r;
    for (size_t i = 0; i < W.nns; i++) {
        W.ns[i].f->durable_exists = W.ns[i].type == NS_CREATE;
        free(W.ns[i].parent);
    }
    W.nns = 0;
    for (size_t i = 0; i < W.nfiles; i++) {
        mfile *f = W.files[i];
        if (f->is_dir) continue;
        char *abs = malloc(W.rootlen + strlen(f->rel) + 2);
        sprintf(abs, "%s/%s", W.root, f->rel);
        size_t n;
        uint8_t *b = read_real(abs, &n); /* (NULL: removed since; its removal is durable) */
        free(abs);
        if (!b) continue;
        free(f->dur);
        f->dur = b;
        f->dur_n = n;
        pend_clear(f);
    }
    return r;
}

static void record_unlink(char *abs) {
    const char *rel = abs && W.on ? rel_of(abs) : NULL;
    if (rel && *rel) {
        mfile *f = find_file(rel, 0);
        if (f) ns_add(NS_REMOVE, f);
    }
    free(abs);
}
int __wrap_unlink(const char *path) {
    tick();
    int r = __real_unlink(path);
    if (r == 0) record_unlink(join_at(AT_FDCWD, path));
    return r;
}
int __wrap_unlinkat(int dirfd, const char *path, int flags) {
    tick();
    int r = __real_unlinkat(dirfd, path, flags);
    if (r == 0 && !(flags & AT_REMOVEDIR)) record_unlink(join_at(dirfd, path));
    return r;
}
int __wrap_mkdir(const char *path, mode_t mode) {
    if (W.on) fprintf(stderr, "note: mkdir inside the volume while recording: %s\n", path);
    return __real_mkdir(path, mode);
}
int __wrap_mkdirat(int dirfd, const char *path, mode_t mode) {
    if (W.on) fprintf(stderr, "note: mkdirat inside the volume while recording: %s\n", path);
    return __real_mkdirat(dirfd, path, mode);
}

/* Register what is on disk now as durable (the volume was created and synced). */
static void model_start(const char *root, uint64_t seed) {
    W.root = xstrdup(root);
    W.rootlen = strlen(root);
    W.rng.s = seed;
    W.calls = 0;
    W.next_cut = 1 + tu_below(&W.rng, 40);
    char *od = tu_path(root, "objects");
    const char *dirs[2] = {root, od};
    for (int d = 0; d < 2; d++) {
        DIR *dh = opendir(dirs[d]);
        REQUIRE(dh);
        struct dirent *de;
        while ((de = readdir(dh))) {
            if (de->d_name[0] == '.') continue;
            char *abs = tu_path(dirs[d], de->d_name);
            struct stat st;
            if (stat(abs, &st) == 0 && S_ISREG(st.st_mode)) {
                mfile *f = find_file(rel_of(abs), 1);
                f->durable_exists = 1;
                f->dur = tu_read_file(abs, &f->dur_n);
            }
            free(abs);
        }
        closedir(dh);
    }
    free(od);
}

static void model_stop(void) {
    W.on = 0;
    for (size_t i = 0; i < W.nfiles; i++) {
        pend_clear(W.files[i]);
        free(W.files[i]->p);
        free(W.files[i]->dur);
        free(W.files[i]->rel);
        free(W.files[i]);
    }
    free(W.files);
    W.files = NULL;
    W.nfiles = W.fcap = 0;
    for (size_t i = 0; i < W.nns; i++) free(W.ns[i].parent);
    free(W.ns);
    W.ns = NULL;
    W.nns = W.nscap = 0;
    free(W.root);
    W.root = NULL;
}

/* ---- workload ---------------------------------------------------------------------------- */

#define NOPS 250

/* What the workload was doing at each cut. */
typedef struct cut {
    long op;              /* op in progress */
    long last_done;       /* last commit op that returned */
    scp_volume_tag tag;   /* tag after it */
    char dir[64];
} cut;
static cut *cuts;
static size_t ncuts, cutcap;
static long cur_op, last_done_commit;
static scp_volume_tag cur_tag;
static char *images_root;
static size_t ncuts_now(void) { return ncuts; }

static void write_image(void) {
    int was = W.on;
    W.on = 0;
    if (ncuts == cutcap) {
        cutcap = cutcap ? 2 * cutcap : 64;
        cuts = realloc(cuts, cutcap * sizeof *cuts);
    }
    cut *c = &cuts[ncuts];
    c->op = cur_op;
    c->last_done = last_done_commit;
    c->tag = cur_tag;
    snprintf(c->dir, sizeof c->dir, "img%zu", ncuts);
    ncuts++;
    char *d = tu_path(images_root, c->dir);
    REQUIRE(mkdir(d, 0700) == 0);
    char *od = tu_path(d, "objects");
    REQUIRE(mkdir(od, 0700) == 0);
    free(od);
    /* names: durable, then a random subset of the pending changes in order */
    int *exists = calloc(W.nfiles, sizeof *exists);
    for (size_t i = 0; i < W.nfiles; i++) exists[i] = W.files[i]->durable_exists;
    for (size_t i = 0; i < W.nns; i++) {
        if (!tu_pct(&W.rng, 50)) continue;
        for (size_t j = 0; j < W.nfiles; j++)
            if (W.files[j] == W.ns[i].f) exists[j] = W.ns[i].type == NS_CREATE;
    }
    for (size_t i = 0; i < W.nfiles; i++) {
        mfile *f = W.files[i];
        if (!exists[i]) continue;
        size_t cap = f->dur_n + 1;
        for (size_t k = 0; k < f->np; k++) {
            uint64_t end = f->p[k].type == P_WRITE ? f->p[k].off + f->p[k].len : f->p[k].off;
            if (end > cap) cap = (size_t)end;
        }
        uint8_t *b = calloc(1, cap + 1);
        if (f->dur_n) memcpy(b, f->dur, f->dur_n);
        size_t n = f->dur_n;
        for (size_t k = 0; k < f->np; k++) {
            int keep = tu_pct(&W.rng, 50);
            if (W.trace)
                fprintf(stderr, "    %s %s: %s %llu+%llu %s\n", c->dir, f->rel,
                        f->p[k].type == P_WRITE ? "write" : "trunc",
                        (unsigned long long)f->p[k].off, (unsigned long long)f->p[k].len,
                        keep ? "kept" : "dropped");
            if (!keep) continue; /* this piece never reached the disk */
            pend *p = &f->p[k];
            if (p->type == P_WRITE) {
                if (p->off > n) memset(b + n, 0, (size_t)(p->off - n));
                memcpy(b + p->off, p->data, p->len);
                if (p->off + p->len > n) n = (size_t)(p->off + p->len);
            } else {
                if (p->off > n) memset(b + n, 0, (size_t)(p->off - n));
                n = (size_t)p->off;
            }
        }
        char *path = tu_path(d, f->rel);
        REQUIRE(tu_write_file(path, b, n, 0600) == 0);
        free(path);
        free(b);
    }
    free(exists);
    free(d);
    W.on = was;
}

static int shared_mode; /* the volume in shared mode (lazy commits) */
static int sole_mode;   /* the workload holds the private lock (the sole holder) */
static int lazy_close_mode; /* new files close lazily (scp_volume_set_lazy_close) */

/* Shared mode: the states file `fi` may read after cut c (from its state at the last sync that
 * returned, through every op up to the one in progress). Returns 1 if b[0, n) is one of them. */
static int shared_state_ok(const cut *c, uint64_t seed, const fbuf *start, int fi,
                           const uint8_t *b, size_t n) {
    fbuf sim[WL_NF];
    for (int i = 0; i < WL_NF; i++) {
        sim[i].p = malloc(WL_MAXSZ + 5 * WL_CS);
        memcpy(sim[i].p, start[i].p, start[i].n);
        sim[i].n = start[i].n;
    }
    int ok = n == sim[fi].n && !memcmp(b, sim[fi].p, n), ok_since = ok;
    tu_rng r = {seed};
    for (long i = 0; i <= c->op && i < NOPS; i++) {
        op o;
        wl_gen(&r, &o);
        wl_model(sim, &o);
        int match = n == sim[fi].n && !memcmp(b, sim[fi].p, n);
        /* a sync that returned: every earlier state is gone (for every file) */
        if (i <= c->last_done && (o.type == OP_FSYNC || o.type == OP_REPLACE)) ok_since = match;
        else ok_since |= match;
        ok = ok_since;
    }
    for (int i = 0; i < WL_NF; i++) free(sim[i].p);
    return ok;
}

static void check_image(const cut *c, uint64_t seed, const uint8_t *key, fbuf *start,
                        long *nfailed) {
    /* candidates per file */
    fbuf sim[WL_NF], last[WL_NF], pre = {malloc(WL_MAXSZ + 5 * WL_CS), 0}, post = {malloc(WL_MAXSZ + 5 * WL_CS), 0};
    for (int i = 0; i < WL_NF; i++) {
        sim[i].p = malloc(WL_MAXSZ + 5 * WL_CS);
        last[i].p = malloc(WL_MAXSZ + 5 * WL_CS);
        memcpy(sim[i].p, start[i].p, start[i].n);
        sim[i].n = start[i].n;
        memcpy(last[i].p, start[i].p, start[i].n);
        last[i].n = start[i].n;
    }
    int extra = -1;
    /* A rename without a sync is visible at once and durable only at the next durable commit
     * (of any file): until one certainly happened, a cut may show the file as it was before
     * (or after an earlier unsynced rename). lazy[f] holds those states. */
    enum { MAXLAZY = 4 };
    fbuf lazy[WL_NF][MAXLAZY];
    int nlazy[WL_NF] = {0}, unchecked[WL_NF] = {0}, modified[WL_NF] = {0};
    tu_rng r = {seed};
    for (long i = 0; i <= c->op && i < NOPS; i++) {
        op o;
        wl_gen(&r, &o);
        if (i == c->op && wl_is_commit(&o)) {
            memcpy(pre.p, sim[o.file].p, sim[o.file].n);
            pre.n = sim[o.file].n;
        }
        if (i <= c->last_done && wl_is_commit(&o)) {
            /* certainly durable: a commit of a modified file (an O_TRUNC of a non-empty one),
             * a sync; for a replace, the close of the modified file and the tmp file's commit
             * come before its rename (with lazy closes the tmp file's commit, the close of a
             * new file, is not durable) */
            int durable = o.type == OP_REPLACE || (o.type != OP_TRUNCOPEN && modified[o.file]) ||
                          (o.type == OP_TRUNCOPEN && sim[o.file].n > 0) ||
                          (o.type == OP_REPLACE_NOSYNC && o.len > 0 && !lazy_close_mode);
            if (durable)
                for (int k = 0; k < WL_NF; k++) {
                    for (int j = 0; j < nlazy[k]; j++) free(lazy[k][j].p);
                    nlazy[k] = unchecked[k] = 0;
                }
            if (o.type == OP_REPLACE_NOSYNC) {
                if (nlazy[o.file] == MAXLAZY) {
                    unchecked[o.file] = 1;
                } else {
                    fbuf *l = &lazy[o.file][nlazy[o.file]++];
                    l->p = malloc(WL_MAXSZ + 5 * WL_CS);
                    memcpy(l->p, sim[o.file].p, sim[o.file].n);
                    l->n = sim[o.file].n;
                }
            }
        }
        if (o.type == OP_WRITE || o.type == OP_TRUNC) modified[o.file] = 1;
        else if (wl_is_commit(&o)) modified[o.file] = 0;
        wl_model(sim, &o);
        if (!wl_is_commit(&o)) continue;
        if (i <= c->last_done) {
            memcpy(last[o.file].p, sim[o.file].p, sim[o.file].n);
            last[o.file].n = sim[o.file].n;
        } else if (i == c->op) {
            extra = o.file;
            memcpy(post.p, sim[o.file].p, sim[o.file].n);
            post.n = sim[o.file].n;
        }
    }
    char *d = tu_path(images_root, c->dir);
    scp_err e;
    tu_err_clear(&e);
    int fails0 = tu_failures;
    scp_volume *v = scp_volume_open(d, key, &c->tag, &e);
    if (!v) {
        CHECKF(0, "%s (seed %llu, op %ld, last commit %ld): open after power cut: %s (%s)",
               c->dir, (unsigned long long)seed, c->op, c->last_done, e.msg,
               scp_code_name(e.code));
    } else {
        long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
        CHECKF(probs == 0, "%s (seed %llu, op %ld): verify: %ld problems", c->dir,
               (unsigned long long)seed, c->op, probs);
        for (int i = 0; i < WL_NF; i++) {
            size_t n;
            tu_err_clear(&e);
            uint8_t *b = tu_vget(v, WL_FILES[i], &n, &e);
            if (!b) {
                CHECKF(0, "%s (seed %llu, op %ld, last commit %ld): reading %s: %s", c->dir,
                       (unsigned long long)seed, c->op, c->last_done, WL_FILES[i], e.msg);
                continue;
            }
            int ok = (n == last[i].n && !memcmp(b, last[i].p, n));
            if (shared_mode) ok = shared_state_ok(c, seed, start, i, b, n);
            if (!ok && !shared_mode && extra == i)
                ok = (n == post.n && !memcmp(b, post.p, n)) || (n == pre.n && !memcmp(b, pre.p, n));
            for (int j = 0; !ok && j < nlazy[i]; j++)
                ok = n == lazy[i][j].n && !memcmp(b, lazy[i][j].p, n);
            if (unchecked[i]) ok = 1; /* too many unsynced renames to track: any state */
            CHECKF(ok, "%s (seed %llu, op %ld, last commit %ld): %s reads %zu bytes, not a "
                       "committed state (last commit: %zu bytes)", c->dir,
                   (unsigned long long)seed, c->op, c->last_done, WL_FILES[i], n, last[i].n);
            free(b);
        }
        scp_volume_close(v, &e);
    }
    if (tu_failures != fails0) (*nfailed)++;
    else tu_rm_rf(d);
    free(d);
    for (int i = 0; i < WL_NF; i++) {
        free(sim[i].p);
        free(last[i].p);
        for (int j = 0; j < nlazy[i]; j++) free(lazy[i][j].p);
    }
    free(pre.p);
    free(post.p);
}

static void run_one(uint64_t seed, long *images, long *nfailed) {
    tu_rng rr = {seed};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    tu_key(&rr, key);
    char *root = tu_tmpdir("pcut");
    char *vd = tu_path(root, "vol");
    images_root = root;
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, tu_test_chunk(WL_CS), &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, "c", 0700, &e), e);
    fbuf start[WL_NF];
    for (int i = 0; i < WL_NF; i++) {
        start[i].p = malloc(WL_MAXSZ + 5 * WL_CS);
        start[i].n = (size_t)tu_below(&rr, 30000);
        tu_fill(&rr, start[i].p, start[i].n);
        REQUIRE_OK(tu_vput(v, WL_FILES[i], start[i].p, start[i].n, &e), e);
    }
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    if (shared_mode) scp_volume_set_shared(v);
    if (sole_mode) REQUIRE(scp_volume_go_private(v) == 1);
    if (lazy_close_mode) scp_volume_set_lazy_close(v, 1);
    scp_vfile *f[WL_NF];
    for (int i = 0; i < WL_NF; i++) f[i] = REQUIRE_PTR(scp_vfile_open(v, WL_FILES[i], O_RDWR, 0, &e), e);
    scp_volume_tag_get(v, &cur_tag);
    ncuts = 0;
    last_done_commit = -1;
    char *abs = realpath(vd, NULL);
    model_start(abs, seed ^ 0x9999);
    free(abs);
    W.on = 1;
    tu_rng r = {seed + 1};
    for (cur_op = 0; cur_op < NOPS; cur_op++) {
        op o;
        wl_gen(&r, &o);
        if (W.trace)
            fprintf(stderr, "op %ld: type %d file %s off %llu len %llu\n", cur_op, o.type,
                    WL_FILES[o.file], (unsigned long long)o.off, (unsigned long long)o.len);
        int rc = wl_run(v, f, &o, &e);
        REQUIRE_OK(rc, e);
        if (wl_is_commit(&o)) {
            last_done_commit = cur_op;
            scp_volume_tag_get(v, &cur_tag);
        }
    }
    W.on = 0;
    for (int i = 0; i < WL_NF; i++) scp_vfile_close(f[i], &e);
    scp_volume_close(v, &e);
    model_stop();
    for (size_t k = 0; k < ncuts; k++) check_image(&cuts[k], seed + 1, key, start, nfailed);
    *images += (long)ncuts;
    for (int i = 0; i < WL_NF; i++) free(start[i].p);
    if (!*nfailed) tu_rm_rf(root);
    else fprintf(stderr, "  images kept in %s\n", root);
    free(root);
    free(vd);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    W.trace = getenv("PCUT_TRACE") != NULL;
    int runs = argc > 1 ? atoi(argv[1]) : 4;
    int first = argc > 2 ? atoi(argv[2]) : 0;
    shared_mode = argc > 3 && strcmp(argv[3], "shared") == 0;
    sole_mode = argc > 3 && strncmp(argv[3], "sole", 4) == 0;
    lazy_close_mode = argc > 3 && strstr(argv[3], "lazyclose") != NULL;
    double t0 = tu_now();
    long images = 0, nfailed = 0;
    for (int i = first; i < first + runs && !tu_failures; i++)
        run_one(0x50c7 + (uint64_t)i * 7919, &images, &nfailed);
    printf("power cuts: %ld crash images in %.1fs, %ld failed\n", images, tu_now() - t0, nfailed);
    free(cuts);
    return tu_exit_code("test_volume_powercut");
}
