/* shield/holding.c - how this process holds its volumes: alone (sole), privately, shared.
 *
 * A process that has a volume to itself keeps its state in memory; a fork, a second program
 * or an exec makes it shared (every write published for the others); the watcher thread and
 * the served calls take it back once nobody else has it open (scp_volume_try_sole). Also the
 * commits at exit and before exec. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>

#include "common/util.h"
#include "crypto/parallel.h"
#include "shield/internal.h"
#include "shield/core.h"

static int any_open_file(void) {
    for (unsigned i = 0; i < ndesc(); i++)
        if (desc_at(i) && desc_at(i)->kind == PF_FILE) return 1;
    return 0;
}

/* v (NULL: every open volume) in shared mode */
static void set_shared(scp_volume *v) {
    sh_in_lib++;
    for (int i = 0; i < sh.nvol; i++) {
        scp_volume *o = __atomic_load_n(&sh.vol[i].v, __ATOMIC_ACQUIRE);
        if (o && (!v || o == v)) scp_volume_set_shared(o);
    }
    sh_lib_leave();
}

int sh_resole_on;

void sh_go_shared(scp_volume *v) {
    __atomic_store_n(&sh_resole_on, 1, __ATOMIC_RELAXED); /* (sh_resole_poll: try it back later) */
    /* Shared first, then commit, then shared again. A write of another thread that ran before
     * the volume went shared keeps the file's writer lock with its bytes uncommitted
     * (set_shared skips such a file); committed only before, such a write slipped in between,
     * and a fork child, holding the shared offset's lock, waited for that writer lock while
     * the writing thread waited for the offset's lock (forkwrite.c hung in 2 of 3 runs). A
     * write that starts once the volume is shared publishes itself. */
    set_shared(v);
    sh_commit_all(); /* waits for each file's write in progress (its rw) */
    set_shared(v);   /* the writer locks of what was just committed */
}

/* Private volumes (open_volume, volopen.c; docs/shield.md "fork"). One mutex for the move from
 * private to shared, whoever makes it (the watcher, a fork's prepare, a failed watcher start):
 * lock order vol_open_mu (a fork's prepare) before priv_mu before sh.mu and the volume
 * library's locks (sh_commit_all). The watcher takes nothing before priv_mu, so a thread of
 * this process that waits in open_volume (holding vol_open_mu) for another process's private
 * volume never holds up the move of our own. */
static pthread_mutex_t priv_mu = PTHREAD_MUTEX_INITIALIZER;
/* Per volume, the holding's number (under priv_mu): a watcher ends only the holding it was
 * started for. One woken by the end of an earlier holding that has not yet run its move when
 * the process holds the volume again (sh_priv_resole) would otherwise end the new one. */
static unsigned priv_gen[SCP_SHIELD_MAX_VOLUMES];

static void priv_watch_stop(int i, scp_volume *v);

