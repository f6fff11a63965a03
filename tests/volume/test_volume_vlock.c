/* tests/volume/test_volume_vlock.c - the volume lock across processes (src/volume/vlock.c): a
 * robust mutex in the lock file's mapped page, or the OFD lock on its byte 0, as the page says.
 *
 *   mutex    P opens a fresh volume alone: the lock file's word says "mutex" (bytes 120-127 are
 *            "SCPVLCK1"). Q opens it too. P commits and, in its commit callback (which runs under
 *            the volume lock), lets Q commit and waits 300 ms: Q's commit must not end meanwhile
 *            (it needs the lock), and byte 0 holds only read locks (Q looks with F_OFD_GETLK:
 *            the mutex is what excludes; the read locks keep out a build from before the
 *            mutex, whose commit takes an OFD write lock there: refused while P has the volume
 *            open, taken after the last close). After P's callback returns, Q's commit ends,
 *            and both files are there.
 *   fcntl    the same with SCP_VOLUME_LOCK=fcntl in P's environment alone: P, opening alone,
 *            clears the word; Q, whose environment has no switch, takes the OFD lock too (it
 *            follows the page, not its environment): byte 0 is locked while P holds the
 *            volume lock, and Q's commit waits for it.
 *   killed   P is killed in its commit callback, holding the mutex: Q, which had the volume
 *            open, commits after it (the robust mutex's EOWNERDEAD), and a later open reads
 *            both files.
 *   scribble the mutex's bytes overwritten while nobody has the volume open (as a host could):
 *            the next open, alone, sets it up again, and two processes commit as before.
 *   third    the tests' own hold of the volume lock (tu_vlock_hold) makes a commit wait, of
 *            either kind.
 *   lost     a waiter whose wake-up is lost: H holds the mutex and Q's commit sleeps in its
 *            wait (the word's waiters bit set); then the word is cleared without a wake-up,
 *            the state in which a woken waiter killed before it took the mutex leaves the
 *            others when a third process takes and gives it meanwhile (vlock.c, mutex_wait).
 *            Q's commit must end within seconds (it looks again every 10 ms), where it used
 *            to sleep for ever (test_volume_forkstress's hang in session 44's CI).
 * Each wait is bounded (alarm), so a lock that is never given back fails instead of hanging.
 */
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>

#include "scenario.h"
#include "vlockhold.h"

static const uint8_t KEY[SCP_VOLUME_KEY_LEN] = {7, 1, 7, 1};

struct held {
    int go;       /* written: Q may commit now */
    int done;     /* read: Q's commit ended */
    int die;      /* kill ourselves in the callback (killed) */
    int armed;
    int early;    /* Q's commit ended while we held the lock */
    char byte0;   /* byte0_lock's answer while we held the lock, as Q reported it */
};

static void on_commit(void *ctx, const scp_volume_tag *tag) {
    struct held *h = ctx;
    (void)tag;
    if (!h->armed) return;
    h->armed = 0;
    if (write(h->go, "g", 1) != 1) _exit(7);
    if (h->die) {
        usleep(100000); /* (Q is in its open's wait or its commit's by now, or soon) */
        raise(SIGKILL);
    }
    /* Q reports byte 0 first, then its commit's end; the commit must not end in 300 ms */
    char b = 0;
    struct pollfd p = {.fd = h->done, .events = POLLIN};
    if (poll(&p, 1, 20000) == 1 && read(h->done, &b, 1) == 1) h->byte0 = b;
    if (poll(&p, 1, 300) == 1) h->early = 1;
}

/* dir/lock opened with flags (-1 if it cannot be) */
static int lock_open(const char *dir, int flags) {
    char *path = tu_path(dir, "lock");
    int fd = open(path, flags | O_CLOEXEC);
    free(path);
    return fd;
}

static uint64_t lock_word(const char *dir) {
    int fd = lock_open(dir, O_RDONLY);
    uint64_t w = 0;
    if (fd < 0 || pread(fd, &w, sizeof w, VOL_VLOCK_MAGIC_OFF) != (ssize_t)sizeof w) w = ~0ull;
    if (fd >= 0) close(fd);
    return w;
}

/* What another description holds on byte 0 of dir/lock: 'W' a write lock (the OFD kind's
 * volume lock), 'R' a read lock (a process of the mutex kind keeps one while it has the volume
 * open, so that a build from before the mutex waits), 'F' none, '?' an error */
