/* tests/volume/test_volume_lazyclose.c - a new file's close without a sync
 * (scp_volume_set_lazy_close; docs/volume-format.md, "Lazy close").
 *
 *   many     300 new files (1-3 chunks) created and closed: no flush per file (a handful in all,
 *            where the lazy list fills and one close makes the lot durable), every file reads
 *            back at once; scp_volume_sync then makes them durable with a few flushes (one
 *            syncfs for the listed files), and a reopened volume reads them all and verifies.
 *   kill     a process creates and closes 50 new files lazily and dies without a sync or a
 *            close of the volume: the next open takes them (their journals redo each close),
 *            every byte reads back, and the volume verifies.
 *   durable  what stays a durable close: a file that an fsync made durable before, a file
 *            created before a volume sync, and any close without the switch (the default);
 *            a lazily closed file reopened and appended to closes durably and reads right
 *            after the volume is reopened.
 * The flushes are counted by wrapping fsync, fdatasync and syncfs (-Wl,--wrap).
 */
#include "scenario.h"

int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_syncfs(int fd);
int __wrap_fsync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_syncfs(int fd);

static long nflush; /* fsync, fdatasync and syncfs calls since the test last zeroed it */
int __wrap_fsync(int fd) {
    nflush++;
    return __real_fsync(fd);
}
int __wrap_fdatasync(int fd) {
    nflush++;
    return __real_fdatasync(fd);
}
int __wrap_syncfs(int fd) {
    nflush++;
    return __real_syncfs(fd);
}

/* File i's content: 1 to 3 chunks' worth, drawn from the seed and i. */
static size_t content(uint64_t seed, int i, uint8_t *buf) {
    tu_rng r = {seed * 1000003u + (uint64_t)i};
    size_t n = (size_t)tu_range(&r, 1, 3 * 4096);
    tu_fill(&r, buf, n);
    return n;
}

static void put(scp_volume *v, const char *path, uint64_t seed, int i) {
    uint8_t b[3 * 4096];
    size_t n = content(seed, i, b);
    scp_err e;
    REQUIRE_OK(tu_vput(v, path, b, n, &e), e);
}

static int reads_right(scp_volume *v, const char *path, uint64_t seed, int i) {
    uint8_t want[3 * 4096];
    size_t n = content(seed, i, want), got_n;
    scp_err e;
    uint8_t *got = tu_vget(v, path, &got_n, &e);
    int ok = got && got_n == n && memcmp(got, want, n) == 0;
    if (!ok) fprintf(stderr, "  %s: %s\n", path, got ? "wrong bytes or size" : e.msg);
    free(got);
    return ok;
}

static long verify_problems(scp_volume *v) {
    scp_err e;
    long p = scp_volume_verify(v, NULL, NULL, NULL, &e);
    if (p < 0) fprintf(stderr, "  verify: %s\n", e.msg);
    return p;
}

/* Close v and remove its directory. */
static void finish(scp_volume *v, char *root, char *vd) {
    scp_err e;
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* A new volume of 4 KiB chunks (key drawn from seed) with the directory dir, opened. */
static scp_volume *start(uint64_t seed, const char *tag, const char *dir,
                         uint8_t key[SCP_VOLUME_KEY_LEN], char **root, char **vd) {
    tu_rng rng = {seed};
    scp_volume *v = tu_new_volume_chunk(&rng, tag, 4096, key, root, vd);
    scp_err e;
    REQUIRE_OK(scp_volume_mkdir(v, dir, 0755, &e), e);
    return v;
}

static void test_many(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_volume *v = start(11, "lazyclose", "t", key, &root, &vd);
    scp_err e;
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    scp_volume_set_lazy_close(v, 1);
    enum { N = 300 };
    char path[64];
    nflush = 0;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "t/f%d", i);
        put(v, path, 1, i);
    }
    long creates = nflush;
    /* (before: three flushes per file, the objects directory, the lock file's list and the
     * journal; now the lazy list's 180 files are made durable by the close that finds it
     * full: its own data and journal, the directory, one syncfs, the manifest log) */
    CHECKF(creates <= 12, "%ld flushes for %d lazily closed new files", creates, N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "t/f%d", i);
        bad += !reads_right(v, path, 1, i);
    }
    CHECKF(bad == 0, "%d of %d files read wrong before the sync", bad, N);
    nflush = 0;
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    CHECKF(nflush >= 1 && nflush <= 4, "the sync after them: %ld flushes", nflush);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "t/f%d", i);
        bad += !reads_right(v, path, 1, i);
    }
    CHECKF(bad == 0, "%d of %d files read wrong after the reopen", bad, N);
    CHECK(verify_problems(v) == 0);
    printf("many: %d new files closed with %ld flushes (sync after: %ld)\n", N, creates, nflush);
    finish(v, root, vd);
}

