/* volume/vlock.c - the volume lock across processes: a robust mutex in the lock file's mapped
 * page, or an OFD lock on its byte 0.
 *
 * Every commit, catch-up and settle of a shared volume runs under this lock (vol_lock, in
 * volume.c, takes the process's own mutex v->mu first, then this). It was an OFD write lock on
 * byte 0 of the lock file: two fcntl calls per hold, about 2.5 us each on this machine, and a
 * PostgreSQL transaction takes the lock about twice (bench/RESULTS.md, "Session 44"). Now it is a
 * process-shared robust pthread mutex at VOL_VLOCK_OFF of the page that every process of the
 * volume already maps (the hints, volume.c hint_map): no system call when it is free, a futex
 * wait when it is not, and, as with the OFD lock, a holder that dies gives it up (the next
 * taker gets EOWNERDEAD and carries on: what a commit left half done is what a kill inside it
 * left before, which the catch-up and the open's settle handle).
 *
 * Which of the two a volume uses is decided by the page, not by each process: every process of
 * a volume must take the same lock, or they exclude nobody. The kind is decided by a process's
 * first take, under the OFD lock (so two first takes, and a first take and a change, are
 * ordered): an opener that finds no other process present (the presence locks, volume.c) sets
 * the mutex up and writes VOL_VLOCK_MAGIC, or clears the word if SCP_VOLUME_LOCK=fcntl is set in
 * its environment (a switch for measurements, and for file systems whose shared mappings are
 * not coherent between processes); any other takes the mutex if the word is there and the OFD
 * lock if not. Only a process that is alone changes the word, and every process present took
 * its presence lock before its first take, so no process uses the other kind meanwhile. A
 * process that cannot map the page (the mapping is otherwise optional) cannot take the mutex:
 * alone, it clears the word and takes the OFD lock; otherwise it opens the volume only while
 * the page says OFD, and fails with a message when the page says mutex.
 *
 * A build from before the mutex takes the OFD lock on byte 0 for every commit and knows nothing
 * of the page's word. So that such a process, opening a volume that processes of this build
 * lock through the mutex, waits instead of committing beside them, every process of the mutex
 * kind holds a read lock on byte 0 for as long as it has the volume open (through each of its
 * descriptions of the lock file: vol_vlock_own). The kind is decided under a write lock on
 * byte 2 (VLOCK_DECIDE_BYTE), which no other lock uses, so that those read locks do not hold
 * up the decisions of newcomers of this build.
 *
 * The page is the host's, like the hints beside it. A host that writes the mutex's bytes can
 * make processes wait, or let two hold it at once; the second is what a host that edits the
 * volume's files between two processes' commits can do anyway: a commit record or manifest-log
 * record that another overwrote no longer continues the chain, and the next walk reports the
 * volume as tampered with (docs/volume-format.md, "Volume lock"). Processes of one volume share
 * one machine: the OFD lock also worked between machines on a network file system, the mutex
 * in a shared mapping does not (such a volume needs SCP_VOLUME_LOCK=fcntl at every open).
 */
#include <errno.h>
#include <linux/futex.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vstats.h"

_Static_assert(VOL_VLOCK_MAGIC_OFF + 8 <= VOL_VLOCK_OFF, "lock file: the lock's word and mutex overlap");
_Static_assert(VOL_VLOCK_OFF % 16 == 0 && VOL_VLOCK_OFF + sizeof(pthread_mutex_t) <= VOL_LOCKBYTE_OBJDIR,
               "lock file: the volume mutex overlaps the lock bytes");
_Static_assert(VOL_VLOCK_MAGIC_OFF >= VOL_WANT_OFF + 4, "lock file: the lock's word overlaps the wanted word");

static pthread_mutex_t *vlock_mutex(scp_volume *v) {
    assert(v->hint);
    return (pthread_mutex_t *)((char *)v->hint + VOL_VLOCK_OFF);
}

static uint64_t *vlock_word(scp_volume *v) {
    assert(v->hint);
    return (uint64_t *)((char *)v->hint + VOL_VLOCK_MAGIC_OFF);
}

