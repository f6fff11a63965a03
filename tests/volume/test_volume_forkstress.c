/* test_volume_forkstress - a randomized multi-process stress test of the volume library's fork,
 * private, sole, shared and release transitions, driven as the shield drives them (src/shield:
 * open_volume in init.c; sh_fork_share, sh_priv_end, sh_exit_commit and the watcher in core.c).
 *
 * Each round the driver (which never opens the volume) starts one or two "programs": processes
 * with a fresh library state. A program opens the volume as the shield does: in a shared family
 * it goes private (scp_volume_go_private) when nobody else has the volume open, else joins
 * shared; outside one it becomes the sole holder when alone. A private process runs a watcher
 * thread (scp_volume_private_wait) that makes the move when a newcomer wants in: shared (set
 * shared, commit every kept handle, set shared, private_end) or, for the sole holder, a release.
 * Then it runs a random script of steps:
 *   session  under a host flock for one of NSLOT files: check the file reads as the model says,
 *            then create it, write (random offset, overwrite, extend), truncate, then fsync or
 *            close, or (not shared) leave the writes uncommitted in a kept handle (the slot is
 *            then the process's until a commit: a fork's, the watcher's, the exit's, or its own
 *            next session); or unlink it; or replace it (write "tN", rename over "fN")
 *   fork     as sh_fork_share: the private holding ends, the family goes shared (set shared,
 *            commit every kept handle, set shared), then fork(2). The child is a subshell (it
 *            keeps its copy of the volume and of the kept handles and exits at once, its exit
 *            commit the first call on the copy), a worker (runs a shorter script, may fork
 *            again), or an exec (execs this binary: a fresh image of the shared family, which
 *            opens the volume again). The parent waits for it, or not (orphans are reaped by
 *            the driver, a child subreaper).
 *   kill     SIGKILL a child (at once or after a random delay), sometimes mid-session
 *   sync     scp_volume_sync; stat
 *   resole   as the shield's sh_priv_resole: a shared process asks scp_volume_try_sole whether
 *            nobody else has the volume open any more; if so it holds it again (private in a
 *            shared family, else the sole holder) with a watcher (branch sole21)
 * A process exits with the shield's exit commit (every kept handle committed, then _exit with
 * the volume open) or closes its handles and the volume.
 *
 * The model (a shared mapping beside the volume) holds each file's committed state, and while a
 * session is in progress or a slot holds uncommitted writes, every state the file may have been
 * left in (before the session, after each of its operations). A session that finds the slot's
 * last holder dead (killed) reads the file and must find one of those states; so does the
 * driver's check after each round, from a fresh process, followed by scp_volume_verify. Any other
 * content, a missing file that should exist, or an error other than EBUSY is a failure.
 *
 * Bounded in time: FORKSTRESS_SECS (default 20) seconds; seed from argv[1] or FORKSTRESS_SEED.
 * usage: test_volume_forkstress [seed]
 */
#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "testutil.h"

#define NSLOT 5
#define MAXSZ (20u * 1024)
#define NCAND 12
#define MAXPIDS 4096
#define MAXDEPTH 3
#define NHIST 4

typedef struct fstate {
    int exists;
    uint32_t size;
    uint8_t data[MAXSZ];
} fstate;

typedef struct mslot {
    fstate dur;           /* committed state */
    fstate hist[NHIST];   /* the committed states before it, newest first (for a failure's report) */
    fstate cand[NCAND];   /* while busy: every state the file may be in */
    int ncand;
    int busy;             /* pid of the session in progress, or of the owner of uncommitted writes */
    int dirty;            /* busy's writes are uncommitted in its kept handle (flock released) */
    uint64_t incarn;      /* moves when the name points at another file (create, unlink, rename) */
} mslot;

typedef struct model {
    char vd[512];
    char lockdir[512];
    uint8_t key[SCP_VOLUME_KEY_LEN];
    mslot s[NSLOT];
    int pids[MAXPIDS];
    int npids;
    int round_first_pid; /* index in pids of the round's first */
    int failures;
    long n_sess, n_fork, n_exec, n_sub, n_kill, n_priv, n_sole, n_moves, n_resolve, n_dirty,
        n_busy, n_unlink, n_replace, n_resole;
} model;

static model *M;
/* FORKSTRESS_NO: a comma-separated list of features left out, to narrow a failure down:
 * kill, unlink, replace, dirty, priv, fork, exec, keep, trunc, hole (writes past the end), two (programs at once), sf and nsf
 * (programs of a shared family; of one that is not) */
