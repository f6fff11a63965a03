/* tests/volume/test_volume_closed.c - the sole holder's closed file keeps its deferred applies
 * and table entries in its state (docs/volume-format.md, "Sole holder", deferred table writes;
 * branch wal23).
 *
 * The binary wraps pwrite and ftruncate (-Wl,--wrap) to count the volume library's writes.
 * Steps:
 *   count    sqlite's rollback-journal transaction (create "db-journal", write and fsync it
 *            twice, write a page of the database and fsync it, close and unlink the journal)
 *            200 times after 60 to warm up, as the sole holder: at most 10.5 pwrite and
 *            ftruncate calls per transaction (9.40 since wal23; 12.40 before: the journal
 *            file's last close wrote its deferred applies to .d and its table entries to .t,
 *            two pwrites that the unlink right after discarded, and the next create's
 *            adoption cut the table object they had grown); the database reads back whole
 *            after a reopen
 *   closed   a file written as the sole holder in commits that wait (overwrites and small
 *            appends), closed: its close writes nothing (main: 2 pwrites), and the file reads
 *            back after its close, after a reopen and another commit (its next log's
 *            checkpoint writes what waited), after 80 other files pushed its state out of the
 *            cache of closed files (the load redoes them from the log), and after the
 *            volume's close and a reopen (the holding's end wrote them); the volume verifies
 */
#include "testutil.h"

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_ftruncate(int fd, off_t len);
int __wrap_ftruncate(int fd, off_t len);

static long npwrite, ntrunc;

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
    npwrite++;
    return __real_pwrite(fd, buf, n, off);
}
int __wrap_ftruncate(int fd, off_t len) {
    ntrunc++;
    return __real_ftruncate(fd, len);
}

static const uint8_t KEY[SCP_VOLUME_KEY_LEN] = {9, 2, 3};

static void test_count(const char *base) {
    char dir[512];
    scp_err e;
    scp_volume *v = tu_create_open(base, "count", KEY, dir, sizeof dir);
    REQUIRE(scp_volume_go_private(v) == 1);
    scp_vfile *db = REQUIRE_PTR(scp_vfile_open(v, "db", O_RDWR | O_CREAT, 0644, &e), e);
    int n = 0;
    for (; n < 60; n++) tu_delete_txn(v, db, n);
    npwrite = ntrunc = 0;
    const int N = 200;
    for (int i = 0; i < N; i++, n++) tu_delete_txn(v, db, n);
    double w = (double)(npwrite + ntrunc) / N;
    printf("  sole holder: per transaction %.2f pwrite, %.2f ftruncate\n", (double)npwrite / N,
           (double)ntrunc / N);
    CHECKF(w <= 10.5, "sole holder: %.2f pwrite and ftruncate calls per transaction (the "
           "journal file's close writes its deferred applies and table entries, which its "
           "unlink discards)", w);
    REQUIRE_OK(scp_vfile_close(db, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    db = REQUIRE_PTR(scp_vfile_open(v, "db", O_RDONLY, 0, &e), e);
    for (int k = n - 64; k < n; k++) {
        uint8_t want[4096], got[4096];
        tu_page_bytes(k, want);
        ssize_t r = scp_vfile_pread(db, got, sizeof got, 4096 * (uint64_t)(k % 64), &e);
        CHECKF(r == 4096 && memcmp(got, want, sizeof got) == 0, "count: page %d after a reopen "
               "(%zd: %s)", k % 64, r, r < 0 ? e.msg : "other bytes");
    }
    CHECK_OK(scp_vfile_close(db, &e), e);
    scp_vstat vs;
    CHECKF(scp_volume_stat(v, "db-journal", &vs, &e) < 0, "count: the journal is back");
    CHECK_OK(scp_volume_close(v, &e), e);
}

/* A file of 24 chunks, chunk k filled with byte (k * 7 + round) & 0xff, written in three
 * commits. Returns the pwrite calls of its close. */
static long closed_write(scp_volume *v, const char *path, int round) {
    scp_err e;
    uint8_t buf[4096];
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, path, O_RDWR | O_CREAT, 0644, &e), e);
    for (int k = 0; k < 24; k++) {
        memset(buf, (k * 7 + round) & 0xff, sizeof buf);
        REQUIRE_OK(scp_vfile_pwrite(f, buf, sizeof buf, 4096 * (uint64_t)k, &e), e);
        if (k % 8 == 7) REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    }
    long before = npwrite;
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    return npwrite - before;
}

static void closed_check(scp_volume *v, const char *path, int round, const char *when) {
    scp_err e;
    uint8_t want[4096], got[4096];
    scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, &e);
    CHECKF(f != NULL, "closed file %s: %s", when, f ? "" : e.msg);
    if (!f) return;
    for (int k = 0; k < 24; k++) {
        memset(want, (k * 7 + round) & 0xff, sizeof want);
        ssize_t r = scp_vfile_pread(f, got, sizeof got, 4096 * (uint64_t)k, &e);
        int ok = r == 4096 && memcmp(got, want, sizeof got) == 0;
        CHECKF(ok, "closed file %s: chunk %d (%zd: %s)", when, k, r, r < 0 ? e.msg : "other bytes");
        if (!ok) break;
    }
    CHECK_OK(scp_vfile_close(f, &e), e);
}

static void test_closed(const char *base) {
    char dir[512];
    scp_err e;
    scp_volume *v = tu_create_open(base, "closed", KEY, dir, sizeof dir);
    REQUIRE(scp_volume_go_private(v) == 1);
    closed_write(v, "f", 0);
    long w = closed_write(v, "f", 1); /* (overwrites: their chunks go to the log and wait) */
    CHECKF(w == 0, "closed: the sole holder's close wrote %ld times (its deferred applies and "
           "table entries)", w);
    closed_check(v, "f", 1, "after its close");
    closed_write(v, "f", 2); /* (its next log begins with a checkpoint) */
    closed_check(v, "f", 2, "after a reopen and another commit");
    closed_write(v, "f", 3);
    for (int i = 0; i < 80; i++) { /* (FILE_CACHE is 64) */
        char name[32];
        snprintf(name, sizeof name, "other%d", i);
        scp_vfile *o = REQUIRE_PTR(scp_vfile_open(v, name, O_RDWR | O_CREAT, 0644, &e), e);
        REQUIRE_OK(scp_vfile_close(o, &e), e);
    }
    closed_check(v, "f", 3, "after its state left the cache");
    closed_write(v, "f", 4);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    closed_check(v, "f", 4, "after the volume's close and a reopen");
    long problems = scp_volume_verify(v, NULL, NULL, NULL, &e);
    CHECKF(problems == 0, "closed: the volume verifies with %ld problems", problems);
    CHECK_OK(scp_volume_close(v, &e), e);
}

int main(void) {
    char *base = tu_tmpdir("closed"); /* (under $TMPDIR: CI runs two passes on tmpfs) */
    printf("count\n");
    test_count(base);
    printf("closed\n");
    test_closed(base);
    tu_rm_rf(base);
    free(base);
    return tu_exit_code("test_volume_closed");
}
