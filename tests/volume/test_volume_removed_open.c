/* tests/volume/test_volume_removed_open.c - in shared mode, a file open in one process while
 * another process rewrites it and removes its name.
 *
 * A read or a stat of the open file first takes in the other processes' commits
 * (file_refresh). Its volume lock catches the manifest up, and that catch-up, taking in the
 * removal, leaves the loaded file without a path (files_rename). file_refresh had checked the
 * path before the lock and looked it up after: a NULL strcmp, SIGSEGV. Found in CI by
 * PostgreSQL's pg_ctl, which polls postmaster.pid with fopen/fscanf while the postmaster
 * rewrites and then removes it (tests/shield/postgres.sh, clang Release pass; about 1 reading
 * process in 30 died in tests/shield/pidfile).
 * main's first case: the open handle's read (its first volume call since: a stat takes the
 * volume lock, and so the removal, before its refresh) and then its stat succeed after the
 * other process's rewrite and removal, and the name is gone (ENOENT); the volume verifies.
 * Died with SIGSEGV in the read before the fix.
 * postmaster_pid: the postmaster's own sequence, the reader opening between its steps (after
 * version 1's fsync, its close, or version 2's fsync); the read after the removal returns a
 * whole version. The second fault that tests/shield/pidfile found (EIO for a read of the
 * unnamed file, which file_refresh could not reload: now to the state noted when its entry
 * left, gone_root) needs a timing these steps do not make; the shield test covers it.
 */
#include <sys/wait.h>

#include "testutil.h"

static void problem_cb(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)ctx;
    tu_fail_at(__FILE__, __LINE__, "verify: %s at %lld: %s", path, (long long)off, msg);
}

/* The volume verifies; closed, and its directory removed if every check passed. */
static void finish(scp_volume *v, char *root, char *vd) {
    scp_err e;
    CHECK(scp_volume_verify(v, problem_cb, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    if (!tu_failures) tu_rm_rf(root);
    free(root);
    free(vd);
}

/* The writer, in a child: as the postmaster with postmaster.pid. Writes version 1 (create,
 * write, fsync, close), then version 2 (open, rewrite the tail in place, fsync, close), and
 * removes the name. It tells the reader to open and read the file, and waits for it, after
 * version 1's close (at 1) or after version 2's fsync, before its close (at 2: the reader
 * then takes version 2 from the writer's journal log, which the close's checkpoint drops). */
static void writer(scp_volume *v, int at, int ready, int go) {
    static const char v1[] = "4242\n/data\n1700000000\n5432\n/tmp\n\n  1 2\nready   \n";
    scp_err e;
    char c;
    tu_context = "writer";
    scp_vfile *w = scp_vfile_open(v, "pid", O_RDWR | O_CREAT | O_EXCL, 0600, &e);
    CHECKF(w, "create: %s", e.msg);
    if (!w) _exit(1);
    CHECKF(scp_vfile_pwrite(w, v1, sizeof v1 - 1, 0, &e) == (ssize_t)sizeof v1 - 1, "write: %s", e.msg);
    CHECKF(scp_vfile_fsync(w, &e) == 0, "fsync: %s", e.msg);
    if (at == 0 && (write(ready, "", 1) != 1 || read(go, &c, 1) != 1)) _exit(2);
    CHECKF(scp_vfile_close(w, &e) == 0, "close: %s", e.msg);
    if (at == 1 && (write(ready, "", 1) != 1 || read(go, &c, 1) != 1)) _exit(2);
    w = scp_vfile_open(v, "pid", O_RDWR, 0, &e);
    CHECKF(w, "open again: %s", e.msg);
    if (!w) _exit(1);
    CHECKF(scp_vfile_pwrite(w, "stopping\n", 9, sizeof v1 - 10, &e) == 9, "rewrite: %s", e.msg);
    CHECKF(scp_vfile_fsync(w, &e) == 0, "fsync: %s", e.msg);
    if (at == 2 && (write(ready, "", 1) != 1 || read(go, &c, 1) != 1)) _exit(2);
    CHECKF(scp_vfile_close(w, &e) == 0, "close: %s", e.msg);
    CHECKF(scp_volume_unlink(v, "pid", &e) == 0, "unlink: %s", e.msg);
    _exit(tu_failures ? 1 : 0);
}

/* pg_ctl's poll: the file opened and read between the writer's two versions; read again (its
 * first call since: a refresh) after the rewrite and the removal: either version, whole. */
static void postmaster_pid(int at, int stat_first) {
    tu_rng rng = {29};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "removedpid", key, &root, &vd);
    REQUIRE_OK(tu_vput(v, "other", "x", 1, &e), e);
    scp_volume_set_shared(v);
    int ready[2], go[2];
    if (pipe(ready) < 0 || pipe(go) < 0) tu_die("pipe");
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) writer(v, at, ready[1], go[0]);
    char c, got[128];
    if (read(ready[0], &c, 1) != 1) tu_die("pipe");
    scp_vfile *r = REQUIRE_PTR(scp_vfile_open(v, "pid", O_RDONLY, 0, &e), e);
    ssize_t n = scp_vfile_pread(r, got, sizeof got, 0, &e);
    CHECKF(n > 0 && memcmp(got + n - 9, at <= 1 ? "ready   \n" : "stopping\n", 9) == 0, "the first read: %zd, %s", n,
           n < 0 ? e.msg : "");
    if (write(go[1], "", 1) != 1) tu_die("pipe");
    int st;
    if (waitpid(pid, &st, 0) < 0) tu_die("waitpid");
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer failed: status %d", st);
    scp_vstat vs;
    if (stat_first) CHECKF(scp_vfile_stat(r, &vs, &e) == 0, "stat after the removal: %s", e.msg);
    ssize_t n2 = scp_vfile_pread(r, got, sizeof got, 0, &e);
    CHECKF(n2 == n && (memcmp(got + n - 9, "ready   \n", 9) == 0 || memcmp(got + n - 9, "stopping\n", 9) == 0),
           "read after the rewrite and removal (at %d, stat first: %d): %zd, %s", at, stat_first, n2, n2 < 0 ? e.msg : "wrong bytes");
    REQUIRE_OK(scp_vfile_close(r, &e), e);
    finish(v, root, vd);
}

