/* test_volume_sole - the sole holder (docs/volume-format.md, "Sole holder"): a process that
 * holds the volume's private lock outside shared mode commits without the cross-process lock
 * and without a catch-up, and every other open waits until it lets go.
 *
 * The binary wraps fcntl, statx (fstat), pread, pwrite, malloc and the volume lock's take and give
 * (-Wl,--wrap; the lock is a mutex in the mapped lock page, src/volume/vlock.c) to count the library's
 * calls (malloc: the allocations of a chunk's plaintext, 4 KiB here, a dirty chunk's buffer or
 * a plaintext cache entry).
 *   count     sqlite's WAL transaction (a 4120-byte frame written, then an fsync), 64 times,
 *             and a DELETE-mode-like one (a file created, written, fsynced and removed), 32
 *             times: not private, each commit takes and releases the cross-process lock and
 *             catches up (two fcntl, an fstat and a pread of the manifest log's header, at
 *             least); private, none of these after the first commit, and per WAL commit
 *             two pwrites only, the journal's and the manifest log's (the table entries and
 *             the applies to .d wait: deferred table writes and applies; the frame's fresh
 *             chunk goes to the journal, not in place), none of them to a .d object; the
 *             WAL file's close writes the deferred applies without reading the log back
 *   newcomer  a private process with a watcher thread (scp_volume_private_wait, then
 *             scp_volume_private_release) commits frames while another process opens the
 *             volume, reads the file the private one still holds open (from its .t, which
 *             must hold the deferred entries by then), creates a file and commits it: the
 *             newcomer's open waits for the release, the private process's later commits go
 *             on top of the newcomer's, and a fresh open finds both (without the wait in the
 *             open, the private process would append its manifest-log records over the
 *             newcomer's and the file would be lost)
 *   fork      a private process forks (the library's fork handlers): from then on its commits
 *             take the lock and catch up again, and the child's commit is kept
 */
#include <poll.h>
#include <pthread.h>

#include "crypto/crypto.h"
#include "scenario.h"
#define SYSCOUNT_VLOCK
#include "syscount.h"

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_scp_hmac(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
                    uint8_t out[32], scp_err *err);
int __wrap_scp_hmac(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
                    uint8_t out[32], scp_err *err);
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
static long npwrite, npwrite_d, npwrite_mlog, nmalloc_chunk, nhmac;

/* (the volume tag's HMACs: a durable commit computes one only when a callback reports it) */
int __wrap_scp_hmac(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
                    uint8_t out[32], scp_err *err) {
    nhmac++;
    return __real_scp_hmac(key, key_len, parts, n, out, err);
}

void *__wrap_malloc(size_t n) {
    /* (a 4 KiB chunk's plaintext: a dirty buffer, or a cache entry behind its 44-byte table entry;
     * not the kept ciphertext copies, 8 bytes behind their offset: ct_keep) */
    if (n == 4096 || n == 4096 + 44) __atomic_add_fetch(&nmalloc_chunk, 1, __ATOMIC_RELAXED);
    return __real_malloc(n);
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
    char link[64], name[512];
    /* (not counted: a journal's room ahead of its log, 64 KiB or more of zeros at a time,
     * written once in many commits: journal_room) */
    static const uint8_t z[4096];
    if (n >= (64u << 10) && memcmp(buf, z, sizeof z) == 0 && memcmp(buf, (const uint8_t *)buf + 4096, n - 4096) == 0)
        return __real_pwrite(fd, buf, n, off);
    npwrite++;
    /* (writes to a data object, "<id>.d": the applies and a chunk written in place) */
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t l = readlink(link, name, sizeof name - 1);
    if (l > 2 && name[l - 2] == '.' && name[l - 1] == 'd') npwrite_d++;
    if (l >= 13 && memcmp(name + l - 13, "/manifest.log", 13) == 0) npwrite_mlog++;
    return __real_pwrite(fd, buf, n, off);
}

static const uint8_t KEY[SCP_VOLUME_KEY_LEN] = {7, 7, 7};