#define VLOCK_DECIDE_BYTE 2

/* An OFD lock of type on byte at of fd, waiting for it (EINTR: again). 0 or -1 (errno). */
static int ofd_wait(int fd, short type, off_t at) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    int r;
    while ((r = fcntl(fd, F_OFD_SETLKW, &fl)) < 0 && errno == EINTR) {
    }
    return r;
}

/* An OFD lock of type on byte at of fd if it is free now: 0, or -1 (errno EAGAIN: held). */
static int ofd_try(int fd, short type, off_t at) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl);
}

static void ofd_drop(int fd, off_t at) {
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    (void)fcntl(fd, F_OFD_SETLK, &fl);
}

/* The OFD lock on byte 0. try_first: one try before waiting, to tell whether it was held. */
static int ofd_take(scp_volume *v, int try_first, int *waited, scp_err *err) {
    if (try_first) {
        if (ofd_try(v->lockfd, F_WRLCK, 0) == 0) return 0;
        *waited = 1;
    }
    if (ofd_wait(v->lockfd, F_WRLCK, 0) < 0) return scp_fail_errno(err, "cannot lock the volume");
    return 0;
}

static void ofd_give(scp_volume *v) { ofd_drop(v->lockfd, 0); }

/* How long a waiter sleeps before it looks at the mutex again (mutex_wait). */
#define VLOCK_RECHECK_NS (10 * 1000 * 1000L)

/* Wait for the mutex, looking again every VLOCK_RECHECK_NS.
 *
 * A waiter may sleep on while the mutex is free, and no unlock would ever wake it: the wake-up
 * that was meant for it can be lost. An unlock clears the word and wakes one sleeper, which
 * then takes the mutex, setting the word's waiters bit (FUTEX_WAITERS) again for those still
 * asleep. If that sleeper is killed after its wake-up and before it takes the mutex, and
 * another process takes the free mutex meanwhile (its word then has no waiters bit), the
 * kernel's clean-up of the dead one passes the wake-up on only when the word is still free
 * (handle_futex_death, for a robust list's pending entry); so nobody wakes the others, and the
 * next unlocks see no waiters bit either. test_volume_forkstress, which kills processes at
 * random, hung that way (session 44's CI: one process asleep in the mutex's wait while the
 * word read 0; reproduced here in 7 of about 60 runs before this wait, in none of 85 after).
 * The OFD lock had no such case: the kernel holds its waiters.
 *
 * So the wait is bounded and taken again: a lost wake-up costs its sleepers at most
 * VLOCK_RECHECK_NS. A waiter that took the mutex after such a look sets the waiters bit
 * itself (the word is the kernel's robust-futex ABI, documented in futex(2); glibc's unlock
 * wakes one sleeper when the bit is set, a needless futex call at worst), since it cannot tell
 * whether others sleep unwoken beside it. Waits shorter than VLOCK_RECHECK_NS, nearly all of
 * them (a commit holds the lock for tens of microseconds, a durable one for a flush), are
 * unchanged. Returns what pthread_mutex_clocklock returns, never ETIMEDOUT. */
static int mutex_wait(pthread_mutex_t *m) {
    int r, looked = 0;
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_nsec += VLOCK_RECHECK_NS;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &t);
        if (r != ETIMEDOUT) break;
        VSTAT(vlock_recheck);
        looked = 1;
    }
    if (looked && (r == 0 || r == EOWNERDEAD))
        __atomic_fetch_or((unsigned int *)&m->__data.__lock, (unsigned int)FUTEX_WAITERS, __ATOMIC_RELAXED);
    return r;
}

static int mutex_take(scp_volume *v, int try_first, int *waited, scp_err *err) {
    pthread_mutex_t *m = vlock_mutex(v);
    int r = try_first ? pthread_mutex_trylock(m) : EBUSY;
    if (r == EBUSY) {
        if (try_first) *waited = 1;
        r = mutex_wait(m);
    }
    /* (its holder died: what it left half done is a kill's, as with the OFD lock) */
    if (r == EOWNERDEAD) r = pthread_mutex_consistent(m);
    if (r != 0)
        return scp_fail(err, SCP_E_SYS, r,
                        "cannot lock the volume: the lock in its lock file is not usable (%s); "
                        "it is set up again by the next process that opens the volume alone",
                        strerror(r));
    return 0;
}