static void test_kill(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_volume *v = start(12, "lazyclose-kill", "k", key, &root, &vd);
    scp_err e;
    REQUIRE_OK(scp_volume_close(v, &e), e);
    enum { N = 50 };
    char path[64];
    tu_child c;
    if (tu_child_start(&c)) {
        scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
        if (!cv) _exit(2);
        scp_volume_set_lazy_close(cv, 1);
        nflush = 0;
        for (int i = 0; i < N; i++) {
            snprintf(path, sizeof path, "k/f%d", i);
            put(cv, path, 2, i);
        }
        long n = nflush;
        _exit(n == 0 ? 0 : 4); /* (no sync, no close: as a kill leaves it) */
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "the child's lazy closes flushed (or it failed)");
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "k/f%d", i);
        bad += !reads_right(v, path, 2, i);
    }
    CHECKF(bad == 0, "%d of %d files of the dead process read wrong", bad, N);
    CHECK(verify_problems(v) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    /* and once more: the open that took them made them durable */
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    snprintf(path, sizeof path, "k/f%d", N - 1);
    CHECK(reads_right(v, path, 2, N - 1));
    REQUIRE_OK(scp_volume_close(v, &e), e);
    printf("kill: %d files closed lazily by a process that died read back\n", N);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* Flushes of one close of a file written with b[0, n) at offset off. */
static long close_flushes(scp_vfile *f, uint64_t off, const uint8_t *b, size_t n) {
    scp_err e;
    REQUIRE(scp_vfile_pwrite(f, b, n, off, &e) == (ssize_t)n);
    nflush = 0;
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    return nflush;
}

static void test_durable(void) {
    tu_rng rng = {13};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_volume *v = tu_new_volume_chunk(&rng, "lazyclose-durable", 4096, key, &root, &vd);
    scp_err e;
    uint8_t b[5000];
    tu_fill(&rng, b, sizeof b);
    /* without the switch: a new file's close is durable */
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "off", O_RDWR | O_CREAT, 0644, &e), e);
    long off_n = close_flushes(f, 0, b, 100);
    CHECKF(off_n > 0, "a close without the switch made no flush");
    scp_volume_set_lazy_close(v, 1);
    /* a new file: lazy */
    f = REQUIRE_PTR(scp_vfile_open(v, "new", O_RDWR | O_CREAT, 0644, &e), e);
    long new_n = close_flushes(f, 0, b, 300);
    CHECKF(new_n == 0, "a new file's lazy close made %ld flushes", new_n);
    /* fsynced before its close: that fsync named it durably, so the close is durable */
    f = REQUIRE_PTR(scp_vfile_open(v, "synced", O_RDWR | O_CREAT, 0644, &e), e);
    REQUIRE(scp_vfile_pwrite(f, b, 100, 0, &e) == 100);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    long synced_n = close_flushes(f, 100, b + 100, 200);
    CHECKF(synced_n > 0, "a close after an fsync made no flush");
    /* created, then a volume sync (the file named durably), then its first content */
    f = REQUIRE_PTR(scp_vfile_open(v, "named", O_RDWR | O_CREAT, 0644, &e), e);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    long named_n = close_flushes(f, 0, b, 300);
    CHECKF(named_n > 0, "a close after a volume sync made no flush");
    /* "new" reopened: an append over its last chunk (a journaled overwrite): durable */
    f = REQUIRE_PTR(scp_vfile_open(v, "new", O_RDWR, 0644, &e), e);
    long re_n = close_flushes(f, 300, b + 300, 4700);
    CHECKF(re_n > 0, "the second close of a lazily closed file made no flush");
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    size_t n;
    uint8_t *got = tu_vget(v, "new", &n, &e);
    CHECKF(got && n == 5000 && memcmp(got, b, 5000) == 0, "the reopened and appended file reads wrong");
    free(got);
    got = tu_vget(v, "synced", &n, &e);
    CHECKF(got && n == 300 && memcmp(got, b, 300) == 0, "the synced file reads wrong");
    free(got);
    CHECK(verify_problems(v) == 0);
    printf("durable: flushes per close: no switch %ld, new %ld, after fsync %ld, after a sync %ld, "
           "second close %ld\n",
           off_n, new_n, synced_n, named_n, re_n);
    finish(v, root, vd);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_many();
    test_kill();
    test_durable();
    return tu_exit_code("test_volume_lazyclose");
}
