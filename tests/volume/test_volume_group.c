/* tests/volume/test_volume_group.c - group commit: concurrent fsyncs of one volume.
 *
 *   share    threads of one process fsync their own files while a first commit's manifest write
 *            is held (its commit callback waits): the waiting commits must share manifest
 *            writes (fewer durable manifest writes than commits) and all be durable
 *   threads  THREADS threads, each rewriting its own file ROUNDS times (small overwrites through
 *            the journal, large ones through the second slots, shrinks) with an fsync after
 *            each; then the volume is reopened and every file must hold its last state.
 *            Prints fsyncs against durable manifest writes.
 *   procs    the same from PROCS processes (two threads each) on one volume
 *   forkslot a forked child writes a file after the parent did (the parent's second-slot
 *            descriptor is inherited): large overwrites in both slots by the child, then by the
 *            parent, each seen by the other and after a reopen
 *   kill     a process with THREADS such threads is killed (SIGKILL) at a random instant, many
 *            times; after each, every file must hold the state of its last acknowledged fsync
 *            or of the one in flight, never anything else
 * Each file's state i has a size and content derived from (file, i) alone, so any byte that
 * belongs to no state, or a state older than the last acknowledged one, is detected.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "testutil.h"

#define THREADS 4
#define ROUNDS 40
#define PROCS 3

static uint8_t key[SCP_VOLUME_KEY_LEN];

/* State i of file `fid`: a size that cycles through a small file, a large one (its rewrite
 * takes the second slots) and a middle one (a shrink), and bytes drawn from (fid, i). */
static size_t state_size(int fid, long i) {
    static const size_t sizes[] = {12388, 600000, 70001, 5000};
    if (i < 0) return 0;
    return sizes[(size_t)(i + fid) % 4];
}
static void state_fill(int fid, long i, uint8_t *buf, size_t n) {
    tu_rng r = {.s = (uint64_t)fid * 1000003u + (uint64_t)i * 7919u + 17};
    tu_fill(&r, buf, n);
}

static void fname(int fid, char out[32]) { snprintf(out, 32, "g%02d", fid); }

/* Rewrite file fid to state i and fsync it. */
static int write_state(scp_vfile *h, int fid, long i, scp_err *e) {
    size_t n = state_size(fid, i);
    uint8_t *b = malloc(n);
    if (!b) tu_die("malloc");
    state_fill(fid, i, b, n);
    int rc = scp_vfile_truncate(h, n, e);
    if (rc == 0 && scp_vfile_pwrite(h, b, n, 0, e) != (ssize_t)n) rc = -1;
    if (rc == 0) rc = scp_vfile_fsync(h, e);
    free(b);
    return rc;
}

/* Which state (from lo to hi) file fid holds; -2 if none. */
static long which_state(scp_volume *v, int fid, long lo, long hi) {
    char p[32];
    fname(fid, p);
    scp_err e;
    size_t len;
    uint8_t *got = tu_vget(v, p, &len, &e);
    if (!got) {
        fprintf(stderr, "  reading %s: %s\n", p, e.msg);
        return -2;
    }
    long found = -2;
    for (long i = hi; i >= lo && found == -2; i--) {
        if (state_size(fid, i) != len) continue;
        uint8_t *want = malloc(len + 1);
        if (!want) tu_die("malloc");
        state_fill(fid, i, want, len);
        if (memcmp(want, got, len) == 0) found = i;
        free(want);
    }
    free(got);
    return found;
}

/* ---- share ------------------------------------------------------------------------------- */

struct share {
    scp_volume *v;
    pthread_barrier_t ready;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int armed, held;   /* the callback holds the first armed commit's manifest write */
    int writes;        /* durable manifest writes since armed */
};

static struct share S;