/* Caller holds priv_mu. */
static void priv_end_locked(int i, unsigned gen) {
    assert(scp_mutex_held(&priv_mu));
    for (int k = i < 0 ? 0 : i; k < (i < 0 ? sh.nvol : i + 1); k++) {
        struct sh_volume *sv = &sh.vol[k];
        if (!__atomic_load_n(&sv->priv, __ATOMIC_ACQUIRE)) continue;
        if (gen && gen != priv_gen[k]) continue; /* (a watcher of an earlier holding) */
        scp_volume *v = __atomic_load_n(&sv->v, __ATOMIC_ACQUIRE);
        assert(v); /* published before priv can be seen by anyone but open_volume */
        /* The locks kept in the process while nobody else could be present go to the kernel
         * first: a newcomer gets in once the private lock goes (sh_lk_handoff) */
        sh_lk_handoff(k);
        /* this holding's watcher returns whatever the shared word says by the time it looks */
        priv_watch_stop(k, v);
        if (sv->priv_pending) {
            sv->priv_pending = 0;
            __atomic_sub_fetch(&sh_priv_npending, 1, __ATOMIC_RELEASE);
        }
        if (!(sh.cfg.flags & SCP_SHIELD_F_SHARED) && i < 0) {
            /* The sole holder of a family that is not shared, at a fork's prepare, which makes
             * the family shared right after (sh_fork_share). Released under the volume's
             * mutex, after any commit in progress. */
            sh_in_lib++;
            scp_volume_private_release(v);
            sh_lib_leave();
            __atomic_store_n(&sv->priv, 0, __ATOMIC_RELEASE);
            continue;
        }
        /* As at a fork (sh_fork_share): shared, with what was written privately committed
         * and its writer locks let go (sh_go_shared). Only then the private lock: a newcomer
         * waits for it, so it never reads this process's files while they hold uncommitted
         * writes or its writer locks.
         * The sole holder (a program that has not forked) does the same for a newcomer: that
         * is another program, which works in shared mode beside another (open_volume), so
         * that the two write the same files as two processes do on a kernel file system (two
         * sqlite3 on one WAL database: outside shared mode the first kept the writer lock of
         * every file it had written until it closed it, and the second's writes failed with
         * EBUSY, "disk I/O error"). Only this volume goes shared, not the family. */
        sh_go_shared(v);
        sh_in_lib++;
        scp_volume_private_end(v);
        sh_lib_leave();
        __atomic_store_n(&sv->priv, 0, __ATOMIC_RELEASE);
        if (sh.cfg.flags & SCP_SHIELD_F_SHARED) sh_trace("volume at %s: shared from now on", sv->mount);
        else sh_trace("volume at %s: another program opens it, no longer the sole holder; shared until it is alone again", sv->mount);
    }
}

static void priv_end(int i, unsigned gen) {
    pthread_mutex_lock(&priv_mu);
    priv_end_locked(i, gen);
    pthread_mutex_unlock(&priv_mu);
}

void sh_priv_end(int i) { priv_end(i, 0); }