static char byte0_lock(const char *dir) {
    int fd = lock_open(dir, O_RDWR);
    if (fd < 0) return '?';
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    char r = fcntl(fd, F_OFD_GETLK, &fl) < 0 ? '?' : fl.l_type == F_WRLCK ? 'W' : fl.l_type == F_RDLCK ? 'R' : 'F';
    close(fd);
    return r;
}

/* 1 when an OFD write lock on byte 0 of dir/lock can be taken now (then given back) */
static int try_old_commit(const char *dir) {
    int fd = lock_open(dir, O_RDWR);
    if (fd < 0) return -1;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int r = fcntl(fd, F_OFD_SETLK, &fl) == 0;
    close(fd);
    return r;
}

/* Q: open dir, wait for go, report byte 0, write and fsync "q", report the end. */
static void q_run(tu_child *c, const char *dir, int go, int done, int report_byte0) {
    scp_err e;
    alarm(30);
    unsetenv("SCP_VOLUME_LOCK");
    scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
    if (!v) {
        fprintf(stderr, "FAIL: Q's open: %s\n", e.msg);
        _exit(4);
    }
    char b;
    if (read(go, &b, 1) != 1) _exit(5);
    if (report_byte0) {
        char r = byte0_lock(dir);
        if (write(done, &r, 1) != 1) _exit(6);
    }
    if (tu_vput(v, "q", "from Q", 6, &e) < 0) {
        fprintf(stderr, "FAIL: Q's commit: %s\n", e.msg);
        _exit(8);
    }
    if (write(done, "d", 1) != 1) _exit(6);
    if (scp_volume_close(v, &e) < 0) _exit(9);
    tu_child_exit(c, NULL, 0);
}

/* Start Q (q_run) with its two pipes: go[1] and done[0] stay here, the other ends are Q's. */
static void q_start(tu_child *c, const char *dir, int go[2], int done[2], int report_byte0) {
    REQUIRE(pipe(go) == 0 && pipe(done) == 0);
    if (tu_child_start(c)) {
        close(go[1]);
        close(done[0]);
        q_run(c, dir, go[0], done[1], report_byte0);
    }
    close(go[0]);
    close(done[1]);
}

static void check_both(const char *dir, const char *what) {
    scp_err e;
    scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
    CHECKF(v != NULL, "%s: a later open: %s", what, v ? "" : e.msg);
    if (!v) return;
    size_t n;
    uint8_t *p = tu_vget(v, "p", &n, &e), *q = tu_vget(v, "q", &n, &e);
    CHECKF(p && memcmp(p, "from P", 6) == 0, "%s: P's file", what);
    CHECKF(q && n == 6 && memcmp(q, "from Q", 6) == 0, "%s: Q's file", what);
    free(p);
    free(q);
    CHECK(scp_volume_close(v, &e) == 0);
}

/* P holds the volume lock (its commit callback) while Q tries to commit. */
static void two(const char *base, const char *name, int ofd) {
    char *dir = tu_path(base, name);
    scp_err e;
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    if (ofd) setenv("SCP_VOLUME_LOCK", "fcntl", 1);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    unsetenv("SCP_VOLUME_LOCK");
    uint64_t w = lock_word(dir);
    CHECKF(ofd ? w == 0 : memcmp(&w, "SCPVLCK1", 8) == 0,
           "%s: the lock file's word after an open alone is %016llx", name, (unsigned long long)w);
    int go[2], done[2];
    tu_child c;
    q_start(&c, dir, go, done, 1);
    usleep(200000); /* (Q's open done before P holds the lock: not needed, but the usual case) */
    /* a build from before the mutex takes the OFD write lock on byte 0 to commit: while P (of
     * the mutex kind) has the volume open, it cannot; the OFD kind's P leaves it free */
    CHECKF(try_old_commit(dir) == ofd, "%s: an OFD write lock on byte 0 (an older build's "
           "commit) %s while P has the volume open", name, ofd ? "is refused" : "is taken");
    struct held h = {.go = go[1], .done = done[0], .armed = 1};
    scp_volume_on_commit(v, on_commit, &h);
    CHECK(tu_vput(v, "p", "from P", 6, &e) == 0);
    CHECKF(!h.early, "%s: Q committed while P held the volume lock", name);
    CHECKF(h.byte0 == (ofd ? 'W' : 'R'), "%s: byte 0 of the lock file while P holds the volume "
           "lock: %c (W write-locked, R read-locked, F free)", name, h.byte0);
    char b;
    struct pollfd p = {.fd = done[0], .events = POLLIN};
    CHECKF(poll(&p, 1, 20000) == 1 && read(done[0], &b, 1) == 1,
           "%s: Q's commit did not end after P let go of the lock", name);
    CHECK(tu_child_wait(&c, NULL, 0));
    CHECK(scp_volume_close(v, &e) == 0);
    CHECKF(try_old_commit(dir) == 1, "%s: byte 0 stays locked after the volume's last close", name);
    close(go[1]);
    close(done[0]);
    check_both(dir, name);
    free(dir);
}

