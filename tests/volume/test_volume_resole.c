/* test_volume_resole - back to the sole holding (docs/volume-format.md, "Back to the sole
 * holding"): a process in shared mode that finds nobody else with the volume open any more
 * leaves shared mode and holds the volume alone again (scp_volume_try_sole).
 *
 * What shows the mode: in shared mode every write is a lazy commit, which appends a record to
 * manifest.log; the sole holder commits at fsync and keeps its manifest-log records in memory
 * (docs/volume-format.md, "Deferred manifest-log records"), so its writes leave manifest.log
 * as it was.
 *   other   P, the sole holder, goes shared when another program's process N opens the volume
 *           (a watcher thread: set_shared, commit, set_shared, private_end, as the shield's);
 *           while N has it open try_sole declines and each write of P grows manifest.log; N
 *           writes the file too and closes; try_sole then takes the holding, P reads N's bytes,
 *           and P's writes no longer grow manifest.log. A second newcomer then waits for the
 *           holding to end as the first did, reads everything and writes; P goes on shared.
 *   fork    P in shared mode forks a child that reads and appends (its repair) and one that
 *           makes no volume call (its presence stands on P's old lock description): try_sole
 *           declines while either lives, takes the holding once both exited, and P reads the
 *           child's append (a lazy commit it had not followed) and writes without manifest.log
 *           growing.
 *   threads a reader thread reads a file over and over while the main thread takes the
 *           holding back again and again (set_shared, private_end as a watcher's, try_sole),
 *           as the shield's threads do when one closes a file and another reads (shield_bypass's
 *           threads case): every read returns the file's bytes, and no read's catch-up runs
 *           shared mode's checks on a volume that went back to the sole holding under it
 *           (session 25: file_tail_moved's assert, between shared_catch_up's test of the mode
 *           and its lock of the file).
 *   repair  P in shared mode forks a child whose repair (its first volume call) is held by the
 *           hook right after it closed the lock description it shared with P; P then tries to
 *           hold the volume alone: it must decline (the child is present), and the child then
 *           appends, which P reads. Until session 29 the child took its own presence lock only
 *           after the close: with P moved off the shared description (its try_sole's lock did
 *           that), the close dropped the child's presence, P held the volume alone with a child
 *           alive and kept its writer locks, and the child's write waited for them for ever
 *           while P waited for the child (shield_ofd's forkwrite, under ASan).
 * Each ends with a fresh open that reads every write back, and scp_volume_verify.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>

#include "scenario.h"
#include "volume/internal.h"

static const uint8_t KEY[SCP_VOLUME_KEY_LEN] = {9, 1, 9};
#define REC 512 /* one record per write: its index in every byte */

static long mlog_size(const char *dir) {
    char p[600];
    struct stat st;
    snprintf(p, sizeof p, "%s/manifest.log", dir);
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static int put(scp_vfile *f, int i) {
    uint8_t b[REC];
    memset(b, i & 0xff, sizeof b);
    scp_err e;
    return scp_vfile_pwrite(f, b, sizeof b, (uint64_t)i * REC, &e) == (ssize_t)sizeof b ? 0 : -1;
}

/* records [0, n) of the file read back as written: the index of the first wrong one, or n */
static int check_recs(scp_volume *v, const char *name, int n) {
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, name, O_RDONLY, 0, &e);
    if (!f) return -1;
    int i = 0;
    for (; i < n; i++) {
        uint8_t b[REC], want[REC];
        memset(want, i & 0xff, sizeof want);
        if (scp_vfile_pread(f, b, sizeof b, (uint64_t)i * REC, &e) != (ssize_t)sizeof b ||
            memcmp(b, want, sizeof b) != 0)
            break;
    }
    scp_vfile_close(f, &e);
    return i;
}

/* n writes of f from record *next on; manifest.log's growth over them */
static long writes(const char *dir, scp_vfile *f, int *next, int n) {
    long before = mlog_size(dir);
    for (int k = 0; k < n; k++) CHECK(put(f, (*next)++) == 0);
    return mlog_size(dir) - before;
}