void sh_fork_share(int fork_child) {
    if (sh_in_vfork_child()) { /* a vfork child's own spawn: the memory is its parent's */
        if (fork_child) { /* (what the fork's handlers release) */
            pthread_mutex_lock(&priv_mu);
            pthread_mutex_lock(&sh.mu);
        }
        return;
    }
    if (!fork_child) { /* vfork, posix_spawn: only what a child's exec could inherit */
        /* A holding taken in a trap handler waits for its watcher until a call outside one
         * (sh_priv_pending_run): started now, since a child that opens the volume waits for
         * this process to let go, which only the watcher does while the parent waits for the
         * child (gcc, run outside the volume with its output inside, hung in `as`) */
        sh_priv_poll();
        pthread_mutex_lock(&sh.mu);
        int any = sh.active && any_open_file();
        pthread_mutex_unlock(&sh.mu);
        if (!any) return;
    }
    /* From the first fork on, parent and child may write the same files and expect each
     * other's writes without a close in between (a forked server: PostgreSQL's backends and WAL
     * writer write one WAL segment; a shell and the command it runs write one redirection). So
     * commit what this process buffered, and from now on both commit every write at once
     * (scp_volume_set_shared, which also lets go of the writer locks of committed files;
     * docs/shield.md, "fork"). */
    /* Late volume opens (sh_volume_ready) are held off meanwhile: one that read the flag
     * before it is set and published its volume after the loop below would leave that volume
     * out of shared mode. A fork's prepare holds them off already (init.c); a vfork's or
     * posix_spawn's does it here, in the same order (vol_open_mu before sh.mu). */
    if (!fork_child) sh_vol_open_hold(1);
    /* this image's volumes opened from now on are shared (open_volume), and the private ones
     * go shared now: the child may write them */
    sh.forked = 1;
    /* priv_mu from here until the fork is made (a fork's: sh_priv_fork_done in the parent, the
     * child's handler makes it anew): a served call of another thread that takes the holding
     * back (sh_priv_resole, which holds priv_mu through scp_volume_try_sole) either ended
     * before, and its holding is ended here, or starts after the fork, and finds the child
     * present. Without it, a resole between this test and the fork left the volume private
     * in the parent (its writer locks kept) and in the child outside shared mode, and the
     * two could wait for each other (the parent for the child, the child for a writer lock). */
    pthread_mutex_lock(&priv_mu);
    int priv = 0;
    for (int i = 0; i < sh.nvol; i++) priv |= __atomic_load_n(&sh.vol[i].priv, __ATOMIC_ACQUIRE);
    if (priv) priv_end_locked(-1, 0);
    if (!(sh.cfg.flags & SCP_SHIELD_F_SHARED) && sh.nvol) {
        sh.cfg.flags |= SCP_SHIELD_F_SHARED; /* and for the volumes opened later, their execs */
        sh_go_shared(NULL);
    }
    if (!fork_child) {
        pthread_mutex_unlock(&priv_mu);
        sh_vol_open_hold(0);
    }
    /* A fork's child starts from the parent's view of the volumes: bring it up to date first,
     * so that the child catches up from here, not from wherever this process last looked (a
     * PostgreSQL postmaster forks a backend per connection and is otherwise idle: each backend
     * walked or reloaded the whole manifest log written since; pgbench -C). In the order of the
     * volume library's locks, as sh_commit_all's: priv_mu, then sh.mu. */
    if (fork_child) {
        sh_in_lib++;
        pthread_mutex_lock(&sh.mu);
        for (int i = 0; i < sh.nvol; i++)
            if (sh.vol[i].v) scp_volume_refresh(sh.vol[i].v);
        pthread_mutex_unlock(&sh.mu);
        sh_lib_leave();
    }
    pthread_mutex_lock(&sh.mu);
    if (sh.active) {
        unsigned pass = ++sh_ofd_pass;
        for (unsigned i = 0; i < ndesc(); i++) sh_ofd_share(desc_at(i), fork_child, pass);
    }
    if (!fork_child) pthread_mutex_unlock(&sh.mu); /* a fork's handlers release it */
}

void sh_priv_fork_done(void) { pthread_mutex_unlock(&priv_mu); }

/* At exit: no move from now on (the watcher would commit and seal beside the exit's own
 * commit and OpenSSL's cleanup). What is private is committed by the exit's sh_commit_all, and
 * the kernel releases the private lock with the process: a waiting newcomer then goes on. Held
 * until the end; once per process (the destructor and the atexit handler both come here). */
void sh_priv_exit(void) {
    static int held;
    if (__atomic_exchange_n(&held, 1, __ATOMIC_ACQ_REL)) return;
    pthread_mutex_lock(&priv_mu);
}

/* At exit, after the last commit: a volume this process holds alone keeps its state in a slot
 * again when its manifest log grew long (scp_volume_fold_at_exit), as a close would leave it.
 * The shield never closes a volume, so without this every short command that commits (each
 * sqlite3 transaction writes a record) leaves its records for every later open to walk:
 * sqlite3's select run after 2,000 one-row transactions walked 2,000 records at its start. */
static void fold_at_exit(void) {
    sh_in_lib++;
    pthread_mutex_lock(&sh.mu);
    for (int i = 0; i < sh.nvol; i++) {
        scp_err e;
        if (sh.vol[i].v && scp_volume_fold_at_exit(sh.vol[i].v, &e) > 0)
            sh_trace("volume at %s: manifest log folded at exit", sh.vol[i].mount);
    }
    pthread_mutex_unlock(&sh.mu);
    sh_lib_leave();
}