static void killed(const char *base) {
    char *dir = tu_path(base, "killed");
    scp_err e;
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    int go[2], done[2];
    REQUIRE(pipe(go) == 0 && pipe(done) == 0);
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0) { /* P: opens first (alone: the mutex), then Q opens, then P dies holding it */
        scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
        if (!v) _exit(4);
        tu_child c;
        if (tu_child_start(&c)) {
            close(go[1]);
            close(done[0]);
            q_run(&c, dir, go[0], done[1], 0);
        }
        usleep(200000);
        struct held h = {.go = go[1], .done = done[0], .armed = 1, .die = 1};
        scp_volume_on_commit(v, on_commit, &h);
        (void)tu_vput(v, "p", "from P", 6, &e);
        _exit(3); /* (not reached: killed in the callback) */
    }
    close(go[1]);
    close(done[1]);
    int st;
    REQUIRE(waitpid(p, &st, 0) == p);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "P was to die holding the lock (status %d)", st);
    char b;
    struct pollfd pf = {.fd = done[0], .events = POLLIN};
    CHECKF(poll(&pf, 1, 25000) == 1 && read(done[0], &b, 1) == 1 && b == 'd',
           "Q's commit did not end after P died holding the volume lock");
    close(go[0]);
    close(done[0]);
    check_both(dir, "killed");
    free(dir);
}

static void scribble(const char *base) {
    char *dir = tu_path(base, "scribble");
    scp_err e;
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    CHECK(tu_vput(v, "p", "from P", 6, &e) == 0);
    CHECK(scp_volume_close(v, &e) == 0);
    int fd = lock_open(dir, O_RDWR);
    REQUIRE(fd >= 0);
    uint8_t junk[64];
    memset(junk, 0xa5, sizeof junk); /* (a "locked" word with an owner that never lets go) */
    REQUIRE(pwrite(fd, junk, sizeof junk, VOL_VLOCK_OFF) == (ssize_t)sizeof junk);
    close(fd);
    int go[2], done[2];
    alarm(60);
    v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    tu_child c;
    q_start(&c, dir, go, done, 0);
    CHECK(write(go[1], "g", 1) == 1);
    char b;
    struct pollfd p = {.fd = done[0], .events = POLLIN};
    CHECKF(poll(&p, 1, 20000) == 1 && read(done[0], &b, 1) == 1,
           "scribble: Q's commit did not end (the lock set up again by the open alone)");
    CHECK(tu_child_wait(&c, NULL, 0));
    CHECK(tu_vput(v, "p", "from P", 6, &e) == 0);
    CHECK(scp_volume_close(v, &e) == 0);
    alarm(0);
    close(go[1]);
    close(done[0]);
    check_both(dir, "scribble");
    free(dir);
}

/* The tests' third-party hold (vlockhold.h, tu_vlock_hold, which test_volume_shared uses) is the
 * library's lock: Q's commit waits while the test holds it, of either kind. */
static void third(const char *base, int ofd) {
    char *dir = tu_path(base, ofd ? "third-fcntl" : "third-mutex");
    scp_err e;
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    if (ofd) setenv("SCP_VOLUME_LOCK", "fcntl", 1);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    unsetenv("SCP_VOLUME_LOCK");
    CHECK(tu_vput(v, "p", "from P", 6, &e) == 0);
    int go[2], done[2];
    tu_child c;
    q_start(&c, dir, go, done, 0);
    usleep(200000);
    tu_vlock held = tu_vlock_hold(dir);
    CHECK(write(go[1], "g", 1) == 1);
    char b;
    struct pollfd p = {.fd = done[0], .events = POLLIN};
    CHECKF(poll(&p, 1, 300) == 0, "%s: Q committed while the test held the volume lock", dir);
    tu_vlock_release(&held);
    CHECKF(poll(&p, 1, 20000) == 1 && read(done[0], &b, 1) == 1,
           "%s: Q's commit did not end after the test let go of the lock", dir);
    CHECK(tu_child_wait(&c, NULL, 0));
    CHECK(scp_volume_close(v, &e) == 0);
    close(go[1]);
    close(done[0]);
    check_both(dir, dir);
    free(dir);
}