static int no(const char *what) {
    const char *l = getenv("FORKSTRESS_NO");
    if (!l) return 0;
    size_t n = strlen(what);
    for (const char *p = l; (p = strstr(p, what)); p += n)
        if ((p == l || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}
static char *g_self;   /* this binary, for the exec children */
static char *g_mpath;  /* the model's file */

#define FAILF(...)                                                                           \
    do {                                                                                     \
        __atomic_add_fetch(&M->failures, 1, __ATOMIC_RELAXED);                               \
        tu_fail_at(__FILE__, __LINE__, __VA_ARGS__);                                         \
    } while (0)
#define STAT(x) __atomic_add_fetch(&M->x, 1, __ATOMIC_RELAXED)

/* FORKSTRESS_TRACE=FILE: every process appends what it does, one line each */
static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...) {
    static int fd = -2;
    if (fd == -2) {
        const char *t = getenv("FORKSTRESS_TRACE");
        fd = t ? open(t, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
    }
    if (fd < 0) return;
    char line[256];
    int n = snprintf(line, sizeof line, "%d ", getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    (void)!write(fd, line, (size_t)n);
}

/* ---- the process (a mini shield) -------------------------------------------------------- */

static struct {
    scp_volume *v;
    int shared_family; /* SCP_SHIELD_F_SHARED */
    int shared;        /* scp_volume_set_shared called */
    int forked;
    int priv;          /* 0, 1 private in a shared family, 2 sole holder */
    int depth;
    scp_vfile *h[NSLOT];
    uint64_t h_incarn[NSLOT];
    int dirty[NSLOT];
    pthread_mutex_t mu; /* the shield's priv_mu and the handles' table */
    tu_rng rng;
} P;

/* ASan's allocator as gcc 12's libsanitizer builds it takes no lock across fork (glibc's malloc
 * does, in its atfork handlers; LLVM's compiler-rt has since 2023): a fork while another thread
 * is inside it (the watcher thread: its commits, or its allocator cache drained at thread exit)
 * leaves a size class's region mutex locked in the child, whose first malloc of that class
 * waits for ever (session 19's hang under ASan, round 20 of seed 1: the child in
 * __sanitizer::SizeClassAllocator64::GetFromAllocator's Mutex::Lock, single-threaded, from
 * file_writeback's malloc; bench/RESULTS.md, fork20). Not a hang of the library. Under ASan the
 * test makes no watcher thread: the program looks at the wanted word (one load) before each
 * step of its script and makes the move itself. (Joining the watcher before a fork does not
 * do: woken by the holder's own release, it may find the shared word cleared again by another
 * process's go_private and wait on.) */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN_FORK_SAFE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_FORK_SAFE 1
#endif
#endif

static int fstate_eq(const fstate *a, const fstate *b) {
    if (a->exists != b->exists) return 0;
    if (!a->exists) return 1;
    return a->size == b->size && memcmp(a->data, b->data, a->size) == 0;
}

static void cand_push(mslot *s, const fstate *st) {
    if (s->ncand < NCAND) s->cand[s->ncand++] = *st;
    else s->cand[NCAND - 1] = *st; /* (never: sessions have at most NCAND - 2 operations) */
}

static void slot_name(int i, char c, char out[8]) { snprintf(out, 8, "%c%d", c, i & 0xff); /* (i < NSLOT) */ }

/* Read file i as it is now: through h when given, else a fresh open. */
static int read_state(scp_vfile *h, int i, fstate *out, scp_err *e) {
    char name[8];
    slot_name(i, 'f', name);
    scp_vfile *f = h;
    if (!f) {
        f = scp_vfile_open(P.v, name, O_RDONLY, 0, e);
        if (!f) {
            if (e->sys == ENOENT) {
                out->exists = 0;
                out->size = 0;
                return 0;
            }
            return -1;
        }
    }
    out->exists = 1;
    uint64_t sz = scp_vfile_size(f);
    int rc = 0;
    if (sz > MAXSZ) {
        scp_fail(e, SCP_E_INTEGRITY, EIO, "size %llu beyond the model's", (unsigned long long)sz);
        rc = -1;
    } else {
        out->size = (uint32_t)sz;
        size_t got = 0;
        while (got < sz) {
            ssize_t r = scp_vfile_pread(f, out->data + got, sz - got, got, e);
            if (r < 0) {
                rc = -1;
                break;
            }
            if (r == 0) {
                out->size = (uint32_t)got; /* (shrunk meanwhile: compared as read) */
                break;
            }
            got += (size_t)r;
        }
    }
    if (!h) {
        scp_err tmp;
        scp_vfile_close(f, &tmp);
    }
    return rc;
}

static void describe(const char *what, const fstate *st) {
    fprintf(stderr, "  %s: %s size %u", what, st->exists ? "exists" : "absent", st->size);
    if (st->exists && st->size) fprintf(stderr, " first %02x last %02x", st->data[0], st->data[st->size - 1]);
    fputc('\n', stderr);
}

/* The committed state moves to st; the one before goes to the history. */
static void set_dur(mslot *s, const fstate *st) {
    if (st == &s->dur) return;
    memmove(&s->hist[1], &s->hist[0], sizeof s->hist[0] * (NHIST - 1));
    s->hist[0] = s->dur;
    s->dur = *st;
}

/* After a read that differs from the committed state: where (byte ranges), and whether each
 * range holds what an earlier committed state held there (a stale read) or nothing known. */
static void describe_diff(const mslot *s, const fstate *got) {
    uint32_t n = got->size < s->dur.size ? got->size : s->dur.size;
    int shown = 0;
    for (uint32_t a = 0; a < n && shown < 8;) {
        if (got->data[a] == s->dur.data[a]) {
            a++;
            continue;
        }
        uint32_t b = a;
        while (b < n && got->data[b] != s->dur.data[b]) b++;
        fprintf(stderr, "  differs at [%u, %u) (chunk %u..%u):", a, b, a / 4096, (b - 1) / 4096);
        int found = 0;
        for (int h = 0; h < NHIST; h++)
            if (s->hist[h].exists && s->hist[h].size >= b && memcmp(s->hist[h].data + a, got->data + a, b - a) == 0) {
                fprintf(stderr, " as committed state -%d (size %u)", h + 1, s->hist[h].size);
                found = 1;
                break;
            }
        if (!found) fprintf(stderr, " matches no earlier committed state of the last %d", NHIST);
        fputc('\n', stderr);
        shown++;
        a = b;
    }
}

/* Slot i's last holder is gone (killed, or exited with its writes committed): the file must be
 * in one of the states it recorded. Caller holds the slot's flock. */
static void resolve(int i, const char *who) {
    mslot *s = &M->s[i];
    static fstate now;
    scp_err e;
    tu_err_clear(&e);
    STAT(n_resolve);
    if (read_state(NULL, i, &now, &e) < 0) {
        FAILF("%s: slot %d after holder %d: read: %s (sys %d)", who, i, s->busy, e.msg, e.sys);
        s->busy = s->dirty = 0;
        set_dur(s, &now);
        return;
    }
    for (int k = s->ncand - 1; k >= 0; k--)
        if (fstate_eq(&now, &s->cand[k])) {
            trace("resolve slot %d after %d: state %d of %d (size %u)", i, s->busy, k, s->ncand, now.size);
            set_dur(s, &s->cand[k]);
            s->busy = s->dirty = 0;
            s->incarn++;
            return;
        }
    trace("FAIL resolve slot %d: read size %u, none of %d states", i, now.size, s->ncand);
    FAILF("%s: slot %d after holder %d (dirty %d): the file is in none of its %d states", who, i,
          s->busy, s->dirty, s->ncand);
    describe("read", &now);
    for (int k = 0; k < s->ncand; k++) describe("state", &s->cand[k]);
    set_dur(s, &now);
    s->busy = s->dirty = 0;
    s->incarn++;
}

static int alive(int pid) {
    if (pid <= 0) return 0;
    if (kill(pid, 0) < 0) return 0;
    /* a zombie holds no locks: its writes are as its death left them */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return !(p && p[1] == ' ' && p[2] == 'Z');
}

/* Whether pid is a live process of this test (this binary), so that the driver's kills never
 * reach another process: a slot of M->pids is claimed before its pid is stored (0 meanwhile:
 * kill(0) is the whole process group), and a pid whose process its parent reaped may belong to
 * anything by now (ctest runs other tests beside this one). */
static int ours(int pid) {
    static char self[PATH_MAX];
    static ssize_t nself;
    if (!nself) nself = readlink("/proc/self/exe", self, sizeof self);
    if (pid <= 0 || nself <= 0 || !alive(pid)) return 0;
    char path[64], exe[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe);
    return n == nself && memcmp(exe, self, (size_t)n) == 0;
}

/* The shield's sh_commit_all: every kept handle committed; a dirty slot's writes are then
 * committed and the model says so. Caller holds P.mu. */
static void commit_all(const char *why) {
    for (int i = 0; i < NSLOT; i++) {
        if (!P.h[i]) continue;
        scp_err e;
        tu_err_clear(&e);
        if (scp_vfile_fsync(P.h[i], &e) < 0) {
            FAILF("%s: commit of slot %d: %s (sys %d)", why, i, e.msg, e.sys);
            continue;
        }
        if (P.dirty[i]) {
            mslot *s = &M->s[i];
            assert(s->busy == getpid() && s->dirty);
            set_dur(s, &s->cand[s->ncand - 1]);
            s->busy = s->dirty = 0;
            P.dirty[i] = 0;
        }
    }
}

static void set_shared(void) {
    scp_volume_set_shared(P.v);
    P.shared = 1;
}

/* sh_priv_end: the private holding ends. Caller holds P.mu. */
static void priv_end(void) {
    if (P.priv == 2) {
        scp_volume_private_release(P.v);
    } else if (P.priv == 1) {
        set_shared();
        commit_all("private end");
        set_shared();
        scp_volume_private_end(P.v);
    }
    P.priv = 0;
}

static void *watcher(void *arg) {
    (void)arg;
    scp_volume_private_wait(P.v);
    pthread_mutex_lock(&P.mu);
    if (P.priv) STAT(n_moves);
    priv_end();
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

static void start_watcher(int locked);

static void open_volume(void) {
    scp_err e;
    P.v = scp_volume_open(M->vd, M->key, NULL, &e);
    if (!P.v) {
        FAILF("open: %s (sys %d)", e.msg, e.sys);
        _exit(1);
    }
    if (P.shared_family) {
        if (!no("priv") && scp_volume_go_private(P.v)) {
            P.priv = 1;
            STAT(n_priv);
        } else if (scp_volume_join_shared(P.v, &e) < 0) {
            FAILF("join shared: %s", e.msg);
            _exit(1);
        } else {
            P.shared = 1;
        }
    } else if (!no("priv") && scp_volume_go_private(P.v)) {
        P.priv = 2;
        STAT(n_sole);
    }
    start_watcher(0);
}

/* The watcher of a private process (the shield's priv_watch), unless no thread can be made
 * there (then the move at once, as sh_priv_begin's) or under ASan (the script polls).
 * locked: the caller holds P.mu. */
static void start_watcher(int locked) {
#ifndef ASAN_FORK_SAFE
    if (P.priv) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, watcher, NULL)) {
            if (!locked) pthread_mutex_lock(&P.mu);
            priv_end();
            if (!locked) pthread_mutex_unlock(&P.mu);
        }
        pthread_attr_destroy(&at);
    }
#else
    (void)watcher; /* (the script polls: run) */
    (void)locked;
#endif
}

/* As the shield's sh_priv_resole: a shared process that finds nobody else with the volume open
 * holds it again (scp_volume_try_sole), private in a shared family, else the sole holder, with
 * a watcher. Caller holds P.mu. */
static void try_resole(void) {
    if (!P.shared || P.priv) return;
    scp_err e;
    tu_err_clear(&e);
    int r = scp_volume_try_sole(P.v, &e);
    trace("resole %d", r);
    if (r < 0) FAILF("try_sole: %s (sys %d)", e.msg, e.sys);
    if (r != 1) return;
    STAT(n_resole);
    P.shared = 0;
    P.priv = P.shared_family ? 1 : 2;
    start_watcher(1);
}

/* Under ASan, where no watcher thread runs (start_watcher), the watcher's move made by the
 * script itself: a private process that another process wants shared lets go. */
static void poll_move(void) {
#ifdef ASAN_FORK_SAFE
    if (P.priv && scp_volume_private_wanted(P.v)) {
        pthread_mutex_lock(&P.mu);
        STAT(n_moves);
        priv_end();
        pthread_mutex_unlock(&P.mu);
    }
#endif
}

/* waitpid(pid, st, 0), except under ASan: a holder blocked in the wait could not make the
 * watcher's move, and a child that exec'd (no presence lock until it opens the volume, so the
 * holding could be taken back beside it: try_resole) and then opens the volume waits for the
 * private lock for ever (a hang seen in CI's ASan pass, round 2 of seed 1); the wait polls
 * the wanted word instead, as the watcher thread would answer it. */
static pid_t wait_kid(pid_t pid, int *st) {
#ifdef ASAN_FORK_SAFE
    for (;;) {
        pid_t r = waitpid(pid, st, WNOHANG);
        if (r != 0) return r;
        poll_move();
        usleep(1000);
    }
#else
    return waitpid(pid, st, 0);
#endif
}

static void register_pid(void) {
    int k = __atomic_fetch_add(&M->npids, 1, __ATOMIC_RELAXED);
    if (k < MAXPIDS) M->pids[k] = getpid();
}

/* ---- sessions --------------------------------------------------------------------------- */

static int lock_slot(int i) {
    char name[16], *p;
    snprintf(name, sizeof name, "slot%d", i);
    p = tu_path(M->lockdir, name);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (fd < 0) tu_die("open slot lock");
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR) tu_die("flock");
    return fd;
}