static void share_cb(void *ctx, const scp_volume_tag *tag) {
    (void)ctx;
    (void)tag;
    pthread_mutex_lock(&S.mu);
    if (S.armed) {
        S.writes++;
        if (S.writes == 1) {
            S.held = 1;
            pthread_cond_broadcast(&S.cv);
            pthread_mutex_unlock(&S.mu);
            /* Hold the leader while the other threads queue their commits (it runs under the
             * volume's mutex, as a commit callback does: it must not call into the volume). */
            sleep(1);
            return;
        }
    }
    pthread_mutex_unlock(&S.mu);
}

static void *share_thread(void *arg) {
    int fid = (int)(intptr_t)arg;
    scp_err e;
    char p[32];
    fname(fid, p);
    scp_vfile *h = REQUIRE_PTR(scp_vfile_open(S.v, p, O_RDWR | O_CREAT, 0644, &e), e);
    REQUIRE_OK(write_state(h, fid, 0, &e), e);
    size_t n = state_size(fid, 1);
    uint8_t *b = malloc(n);
    if (!b) tu_die("malloc");
    state_fill(fid, 1, b, n);
    REQUIRE_OK(scp_vfile_truncate(h, n, &e), e);
    REQUIRE(scp_vfile_pwrite(h, b, n, 0, &e) == (ssize_t)n);
    free(b);
    pthread_barrier_wait(&S.ready);
    if (fid != 0) { /* wait until thread 0's commit holds the manifest write */
        pthread_mutex_lock(&S.mu);
        while (!S.held) pthread_cond_wait(&S.cv, &S.mu);
        pthread_mutex_unlock(&S.mu);
    } else {
        pthread_mutex_lock(&S.mu);
        S.armed = 1;
        pthread_mutex_unlock(&S.mu);
    }
    CHECK_OK(scp_vfile_fsync(h, &e), e);
    CHECK_OK(scp_vfile_close(h, &e), e);
    return NULL;
}