int sh_exit_commit(int flush_stdio) {
    /* Not in the shield (sh_in_lib: a handler the shield did not wrap, set by a raw
     * rt_sigaction, interrupting this thread inside it): a commit nested in one of this
     * thread's own would find a file mid-commit, or wait for a lock this thread holds. What was
     * not committed is lost as in a crash at this instant; the volume stays consistent. Not in
     * a child that shares the memory without being the process (vfork, CLONE_VM). */
    if (!sh.active || sh_in_lib || (pid_t)syscall(SYS_getpid) != sh.pid) return 0;
    sh_priv_exit();
    if (flush_stdio) fflush(NULL);
    if (sh_commit_all() == 0) fold_at_exit();
    scp_volume_stats_dump(); /* (a measurement aid, off unless asked for; once per process) */
    return 1;
}

int sh_priv_npending;

/* The watchers started and not yet joined (under priv_mu), and the process they belong to: a
 * fork child has none of them (its copy of the list is dropped, never joined). Joinable, so
 * that a change of credentials can wait until they are gone (sh_threads_before_setxid). A
 * place is not reused before its thread is joined: the thread reads its stop word there. */
#define WATCH_MAX ((int)(2 * SCP_SHIELD_MAX_VOLUMES))
struct watcher {
    pthread_t t;
    int live;     /* started, not yet joined */
    int vol;      /* the volume, and the number of the holding it was started for */
    unsigned gen;
    int stop;     /* the holding's stop word: set and woken by the holding's end (priv_end) */
};
static struct watcher watch[WATCH_MAX];
/* Per volume, the watcher of its holding in progress (NULL: none, or not yet started) */
static struct watcher *watch_cur[SCP_SHIELD_MAX_VOLUMES];
static pid_t watch_pid;
/* A change of credentials is waiting for the watchers to end (under priv_mu): none starts */
static int setxid_busy;

/* The watcher of a private volume: sleeps on the volume's "shared wanted" word (a futex in the
 * lock file's shared page) and makes the move when a process opening the volume sets it. A
 * thread, not a check on the hot path: a private process that makes no volume call (a server
 * idle in accept, a writer blocked on a pipe that the newcomer reads) would never see a mark,
 * and the newcomer would wait for it forever. It sleeps on its holding's stop word as well
 * (scp_volume_private_wait_until): every end of the holding (a fork's prepare, a call that
 * sees the mark in a trap handler, a change of credentials, the watcher itself) sets and
 * wakes it, so the watcher returns at once. The shared word alone did not do: the end sets it,
 * but any other process's go_private or try_sole clears it as soon as the private lock is
 * gone (and the host may write it), and a watcher that looked after such a clear slept until
 * the next newcomer, holding one of the WATCH_MAX places (tests/shield/watchers.sh: 12 of 16
 * after 20 forks beside a clearer; once all are taken, a holding has no watcher and stays
 * shared), or the join of a change of credentials (tests/shield/creds.sh). */
static void *priv_watch(void *arg) {
    struct watcher *w = arg;
    int i = w->vol;
    unsigned gen = w->gen;
    pthread_mutex_lock(&priv_mu); /* sh_priv_begin holds it until v is published */
    scp_volume *v = __atomic_load_n(&sh.vol[i].v, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&priv_mu);
    assert(v);
    sh_in_lib++;
    scp_volume_private_wait_until(v, &w->stop);
    sh_lib_leave();
    priv_end(i, gen); /* (stopped: its holding has ended already, nothing to do) */
    return NULL;
}

static void watch_list_own(void) {
    pid_t me = (pid_t)sh_gate(SYS_getpid, 0, 0, 0, 0, 0, 0);
    if (watch_pid != me) {
        watch_pid = me;
        for (int j = 0; j < WATCH_MAX; j++) watch[j].live = 0;
        for (unsigned i = 0; i < SCP_SHIELD_MAX_VOLUMES; i++) watch_cur[i] = NULL;
        /* (a fork while another thread's change of credentials was joining: not this one's) */
        setxid_busy = 0;
    }
}

/* Volume i's holding ends (caller holds priv_mu): its watcher, if it has one, returns */
static void priv_watch_stop(int i, scp_volume *v) {
    assert(scp_mutex_held(&priv_mu));
    watch_list_own();
    if (!watch_cur[i]) return;
    sh_in_lib++;
    scp_volume_private_stop(v, &watch_cur[i]->stop);
    sh_lib_leave();
    watch_cur[i] = NULL;
}