static void drop_handle(int i) {
    if (!P.h[i]) return;
    scp_err e;
    tu_err_clear(&e);
    assert(!P.dirty[i]);
    if (scp_vfile_close(P.h[i], &e) < 0) FAILF("close of a kept handle of slot %d: %s", i, e.msg);
    P.h[i] = NULL;
}

static int op_err(const char *what, int i, scp_err *e) {
    if (e->sys == EBUSY) {
        STAT(n_busy);
        trace("EBUSY %s slot %d: %s", what, i, e->msg);
        return -1;
    }
    trace("FAIL %s slot %d: %s", what, i, e->msg);
    FAILF("%s slot %d: %s (%s, sys %d)", what, i, e->msg, scp_code_name(e->code), e->sys);
    return -1;
}

/* One session on slot i. Caller holds P.mu. */
static void session(int i) {
    mslot *s = &M->s[i];
    int me = getpid();
    if (s->busy && s->busy != me && s->dirty && alive(s->busy)) return; /* another's writes */
    int lfd = lock_slot(i);
    STAT(n_sess);
    if (s->busy && s->busy != me) {
        if (s->dirty && alive(s->busy)) {
            close(lfd);
            return;
        }
        resolve(i, "session");
    }
    if (P.h[i] && P.h_incarn[i] != s->incarn) {
        assert(!P.dirty[i]);
        drop_handle(i); /* the name points at another file now */
    }
    static fstate cur;
    scp_err e;
    tu_err_clear(&e);
    if (s->busy == me) {
        assert(s->dirty && P.dirty[i] && P.h[i]);
        cur = s->cand[s->ncand - 1];
    } else {
        /* in a process that is not shared, a handle kept from before sees others' commits
         * only at an open (close-to-open): only shared processes keep them across sessions */
        if (P.h[i] && !P.shared) drop_handle(i);
        if (read_state(P.h[i], i, &cur, &e) < 0) {
            op_err("read", i, &e);
            close(lfd);
            return;
        }
        if (!fstate_eq(&cur, &s->dur)) {
            FAILF("slot %d (pid %d, shared %d, priv %d, forked %d): reads other than its committed state",
                  i, me, P.shared, P.priv, P.forked);
            describe("read", &cur);
            describe("committed", &s->dur);
            describe_diff(s, &cur);
            set_dur(s, &cur);
        }
        s->ncand = 0;
        cand_push(s, &s->dur);
        s->busy = me;
        s->dirty = 0;
    }
    char name[8], tmp[8];
    slot_name(i, 'f', name);
    slot_name(i, 't', tmp);
    unsigned pick = (unsigned)tu_below(&P.rng, 100);
    trace("session %d pick %u kept %d shared %d priv %d size %u", i, pick, P.h[i] != NULL, P.shared, P.priv,
          cur.exists ? cur.size : 0);
    if (cur.exists && !P.h[i] && pick < 8 && !no("unlink")) { /* unlink */
        STAT(n_unlink);
        fstate gone = {0};
        cand_push(s, &gone);
        if (scp_volume_unlink(P.v, name, &e) < 0) {
            op_err("unlink", i, &e);
            s->busy = -1;
        } else {
            set_dur(s, &gone);
            s->busy = 0;
            s->incarn++;
        }
        close(lfd);
        return;
    }
    if (!P.h[i] && pick < 14 && !no("replace")) { /* replace: a whole new file renamed over the name */
        STAT(n_replace);
        static fstate nw;
        nw.exists = 1;
        nw.size = (uint32_t)tu_below(&P.rng, MAXSZ + 1);
        tu_fill(&P.rng, nw.data, nw.size);
        if (tu_vput(P.v, tmp, nw.data, nw.size, &e) < 0) {
            op_err("replace write", i, &e);
            s->busy = -1;
        } else {
            cand_push(s, &nw);
            if (scp_volume_rename(P.v, tmp, name, &e) < 0) {
                op_err("rename", i, &e);
                s->busy = -1;
            } else {
                trace("replaced slot %d size %u", i, nw.size);
                set_dur(s, &nw);
                s->busy = 0;
                s->incarn++;
            }
        }
        close(lfd);
        return;
    }
    /* content operations */
    scp_vfile *h = P.h[i];
    if (!h) {
        int created = !cur.exists;
        if (created) { /* (recorded before the call, as below) */
            cur.exists = 1;
            cur.size = 0;
            cand_push(s, &cur);
            s->incarn++;
        }
        h = scp_vfile_open(P.v, name, O_RDWR | O_CREAT, 0644, &e);
        if (!h) {
            op_err("open", i, &e);
            s->busy = -1;
            close(lfd);
            return;
        }
        P.h[i] = h;
        P.h_incarn[i] = s->incarn;
    }
    int nops = (int)tu_range(&P.rng, 1, NCAND - 3 - (s->ncand > 2 ? s->ncand - 2 : 0));
    if (nops < 1) nops = 1;
    int failed = 0;
    for (int k = 0; k < nops && !failed && s->ncand < NCAND - 1; k++) {
        unsigned op = (unsigned)tu_below(&P.rng, 100);
        if (op >= 75 && no("trunc")) op = 30;
        if (op >= 50 && op < 75 && no("hole")) op = 30;
        if (op < 75) {
            uint64_t off, len;
            if (op < 25 && cur.size) { /* overwrite inside */
                off = tu_below(&P.rng, cur.size);
                len = tu_range(&P.rng, 1, 6000);
            } else if (op < 50) { /* extend */
                off = cur.size;
                len = tu_range(&P.rng, 1, 9000);
            } else { /* anywhere: holes too */
                off = tu_below(&P.rng, MAXSZ);
                len = tu_range(&P.rng, 1, 4096);
            }
            if (off >= MAXSZ) off = MAXSZ - 1;
            if (off + len > MAXSZ) len = MAXSZ - off;
            uint8_t buf[9000];
            tu_fill(&P.rng, buf, len);
            /* the state after it recorded before the call: shared mode commits inside it, and
             * a kill may come before it returns */
            if (off > cur.size) memset(cur.data + cur.size, 0, off - cur.size);
            memcpy(cur.data + off, buf, len);
            if (off + len > cur.size) cur.size = (uint32_t)(off + len);
            cand_push(s, &cur);
            trace("write slot %d off %llu len %llu", i, (unsigned long long)off, (unsigned long long)len);
            ssize_t w = scp_vfile_pwrite(h, buf, len, off, &e);
            if (w != (ssize_t)len) {
                failed = 1;
                if (w < 0) op_err("pwrite", i, &e);
                else FAILF("short pwrite slot %d", i);
                break;
            }
        } else {
            uint64_t sz = tu_below(&P.rng, MAXSZ + 1);
            if (sz > cur.size) memset(cur.data + cur.size, 0, sz - cur.size);
            cur.size = (uint32_t)sz;
            cand_push(s, &cur);
            trace("truncate slot %d to %llu", i, (unsigned long long)sz);
            if (scp_vfile_truncate(h, sz, &e) < 0) {
                failed = 1;
                op_err("truncate", i, &e);
                break;
            }
        }
    }
    unsigned end = (unsigned)tu_below(&P.rng, 100);
    if (!failed && !P.shared && end < 20 && !no("dirty")) { /* uncommitted: the slot is this process's */
        STAT(n_dirty);
        trace("dirty slot %d size %u", i, cur.size);
        s->dirty = 1;
        P.dirty[i] = 1;
        close(lfd);
        return;
    }
    P.dirty[i] = 0;
    int rc;
    if (!failed && P.shared && end < 60 && !no("keep")) {
        rc = scp_vfile_fsync(h, &e); /* and kept */
    } else if (!failed && end < 50) {
        rc = scp_vfile_fsync(h, &e);
        if (rc == 0) drop_handle(i);
    } else {
        rc = scp_vfile_close(h, &e);
        P.h[i] = NULL;
    }
    if (rc < 0) {
        op_err("commit", i, &e);
        failed = 1;
    }
    if (!failed) {
        set_dur(s, &cur);
        s->busy = 0;
        trace("done slot %d size %u%s", i, cur.size, P.h[i] ? " kept" : "");
    } else {
        /* the file is in one of the recorded states: the next session reads which */
        drop_handle(i);
        s->busy = -1;
    }
    close(lfd);
}