static void frame(scp_vfile *f, int n) {
    scp_err e;
    uint8_t buf[4120];
    memset(buf, (n * 7 + 1) & 0xff, sizeof buf);
    memcpy(buf, &n, sizeof n);
    REQUIRE_OK(scp_vfile_pwrite(f, buf, sizeof buf, 32 + 4120 * (uint64_t)(n % 200), &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
}

static void reset_counts(void) {
    nfcntl = nvlock = nfstat = npread = npwrite = npwrite_d = npwrite_mlog = nmalloc_chunk = nhmac = 0;
}

struct counts {
    double wal_fcntl, wal_vlock, wal_fstat, wal_pread, wal_pwrite, wal_pwrite_d; /* per WAL commit */
    double wal_pwrite_mlog;                 /* of them to manifest.log */
    double wal_hmac;                        /* tag HMACs per WAL commit */
    double wal_malloc_chunk;                /* chunk-sized allocations per WAL commit */
    double del_calls;                       /* fcntl + lock + fstat + pread per DELETE-mode one */
    double del_pread;                       /* pread per DELETE-mode one */
    long close_pread;                       /* pread of the WAL file's last close */
};

/* n WAL transactions, then n/2 DELETE-mode-like ones, on an open volume: calls per commit. */
static void workload(scp_volume *v, const char *name, int n, struct counts *k) {
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, name, O_RDWR | O_CREAT, 0644, &e);
    REQUIRE(f);
    frame(f, 0); /* (the first commit catches up, private or not) */
    reset_counts();
    for (int i = 1; i <= n; i++) frame(f, i);
    k->wal_fcntl = (double)nfcntl / n;
    k->wal_vlock = (double)nvlock / n;
    k->wal_fstat = (double)nfstat / n;
    k->wal_pread = (double)npread / n;
    k->wal_pwrite = (double)npwrite / n;
    k->wal_pwrite_d = (double)npwrite_d / n;
    k->wal_pwrite_mlog = (double)npwrite_mlog / n;
    k->wal_hmac = (double)nhmac / n;
    k->wal_malloc_chunk = (double)nmalloc_chunk / n;
    reset_counts();
    for (int i = 0; i < n / 2; i++) {
        scp_vfile *j = scp_vfile_open(v, "db-journal", O_RDWR | O_CREAT | O_TRUNC, 0644, &e);
        REQUIRE(j);
        REQUIRE_OK(scp_vfile_pwrite(j, "journal", 7, 0, &e), e);
        REQUIRE_OK(scp_vfile_fsync(j, &e), e);
        /* (sqlite then writes the journal header's record count and syncs again) */
        REQUIRE_OK(scp_vfile_pwrite(j, "JOURNAL", 7, 0, &e), e);
        REQUIRE_OK(scp_vfile_fsync(j, &e), e);
        REQUIRE_OK(scp_vfile_close(j, &e), e);
        REQUIRE_OK(scp_volume_unlink(v, "db-journal", &e), e);
        frame(f, n + 1 + i);
    }
    k->del_calls = (double)(nfcntl + nvlock + nfstat + npread) / (n / 2);
    k->del_pread = (double)npread / (n / 2);
    reset_counts();
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    k->close_pread = npread;
}

struct reported {
    long n;
    scp_volume_tag last;
};
static void on_commit(void *ctx, const scp_volume_tag *tag) {
    struct reported *r = ctx;
    r->n++;
    r->last = *tag;
}

static void test_count(const char *base) {
    char dir[512];
    scp_err e;
    struct counts a, b;
    snprintf(dir, sizeof dir, "%s/count", base);
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE(v);
    struct reported rep = {0};
    scp_volume_on_commit(v, on_commit, &rep);
    workload(v, "db-wal", 64, &a);
    scp_volume_tag t;
    scp_volume_tag_get(v, &t);
    CHECKF(rep.n >= 64 && memcmp(&t, &rep.last, sizeof t) == 0, "the commits' reports (%ld) end "
           "with another tag than the volume's", rep.n);
    CHECKF(a.wal_hmac >= 1, "a reported commit computes its tag: %.2f HMAC per WAL commit",
           a.wal_hmac);
    printf("  not private: per WAL commit %.2f fcntl, %.2f volume lock takes and gives, %.2f fstat, "
           "%.2f pread, %.2f pwrite (%.2f to .d); %.2f fcntl, lock, fstat and pread per DELETE-mode "
           "transaction\n", a.wal_fcntl, a.wal_vlock, a.wal_fstat, a.wal_pread, a.wal_pwrite, a.wal_pwrite_d, a.del_calls);
    /* (the catch-up reads the log's tail: one pread when it is the log in memory) */
    CHECKF(a.wal_vlock >= 2 && a.wal_fstat + a.wal_pread >= 1, "a commit outside the sole "
           "holder takes the lock and catches up (%.2f takes and gives, %.2f fstat, %.2f pread)",
           a.wal_vlock, a.wal_fstat, a.wal_pread);
    REQUIRE_OK(scp_volume_close(v, &e), e);

    v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE(v);
    CHECK(scp_volume_go_private(v) == 1);
    workload(v, "db-wal2", 64, &b); /* (a new file: no chunk to read back) */
    printf("  sole holder: per WAL commit %.2f fcntl, %.2f volume lock takes and gives, %.2f fstat, "
           "%.2f pread, %.2f pwrite (%.2f to .d); %.2f fcntl, lock, fstat and pread per DELETE-mode "
           "transaction\n", b.wal_fcntl, b.wal_vlock, b.wal_fstat, b.wal_pread, b.wal_pwrite, b.wal_pwrite_d, b.del_calls);
    printf("  sole holder: per WAL commit %.2f allocations of a chunk's plaintext\n", b.wal_malloc_chunk);
    /* (the frame's two chunks: their dirty buffers are the ones the last write-back kept,
     * file_dirty_done, and their cache entries are refilled in place, pc_refill; a new chunk
     * of the file, one in 4096 / 120 frames or so past the first, is what is left) */
    CHECKF(b.wal_malloc_chunk < 1.5, "the sole holder's WAL commit allocates its chunks' "
           "plaintext buffers afresh: %.2f per commit", b.wal_malloc_chunk);
    /* (the table entries wait for the checkpoint, the close or the end of the holding) */
    CHECKF(b.wal_pwrite + 1 <= a.wal_pwrite, "the sole holder's WAL commit writes .t "
           "(%.2f pwrite per commit against %.2f)", b.wal_pwrite, a.wal_pwrite);
    /* (the applies wait too, and the frame's fresh chunk goes to the journal, not in place:
     * the journal's append and the manifest log's, as plain sqlite's two writes of a frame) */
    CHECKF(a.wal_pwrite_d >= 1, "a commit outside the sole holder applies its journal to .d "
           "(%.2f pwrite to .d per commit)", a.wal_pwrite_d);
    CHECKF(b.wal_pwrite_d == 0 && b.wal_pwrite <= 2.05, "the sole holder's WAL commit writes "
           "only the journal and the manifest log: %.2f pwrite per commit, %.2f of them to .d",
           b.wal_pwrite, b.wal_pwrite_d);
    /* (and the manifest log's record waits too: it is durable in the journal, and no other
     * process reads the log until the holding ends; 64 records are one write, or none) */
    printf("  sole holder: per WAL commit %.2f pwrite to manifest.log (not private: %.2f)\n",
           b.wal_pwrite_mlog, a.wal_pwrite_mlog);
    CHECKF(a.wal_pwrite_mlog >= 1, "a commit outside the sole holder appends its record to the "
           "manifest log (%.2f pwrite to it per commit)", a.wal_pwrite_mlog);
    CHECKF(b.wal_pwrite_mlog <= 0.05 && b.wal_pwrite <= 1.05, "the sole holder's WAL commit "
           "appends its manifest-log record at once: %.2f pwrite to manifest.log per commit, "
           "%.2f pwrite in all", b.wal_pwrite_mlog, b.wal_pwrite);
    /* (the journal's second commit, an overwrite, is deferred; its close writes it from the
     * ciphertext kept since the commit: ct_after_commit) */
    CHECKF(b.del_pread == 0, "the sole holder's DELETE-mode journal reads its chunk back from "
           "the log at its close: %.2f pread per transaction", b.del_pread);
    /* (the WAL file's close writes its deferred applies, about a hundred chunks, from the
     * ciphertext kept since each commit: ct_keep, CT_KEEP_BYTES) */
    CHECKF(b.close_pread == 0, "the sole holder's close of its WAL file reads its deferred "
           "records back from the log: %ld pread", b.close_pread);
    CHECKF(b.wal_fcntl == 0 && b.wal_vlock == 0 && b.wal_fstat == 0 && b.wal_pread == 0,
           "the sole holder's WAL commits take no lock and make no catch-up");
    /* (what is left there: the new file's writer lock, taken and released) */
    CHECKF(b.del_calls + 8 <= a.del_calls, "the sole holder's DELETE-mode transaction skips "
           "the lock and catch-up of each namespace call and commit: %.2f calls against %.2f",
           b.del_calls, a.del_calls);
    /* (no callback: the tag is computed when read, and it is the state's) */
    printf("  sole holder: per WAL commit %.2f tag HMACs without a callback (%.2f with one)\n",
           b.wal_hmac, a.wal_hmac);
    CHECKF(b.wal_hmac == 0, "a commit that no callback reports computes its tag: %.2f HMAC per "
           "WAL commit", b.wal_hmac);
    scp_volume_tag_get(v, &t);
    scp_volume_private_release(v);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    /* everything committed is there, under the tag read last */
    v = scp_volume_open(dir, KEY, &t, &e);
    CHECKF(v != NULL, "the tag read after the sole holder's commits is refused: %s", v ? "" : e.msg);
    if (!v) return;
    scp_vfile *f = scp_vfile_open(v, "db-wal2", O_RDONLY, 0, &e);
    REQUIRE(f);
    int got = -1;
    CHECK(scp_vfile_pread(f, &got, sizeof got, 32 + 4120 * 96, &e) == sizeof got && got == 96);
    scp_vstat st;
    CHECK(scp_volume_stat(v, "db-journal", &st, &e) < 0 && e.code == SCP_E_NOENT);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
}

static void *watcher(void *arg) {
    scp_volume *v = arg;
    scp_volume_private_wait(v);
    scp_volume_private_release(v);
    return NULL;
}

static void test_newcomer(const char *base) {
    char dir[512];
    scp_err e;
    snprintf(dir, sizeof dir, "%s/newcomer", base);
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    int go[2];
    REQUIRE(pipe(go) == 0);
    tu_child c;
    if (tu_child_start(&c)) { /* the newcomer: a process of another program */
        close(go[1]);
        char b;
        if (read(go[0], &b, 1) != 1) _exit(3);
        scp_volume *w = scp_volume_open(dir, KEY, NULL, &e);
        if (!w) {
            fprintf(stderr, "FAIL: the newcomer's open: %s\n", e.msg);
            _exit(4);
        }
        /* the holder's file, which it still holds open (its writer lock): read from .t as it
         * stands, so the holder's deferred table writes must be there */
        scp_vfile *r = scp_vfile_open(w, "db-wal", O_RDONLY, 0, &e);
        int got = -1;
        if (!r || scp_vfile_pread(r, &got, sizeof got, 32 + 4120 * 5, &e) != sizeof got ||
            scp_vfile_close(r, &e) < 0) {
            fprintf(stderr, "FAIL: the newcomer reads the holder's file: %s\n", e.msg);
            _exit(6);
        }
        scp_vfile *f = scp_vfile_open(w, "newcomer", O_RDWR | O_CREAT, 0644, &e);
        if (!f || scp_vfile_pwrite(f, "hello", 5, 0, &e) < 0 || scp_vfile_fsync(f, &e) < 0 ||
            scp_vfile_close(f, &e) < 0 || scp_volume_close(w, &e) < 0) {
            fprintf(stderr, "FAIL: the newcomer: %s\n", e.msg);
            _exit(5);
        }
        tu_child_exit(&c, &got, sizeof got); /* (the frame it read: the parent knows which) */
    }
    close(go[0]);
    scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE(v);
    REQUIRE(scp_volume_go_private(v) == 1);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, watcher, v) == 0);
    scp_vfile *f = scp_vfile_open(v, "db-wal", O_RDWR | O_CREAT, 0644, &e);
    REQUIRE(f);
    int n = 0;
    for (; n < 20; n++) frame(f, n);
    REQUIRE(write(go[1], "g", 1) == 1); /* the newcomer opens while this one commits */
    /* until the newcomer asks (then nothing more from here until it is done: it reads what
     * the release left on disk, not what a later commit would write) */
    struct pollfd p = {.fd = c.fd[0], .events = POLLIN};
    while (n < 5000 && !scp_volume_private_wanted(v) && poll(&p, 1, 0) == 0) frame(f, n++);
    int asked = n - 20;
    CHECKF(n < 5000, "the newcomer did not ask while the private process committed");
    /* The newcomer read slot 5 (frames wrap every 200) after the holder's last commit before
     * it asked: the last frame written there, frame 5 when it asked within 200 commits (a
     * fast disk or tmpfs commits more meanwhile), or the one before it when the frame in
     * progress as it asked was one of slot 5's and landed after its read. */
    int seen = -1, want = 5 + 200 * ((n - 1 - 5) / 200);
    CHECK(tu_child_wait(&c, &seen, sizeof seen));
    CHECKF(seen == want || ((n - 1) % 200 == 5 && want >= 205 && seen == want - 200),
           "the newcomer read frame %d at slot 5, where the holder's last commit before it "
           "asked was frame %d", seen, want);
    CHECK(scp_volume_private_wanted(v)); /* the newcomer asked */
    for (int k = 0; k < 20; k++, n++) frame(f, n); /* on top of the newcomer's commit */
    scp_volume_private_release(v); /* (the watcher did; ends it if not) */
    pthread_join(t, NULL);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    close(go[1]);
    v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE(v);
    char got[8] = {0};
    f = scp_vfile_open(v, "newcomer", O_RDONLY, 0, &e);
    CHECKF(f != NULL, "the newcomer's file is gone: %s", e.msg);
    if (f) {
        CHECK(scp_vfile_pread(f, got, 5, 0, &e) == 5 && memcmp(got, "hello", 5) == 0);
        REQUIRE_OK(scp_vfile_close(f, &e), e);
    }
    f = scp_vfile_open(v, "db-wal", O_RDONLY, 0, &e);
    REQUIRE(f);
    int last = -1;
    CHECK(scp_vfile_pread(f, &last, sizeof last, 32 + 4120 * (uint64_t)((n - 1) % 200), &e) ==
              sizeof last &&
          last == n - 1);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    printf("  newcomer: asked after %d commits of the private process, both kept\n", asked);
}