/* Join the watchers that have ended (caller holds priv_mu); a free place: its index, or -1 */
static int watch_reap(void) {
    assert(scp_mutex_held(&priv_mu));
    watch_list_own();
    int free_at = -1;
    for (int j = 0; j < WATCH_MAX; j++) {
        if (watch[j].live && pthread_tryjoin_np(watch[j].t, NULL) == 0) watch[j].live = 0;
        if (!watch[j].live && free_at < 0) free_at = j;
    }
    return free_at;
}

/* Start volume i's watcher (caller holds priv_mu; not in a trap handler): 0, or -1 */
static int priv_watch_start(int i) {
    assert(scp_mutex_held(&priv_mu) && !sh_in_trap);
    watch_list_own();
    int j = setxid_busy ? -1 : watch_reap();
    if (j < 0) return -1;
    assert(__atomic_load_n(&sh_filter_up, __ATOMIC_ACQUIRE)); /* internal.h, sh_filter_up */
    pthread_attr_t at;
    sigset_t all;
    sigfillset(&all);
    int r = pthread_attr_init(&at);
    if (r) return -1;
    /* no signal of the program is ever delivered to it; detached: nobody joins it. SIGSYS
     * stays deliverable although the mask asks to block it: the new thread sets its mask with
     * a raw rt_sigprocmask, which the filter traps, and the trap's handler takes SIGSYS out of
     * every mask (init.c). Its path (the volume library's commit: calls on the library's own
     * descriptors, relative to its directory descriptors, none in the reserved range) makes
     * no trapped call besides. */
    r = pthread_attr_setsigmask_np(&at, &all);
    unsigned gen = ++priv_gen[i];
    if (!gen) gen = priv_gen[i] = 1;
    struct watcher *w = &watch[j];
    w->vol = i;
    w->gen = gen;
    w->stop = 0;
    sh_in_lib++;
    if (!r) r = pthread_create(&w->t, &at, priv_watch, w);
    sh_lib_leave();
    pthread_attr_destroy(&at);
    if (r) return -1;
    w->live = 1;
    watch_cur[i] = w;
    return 0;
}

void sh_threads_before_setxid(void) {
    if (!sh.active || sh_in_lib || sh_in_trap || sh_in_vfork_child()) return;
    pthread_mutex_lock(&priv_mu);
    watch_list_own(); /* (first: in a fork child it resets what follows) */
    setxid_busy = 1; /* (no holding starts again meanwhile: its watcher would be missed) */
    pthread_mutex_unlock(&priv_mu);
    /* the private holdings end as for a newcomer (shared until alone again: sh_priv_resole
     * then starts a watcher in the new credentials), which stops their watchers */
    for (int i = 0; i < sh.nvol; i++)
        if (__atomic_load_n(&sh.vol[i].priv, __ATOMIC_ACQUIRE)) priv_end(i, 0);
    pthread_mutex_lock(&priv_mu);
    watch_list_own();
    pthread_t t[WATCH_MAX];
    int n = 0;
    for (int j = 0; j < WATCH_MAX; j++) {
        if (!watch[j].live) continue;
        /* every holding has ended, and so has stopped its watcher; a watcher that priv_end
         * woke returns once it has taken priv_mu, found its holding gone */
        assert(__atomic_load_n(&watch[j].stop, __ATOMIC_RELAXED));
        t[n++] = watch[j].t;
        watch[j].live = 0;
    }
    pthread_mutex_unlock(&priv_mu);
    for (int j = 0; j < n; j++) pthread_join(t[j], NULL);
    sh_in_lib++;
    scp_parallel_stop();
    sh_lib_leave();
    pthread_mutex_lock(&priv_mu);
    setxid_busy = 0;
    pthread_mutex_unlock(&priv_mu);
}