/* ---- the script --------------------------------------------------------------------------- */

static void run(int steps);

static void proc_exit(void) {
    pthread_mutex_lock(&P.mu); /* held to the end: no move from now on (sh_priv_exit) */
    trace("exit");
    if (tu_pct(&P.rng, 50)) {
        commit_all("exit"); /* the shield's exit: the volume stays open */
    } else {
        scp_err e;
        for (int i = 0; i < NSLOT; i++) {
            if (!P.h[i]) continue;
            tu_err_clear(&e);
            int rc = scp_vfile_close(P.h[i], &e);
            P.h[i] = NULL;
            if (rc < 0) {
                FAILF("exit close of slot %d: %s", i, e.msg);
                continue;
            }
            if (P.dirty[i]) {
                mslot *s = &M->s[i];
                set_dur(s, &s->cand[s->ncand - 1]);
                s->busy = s->dirty = 0;
                P.dirty[i] = 0;
            }
        }
        tu_err_clear(&e);
        if (scp_volume_close(P.v, &e) < 0) FAILF("volume close: %s", e.msg);
    }
    fflush(NULL);
    _exit(0);
}

static pid_t kids[64];
static int nkids;

static void do_fork(void) {
    pthread_mutex_lock(&P.mu);
    /* sh_fork_share */
    if (P.priv) priv_end();
    if (!P.shared_family) {
        P.shared_family = 1;
        set_shared();
        commit_all("fork");
        set_shared();
    } else if (!P.shared) {
        set_shared(); /* (a process of a shared family is shared once it forks) */
    }
    unsigned kind = (unsigned)tu_below(&P.rng, 100);
    uint64_t seed = tu_next(&P.rng);
    STAT(n_fork);
    trace("fork kind %u", kind);
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        pthread_mutex_init(&P.mu, NULL);
        P.forked = 1;
        P.priv = 0;
        P.depth++;
        P.rng.s = seed;
        nkids = 0;
        register_pid();
        /* The first volume call repairs the copy (vol_check_fork), which until then shares the
         * parent's descriptions. A parent killed inside a commit used to leave the volume lock
         * held through them until the copy made a call, a cycle when the copy first waited for
         * one of the waiters (here a slot's flock): park19's hang, fixed in fork20 (the parent
         * takes fresh descriptions before it locks again: volume.c, vol_lock_own). Half the
         * copies make a call at once, half do not (by a bit of their seed);
         * FORKSTRESS_LAZY=1 makes none, FORKSTRESS_EAGER=1 every one. */
        int lazy = getenv("FORKSTRESS_LAZY") ? 1 : getenv("FORKSTRESS_EAGER") ? 0 : (int)(seed >> 17 & 1);
        if (!lazy) {
            scp_vstat st;
            scp_err e;
            (void)scp_volume_stat(P.v, "", &st, &e);
        }
        if (kind < 35 || P.depth >= MAXDEPTH) { /* a subshell: keeps its copy, exits */
            STAT(n_sub);
            if (tu_pct(&P.rng, 50)) {
                scp_vstat st;
                scp_err e;
                (void)scp_volume_stat(P.v, "f0", &st, &e);
            }
            proc_exit();
        }
        if (kind < 55 && !no("exec")) { /* exec: a fresh image of the shared family */
            STAT(n_exec);
            char a1[32], a2[16];
            snprintf(a1, sizeof a1, "%llu", (unsigned long long)seed);
            snprintf(a2, sizeof a2, "%d", P.depth);
            execl(g_self, g_self, "worker", g_mpath, a1, a2, "1", (char *)NULL);
            tu_die("exec");
        }
        run((int)tu_range(&P.rng, 2, 25));
        proc_exit();
    }
    pthread_mutex_unlock(&P.mu);
    if (nkids < 64) kids[nkids++] = pid;
    if (tu_pct(&P.rng, 40)) {
        int st;
        while (wait_kid(pid, &st) < 0 && errno == EINTR) {
        }
        nkids--;
    }
}