static void test_share(void) {
    tu_rng rng = {.s = 1};
    char *root, *vd;
    scp_err e;
    S.v = tu_new_volume(&rng, "group-share", key, &root, &vd);
    pthread_barrier_init(&S.ready, NULL, THREADS);
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.cv, NULL);
    scp_volume_on_commit(S.v, share_cb, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, share_thread, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("share: %d commits held behind a manifest write took %d durable manifest writes\n",
           THREADS - 1, S.writes - 1);
    CHECKF(S.writes - 1 < THREADS - 1,
           "%d concurrent commits took %d manifest writes: no manifest write was shared",
           THREADS - 1, S.writes - 1);
    CHECK_OK(scp_volume_close(S.v, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    for (int i = 0; i < THREADS; i++) CHECKF(which_state(v, i, 0, 1) == 1, "file %d lost its commit", i);
    CHECK_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* ---- threads, procs, kill ---------------------------------------------------------------- */

struct worker {
    scp_volume *v;
    int fid;
    long rounds;         /* < 0: until killed */
    volatile long *ack;  /* the last state whose fsync returned (shared with the parent) */
    int failed;
};

static void *worker(void *arg) {
    struct worker *w = arg;
    scp_err e;
    char p[32];
    fname(w->fid, p);
    scp_vfile *h = scp_vfile_open(w->v, p, O_RDWR | O_CREAT, 0644, &e);
    if (!h) {
        fprintf(stderr, "open %s: %s\n", p, e.msg);
        w->failed = 1;
        return NULL;
    }
    for (long i = 0; w->rounds < 0 || i < w->rounds; i++) {
        if (write_state(h, w->fid, i, &e) < 0) {
            fprintf(stderr, "file %d state %ld: %s\n", w->fid, i, e.msg);
            w->failed = 1;
            break;
        }
        __atomic_store_n(w->ack, i, __ATOMIC_RELEASE);
    }
    if (scp_vfile_close(h, &e) < 0) w->failed = 1;
    return NULL;
}

static uint64_t durable_writes;
static void count_cb(void *ctx, const scp_volume_tag *tag) {
    (void)ctx;
    (void)tag;
    __atomic_add_fetch(&durable_writes, 1, __ATOMIC_RELAXED);
}

/* Run n workers on files [fid0, fid0 + n) in this process; returns failures. */
static int run_workers(scp_volume *v, int fid0, int n, long rounds, volatile long *ack) {
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){v, fid0 + i, rounds, &ack[fid0 + i], 0};
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        failed += w[i].failed;
    }
    return failed;
}

static void check_files(const char *vd, int nfiles, volatile long *ack, int exact) {
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    for (int i = 0; i < nfiles; i++) {
        long a = ack[i], got = which_state(v, i, a < 0 ? -1 : a, a + 1);
        if (exact)
            CHECKF(got == a, "file %d holds state %ld, its last fsync was of state %ld", i, got, a);
        else
            CHECKF(got == a || got == a + 1,
                   "file %d holds state %ld after the kill; acknowledged %ld (or %ld in flight)",
                   i, got, a, a + 1);
    }
    CHECK_OK(scp_volume_close(v, &e), e);
}

static volatile long *shared_acks(int n) {
    volatile long *a = mmap(NULL, sizeof(long) * (size_t)n, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) tu_die("mmap");
    for (int i = 0; i < n; i++) a[i] = -1;
    return a;
}

static void test_threads(void) {
    tu_rng rng = {.s = 2};
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "group-threads", key, &root, &vd);
    volatile long *ack = shared_acks(THREADS);
    durable_writes = 0;
    scp_volume_on_commit(v, count_cb, NULL);
    double t0 = tu_now();
    CHECK(run_workers(v, 0, THREADS, ROUNDS, ack) == 0);
    printf("threads: %d fsyncs of %d threads, %llu durable manifest writes (%.2f s)\n",
           THREADS * ROUNDS, THREADS, (unsigned long long)durable_writes, tu_now() - t0);
    CHECK(durable_writes <= (uint64_t)THREADS * ROUNDS + THREADS);
    CHECK_OK(scp_volume_close(v, &e), e);
    check_files(vd, THREADS, ack, 1);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

static void test_procs(void) {
    tu_rng rng = {.s = 3};
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "group-procs", key, &root, &vd);
    CHECK_OK(scp_volume_close(v, &e), e);
    volatile long *ack = shared_acks(2 * PROCS);
    pid_t pid[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pid[p] = fork();
        if (pid[p] == 0) {
            scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
            if (!cv) _exit(3);
            int f = run_workers(cv, 2 * p, 2, ROUNDS / 2, ack);
            _exit(f || scp_volume_close(cv, &e) < 0 ? 1 : 0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st;
        waitpid(pid[p], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "process %d failed (status %d)", p, st);
    }
    check_files(vd, 2 * PROCS, ack, 1);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

static void test_kill(int runs) {
    tu_rng rng = {.s = 4};
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "group-kill", key, &root, &vd);
    CHECK_OK(scp_volume_close(v, &e), e);
    volatile long *ack = shared_acks(THREADS);
    for (int r = 0; r < runs; r++) {
        for (int i = 0; i < THREADS; i++) ack[i] = -1;
        {   /* start every run from empty files */
            scp_volume *pv = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
            for (int i = 0; i < THREADS; i++) {
                char p[32];
                fname(i, p);
                scp_vfile *h = REQUIRE_PTR(scp_vfile_open(pv, p, O_RDWR | O_CREAT | O_TRUNC, 0644, &e), e);
                REQUIRE_OK(scp_vfile_fsync(h, &e), e);
                REQUIRE_OK(scp_vfile_close(h, &e), e);
            }
            REQUIRE_OK(scp_volume_close(pv, &e), e);
        }
        pid_t pid = fork();
        if (pid == 0) {
            scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
            if (!cv) _exit(3);
            run_workers(cv, 0, THREADS, -1, ack);
            _exit(1);
        }
        /* Kill after a few commits, at an instant that varies from run to run. */
        long want = (long)tu_range(&rng, 1, 12);
        for (;;) {
            long lo = ack[0];
            for (int i = 1; i < THREADS; i++) lo = ack[i] < lo ? ack[i] : lo;
            if (lo >= want) break;
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                CHECKF(0, "run %d: the writer exited early (status %d)", r, st);
                pid = -1;
                break;
            }
            usleep((useconds_t)tu_range(&rng, 50, 2000));
        }
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        check_files(vd, THREADS, ack, 0);
    }
    printf("kill: %d runs, each file held its acknowledged state or the one in flight\n", runs);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* ---- forkslot ---------------------------------------------------------------------------- */

#define SLOT_BYTES (2u << 20)

static void fill_pattern(uint8_t *b, int tag) {
    tu_rng r = {.s = 1000u + (uint64_t)tag};
    tu_fill(&r, b, SLOT_BYTES);
}

/* Overwrite "s" whole with pattern tag and fsync; 0 or -1. */
static int slot_rewrite(scp_volume *v, int tag, scp_err *e) {
    uint8_t *b = malloc(SLOT_BYTES);
    if (!b) tu_die("malloc");
    fill_pattern(b, tag);
    scp_vfile *h = scp_vfile_open(v, "s", O_RDWR | O_CREAT, 0644, e);
    int rc = h && scp_vfile_pwrite(h, b, SLOT_BYTES, 0, e) == (ssize_t)SLOT_BYTES &&
                     scp_vfile_fsync(h, e) == 0 ? 0 : -1;
    if (h && scp_vfile_close(h, rc ? NULL : e) < 0) rc = -1;
    free(b);
    return rc;
}

static int slot_holds(scp_volume *v, int tag) {
    scp_err e;
    size_t len;
    uint8_t *got = tu_vget(v, "s", &len, &e), *want = malloc(SLOT_BYTES);
    if (!want) tu_die("malloc");
    fill_pattern(want, tag);
    int ok = got && len == SLOT_BYTES && memcmp(got, want, SLOT_BYTES) == 0;
    if (!got) fprintf(stderr, "  reading s: %s\n", e.msg);
    free(got);
    free(want);
    return ok;
}

static void test_forkslot(void) {
    tu_rng rng = {.s = 5};
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "group-forkslot", key, &root, &vd);
    REQUIRE_OK(slot_rewrite(v, 1, &e), e); /* fresh: slot 0 */
    REQUIRE_OK(slot_rewrite(v, 2, &e), e); /* overwrite: slot 1, the parent opens .s */
    CHECK(slot_holds(v, 2));
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        /* slot 0, then slot 1 through the descriptor inherited from the parent */
        int bad = slot_rewrite(v, 3, &e) < 0 || !slot_holds(v, 3) || slot_rewrite(v, 4, &e) < 0 ||
                  !slot_holds(v, 4);
        if (bad) fprintf(stderr, "child: %s\n", e.msg);
        _exit(bad || scp_volume_close(v, &e) < 0 ? 1 : 0);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's writes failed (status %d)", st);
    CHECKF(slot_holds(v, 4), "the parent does not see the child's last overwrite");
    CHECK_OK(slot_rewrite(v, 5, &e), e);
    CHECK_OK(slot_rewrite(v, 6, &e), e);
    CHECKF(slot_holds(v, 6), "the parent's overwrite after the child's");
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    CHECKF(slot_holds(v, 6), "after a reopen, the file is not the parent's last overwrite");
    CHECK_OK(scp_volume_close(v, &e), e);
    printf("forkslot: child and parent overwrote in both slots, each saw the other's commits\n");
    tu_rm_rf(root);
    free(root);
    free(vd);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    int all = strcmp(what, "all") == 0;
    if (all || strcmp(what, "share") == 0) test_share();
    if (all || strcmp(what, "threads") == 0) test_threads();
    if (all || strcmp(what, "procs") == 0) test_procs();
    if (all || strcmp(what, "forkslot") == 0) test_forkslot();
    if (all || strcmp(what, "kill") == 0) test_kill(15);
    return tu_exit_code("test_volume_group");
}
