/* tests/volume/test_volume_reuse.c - a removed file's objects reused by the next created file.
 *
 * Asserts (sqlite's rollback-journal pattern: a file created, written, synced and removed
 * once per transaction, next to a database file synced each time): once earlier removals are
 * durable, a new file takes a removed file's objects, so creating it leaves the objects
 * directory clean (the lock file's "objects directory unsynced" byte stays 0: no new object,
 * no directory sync) and the number of object sets made stays well below the number of files
 * created, and the lock file is synced far less than once per transaction (the adopted
 * journals are listed for one-flush commits ahead, one sync for many); each new file is empty when created (no byte of the old file's content shows, in
 * size or reads) and reads back what was written to it, in the writing process and after a
 * reopen; an adopted file extended with holes and written in part reads zeros around the
 * written bytes (the old file's bytes kept in its data object never show); a writer killed after writing an adopted file, past its fsync and with more
 * unsynced, leaves the synced content readable after the reopen, and the volume's garbage
 * collection then leaves no objects besides the named files'.
 */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"

#define JSIZE (12u << 10)
#define ROUNDS 100

/* libscp's fdatasync calls are wrapped (CMakeLists.txt) to count the lock file's syncs. */
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
static int lock_syncs;
int __wrap_fdatasync(int fd) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 5 && memcmp(target + n - 5, "/lock", 5) == 0) lock_syncs++;
    return __real_fdatasync(fd);
}

static int lock_objdir_byte(const char *dir) {
    char *p = tu_path(dir, "lock");
    size_t n = 0;
    uint8_t *b = tu_read_file(p, &n);
    free(p);
    REQUIRE(b && n > 256);
    int r = b[256];
    free(b);
    return r;
}

/* Distinct object sets (.d objects) in the objects directory. */
static int count_sets(const char *dir) {
    int n = tu_objects(dir, ".d", NULL);
    REQUIRE(n >= 0);
    return n;
}

static void check_file(scp_volume *v, const char *path, const uint8_t *want, size_t len,
                       const char *when) {
    scp_err e;
    scp_vstat st;
    CHECK_OK(scp_volume_stat(v, path, &st, &e), e);
    CHECKF(st.size == len, "%s: '%s' has %llu bytes, want %zu", when, path,
           (unsigned long long)st.size, len);
    scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, &e);
    REQUIRE_OK(f ? 0 : -1, e);
    uint8_t *buf = malloc(len + 4096);
    REQUIRE(buf);
    ssize_t r = scp_vfile_pread(f, buf, len + 4096, 0, &e);
    CHECKF(r == (ssize_t)len && (len == 0 || memcmp(buf, want, len) == 0),
           "%s: '%s' reads %zd bytes, want %zu%s", when, path, r, len,
           r == (ssize_t)len ? " (content differs)" : "");
    free(buf);
    CHECK_OK(scp_vfile_close(f, &e), e);
}

/* One transaction: create the journal (checked empty), write and sync it, write and sync the
 * database, remove the journal. Returns the objects-directory byte seen right after create. */
static int txn(scp_volume *v, const char *dir, const uint8_t *jdata, const uint8_t *page,
               uint64_t db_off) {
    scp_err e;
    scp_vfile *j = scp_vfile_open(v, "db-journal", O_RDWR | O_CREAT | O_EXCL, 0644, &e);
    REQUIRE_OK(j ? 0 : -1, e);
    int dirty = lock_objdir_byte(dir);
    uint8_t probe[16];
    CHECKF(scp_vfile_pread(j, probe, sizeof probe, 0, &e) == 0,
           "a new file reads bytes of an older one");
    REQUIRE(scp_vfile_pwrite(j, jdata, JSIZE, 0, &e) == (ssize_t)JSIZE);
    REQUIRE_OK(scp_vfile_fsync(j, &e), e);
    check_file(v, "db-journal", jdata, JSIZE, "journal");
    REQUIRE_OK(scp_vfile_close(j, &e), e);
    scp_vfile *db = scp_vfile_open(v, "db", O_RDWR | O_CREAT, 0644, &e);
    REQUIRE_OK(db ? 0 : -1, e);
    REQUIRE(scp_vfile_pwrite(db, page, 4096, db_off, &e) == 4096);
    REQUIRE_OK(scp_vfile_fsync(db, &e), e);
    REQUIRE_OK(scp_vfile_close(db, &e), e);
    REQUIRE_OK(scp_volume_unlink(v, "db-journal", &e), e);
    return dirty;
}