static void run(int steps) {
    for (int n = 0; n < steps; n++) {
        poll_move();
        unsigned a = (unsigned)tu_below(&P.rng, 100);
        if (a < 65) {
            pthread_mutex_lock(&P.mu);
            session((int)tu_below(&P.rng, NSLOT));
            pthread_mutex_unlock(&P.mu);
        } else if (a < 80) {
            if (P.depth < MAXDEPTH && !no("fork")) do_fork();
        } else if (a < 85 && nkids && !no("kill")) {
            pid_t k = kids[tu_below(&P.rng, nkids)];
            if (tu_pct(&P.rng, 50)) usleep((useconds_t)tu_below(&P.rng, 3000));
            if (kill(k, SIGKILL) == 0) STAT(n_kill);
        } else if (a < 88 && !no("resole")) {
            pthread_mutex_lock(&P.mu);
            try_resole();
            pthread_mutex_unlock(&P.mu);
        } else if (a < 92) {
            scp_err e;
            pthread_mutex_lock(&P.mu);
            trace("sync");
            if (scp_volume_sync(P.v, &e) < 0) FAILF("sync: %s", e.msg);
            pthread_mutex_unlock(&P.mu);
        } else {
            usleep((useconds_t)tu_below(&P.rng, 2000));
        }
    }
    if (tu_pct(&P.rng, 60))
        while (nkids) {
            int st;
            if (wait_kid(kids[--nkids], &st) < 0 && errno == EINTR) nkids++;
        }
}

