/* tests/volume/test_volume_kept.c - a removed file's objects kept open for the next create
 * (docs/volume-format.md, "Object reuse", kept descriptors).
 *
 * The binary wraps openat, close, fcntl, statx (counted as fstat and fstatat), faccessat and
 * pread (-Wl,--wrap) to count the volume library's calls. Steps:
 *   count    sqlite's rollback-journal transaction (create "db-journal", write and fsync it
 *            twice, write a frame of the database and fsync it, close and unlink the journal)
 *            200 times after 60 to warm up, in ordinary mode and as the sole holder: the
 *            journal file's objects are neither opened nor closed (at most 0.2 of each per
 *            transaction: main opened each object twice, checked and then loaded, and closed
 *            it twice, 8 openat and 6 close), and the sole holder's calls counted stay within
 *            7.5 per transaction (main: 29); the database reads back whole after a reopen
 *   gone     another process's collection deletes the kept objects (its open, while this one
 *            holds spares): the next create must not take them (their link count is 0), and
 *            what it then writes is read back after a reopen (without the check, its writes
 *            went to deleted inodes: "its data object is missing")
 */
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "syscount.h"
#include "testutil.h"

extern char **environ;

int __real_openat(int dirfd, const char *path, int flags, ...);
int __wrap_openat(int dirfd, const char *path, int flags, ...);
int __real_close(int fd);
int __wrap_close(int fd);
int __real_faccessat(int dirfd, const char *path, int mode, int flags);
int __wrap_faccessat(int dirfd, const char *path, int mode, int flags);

static long nopenat, nclose, naccess;

int __wrap_openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, int) : 0;
    va_end(ap);
    nopenat++;
    return __real_openat(dirfd, path, flags, mode);
}
int __wrap_close(int fd) {
    nclose++;
    return __real_close(fd);
}
int __wrap_faccessat(int dirfd, const char *path, int mode, int flags) {
    naccess++;
    return __real_faccessat(dirfd, path, mode, flags);
}

static void reset_counts(void) { nopenat = nclose = nfcntl = nfstat = nfstatat = naccess = npread = 0; }

static const uint8_t KEY[SCP_VOLUME_KEY_LEN] = {9, 1, 3};

/* Reopen the volume and read every page the transactions [0, upto) wrote last. */
static void check_db(const char *dir, int upto, const char *what) {
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    scp_vfile *db = REQUIRE_PTR(scp_vfile_open(v, "db", O_RDONLY, 0, &e), e);
    for (int n = upto - 64 < 0 ? 0 : upto - 64; n < upto; n++) {
        uint8_t want[4096], got[4096];
        tu_page_bytes(n, want);
        ssize_t r = scp_vfile_pread(db, got, sizeof got, 4096 * (uint64_t)(n % 64), &e);
        CHECKF(r == 4096 && memcmp(got, want, sizeof got) == 0, "%s: page %d after a reopen "
               "(%zd: %s)", what, n % 64, r, r < 0 ? e.msg : "other bytes");
    }
    CHECK_OK(scp_vfile_close(db, &e), e);
    scp_vstat vs;
    CHECKF(scp_volume_stat(v, "db-journal", &vs, &e) < 0, "%s: the journal is back", what);
    CHECK_OK(scp_volume_close(v, &e), e);
}