void sh_priv_begin(int i, scp_volume *v) {
    struct sh_volume *sv = &sh.vol[i];
    /* under priv_mu until v is published with its mark: the watcher's move waits for it */
    pthread_mutex_lock(&priv_mu);
    /* no thread from a signal handler, nor before the filter: at the next call outside one */
    if (sh_in_trap || !__atomic_load_n(&sh_filter_up, __ATOMIC_ACQUIRE)) {
        sv->priv_pending = 1;
        __atomic_add_fetch(&sh_priv_npending, 1, __ATOMIC_RELEASE);
        __atomic_store_n(&sv->priv, 1, __ATOMIC_RELEASE);
        sh_trace("volume at %s: no other process has it open, private (watcher to start)", sv->mount);
    } else if (priv_watch_start(i) < 0) {
        /* No watcher: shared, before anything was written, since nothing would tell this
         * process that another program opened the volume (the sole holder too: in the ordinary
         * mode its reads would not see that program's writes) */
        sh_in_lib++;
        scp_volume_set_shared(v);
        scp_volume_private_end(v);
        sh_lib_leave();
        sh_trace("volume at %s: no watcher thread, not private", sv->mount);
    } else {
        __atomic_store_n(&sv->priv, 1, __ATOMIC_RELEASE);
        sh_trace("volume at %s: no other process has it open, private until this image forks "
                 "or another opens it", sv->mount);
    }
    __atomic_store_n(&sv->v, v, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&priv_mu);
}

void sh_priv_resole(int i) {
    struct sh_volume *sv = &sh.vol[i];
    /* tried: held for good at exit (sh_priv_exit), or by a move in progress (next time) */
    if (pthread_mutex_trylock(&priv_mu)) return;
    watch_list_own();
    scp_volume *v = __atomic_load_n(&sv->v, __ATOMIC_ACQUIRE);
    if (v && !setxid_busy && !sv->priv && !sv->priv_pending && !sv->sole_pending) {
        scp_err e;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        sh_in_lib++;
        int r = scp_volume_try_sole(v, &e);
        sh_lib_leave();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
        if (r < 0) sh_trace("volume at %s: cannot hold it alone again: %s", sv->mount, e.msg);
        if (r == 1 && priv_watch_start(i) < 0) {
            /* no watcher: shared again at once, as sh_priv_begin without one */
            sh_go_shared(v);
            sh_in_lib++;
            scp_volume_private_end(v);
            sh_lib_leave();
            sh_trace("volume at %s: alone again, but no watcher thread: shared", sv->mount);
        } else if (r == 1) {
            __atomic_store_n(&sv->priv, 1, __ATOMIC_RELEASE);
            sh_trace("volume at %s: nobody else has it open any more, %s again (the move took %ld us)",
                     sv->mount, sh.cfg.flags & SCP_SHIELD_F_SHARED ? "private" : "the sole holder", us);
        }
    }
    pthread_mutex_unlock(&priv_mu);
}

void sh_priv_pending_run(void) {
    /* not nested in the shield's own work (its locks may be held), nor in a vfork child, nor
     * before the filter (a second volume's or the same one's next look-up while the shield
     * starts: sh_ctor runs this once the filter is in; internal.h, sh_filter_up) */
    if (sh_in_lib || !__atomic_load_n(&sh_filter_up, __ATOMIC_ACQUIRE) || (pid_t)syscall(SYS_getpid) != sh.pid)
        return;
    for (int i = 0; i < sh.nvol; i++) {
        struct sh_volume *sv = &sh.vol[i];
        /* (in a trap handler nothing waits for it: it holds no private lock yet) */
        if (!sh_in_trap && __atomic_load_n(&sv->sole_pending, __ATOMIC_ACQUIRE)) sh_sole_try(i);
        if (!__atomic_load_n(&sv->priv_pending, __ATOMIC_ACQUIRE)) continue;
        if (sh_in_trap) {
            /* still no watcher: a newcomer that waits would wait until a call outside a trap,
             * so the trapped call that sees the mark makes the move */
            scp_volume *v = __atomic_load_n(&sv->v, __ATOMIC_ACQUIRE);
            if (v && scp_volume_private_wanted(v)) sh_priv_end(i);
            continue;
        }
        pthread_mutex_lock(&priv_mu);
        int start = sv->priv_pending && sv->priv;
        if (start && priv_watch_start(i) == 0) {
            sv->priv_pending = 0;
            __atomic_sub_fetch(&sh_priv_npending, 1, __ATOMIC_RELEASE);
            sh_trace("volume at %s: private until this image forks or another opens it", sv->mount);
            start = 0;
        }
        pthread_mutex_unlock(&priv_mu);
        if (start) sh_priv_end(i); /* no watcher can be started: shared now */
    }
}