static void program(uint64_t seed, int depth, int shared_family) {
    pthread_mutex_init(&P.mu, NULL);
    P.rng.s = seed;
    P.depth = depth;
    P.shared_family = shared_family;
    register_pid();
    open_volume();
    run((int)tu_range(&P.rng, 5, 40));
    proc_exit();
}

static void map_model(const char *path, int create) {
    int fd = open(path, O_RDWR | (create ? O_CREAT | O_TRUNC : 0), 0600);
    if (fd < 0 || (create && ftruncate(fd, sizeof(model)) < 0)) tu_die("model file");
    M = mmap(NULL, sizeof(model), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (M == MAP_FAILED) tu_die("mmap model");
    close(fd);
}

/* ---- the driver ------------------------------------------------------------------------- */

static void problem_cb(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)ctx;
    FAILF("verify: %s at %lld: %s", path, (long long)off, msg);
}

/* After a round (every process of it gone): a fresh process finds every file in a state the
 * model allows, and the volume verifies. */
static void check_round(int round) {
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        scp_err e;
        P.v = scp_volume_open(M->vd, M->key, NULL, &e);
        if (!P.v) {
            FAILF("round %d: check open: %s (sys %d)", round, e.msg, e.sys);
            _exit(1);
        }
        for (int i = 0; i < NSLOT; i++) {
            mslot *s = &M->s[i];
            if (s->busy) {
                resolve(i, "check");
                continue;
            }
            static fstate now;
            tu_err_clear(&e);
            if (read_state(NULL, i, &now, &e) < 0) {
                FAILF("round %d: check slot %d: %s (sys %d)", round, i, e.msg, e.sys);
            } else if (!fstate_eq(&now, &s->dur)) {
                FAILF("round %d: slot %d reads other than its committed state", round, i);
                describe("read", &now);
                describe("committed", &s->dur);
                set_dur(s, &now);
            }
        }
        long bad = scp_volume_verify(P.v, problem_cb, NULL, NULL, &e);
        if (bad < 0) FAILF("round %d: verify: %s", round, e.msg);
        if (scp_volume_close(P.v, &e) < 0) FAILF("round %d: check close: %s", round, e.msg);
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) tu_die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st)) FAILF("round %d: the check process failed (status %d)", round, st);
}

