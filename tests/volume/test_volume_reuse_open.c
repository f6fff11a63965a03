/* tests/volume/test_volume_reuse_open.c - a removed file's objects are not reused while another
 * process has the volume open.
 *
 * Object reuse (test_volume_reuse) gives a new file the id and objects of a file this process
 * removed. Another program that has the volume open may still hold the removed file open: its
 * handle names the file by id, so with the id reused it reads, and commits into, the new file
 * under the old handle. Found by test_volume_forkstress ("its data object is missing", reads of
 * one name answered by another's file). Asserted: process B opens "f" and reads it; process A
 * (another program, not shared) removes "f", syncs, creates "g" and writes it; B then writes
 * through its old handle and closes it; a fresh open must read "g" exactly as A wrote it, and
 * the volume must verify. Fails where a process reuses the objects regardless (a new file
 * takes the removed file's id, and B's write lands in "g").
 *   forked: the same with B a fork child of A (no shared mode: the library alone) that holds
 *   the handle A opened before the fork and makes no call until A has created "g". Until its
 *   first call B shares A's lock file description, so A's presence test finds A alone and "g"
 *   does take f's objects (one .d object before and after it); B's write must still not land
 *   in "g". It does not, on main too (B's first call repairs after the fork; the write fails
 *   or goes nowhere): kept as a guard of that path, not as a test of the fix above.
 */
#include <sys/wait.h>

#include "testutil.h"

static void problem_cb(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)ctx;
    tu_fail_at(__FILE__, __LINE__, "verify: %s at %lld: %s", path, (long long)off, msg);
}

static void forked(void) {
    tu_rng rng = {8};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    static uint8_t a[8192], g[8192], b[4096];
    memset(a, 'a', sizeof a);
    memset(g, 'g', sizeof g);
    memset(b, 'b', sizeof b);
    tu_context = "forked";
    scp_volume *v = tu_new_volume(&rng, "reuseopenf", key, &root, &vd);
    REQUIRE_OK(tu_vput(v, "f", a, sizeof a, &e), e);
    scp_vfile *h = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e);
    int go[2];
    if (pipe(go) < 0) tu_die("pipe");
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) { /* B: its first call after A created g */
        char c;
        if (read(go[0], &c, 1) != 1) _exit(2);
        (void)scp_vfile_pwrite(h, b, sizeof b, 0, &e);
        (void)scp_vfile_close(h, &e);
        _exit(0);
    }
    REQUIRE_OK(scp_vfile_close(h, &e), e);
    REQUIRE_OK(scp_volume_unlink(v, "f", &e), e);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    REQUIRE_OK(tu_vput(v, "g", g, sizeof g, &e), e);
    if (write(go[1], "", 1) != 1) tu_die("pipe");
    int st;
    if (waitpid(pid, &st, 0) < 0) tu_die("waitpid");
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    size_t n = 0;
    uint8_t *rd = tu_vget(v, "g", &n, &e);
    CHECKF(rd && n == sizeof g && memcmp(rd, g, sizeof g) == 0,
           "g does not read as written (%s; %zu bytes, first %c): the fork child's handle of the "
           "removed f wrote into it", rd ? "read" : e.msg, n, rd && n ? rd[0] : '-');
    free(rd);
    CHECK(scp_volume_verify(v, problem_cb, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    if (!tu_failures) tu_rm_rf(root);
    free(root);
    free(vd);
    tu_context = "";
}

int main(void) {
    forked();
    tu_rng rng = {7};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    static uint8_t a[8192], g[8192], b[4096], got[8192];
    memset(a, 'a', sizeof a);
    memset(g, 'g', sizeof g);
    memset(b, 'b', sizeof b);
    scp_volume *v = tu_new_volume(&rng, "reuseopen", key, &root, &vd);
    REQUIRE_OK(tu_vput(v, "f", a, sizeof a, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    int go[2], ready[2];
    if (pipe(go) < 0 || pipe(ready) < 0) tu_die("pipe");
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) { /* B */
        char c = 0;
        scp_volume *vb = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
        scp_vfile *h = REQUIRE_PTR(scp_vfile_open(vb, "f", O_RDWR, 0, &e), e);
        CHECK(scp_vfile_pread(h, got, sizeof got, 0, &e) == (ssize_t)sizeof got && memcmp(got, a, sizeof a) == 0);
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) tu_die("pipe");
        /* the old handle: its file has no name now */
        (void)scp_vfile_pwrite(h, b, sizeof b, 0, &e);
        (void)scp_vfile_close(h, &e);
        (void)scp_volume_close(vb, &e);
        _exit(tu_failures ? 1 : 0);
    }
    char c = 0;
    if (read(ready[0], &c, 1) != 1) tu_die("pipe");
    /* A: another program (not forked from B, no shared mode) */
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_unlink(v, "f", &e), e);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    REQUIRE_OK(tu_vput(v, "g", g, sizeof g, &e), e);
    if (write(go[1], &c, 1) != 1) tu_die("pipe");
    int st;
    if (waitpid(pid, &st, 0) < 0) tu_die("waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    size_t n = 0;
    uint8_t *rd = tu_vget(v, "g", &n, &e);
    CHECKF(rd && n == sizeof g && memcmp(rd, g, sizeof g) == 0,
           "g does not read as written (%s; %zu bytes, first %c): another process's handle of the "
           "removed f wrote into it", rd ? "read" : e.msg, n, rd && n ? rd[0] : '-');
    free(rd);
    CHECK(scp_volume_verify(v, problem_cb, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    if (!tu_failures) tu_rm_rf(root);
    free(root);
    free(vd);
    return tu_exit_code("test_volume_reuse_open");
}