static void ofd_release(pfile *pf, unsigned pass) {
    if (!pf || !pf->ofd || pf->ofd_pass == pass) return;
    pf->ofd_pass = pass;
    struct sh_ofd *o = sh_ofd_enter(pf); /* the handle keeps the offset, for a late write */
    __atomic_store_n(&pf->ofd, NULL, __ATOMIC_RELEASE);
    sh_ofd_leave(pf, o);
    sh_ofd_put(o);
}

void sh_fork_child_guards(void) {
    /* The forking thread holds it (sh_fork_share); the child has that thread only, and no
     * watcher. */
    pthread_mutex_init(&priv_mu, NULL);
    sh_lk_fork_child();
    for (unsigned i = 0; i < ndesc(); i++) {
        pfile *pf = desc_at(i);
        if (pf) pthread_mutex_init(&pf->mu, NULL);
    }
}

void sh_ofd_release_all(void) {
    sh_shm_release_all();
    if (!sh.active || !sh.ofd_map || sh_in_vfork_child()) return;
    pthread_mutex_lock(&sh.mu);
    unsigned pass = ++sh_ofd_pass;
    for (unsigned i = 0; i < ndesc(); i++) ofd_release(desc_at(i), pass);
    pthread_mutex_unlock(&sh.mu);
}

/* Commit every modified protected file (before exec replaces this image). */
int sh_commit_all(void) {
    int bad = 0;
    /* never nested in this thread's own shield call: the program's handlers run only outside
     * it (nofault.c defers them), and _exit and exit do not commit from inside it */
    assert(sh_in_lib == 0);
    sh_in_lib++;
    pthread_mutex_lock(&sh.mu);
    /* only what this process wrote: a forked child exiting must not commit (or wait for) the
     * writes its parent had buffered when it forked */
    for (int i = 0; i < sh.nslots; i++) {
        pfile *pf = sh.slot[i];
        if (pf && pf->kind == PF_FILE && writable(pf) && pf->wpid == sh.pid) {
            scp_err e;
            if (scp_vfile_fsync(pf->vf, &e)) bad = 1;
        }
    }
    for (int i = 0; i < sh.lo && sh.nalias; i++) {
        pfile *pf = sh.alias[i];
        if (pf && pf->kind == PF_FILE && writable(pf) && pf->wpid == sh.pid) {
            scp_err e;
            if (scp_vfile_fsync(pf->vf, &e)) bad = 1;
        }
    }
    sh_maps_writeback_own();
    /* Namespace operations still pending durability, and the objects of removed files that
     * wait for it: the next image (or nobody) would leave them to garbage collection. */
    for (int i = 0; i < sh.nvol; i++) {
        scp_err e;
        if (sh.vol[i].v && scp_volume_sync(sh.vol[i].v, &e)) bad = 1;
        /* (exit, exec, fork: this process's kept objects of removed files go now too) */
        if (sh.vol[i].v) scp_volume_drop_spares(sh.vol[i].v);
    }
    pthread_mutex_unlock(&sh.mu);
    sh_lib_leave();
    return bad ? -1 : 0;
}
