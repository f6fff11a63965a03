/* tests/volume/test_volume_removed_open.c - in shared mode, a file open in one process while
 * another process rewrites it and removes its name.
 *
 * A read or a stat of the open file first takes in the other processes' commits
 * (file_refresh). Its volume lock catches the manifest up, and that catch-up, taking in the
 * removal, leaves the loaded file without a path (drop_objects). file_refresh had checked the
 * path before the lock and looked it up after: a NULL strcmp, SIGSEGV. Found in CI by
 * PostgreSQL's pg_ctl, which polls postmaster.pid with fopen/fscanf while the postmaster
 * rewrites and then removes it (tests/shield/postgres.sh, clang Release pass; reproduced
 * here with a reader that opens the file before each rewrite, about 1 in 30 reads died).
 * Asserted: the open handle's read (its first volume call since: a stat takes the volume
 * lock, and so the removal, before its refresh) and then its stat succeed after the other
 * process's rewrite and removal, and the name is gone (ENOENT); the volume verifies. Died
 * with SIGSEGV in the read before the fix.
 */
#include <sys/wait.h>

#include "testutil.h"

static void problem_cb(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)ctx;
    tu_fail_at(__FILE__, __LINE__, "verify: %s at %lld: %s", path, (long long)off, msg);
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
    CHECK(scp_volume_verify(v, problem_cb, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    if (!tu_failures) tu_rm_rf(root);
    free(root);
    free(vd);
    return tu_exit_code("test_volume_removed_open");
}