static void test_count(const char *base, int sole) {
    char dir[512];
    scp_err e;
    snprintf(dir, sizeof dir, "%s/count%d", base, sole);
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    if (sole) REQUIRE(scp_volume_go_private(v) == 1);
    scp_vfile *db = REQUIRE_PTR(scp_vfile_open(v, "db", O_RDWR | O_CREAT, 0644, &e), e);
    int n = 0;
    for (; n < 60; n++) tu_delete_txn(v, db, n);
    reset_counts();
    const int N = 200;
    for (int i = 0; i < N; i++, n++) tu_delete_txn(v, db, n);
    double o = (double)nopenat / N, c = (double)nclose / N;
    double all = (double)(nopenat + nclose + nfcntl + nfstat + nfstatat + naccess + npread) / N;
    printf("  %s: per transaction %.2f openat, %.2f close, %.2f fcntl, %.2f fstat, %.2f fstatat, "
           "%.2f faccessat, %.2f pread: %.2f in all\n", sole ? "sole holder" : "ordinary", o, c,
           (double)nfcntl / N, (double)nfstat / N, (double)nfstatat / N, (double)naccess / N,
           (double)npread / N, all);
    CHECKF(o <= 0.2 && c <= 0.2, "%s: the journal file's objects are opened and closed per "
           "transaction (%.2f openat, %.2f close)", sole ? "sole holder" : "ordinary", o, c);
    /* (outside the sole holding each commit also takes the volume lock and catches up) */
    CHECKF(!sole || all <= 7.5, "sole holder: %.2f calls per transaction (openat, close, fcntl, "
           "fstat, fstatat, faccessat, pread)", all);
    REQUIRE_OK(scp_vfile_close(db, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    check_db(dir, n, sole ? "sole holder" : "ordinary");
}

/* The child of "gone": open the volume and close it, which folds the manifest log (whose
 * records name the removed files), then open it again: its collection deletes every object
 * that nothing names, the parent's spares among them. */
static int collector(const char *dir) {
    scp_err e;
    for (int i = 0; i < 2; i++) {
        scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
        if (!v) return 3;
        if (scp_volume_close(v, &e) < 0) return 4;
    }
    return 0;
}

static void test_gone(const char *base, const char *self) {
    char dir[512], objs[600];
    scp_err e;
    snprintf(dir, sizeof dir, "%s/gone", base);
    snprintf(objs, sizeof objs, "%s/objects", dir);
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    scp_vfile *db = REQUIRE_PTR(scp_vfile_open(v, "db", O_RDWR | O_CREAT, 0644, &e), e);
    int n = 0;
    for (; n < 40; n++) tu_delete_txn(v, db, n);
    /* (a durable commit drains the last removals: spares, their objects kept open) */
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    /* posix_spawn: no fork handler runs, so the kept descriptors stay (a fork drops them) */
    pid_t pid;
    char *argv[] = {(char *)self, (char *)"collect", dir, NULL};
    REQUIRE(posix_spawn(&pid, self, NULL, NULL, argv, environ) == 0);
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the collecting process failed (status %d)", st);
    int left = 0; /* (the objects: the database's three; every spare's went) */
    DIR *d = opendir(objs);
    REQUIRE(d);
    for (struct dirent *de; (de = readdir(d));) left += de->d_name[0] != '.';
    closedir(d);
    CHECKF(left <= 4, "the other process's collection left %d objects: the test needs the "
           "spares' gone", left);
    for (int i = 0; i < 6; i++, n++) tu_delete_txn(v, db, n);
    REQUIRE_OK(scp_vfile_close(db, &e), e);
    /* and a file that stays, created after the collection */
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "kept", O_RDWR | O_CREAT, 0644, &e), e);
    REQUIRE_OK(scp_vfile_pwrite(f, "after the collection", 20, 0, &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    check_db(dir, n, "after a collection");
    v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    f = scp_vfile_open(v, "kept", O_RDONLY, 0, &e);
    CHECKF(f != NULL, "a file created after another process's collection: %s", f ? "" : e.msg);
    if (f) {
        char b[32];
        ssize_t r = scp_vfile_pread(f, b, sizeof b, 0, &e);
        CHECKF(r == 20 && memcmp(b, "after the collection", 20) == 0, "a file created after "
               "another process's collection reads %zd bytes (%s)", r, r < 0 ? e.msg : "");
        scp_vfile_close(f, &e);
    }
    CHECK_OK(scp_volume_close(v, &e), e);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "collect") == 0) return collector(argv[2]);
    char *base = tu_tmpdir("kept"); /* (under $TMPDIR: CI runs two passes on tmpfs) */
    printf("count\n");
    test_count(base, 0);
    test_count(base, 1);
    printf("gone\n");
    test_gone(base, "/proc/self/exe");
    tu_rm_rf(base);
    free(base);
    CHECKF(ntimed == 0, "the library stats its objects without their times (common/util.h, "
           "scp_fstat_notime): %ld fstat or fstatat calls", ntimed);
    return tu_exit_code("test_volume_kept");
}