/* The shield's move when a newcomer asks (sh_priv_end): shared, commit, shared, let go. */
struct watch {
    scp_volume *v;
    scp_vfile *f;
};
static void *watcher(void *arg) {
    struct watch *w = arg;
    scp_err e;
    scp_volume_private_wait(w->v);
    scp_volume_set_shared(w->v);
    CHECK_OK(scp_vfile_fsync(w->f, &e), e);
    scp_volume_set_shared(w->v);
    scp_volume_private_end(w->v);
    return NULL;
}

static void sync_byte(int fd) {
    char b;
    REQUIRE(read(fd, &b, 1) == 1);
}

/* A newcomer: waits for "go" on in, opens the volume, reads records [0, have) of "aof" and
 * writes record `have` (and `have + 1` when extra), says so on out, waits for "close" on in. */
static void newcomer(tu_child *c, const char *dir, int in, int out, int have, int extra) {
    if (!tu_child_start(c)) return;
    char b;
    scp_err e;
    if (read(in, &b, 1) != 1) _exit(3);
    scp_volume *w = scp_volume_open(dir, KEY, NULL, &e);
    if (!w) _exit(4);
    int got = check_recs(w, "aof", have);
    if (got != have) {
        fprintf(stderr, "FAIL: the newcomer read %d of %d records\n", got, have);
        _exit(5);
    }
    scp_vfile *f = scp_vfile_open(w, "aof", O_RDWR, 0, &e);
    if (!f || put(f, have) < 0 || (extra && put(f, have + 1) < 0) || scp_vfile_close(f, &e) < 0) {
        fprintf(stderr, "FAIL: the newcomer's write: %s\n", e.msg);
        _exit(6);
    }
    if (write(out, "o", 1) != 1) _exit(7);
    if (read(in, &b, 1) != 1) _exit(8);
    if (scp_volume_close(w, &e) < 0) _exit(9);
    tu_child_exit(c, NULL, 0);
}

static void test_other(const char *base) {
    char dir[512];
    scp_err e;
    snprintf(dir, sizeof dir, "%s/other", base);
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    int to1[2], from1[2], to2[2], from2[2];
    REQUIRE(pipe(to1) == 0 && pipe(from1) == 0 && pipe(to2) == 0 && pipe(from2) == 0);
    /* both newcomers forked before P opens the volume: they are other programs' processes */
    tu_child n1, n2;
    newcomer(&n1, dir, to1[0], from1[1], 20, 0);
    newcomer(&n2, dir, to2[0], from2[1], 61, 0);

    scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE_PTR(v, e);
    REQUIRE(scp_volume_go_private(v) == 1);
    scp_vfile *f = scp_vfile_open(v, "aof", O_RDWR | O_CREAT, 0644, &e);
    REQUIRE_PTR(f, e);
    int next = 0;
    long sole0 = writes(dir, f, &next, 20);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    struct watch w = {v, f};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, watcher, &w) == 0);
    REQUIRE(write(to1[1], "g", 1) == 1);
    sync_byte(from1[0]); /* N1 is in, has read 20 records and written the 21st */
    pthread_join(t, NULL);
    next = 21;
    CHECKF(scp_volume_try_sole(v, &e) == 0, "try_sole took the holding while another process has the volume open");
    long shared = writes(dir, f, &next, 20);
    CHECKF(shared >= 20 * 40, "shared mode: manifest.log grew %ld bytes over 20 writes", shared);
    REQUIRE(write(to1[1], "c", 1) == 1);
    CHECK(tu_child_wait(&n1, NULL, 0));
    int r = scp_volume_try_sole(v, &e);
    CHECKF(r == 1, "try_sole after the other process closed: %d (%s)", r, r < 0 ? e.msg : "");
    CHECKF(check_recs(v, "aof", next) == next, "P reads its own and N1's records after the move");
    long sole = writes(dir, f, &next, 20);
    CHECKF(sole == 0, "sole again: manifest.log grew %ld bytes over 20 writes (sole before: %ld, shared: %ld)",
           sole, sole0, shared);
    printf("  other: manifest.log growth over 20 writes: sole %ld, shared %ld, sole again %ld bytes\n", sole0,
           shared, sole);
    /* a second newcomer: the holding ends for it as the first one did */
    REQUIRE(next == 61);
    REQUIRE(pthread_create(&t, NULL, watcher, &w) == 0);
    REQUIRE(write(to2[1], "g", 1) == 1);
    sync_byte(from2[0]);
    pthread_join(t, NULL);
    next = 62;
    long shared2 = writes(dir, f, &next, 10);
    CHECKF(shared2 > 0, "shared again after the second newcomer: manifest.log grew %ld bytes", shared2);
    REQUIRE(write(to2[1], "c", 1) == 1);
    CHECK(tu_child_wait(&n2, NULL, 0));
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE_PTR(v, e);
    CHECKF(check_recs(v, "aof", next) == next, "a fresh open reads all %d records", next);
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
}