static void test_fork(const char *base) {
    char dir[512];
    scp_err e;
    snprintf(dir, sizeof dir, "%s/fork", base);
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE(v);
    REQUIRE(scp_volume_go_private(v) == 1);
    scp_vfile *f = scp_vfile_open(v, "db-wal", O_RDWR | O_CREAT, 0644, &e);
    REQUIRE(f);
    for (int n = 0; n < 4; n++) frame(f, n);
    tu_child c;
    if (tu_child_start(&c)) { /* the child commits a file of its own */
        scp_vfile *g = scp_vfile_open(v, "child", O_RDWR | O_CREAT, 0644, &e);
        if (!g || scp_vfile_pwrite(g, "child", 5, 0, &e) < 0 || scp_vfile_fsync(g, &e) < 0 ||
            scp_vfile_close(g, &e) < 0) {
            fprintf(stderr, "FAIL: the child: %s\n", e.msg);
            _exit(5);
        }
        tu_child_exit(&c, NULL, 0);
    }
    CHECK(tu_child_wait(&c, NULL, 0));
    reset_counts();
    for (int n = 4; n < 12; n++) frame(f, n);
    CHECKF(nvlock >= 16, "after a fork the parent takes the lock again: %ld takes and gives in 8 "
           "commits", nvlock);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    scp_volume_private_release(v);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE(v);
    scp_vstat st;
    CHECKF(scp_volume_stat(v, "child", &st, &e) == 0 && st.size == 5, "the child's file is gone");
    REQUIRE_OK(scp_volume_close(v, &e), e);
}