int main(void) {
    tu_rng rng = {1313};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *dir;
    scp_volume *v = tu_new_volume(&rng, "reuse", key, &root, &dir);
    scp_err e;
    uint8_t *jdata = malloc(JSIZE), *model = calloc(1, ROUNDS * 4096 + 4096);
    REQUIRE(jdata && model);

    int clean = 0, syncs0 = 0;
    for (int i = 0; i < ROUNDS; i++) {
        if (i == ROUNDS / 2) syncs0 = lock_syncs;
        tu_fill(&rng, jdata, JSIZE);
        tu_fill(&rng, model + (size_t)i * 4096, 4096);
        clean += txn(v, dir, jdata, model + (size_t)i * 4096, (uint64_t)i * 4096) == 0;
    }
    int sets = count_sets(dir), steady = lock_syncs - syncs0;
    printf("%d of %d creates left the objects directory clean; %d object sets on disk; %d lock "
           "file syncs in the last %d transactions\n",
           clean, ROUNDS, sets, steady, ROUNDS - ROUNDS / 2);
    CHECKF(clean >= ROUNDS / 2, "only %d of %d creates reused objects", clean, ROUNDS);
    /* Each new journal's first one-flush commit listed it with a sync of the lock file; the
     * adopted ones are listed ahead, one sync for many (jlist_prelist). */
    CHECKF(steady <= (ROUNDS - ROUNDS / 2) / 3,
           "%d lock file syncs in %d transactions: adopted journals were not listed ahead",
           steady, ROUNDS - ROUNDS / 2);
    check_file(v, "db", model, ROUNDS * 4096, "database");
    /* An adopted file extended by a truncate (holes) and written in part reads zeros around
     * what was written: the old file's bytes kept in its data object never show. */
    scp_vfile *h = scp_vfile_open(v, "holes", O_RDWR | O_CREAT | O_EXCL, 0644, &e);
    REQUIRE_OK(h ? 0 : -1, e);
    CHECKF(lock_objdir_byte(dir) == 0, "the file with holes was not adopted: nothing tested");
    uint8_t *hmodel = calloc(1, 64 << 10);
    REQUIRE(hmodel);
    REQUIRE_OK(scp_vfile_truncate(h, 64 << 10, &e), e);
    memcpy(hmodel + 5000, jdata, 100);
    REQUIRE(scp_vfile_pwrite(h, jdata, 100, 5000, &e) == 100);
    REQUIRE_OK(scp_vfile_fsync(h, &e), e);
    REQUIRE_OK(scp_vfile_close(h, &e), e);
    check_file(v, "holes", hmodel, 64 << 10, "an adopted file with holes");
    CHECK_OK(scp_volume_close(v, &e), e);

    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    check_file(v, "db", model, ROUNDS * 4096, "database after reopening");
    check_file(v, "holes", hmodel, 64 << 10, "an adopted file with holes after reopening");
    REQUIRE_OK(scp_volume_unlink(v, "holes", &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    free(hmodel);
    CHECKF(count_sets(dir) == 1, "%d object sets left after close, want the database's only",
           count_sets(dir));

    /* A writer killed with an adopted journal synced and more written after. */
    tu_fill(&rng, jdata, JSIZE);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_volume *cv = scp_volume_open(dir, key, NULL, &e);
        if (!cv) _exit(2);
        uint8_t page[4096];
        memset(page, 7, sizeof page);
        for (int i = 0; i < 40; i++) /* (past a drain: the next create adopts) */
            if (txn(cv, dir, jdata, model + (size_t)i * 4096, (uint64_t)i * 4096) < 0) _exit(3);
        scp_vfile *j = scp_vfile_open(cv, "kept", O_RDWR | O_CREAT | O_EXCL, 0644, &e);
        if (!j || lock_objdir_byte(dir) != 0) _exit(4); /* (not adopted: nothing tested) */
        if (scp_vfile_pwrite(j, jdata, JSIZE, 0, &e) != (ssize_t)JSIZE) _exit(5);
        if (scp_vfile_fsync(j, &e) < 0) _exit(6);
        if (scp_vfile_pwrite(j, page, sizeof page, JSIZE, &e) != (ssize_t)sizeof page) _exit(7);
        kill(getpid(), SIGKILL);
        _exit(8);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the writer did not run to its kill (%d)",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    check_file(v, "kept", jdata, JSIZE, "an adopted file after its writer was killed");
    check_file(v, "db", model, ROUNDS * 4096, "database after the kill");
    CHECK_OK(scp_volume_close(v, &e), e);
    /* (the first open after the kill leaves the objects that its log's records still name;
     * its close folds the log, and the next open collects them) */
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    CHECK_OK(scp_volume_close(v, &e), e);
    CHECKF(count_sets(dir) == 2, "%d object sets left after the kill's collection, want 2",
           count_sets(dir));

    free(jdata);
    free(model);
    tu_rm_rf(root);
    free(dir);
    free(root);
    return tu_exit_code("volume_reuse");
}