static void test_fork(const char *base) {
    char dir[512];
    scp_err e;
    scp_volume *v = tu_create_open(base, "fork", KEY, dir, sizeof dir);
    scp_volume_set_shared(v); /* a family in shared mode */
    scp_vfile *f = scp_vfile_open(v, "aof", O_RDWR | O_CREAT, 0644, &e);
    REQUIRE_PTR(f, e);
    int next = 0;
    writes(dir, f, &next, 10);
    int hold1[2], hold2[2], said[2];
    REQUIRE(pipe(hold1) == 0 && pipe(hold2) == 0 && pipe(said) == 0);
    tu_child c1, c2;
    if (tu_child_start(&c1)) { /* reads, appends record 10 and a file of its own, then waits */
        close(hold1[1]);
        close(hold2[1]);
        int got = check_recs(v, "aof", 10);
        if (got != 10 || put(f, 10) < 0) _exit(4);
        scp_vfile *g = scp_vfile_open(v, "child", O_RDWR | O_CREAT, 0644, &e);
        if (!g || put(g, 0) < 0 || scp_vfile_close(g, &e) < 0) _exit(5);
        if (write(said[1], "o", 1) != 1) _exit(6);
        char b;
        if (read(hold1[0], &b, 1) != 0) _exit(7); /* (until P closes its end) */
        _exit(0); /* no close of the volume: a redis child's _exit */
    }
    sync_byte(said[0]);
    next = 11;
    if (tu_child_start(&c2)) { /* no volume call at all */
        close(hold2[1]);
        close(hold1[1]);
        char b;
        if (read(hold2[0], &b, 1) != 0) _exit(7);
        _exit(0);
    }
    close(hold1[0]);
    close(hold2[0]);
    CHECKF(scp_volume_try_sole(v, &e) == 0, "try_sole took the holding with two children alive");
    close(hold1[1]);
    CHECK(tu_child_wait(&c1, NULL, 0));
    long shared = writes(dir, f, &next, 10);
    CHECKF(shared > 0, "shared with a child alive: manifest.log grew %ld bytes", shared);
    CHECKF(scp_volume_try_sole(v, &e) == 0, "try_sole took the holding with a child alive (no volume call)");
    close(hold2[1]);
    CHECK(tu_child_wait(&c2, NULL, 0));
    int r = scp_volume_try_sole(v, &e);
    CHECKF(r == 1, "try_sole after the children exited: %d (%s)", r, r < 0 ? e.msg : "");
    CHECKF(check_recs(v, "aof", next) == next, "P reads the child's append after the move");
    CHECKF(check_recs(v, "child", 1) == 1, "P reads the child's file after the move");
    long sole = writes(dir, f, &next, 20);
    CHECKF(sole == 0, "sole again after the fork: manifest.log grew %ld bytes over 20 writes", sole);
    printf("  fork: manifest.log growth: shared %ld over 10 writes, sole again %ld over 20\n", shared, sole);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    /* a fork now ends the fast path (the library's handlers; P keeps its writer lock outside
     * shared mode, as any library caller that forks): the child reads every record, and its
     * own file is kept */
    tu_child c3;
    if (tu_child_start(&c3)) {
        if (check_recs(v, "aof", next) != next) _exit(4);
        scp_vfile *g = scp_vfile_open(v, "c3", O_RDWR | O_CREAT, 0644, &e);
        if (!g || put(g, 0) < 0 || scp_vfile_close(g, &e) < 0) _exit(5);
        tu_child_exit(&c3, NULL, 0);
    }
    CHECK(tu_child_wait(&c3, NULL, 0));
    CHECKF(check_recs(v, "c3", 1) == 1, "P reads the third child's file");
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE_PTR(v, e);
    CHECKF(check_recs(v, "aof", next) == next, "a fresh open reads all %d records", next);
    CHECKF(check_recs(v, "child", 1) == 1, "a fresh open reads the child's file");
    CHECKF(check_recs(v, "c3", 1) == 1, "a fresh open reads the third child's file");
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
}

