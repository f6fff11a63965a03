/* test_volume_two_modes - a process in shared mode and one that is not, on one file, taking
 * turns (each op's result handed to the other through a pipe, which checks that it reads
 * exactly that first). Process 0 calls scp_volume_set_shared and opens the file at each turn
 * (its state kept in the process's file cache), and syncs before each handover; process 1 is a
 * library caller that does not (as `scpctl volume` commands are): each turn it opens the file,
 * reads it, writes or truncates it and closes it (close-to-open). Either may unlink the name
 * and create the file afresh. Found by test_volume_forkstress with two programs at once
 * (bench/RESULTS.md, fork20): a process outside shared mode read "'f0': its chunk table does
 * not match the manifest" after a shared-mode process's commits, and a commit failed with
 * "another process committed it while this one was writing it (the volume directory was
 * tampered with)", the file then unreadable for every process.
 * "lazy" (deterministic, the chain behind both): S (shared) writes f without a sync (a lazy
 * commit: the state lives in f's journal log until a durable commit) and stays; O, which is not
 * shared, reads f; then N opens the volume and reads f, S syncs f, and a fresh process reads
 * it. On main O's load replayed S's lazy commit into .t and .d and emptied f's journal; N's
 * open then found the lazy root no longer redone by the journal and went back to the durable
 * state (vol_settle_lazy), which .t no longer matched: N, and every process after, read "its
 * chunk table does not match the manifest". Now O follows the log in memory (file_load) and
 * only an opener that is alone settles lazy commits; O's write of such a file gets EBUSY until
 * a durable commit (checked too).
 * "killed": close-to-open for two processes outside shared mode after a committer was killed
 * between its manifest write and its store of the generation hint (below).
 *   usage: test_volume_two_modes [seed ops]...  (default: "lazy", "killed", then seeds 1-40)
 */
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "testutil.h"

#define MAXSZ 20480u

static uint8_t g_key[SCP_VOLUME_KEY_LEN];
static char *g_vd;