/* Wait for every process of the round (the driver is their subreaper); SIGKILL them all after
 * `limit` seconds (a hang is a failure). */
static void reap_round(int round, double limit) {
    double t0 = tu_now();
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p < 0 && errno == ECHILD) return;
        if (p > 0) continue;
        if (tu_now() - t0 > limit) {
            FAILF("round %d: processes still running after %.0f s (hang); killing them", round, limit);
            /* every lock on the volume's lock file, with the pid the kernel names for it (for
             * OFD locks: the process that took it, which may be gone while a copy of its
             * description is open elsewhere) */
            struct stat ls;
            char *lp = tu_path(M->vd, "lock");
            if (stat(lp, &ls) == 0) {
                char cmd[256];
                snprintf(cmd, sizeof cmd, "grep ':%llu ' /proc/locks | sed 's/^/  lock: /' >&2",
                         (unsigned long long)ls.st_ino);
                (void)!system(cmd);
            }
            free(lp);
            int n = M->npids < MAXPIDS ? M->npids : MAXPIDS;
            for (int k = M->round_first_pid; k < n; k++)
                if (alive(M->pids[k])) {
                    fprintf(stderr, "  pid %d alive\n", M->pids[k]);
                    /* where it waits: each thread's kernel wait channel, and with
                     * FORKSTRESS_GDB=1 its threads' stacks */
                    char cmd[256];
                    snprintf(cmd, sizeof cmd,
                             "for t in /proc/%d/task/*; do echo \"    $t $(cat $t/wchan)\"; done >&2",
                             M->pids[k]);
                    (void)!system(cmd);
                    if (getenv("FORKSTRESS_GDB")) {
                        snprintf(cmd, sizeof cmd,
                                 "gdb -p %d -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^#|^Thread' >&2",
                                 M->pids[k]);
                        (void)!system(cmd);
                    }
                }
            for (int k = M->round_first_pid; k < n; k++)
                if (ours(M->pids[k])) kill(M->pids[k], SIGKILL);
            t0 = tu_now() + 1e9;
        }
        usleep(2000);
    }
}

