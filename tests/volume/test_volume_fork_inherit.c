/* tests/volume/test_volume_fork_inherit.c - a process killed inside a commit while a fork child
 * of it, which has made no volume call yet, waits for something else.
 *
 * Until its first volume call (vol_check_fork) a fork child shares its parent's open file
 * descriptions, and an OFD lock lives as long as any copy of the description it was taken
 * through. On main, a lock the parent took after the fork (the volume lock, a file's writer
 * lock) and held when it was killed stayed held for as long as such a child lived without a
 * volume call: every other process waited for the volume lock, and a child that first waits
 * for one of them (here: a pipe that only the test writes, at the end) never makes its call.
 * Found by test_volume_forkstress (FORKSTRESS_LAZY=1) as a hang (bench/RESULTS.md, park19 and
 * fork20). Now the parent takes fresh descriptions before it locks again after a fork
 * (volume.c vol_lock_own, commit.c file_own_d).
 * Asserted, with Q in ordinary and in shared mode: P opens the volume and reads f (so f's
 * descriptors exist before the fork), forks C (no volume call; C waits on a pipe until the
 * end), writes f and is killed from its commit callback (under the volume lock, holding f's
 * writer lock); then Q, a fresh process, opens the volume, reads f as P's commit left it,
 * writes it and closes it within 20 s (an alarm). On main Q waits for the volume lock until
 * the alarm; with the volume lock alone fixed, Q's write fails with EBUSY (ordinary) or waits
 * (shared) for P's writer lock.
 */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"

static int g_die;
static void die_in_commit(void *ctx, const scp_volume_tag *tag) {
    (void)ctx;
    (void)tag;
    if (g_die) raise(SIGKILL); /* with the volume lock and f's writer lock held */
}

static void one(int q_shared) {
    tu_rng rng = {7};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    static uint8_t a[6000], b[3000];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    scp_volume *v = tu_new_volume(&rng, "forkinherit", key, &root, &vd);
    REQUIRE_OK(tu_vput(v, "f", a, sizeof a, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    int hold[2]; /* C reads it until the test closes its end */
    if (pipe(hold) < 0) tu_die("pipe");
    pid_t p = fork();
    if (p < 0) tu_die("fork");
    if (p == 0) { /* P */
        scp_volume *pv = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
        size_t n;
        free(REQUIRE_PTR(tu_vget(pv, "f", &n, &e), e)); /* f loaded: its descriptors are C's too */
        scp_volume_on_commit(pv, die_in_commit, NULL);
        pid_t c = fork();
        if (c < 0) tu_die("fork");
        if (c == 0) { /* C: no volume call; waits for the test's end */
            char ch;
            close(hold[1]);
            while (read(hold[0], &ch, 1) > 0) {
            }
            _exit(0);
        }
        g_die = 1;
        scp_vfile *h = REQUIRE_PTR(scp_vfile_open(pv, "f", O_RDWR, 0, &e), e);
        ssize_t w = scp_vfile_pwrite(h, b, 10, 0, &e);
        int r = scp_vfile_fsync(h, &e); /* dies in here */
        fprintf(stderr, "P did not die in its commit: write %zd, fsync %d: %s\n", w, r, e.msg);
        _exit(3);
    }
    close(hold[0]);
    int st;
    if (waitpid(p, &st, 0) < 0) tu_die("waitpid");
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "P was to die in its commit (status %d)", st);
    pid_t q = fork(); /* C is alive (an orphan) and has made no volume call */
    if (q < 0) tu_die("fork");
    if (q == 0) {
        alarm(20);
        scp_volume *qv = scp_volume_open(vd, key, NULL, &e);
        if (!qv) _exit(4);
        if (q_shared) scp_volume_set_shared(qv);
        size_t n;
        uint8_t *got = tu_vget(qv, "f", &n, &e);
        /* P's write of 10 bytes was committed before its callback ran */
        if (!got || n != sizeof a || memcmp(got, b, 10) != 0 || memcmp(got + 10, a + 10, n - 10) != 0)
            _exit(5);
        free(got);
        scp_vfile *h = scp_vfile_open(qv, "f", O_RDWR, 0, &e);
        if (!h) _exit(6);
        if (scp_vfile_pwrite(h, b, sizeof b, 0, &e) != (ssize_t)sizeof b) {
            fprintf(stderr, "Q's write: %s\n", e.msg);
            _exit(7);
        }
        if (scp_vfile_close(h, &e) < 0) _exit(8);
        got = tu_vget(qv, "f", &n, &e);
        if (!got || n != sizeof a || memcmp(got, b, sizeof b) != 0) _exit(9);
        free(got);
        _exit(scp_volume_close(qv, &e) < 0 ? 10 : 0);
    }
    if (waitpid(q, &st, 0) < 0) tu_die("waitpid");
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "Q (%s) with C alive: status %d (SIGALRM %d: it waited for a lock the killed P took "
           "after its fork, kept by C's copy of P's description)",
           q_shared ? "shared" : "ordinary", st, SIGALRM);
    close(hold[1]); /* C goes */
    while (wait(&st) > 0 || errno == EINTR) {
    }
    if (!tu_failures) tu_rm_rf(root);
    free(root);
    free(vd);
}

int main(void) {
    one(0);
    one(1);
    return tu_exit_code("test_volume_fork_inherit");
}