/* The holder is killed with its last commits' manifest-log records deferred (in its journal
 * only): a fresh open takes them from the journal, with the tag of the last commit. */
static void test_killed(const char *base) {
    char dir[512], mlog[600];
    scp_err e;
    snprintf(dir, sizeof dir, "%s/killed", base);
    snprintf(mlog, sizeof mlog, "%s/manifest.log", dir);
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    enum { FRAMES = 150 };
    tu_child c;
    scp_volume_tag tag;
    if (tu_child_start(&c)) {
        scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
        if (!v || scp_volume_go_private(v) != 1) _exit(4);
        scp_vfile *f = scp_vfile_open(v, "db-wal", O_RDWR | O_CREAT, 0644, &e);
        if (!f) _exit(5);
        for (int n = 0; n < FRAMES; n++) frame(f, n);
        scp_volume_tag_get(v, &tag);
        const uint8_t *p = (const uint8_t *)&tag;
        for (size_t left = sizeof tag; left;) { /* (then killed: no close, no release) */
            ssize_t w = write(c.fd[1], p, left);
            if (w <= 0) _exit(3);
            p += w;
            left -= (size_t)w;
        }
        raise(SIGKILL);
        _exit(6);
    }
    uint8_t *p = (uint8_t *)&tag;
    size_t got = 0;
    for (ssize_t r; got < sizeof tag && (r = read(c.fd[0], p + got, sizeof tag - got)) > 0;)
        got += (size_t)r;
    close(c.fd[0]);
    int st;
    REQUIRE(waitpid(c.pid, &st, 0) == c.pid && got == sizeof tag);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    struct stat ls;
    REQUIRE(stat(mlog, &ls) == 0);
    /* (the records of the commits since the last write of the deferred ones are in the
     * journal only: at most 256 of them, so some are) */
    printf("  killed: manifest.log holds %lld bytes after %d commits\n", (long long)ls.st_size,
           FRAMES);
    scp_volume *v = scp_volume_open(dir, KEY, &tag, &e);
    CHECKF(v != NULL, "the killed holder's last commit is lost: %s", v ? "" : e.msg);
    if (!v) return;
    scp_volume_tag now;
    scp_volume_tag_get(v, &now);
    CHECK(memcmp(&now, &tag, sizeof tag) == 0);
    scp_vfile *f = scp_vfile_open(v, "db-wal", O_RDONLY, 0, &e);
    REQUIRE(f);
    int last = -1;
    CHECK(scp_vfile_pread(f, &last, sizeof last, 32 + 4120 * (uint64_t)((FRAMES - 1) % 200), &e) ==
              sizeof last &&
          last == FRAMES - 1);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    char *base = tu_tmpdir("sole"); /* (under $TMPDIR: CI runs two passes on tmpfs) */
    if (!strcmp(what, "all") || !strcmp(what, "count")) test_count(base);
    if (!strcmp(what, "all") || !strcmp(what, "newcomer")) test_newcomer(base);
    if (!strcmp(what, "all") || !strcmp(what, "fork")) test_fork(base);
    if (!strcmp(what, "all") || !strcmp(what, "killed")) test_killed(base);
    /* (statx without the times: a stat that reads them makes every later write of the object
     * stamp a fine-grained time on kernels with multigrain timestamps, and on ext4 without a
     * journal each fdatasync then writes the inode too; common/util.h, scp_fstat_notime) */
    CHECKF(ntimed == 0, "the library stats its objects without their times: %ld fstat or "
           "fstatat calls", ntimed);
    tu_rm_rf(base);
    free(base);
    return tu_exit_code("test_volume_sole");
}