int main(void) {
    tu_rng rng = {23};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    static uint8_t a[6000], b[6000];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    scp_volume *v = tu_new_volume(&rng, "removedopen", key, &root, &vd);
    REQUIRE_OK(tu_vput(v, "pid", a, sizeof a, &e), e);
    REQUIRE_OK(tu_vput(v, "other", b, 100, &e), e); /* (a manifest of one name searched nothing) */
    scp_volume_set_shared(v);
    int go[2], done[2];
    if (pipe(go) < 0 || pipe(done) < 0) tu_die("pipe");
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) { /* the postmaster: rewrite, make it durable, remove the name */
        char c;
        tu_context = "writer";
        if (read(go[0], &c, 1) != 1) _exit(2);
        scp_vfile *w = scp_vfile_open(v, "pid", O_RDWR, 0, &e);
        CHECKF(w, "open for writing: %s", e.msg);
        if (w) {
            CHECKF(scp_vfile_pwrite(w, b, sizeof b, 0, &e) == (ssize_t)sizeof b, "pwrite: %s", e.msg);
            CHECKF(scp_vfile_fsync(w, &e) == 0, "fsync: %s", e.msg);
            CHECKF(scp_vfile_close(w, &e) == 0, "close: %s", e.msg);
        }
        CHECKF(scp_volume_unlink(v, "pid", &e) == 0, "unlink: %s", e.msg);
        _exit(tu_failures ? 1 : 0);
    }
    /* pg_ctl: the file open and read before the other process's rewrite and removal */
    scp_vfile *r = REQUIRE_PTR(scp_vfile_open(v, "pid", O_RDONLY, 0, &e), e);
    uint8_t got[6000];
    CHECKF(scp_vfile_pread(r, got, sizeof got, 0, &e) == (ssize_t)sizeof got && memcmp(got, a, sizeof a) == 0,
           "the first read: %s", e.msg);
    if (write(go[1], "", 1) != 1) tu_die("pipe");
    int st;
    if (waitpid(pid, &st, 0) < 0) tu_die("waitpid");
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer failed: status %d", st);
    /* (the rewrite committed before the removal: either content is a read of the file, never
     * an error or a mix) */
    ssize_t n = scp_vfile_pread(r, got, sizeof got, 0, &e);
    CHECKF(n == (ssize_t)sizeof got && (memcmp(got, a, sizeof a) == 0 || memcmp(got, b, sizeof b) == 0),
           "read after the removal: %zd, %s", n, n < 0 ? e.msg : "wrong bytes");
    scp_vstat vs;
    CHECKF(scp_vfile_stat(r, &vs, &e) == 0 && vs.size == sizeof a, "stat after the removal: %s", e.msg);
    REQUIRE_OK(scp_vfile_close(r, &e), e);
    size_t len;
    uint8_t *gone = tu_vget(v, "pid", &len, &e);
    CHECKF(!gone && e.sys == ENOENT, "the removed name: %s", gone ? "still reads" : e.msg);
    free(gone);
    finish(v, root, vd);
    for (int at = 0; at <= 2; at++) {
        postmaster_pid(at, 0);
        postmaster_pid(at, 1);
    }
    return tu_exit_code("test_volume_removed_open");
}