/* repair: the child, held in its repair between the close of the inherited lock description
 * and its cross-process lock */
static int repair_in = -1, repair_go = -1;

static void repair_hook(scp_volume *v) {
    (void)v;
    char b = 'r';
    if (write(repair_in, &b, 1) != 1 || read(repair_go, &b, 1) != 1) _exit(3);
}

static void test_repair(const char *base) {
    char dir[512];
    scp_err e;
    scp_volume *v = tu_create_open(base, "repair", KEY, dir, sizeof dir);
    scp_volume_set_shared(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "aof", O_RDWR | O_CREAT, 0644, &e), e);
    int next = 0;
    writes(dir, f, &next, 10);
    int in[2], go[2];
    REQUIRE(pipe(in) == 0 && pipe(go) == 0);
    tu_child c;
    if (tu_child_start(&c)) { /* its first call repairs (the hook waits there), then appends */
        close(in[0]);
        close(go[1]);
        repair_in = in[1];
        repair_go = go[0];
        vol_test_fork_repair = repair_hook;
        if (check_recs(v, "aof", 10) != 10 || put(f, 10) < 0) _exit(4);
        _exit(0);
    }
    close(in[1]);
    close(go[0]);
    sync_byte(in[0]); /* the child is in its repair */
    int r0 = scp_volume_try_sole(v, &e);
    CHECKF(r0 == 0, "repair: try_sole returned %d with a child in its repair (%s)", r0, r0 < 0 ? e.msg : "");
    REQUIRE(write(go[1], "g", 1) == 1);
    CHECK(tu_child_wait(&c, NULL, 0));
    next = 11;
    int r = scp_volume_try_sole(v, &e);
    CHECKF(r == 1, "repair: try_sole after the child exited: %d (%s)", r, r < 0 ? e.msg : "");
    CHECKF(check_recs(v, "aof", next) == next, "repair: P reads the child's append");
    close(in[0]);
    close(go[1]);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    CHECKF(check_recs(v, "aof", next) == next, "repair: a fresh open reads all %d records", next);
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    printf("  repair: try_sole with the child in its repair: %d (0: declined), after it exited: %d\n", r0, r);
}

/* threads: the reader thread, held by the hook in its catch-up's window (between its test of
 * shared mode and its lock of the file) while the main thread takes the holding back */
static struct window {
    pthread_t reader;
    sem_t in, go;
    int armed; /* the next catch-up of the reader waits in the window */
} win;

static void window_hook(scp_file *f) {
    (void)f;
    if (!pthread_equal(pthread_self(), win.reader) || !__atomic_exchange_n(&win.armed, 0, __ATOMIC_SEQ_CST))
        return;
    sem_post(&win.in);
    while (sem_wait(&win.go) != 0) {
    }
}