/* Process `me` (0 or 1) does ops me, me + 2, ...; returns 0 if every check passed. */
static int turns(uint64_t seed, int nops, int me, int in, int out) {
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(g_vd, g_key, NULL, &e), e);
    if (me == 0) scp_volume_set_shared(v);
    scp_vfile *h = me == 0 ? REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e) : NULL;
    static uint8_t model[MAXSZ], buf[MAXSZ];
    uint32_t msize = 0;
    for (int i = me; i < nops; i += 2) {
        if (i > 0) {
            tu_turn_read(in, &msize, 4);
            tu_turn_read(in, model, msize);
        }
        if (me == 0) { /* (the name may point at another file: process 1 unlinks and creates) */
            REQUIRE_OK(scp_vfile_close(h, &e), e);
            h = NULL;
        }
        if (!h) {
            h = scp_vfile_open(v, "f", O_RDWR, 0, &e);
            CHECKF(h, "seed %llu, op %d: process 1 opens f: %s", (unsigned long long)seed, i, e.msg);
            if (!h) return 1;
        }
        uint64_t sz = scp_vfile_size(h);
        ssize_t r = scp_vfile_pread(h, buf, MAXSZ, 0, &e);
        CHECKF(sz == msize && r == (ssize_t)msize && memcmp(buf, model, msize) == 0,
               "seed %llu, before op %d (process %d): size %llu, read %zd (%s), want %u bytes",
               (unsigned long long)seed, i, me, (unsigned long long)sz, r, r < 0 ? e.msg : "ok",
               msize);
        if (tu_failures) return 1;
        tu_rng orng = {seed * 1000 + (uint64_t)i};
        if (tu_pct(&orng, 25)) { /* the name to a new file: unlinked, created afresh */
            REQUIRE_OK(scp_vfile_close(h, &e), e);
            REQUIRE_OK(scp_volume_unlink(v, "f", &e), e);
            h = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0644, &e), e);
            msize = 0;
        }
        if (tu_pct(&orng, 70)) {
            uint64_t off = tu_below(&orng, MAXSZ), len = tu_range(&orng, 1, 6000);
            if (off + len > MAXSZ) len = MAXSZ - off;
            uint8_t w[6000];
            tu_fill(&orng, w, len);
            REQUIRE(scp_vfile_pwrite(h, w, len, off, &e) == (ssize_t)len);
            if (off > msize) memset(model + msize, 0, off - msize);
            memcpy(model + off, w, len);
            if (off + len > msize) msize = (uint32_t)(off + len);
        } else {
            uint64_t s = tu_below(&orng, MAXSZ + 1);
            REQUIRE_OK(scp_vfile_truncate(h, s, &e), e);
            if (s > msize) memset(model + msize, 0, s - msize);
            msize = (uint32_t)s;
        }
        /* (process 0 syncs before each handover: a file with lazy commits is not written by a
         * process outside shared mode, EBUSY, as "lazy" checks) */
        if (me == 0 || tu_pct(&orng, 50)) {
            int rc = scp_vfile_fsync(h, &e);
            CHECKF(rc == 0, "seed %llu, op %d (process %d): fsync: %s", (unsigned long long)seed, i, me, e.msg);
            if (rc < 0) return 1;
        }
        if (me == 1) {
            int rc = scp_vfile_close(h, &e);
            h = NULL;
            CHECKF(rc == 0, "seed %llu, op %d (process 1): close: %s", (unsigned long long)seed, i, e.msg);
            if (rc < 0) return 1;
        }
        if (i + 1 >= nops) break; /* the other process has done its last op and may be gone */
        tu_turn_write(out, &msize, 4);
        tu_turn_write(out, model, msize);
    }
    if (h) REQUIRE_OK(scp_vfile_close(h, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    return 0;
}

static void one(uint64_t seed, int nops) { tu_two_procs_on_f("twomodes", turns, seed, nops, g_key, &g_vd); }

static int cmd(int fd, char c) { return write(fd, &c, 1) == 1 ? 0 : -1; }
static char wait1(int fd) {
    char c = 0;
    return read(fd, &c, 1) == 1 ? c : 0;
}

static void lazy(void) {
    tu_rng rng = {3};
    char *root;
    scp_err e;
    scp_volume *v0 = tu_new_volume(&rng, "twomodes-lazy", g_key, &root, &g_vd);
    static uint8_t a[12000], b[100];
    tu_fill(&rng, a, sizeof a);
    tu_fill(&rng, b, sizeof b);
    REQUIRE_OK(tu_vput(v0, "f", a, sizeof a, &e), e);
    REQUIRE_OK(scp_volume_close(v0, &e), e);
    int go[2], back[2];
    if (pipe(go) < 0 || pipe(back) < 0) tu_die("pipe");
    pid_t s = fork();
    if (s < 0) tu_die("fork");
    if (s == 0) { /* S */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(go[1]);
        close(back[0]);
        scp_volume *sv = REQUIRE_PTR(scp_volume_open(g_vd, g_key, NULL, &e), e);
        scp_volume_set_shared(sv);
        scp_vfile *h = REQUIRE_PTR(scp_vfile_open(sv, "f", O_RDWR, 0, &e), e);
        cmd(back[1], 'o');
        if (wait1(go[0]) != 'w') _exit(2);
        if (scp_vfile_pwrite(h, b, sizeof b, 3000, &e) != (ssize_t)sizeof b) _exit(3); /* lazy */
        cmd(back[1], 'w');
        if (wait1(go[0]) != 's') _exit(2);
        int rc = scp_vfile_fsync(h, &e);
        if (rc < 0) fprintf(stderr, "S's fsync: %s\n", e.msg);
        cmd(back[1], rc == 0 ? 'k' : 'f');
        _exit(0);
    }
    close(go[0]);
    close(back[1]);
    memcpy(a + 3000, b, sizeof b);
    scp_volume *o = REQUIRE_PTR(scp_volume_open(g_vd, g_key, NULL, &e), e); /* before S's write */
    REQUIRE(wait1(back[0]) == 'o');
    cmd(go[1], 'w');
    REQUIRE(wait1(back[0]) == 'w');
    size_t n;
    uint8_t *got = tu_vget(o, "f", &n, &e);
    CHECKF(got && n == sizeof a && memcmp(got, a, n) == 0, "lazy: O reads f: %s", got ? "other bytes" : e.msg);
    free(got);
    scp_vfile *oh = REQUIRE_PTR(scp_vfile_open(o, "f", O_RDWR, 0, &e), e);
    ssize_t w = scp_vfile_pwrite(oh, b, 1, 0, &e);
    CHECKF(w < 0 && e.sys == EBUSY, "lazy: O's write of f before S's sync: %zd (%s), want EBUSY", w,
           w < 0 ? e.msg : "written");
    REQUIRE_OK(scp_vfile_close(oh, &e), e);
    pid_t nn = fork();
    if (nn < 0) tu_die("fork");
    if (nn == 0) { /* N */
        scp_volume *nv = scp_volume_open(g_vd, g_key, NULL, &e);
        if (!nv) _exit(4);
        got = tu_vget(nv, "f", &n, &e);
        if (!got) fprintf(stderr, "N reads f: %s\n", e.msg);
        _exit(got && n == sizeof a && memcmp(got, a, n) == 0 ? 0 : 5);
    }
    int st;
    if (waitpid(nn, &st, 0) < 0) tu_die("waitpid");
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lazy: N's open and read of f (status %d)", st);
    cmd(go[1], 's');
    CHECKF(wait1(back[0]) == 'k', "lazy: S's fsync of f failed");
    if (waitpid(s, &st, 0) < 0) tu_die("waitpid");
    /* O writes f now that S's state is durable, and a fresh process reads it */
    oh = REQUIRE_PTR(scp_vfile_open(o, "f", O_RDWR, 0, &e), e);
    w = scp_vfile_pwrite(oh, b, 1, 0, &e);
    CHECKF(w == 1, "lazy: O's write of f after S's sync: %s", e.msg);
    REQUIRE_OK(scp_vfile_close(oh, &e), e);
    a[0] = b[0];
    REQUIRE_OK(scp_volume_close(o, &e), e);
    scp_volume *z = REQUIRE_PTR(scp_volume_open(g_vd, g_key, NULL, &e), e);
    got = tu_vget(z, "f", &n, &e);
    CHECKF(got && n == sizeof a && memcmp(got, a, n) == 0, "lazy: a fresh process reads f: %s",
           got ? "other bytes" : e.msg);
    free(got);
    REQUIRE_OK(scp_volume_close(z, &e), e);
    close(go[1]);
    close(back[0]);
    if (!tu_failures) tu_rm_rf(root);
    free(root);
    free(g_vd);
}

static int g_die;
static void die_in_commit(void *ctx, const scp_volume_tag *tag) {
    (void)ctx;
    (void)tag;
    if (g_die) raise(SIGKILL); /* after the manifest write, before the hint's store */
}

/* "killed": O (not shared) reads f and keeps it in its file cache; P commits a write to f and
 * is killed in its commit callback, after its manifest write and before it stores the volume's
 * generation hint; O's next open of f must read P's write (close-to-open). On main the hint
 * still named O's generation, so the open took O's cached state: the old bytes. */
static void killed(void) {
    tu_rng rng = {4};
    char *root;
    scp_err e;
    scp_volume *v0 = tu_new_volume(&rng, "twomodes-killed", g_key, &root, &g_vd);
    static uint8_t a[9000], b[100];
    tu_fill(&rng, a, sizeof a);
    tu_fill(&rng, b, sizeof b);
    REQUIRE_OK(tu_vput(v0, "f", a, sizeof a, &e), e);
    REQUIRE_OK(scp_volume_close(v0, &e), e);
    int go[2];
    if (pipe(go) < 0) tu_die("pipe");
    pid_t p = fork();
    if (p < 0) tu_die("fork");
    if (p == 0) { /* P: a fresh library state (nothing opened before the fork) */
        close(go[1]);
        char c;
        if (read(go[0], &c, 1) != 1) _exit(2);
        scp_volume *pv = scp_volume_open(g_vd, g_key, NULL, &e);
        if (!pv) _exit(3);
        scp_volume_on_commit(pv, die_in_commit, NULL);
        scp_vfile *h = scp_vfile_open(pv, "f", O_RDWR, 0, &e);
        if (!h || scp_vfile_pwrite(h, b, sizeof b, 100, &e) != (ssize_t)sizeof b) _exit(4);
        g_die = 1;
        (void)scp_vfile_fsync(h, &e); /* dies in here */
        _exit(5);
    }
    close(go[0]);
    scp_volume *o = REQUIRE_PTR(scp_volume_open(g_vd, g_key, NULL, &e), e);
    size_t n;
    free(REQUIRE_PTR(tu_vget(o, "f", &n, &e), e));
    if (write(go[1], "g", 1) != 1) tu_die("pipe");
    int st;
    if (waitpid(p, &st, 0) < 0) tu_die("waitpid");
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "killed: P was to die in its commit (status %d)", st);
    memcpy(a + 100, b, sizeof b);
    uint8_t *got = tu_vget(o, "f", &n, &e);
    CHECKF(got && n == sizeof a && memcmp(got, a, n) == 0, "killed: O's open of f after P's commit: %s",
           got ? "the bytes from before it (a stale cached state)" : e.msg);
    free(got);
    REQUIRE_OK(scp_volume_close(o, &e), e);
    close(go[1]);
    if (!tu_failures) tu_rm_rf(root);
    free(root);
    free(g_vd);
}

int main(int argc, char **argv) {
    /* A failed peer shows as exit 3 or a failed check, not as this process killed by a write
     * to its closed pipe. */
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3) {
        for (int i = 1; i + 1 < argc; i += 2) one(strtoull(argv[i], NULL, 10), atoi(argv[i + 1]));
    } else {
        lazy();
        killed();
        for (uint64_t s = 1; s <= 40; s++) one(s, 16);
    }
    return tu_exit_code("test_volume_two_modes");
}