/* A child that holds the mutex until told to exit (it never gives it back: its exit finds
 * the word no longer its own, and the kernel leaves it alone). */
static pid_t holder(const char *dir, int ready, int quit) {
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0) {
        alarm(60);
        tu_vlock h = tu_vlock_hold(dir);
        (void)h;
        char b = 'h';
        if (write(ready, &b, 1) != 1 || read(quit, &b, 1) < 0) _exit(2);
        _exit(0);
    }
    return p;
}

static void lost(const char *base) {
    char *dir = tu_path(base, "lost");
    scp_err e;
    REQUIRE_OK(scp_volume_create(dir, KEY, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    CHECK(tu_vput(v, "p", "from P", 6, &e) == 0);
    int go[2], done[2], hr[2], hq[2];
    tu_child c;
    q_start(&c, dir, go, done, 0);
    REQUIRE(pipe(hr) == 0 && pipe(hq) == 0);
    pid_t h = holder(dir, hr[1], hq[0]);
    char b;
    REQUIRE(read(hr[0], &b, 1) == 1);
    CHECK(write(go[1], "g", 1) == 1);
    /* Q asleep in the mutex's wait: the word names H, with the waiters bit Q set */
    int fd = lock_open(dir, O_RDWR);
    REQUIRE(fd >= 0);
    void *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    REQUIRE(map != MAP_FAILED);
    unsigned int *word = (unsigned int *)&((pthread_mutex_t *)((char *)map + VOL_VLOCK_OFF))->__data.__lock;
    double t0 = tu_now();
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) != ((unsigned int)h | FUTEX_WAITERS) && tu_now() - t0 < 20)
        usleep(1000);
    CHECKF(__atomic_load_n(word, __ATOMIC_ACQUIRE) == ((unsigned int)h | FUTEX_WAITERS),
           "lost: the mutex's word is %08x, not H's (%d) with the waiters bit (Q waiting)",
           __atomic_load_n(word, __ATOMIC_ACQUIRE), (int)h);
    usleep(200000); /* (from the bit set to the futex wait: a few instructions) */
    struct pollfd p = {.fd = done[0], .events = POLLIN};
    CHECKF(poll(&p, 1, 0) == 0, "lost: Q committed while H held the volume lock");
    __atomic_store_n(word, 0u, __ATOMIC_RELEASE); /* (free, and nobody woken) */
    t0 = tu_now();
    int ended = poll(&p, 1, 5000) == 1 && read(done[0], &b, 1) == 1;
    CHECKF(ended, "lost: Q's commit did not end within 5 s of a lost wake-up");
    if (ended) printf("lost: Q's commit ended %.1f ms after the lost wake-up\n", (tu_now() - t0) * 1e3);
    CHECK(tu_child_wait(&c, NULL, 0));
    CHECK(write(hq[1], "q", 1) == 1);
    int st;
    REQUIRE(waitpid(h, &st, 0) == h);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lost: the holder's status %d", st);
    munmap(map, 4096);
    close(fd);
    /* the mutex still excludes: P's commit and another of Q's after it */
    CHECK(tu_vput(v, "p", "from P", 6, &e) == 0);
    CHECK(scp_volume_close(v, &e) == 0);
    for (int i = 0; i < 2; i++) {
        close(hr[i]);
        close(hq[i]);
    }
    close(go[1]);
    close(done[0]);
    check_both(dir, "lost");
    free(dir);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    char *base = tu_tmpdir("vlock");
    two(base, "mutex", 0);
    two(base, "fcntl", 1);
    killed(base);
    scribble(base);
    third(base, 0);
    third(base, 1);
    lost(base);
    if (!tu_failures) tu_rm_rf(base);
    free(base);
    return tu_exit_code("test_volume_vlock");
}