struct reader {
    scp_vfile *f;
    int stop;
    long reads, bad;
};

static void *reader_main(void *arg) {
    struct reader *r = arg;
    uint8_t want[4096], got[4096];
    memset(want, 'r', sizeof want);
    while (!__atomic_load_n(&r->stop, __ATOMIC_SEQ_CST)) {
        scp_err e;
        ssize_t n = scp_vfile_pread(r->f, got, sizeof got, 0, &e);
        r->reads++;
        if ((n != (ssize_t)sizeof got || memcmp(got, want, sizeof got) != 0) && !r->bad++)
            fprintf(stderr, "threads: read %zd bytes (%s)\n", n, n < 0 ? e.msg : "other bytes");
    }
    return NULL;
}

/* Wait at most 10 s for s: 0 when it came. */
static int sem_wait_10s(sem_t *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    int rc;
    while ((rc = sem_timedwait(s, &ts)) != 0 && errno == EINTR) {
    }
    return rc;
}

static void test_threads(const char *base) {
    char dir[512];
    scp_err e;
    scp_volume *v = tu_create_open(base, "threads", KEY, dir, sizeof dir);
    REQUIRE(scp_volume_go_private(v) == 1);
    uint8_t b[4096];
    memset(b, 'r', sizeof b);
    REQUIRE_OK(tu_vput(v, "r", b, sizeof b, &e), e);
    struct reader r = {REQUIRE_PTR(scp_vfile_open(v, "r", O_RDONLY, 0, &e), e), 0, 0, 0};
    REQUIRE(sem_init(&win.in, 0, 0) == 0 && sem_init(&win.go, 0, 0) == 0);
    vol_test_catchup_window = window_hook;
    REQUIRE(pthread_create(&win.reader, NULL, reader_main, &r) == 0);
    const int ROUNDS_T = 20;
    int sole = 0, waited = 0;
    for (int k = 0; k < ROUNDS_T; k++) {
        /* shared, as a private holder goes when a newcomer asks (the watcher above) */
        scp_volume_set_shared(v);
        scp_volume_set_shared(v);
        scp_volume_private_end(v);
        __atomic_store_n(&win.armed, 1, __ATOMIC_SEQ_CST);
        if (sem_wait_10s(&win.in) != 0) break; /* (the reader's read never reached the window) */
        waited++;
        /* the holding back while the reader's catch-up sits between its test and its lock */
        int rc = scp_volume_try_sole(v, &e);
        CHECKF(rc == 1, "threads: try_sole returned %d in round %d (%s)", rc, k, rc < 0 ? e.msg : "");
        sole += rc == 1;
        sem_post(&win.go);
    }
    __atomic_store_n(&r.stop, 1, __ATOMIC_SEQ_CST);
    REQUIRE(pthread_join(win.reader, NULL) == 0);
    vol_test_catchup_window = NULL;
    printf("threads: %d of %d rounds took the holding back while a read's catch-up waited "
           "between its test and its lock; %ld reads, %ld wrong\n", sole, ROUNDS_T, r.reads, r.bad);
    CHECKF(waited == ROUNDS_T, "threads: the reader reached the catch-up's window in %d of %d rounds",
           waited, ROUNDS_T);
    CHECKF(r.bad == 0, "threads: %ld of %ld reads wrong", r.bad, r.reads);
    CHECK_OK(scp_vfile_close(r.f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    sem_destroy(&win.in);
    sem_destroy(&win.go);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    char *base = tu_tmpdir("resole"); /* (under $TMPDIR: CI runs two passes on tmpfs) */
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(what, "all") || !strcmp(what, "other")) test_other(base);
    if (!strcmp(what, "all") || !strcmp(what, "fork")) test_fork(base);
    if (!strcmp(what, "all") || !strcmp(what, "repair")) test_repair(base);
    if (!strcmp(what, "all") || !strcmp(what, "threads")) test_threads(base);
    tu_rm_rf(base);
    free(base);
    return tu_exit_code("test_volume_resole");
}