int main(int argc, char **argv) {
    if (argc >= 6 && strcmp(argv[1], "worker") == 0) {
        g_mpath = argv[2];
        g_self = "/proc/self/exe";
        map_model(g_mpath, 0);
        tu_context = "worker";
        program(strtoull(argv[3], NULL, 10), atoi(argv[4]), atoi(argv[5]));
    }
    g_self = "/proc/self/exe";
    const char *se = getenv("FORKSTRESS_SEED");
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : se ? strtoull(se, NULL, 10) : (uint64_t)time(NULL);
    const char *ss = getenv("FORKSTRESS_SECS");
    double secs = ss ? atof(ss) : 20;
    printf("test_volume_forkstress: seed %llu, %.0f s\n", (unsigned long long)seed, secs);
    fflush(stdout);
    tu_rng rng = {seed};
    char *root = tu_tmpdir("forkstress");
    g_mpath = tu_path(root, "model");
    map_model(g_mpath, 1);
    memset(M, 0, sizeof *M);
    char *vd = tu_path(root, "vol"), *ld = tu_path(root, "locks");
    snprintf(M->vd, sizeof M->vd, "%s", vd);
    snprintf(M->lockdir, sizeof M->lockdir, "%s", ld);
    if (mkdir(ld, 0700) < 0) tu_die("mkdir locks");
    tu_key(&rng, M->key);
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, M->key, tu_test_chunk(0), &e), e);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) tu_die("subreaper");
    double t0 = tu_now();
    int round = 0;
    while (tu_now() - t0 < secs && M->failures == 0) {
        round++;
        M->round_first_pid = M->npids < MAXPIDS ? M->npids : MAXPIDS;
        if (M->npids > MAXPIDS - 512) M->npids = M->round_first_pid = 0;
        int nprog = tu_pct(&rng, 30) && !no("two") ? 2 : 1;
        for (int k = 0; k < nprog; k++) {
            int sf = no("sf") ? 0 : no("nsf") ? 1 : tu_pct(&rng, 50);
            uint64_t ps = tu_next(&rng);
            pid_t pid = fork();
            if (pid < 0) tu_die("fork");
            if (pid == 0) {
                char ctx[32];
                snprintf(ctx, sizeof ctx, "round %d", round);
                tu_context = ctx;
                if (sf && tu_pct(&rng, 50)) { /* through exec, as scpctl run starts one */
                    char a1[32];
                    snprintf(a1, sizeof a1, "%llu", (unsigned long long)ps);
                    execl(g_self, g_self, "worker", g_mpath, a1, "0", "1", (char *)NULL);
                    tu_die("exec");
                }
                program(ps, 0, sf);
            }
        }
        /* the driver's kill: any process of the round, at a random instant */
        if (tu_pct(&rng, 25) && !no("kill")) {
            usleep((useconds_t)tu_below(&rng, 30000));
            int n = M->npids < MAXPIDS ? M->npids : MAXPIDS;
            if (n > M->round_first_pid) {
                int victim = M->pids[M->round_first_pid + (int)tu_below(&rng, (uint64_t)(n - M->round_first_pid))];
                if (ours(victim) && kill(victim, SIGKILL) == 0) STAT(n_kill);
            }
        }
        reap_round(round, 30);
        check_round(round);
    }
    printf("rounds %d: sessions %ld, forks %ld (subshells %ld, execs %ld), kills %ld, private %ld, "
           "sole %ld, moves %ld, back to the holding %ld, resolved %ld, uncommitted %ld, unlinks %ld, "
           "replaces %ld, EBUSY %ld\n",
           round, M->n_sess, M->n_fork, M->n_sub, M->n_exec, M->n_kill, M->n_priv, M->n_sole,
           M->n_moves, M->n_resole, M->n_resolve, M->n_dirty, M->n_unlink, M->n_replace, M->n_busy);
    int failed = M->failures;
    if (!failed) tu_rm_rf(root);
    else fprintf(stderr, "volume and model kept in %s\n", root);
    if (failed) tu_failures = failed;
    free(vd);
    free(ld);
    free(g_mpath);
    free(root);
    return tu_exit_code("test_volume_forkstress");
}