/* A process's first take: decide the kind under the decision lock (the file comment), then
 * take the volume lock of that kind. */
static int vlock_decide(scp_volume *v, int try_first, int *waited, scp_err *err) {
    if (ofd_wait(v->lockfd, F_WRLCK, VLOCK_DECIDE_BYTE) < 0)
        return scp_fail_errno(err, "cannot lock the volume");
    const char *s = getenv("SCP_VOLUME_LOCK");
    int want_ofd = s && strcmp(s, "fcntl") == 0;
    uint64_t word = 0;
    if (v->hint) word = __atomic_load_n(vlock_word(v), __ATOMIC_ACQUIRE);
    else if (pread(v->lockfd, &word, sizeof word, VOL_VLOCK_MAGIC_OFF) != (ssize_t)sizeof word) word = 0;
    int alone = vol_alone_now(v);
    if (!v->hint && alone && word != 0) {
        /* (alone without the mapping: the OFD lock, for whoever opens while we have it) */
        word = 0;
        if (pwrite(v->lockfd, &word, sizeof word, VOL_VLOCK_MAGIC_OFF) != (ssize_t)sizeof word)
            word = VOL_VLOCK_MAGIC; /* (not cleared: refused below, as if not alone) */
    } else if (v->hint && alone) {
        /* Nobody else present, so nobody holds the mutex or waits for it: set it up afresh
         * (whatever a dead holder or the host left in it) */
        if (!want_ofd) {
            pthread_mutexattr_t at;
            int r = pthread_mutexattr_init(&at);
            if (r == 0) r = pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
            if (r == 0) r = pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
            if (r == 0) r = pthread_mutex_init(vlock_mutex(v), &at);
            pthread_mutexattr_destroy(&at);
            want_ofd = r != 0;
        }
        __atomic_store_n(vlock_word(v), want_ofd ? 0 : VOL_VLOCK_MAGIC, __ATOMIC_RELEASE);
        word = want_ofd ? 0 : VOL_VLOCK_MAGIC;
    }
    int kind = word == VOL_VLOCK_MAGIC ? VLOCK_MUTEX : VLOCK_OFD;
    /* (the mutex kind's read lock on byte 0, under the decision lock: see vol_vlock_own) */
    int rc = 0;
    if (kind == VLOCK_MUTEX && !v->hint)
        rc = scp_fail(err, SCP_E_SYS, ENOMEM,
                      "cannot lock the volume: its lock file's first pages could not be mapped, "
                      "and the processes that have it open lock it through that mapping");
    else if (kind == VLOCK_MUTEX && ofd_wait(v->lockfd, F_RDLCK, 0) < 0)
        rc = scp_fail_errno(err, "cannot lock the volume");
    ofd_drop(v->lockfd, VLOCK_DECIDE_BYTE);
    if (rc < 0) return -1;
    v->vlock_kind = kind;
    return vol_vlock_take(v, try_first, waited, err);
}

int vol_vlock_own(scp_volume *v, int fd, int wait) {
    if (v->vlock_kind != VLOCK_MUTEX) return 0;
    return wait ? ofd_wait(fd, F_RDLCK, 0) : ofd_try(fd, F_RDLCK, 0);
}

int vol_vlock_take(scp_volume *v, int try_first, int *waited, scp_err *err) {
    switch (v->vlock_kind) {
    case VLOCK_MUTEX: return mutex_take(v, try_first, waited, err);
    case VLOCK_OFD: return ofd_take(v, try_first, waited, err);
    default: return vlock_decide(v, try_first, waited, err);
    }
}

void vol_vlock_give(scp_volume *v) {
    assert(v->vlock_kind == VLOCK_MUTEX || v->vlock_kind == VLOCK_OFD);
    if (v->vlock_kind == VLOCK_MUTEX) (void)pthread_mutex_unlock(vlock_mutex(v));
    else ofd_give(v);
}
