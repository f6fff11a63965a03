/* shield/volopen.c - when and how the image opens its volumes: at their first use
 * (sh_volume_ready), or before main for the launcher's check (SCP_SHIELD_F_OPEN_CHECK); the
 * holding each open takes (private, sole, shared beside another program); the tries to hold a
 * shared volume alone again; the report of each commit's tag to the supervisor. Moved out of
 * init.c (start-up, the SIGSYS handler, exec), which calls in here at start, fork and exec. */
#include <assert.h>
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/util.h"
#include "shield/internal.h"

/* <sys/socket.h> would clash with the shield's PF_FILE; the Linux value of MSG_NOSIGNAL */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0x4000
#endif

/* The supervisor's tag socket (scpctl run): -1 when the launcher gave none; with --tag-sync
 * also the shared acknowledgement page. */
static int tag_fd = -1;
static struct scp_shield_tag_sync *tag_sync;

/* After each commit of volume (uintptr_t)ctx: one record, u8 index || tag. If the supervisor
 * is gone the send fails and is ignored (CAS then lags behind, which the next run sees as a
 * volume newer than expected, never as a rollback), and a sync wait ends at once. */
static void report_tag(void *ctx, const scp_volume_tag *tag) {
    uint8_t rec[1 + SCP_VOLUME_TAG_LEN];
    unsigned i = (unsigned)(uintptr_t)ctx;
    rec[0] = (uint8_t)i;
    memcpy(rec + 1, tag, SCP_VOLUME_TAG_LEN);
    long r;
    do r = sh_gate(SYS_sendto, tag_fd, (long)rec, (long)sizeof rec, MSG_NOSIGNAL, 0, 0);
    while (r == -EINTR);
    if (r < 0 || !tag_sync || i >= 8) return;
    uint64_t gen = scp_get_u64(tag->bytes);
    for (;;) {
        uint32_t seen = __atomic_load_n(&tag_sync->acks, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&tag_sync->acked[i], __ATOMIC_ACQUIRE) >= gen) return;
        /* the supervisor closes its end when it stops: then nobody will acknowledge */
        struct pollfd pf = {.fd = tag_fd, .events = 0};
        if (sh_gate(SYS_poll, (long)&pf, 1, 0, 0, 0, 0) > 0 && (pf.revents & (POLLHUP | POLLERR))) return;
        struct timespec ts = {1, 0};
        syscall(SYS_futex, &tag_sync->acks, FUTEX_WAIT, seen, &ts, NULL, 0);
    }
}

const char *sh_vol_tag_init(void) {
    const char *v = getenv(SCP_SHIELD_ENV_TAG_FD);
    if (!v) return NULL;
    char *end;
    long fd = strtol(v, &end, 10);
    /* only a number in the shield's own range, which the program cannot have reused */
    if (*end || fd < sh.base + sh.nslots || fd >= sh.hi) return "bad " SCP_SHIELD_ENV_TAG_FD;
    tag_fd = (int)fd;
    v = getenv(SCP_SHIELD_ENV_TAG_SYNC_FD);
    if (!v) return NULL;
    fd = strtol(v, &end, 10);
    if (*end || fd < sh.base + sh.nslots || fd >= sh.hi) return "bad " SCP_SHIELD_ENV_TAG_SYNC_FD;
    void *p = (void *)sh_gate(SYS_mmap, 0, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if ((unsigned long)p >= (unsigned long)-4095L) return "cannot map the tag-sync page";
    tag_sync = p;
    return NULL;
}

/* The volumes are opened when the program first uses one (a path under its mount point, or a
 * protected descriptor handed on by exec), not before main: opening one is the first use of
 * OpenSSL in the process (its initialisation and first algorithm fetches, about 1-1.5 ms of
 * CPU), which a program that never touches a volume (most of what a shell or git execs)
 * need not pay. The key check and the integrity of the state are the same as at start: the
 * open authenticates the header and the manifest, and it refuses a state older than the one
 * this run already reached (the configuration's `seen`: the launcher's open, or the exec'ing
 * image's last commit), so a rollback on the host before the first use is refused as one at
 * start would be. */
static pthread_mutex_t vol_open_mu = PTHREAD_MUTEX_INITIALIZER;
/* the volumes opened before main for the launcher's check and not yet taken (sh_vol_open_check) */
static scp_volume *checked[SCP_SHIELD_MAX_VOLUMES];
/* a program's signal handler that interrupts an open and uses a mount in the same thread gets
 * an error, not a deadlock */
static __thread int vol_opening;

/* Shared mode for volume v, which another program has open (open_volume, sh_sole_try): the
 * processes of two programs then write the same files as a family's do. Should it fail, the
 * volume stays in the ordinary mode: a file another process writes gets EBUSY, as before.
 * Caller is inside the library (sh_in_lib). */
static int join_other(scp_volume *v, struct sh_volume *sv) {
    scp_err e;
    if (scp_volume_join_shared(v, &e) < 0) {
        sh_trace("volume at %s: cannot go shared: %s", sv->mount, e.msg);
        return -1;
    }
    sh_trace("volume at %s: another program has it open, shared", sv->mount);
    __atomic_store_n(&sh_resole_on, 1, __ATOMIC_RELAXED); /* (until it leaves: sh_resole_poll) */
    return 0;
}

static long open_volume(int i) {
    struct sh_volume *sv = &sh.vol[i];
    const scp_shield_volume *cv = &sh.cfg.vol[i];
    scp_err e;
    scp_volume *v = checked[i]; /* opened before main (sh_vol_open_check) */
    checked[i] = NULL;
    sh_in_lib++; /* its own calls through libc go to the kernel */
    if (!v) v = scp_volume_open(sv->dirpath, sh.keys[i], cv->have_seen ? &cv->seen : NULL, &e);
    sh_lib_leave();
    if (!v) {
        sh_trace("cannot open the protected volume at %s: %s", sv->mount, e.msg);
        return -(long)(e.sys ? e.sys : EIO);
    }
    if (tag_fd >= 0) scp_volume_on_commit(v, report_tag, (void *)(uintptr_t)i);
    /* A close is no sync in POSIX: a new file's close commits lazily, durable at the next
     * fsync, sync or exit (tar, pip, git checkout: three flushes per file before) */
    scp_volume_set_lazy_close(v, 1);
    /* Shared mode comes with the configuration from the image that exec'd this one, once that
     * family forked. It is for processes that write the same files at once; an image that has
     * not forked itself and finds nobody else with the volume open writes it privately (the
     * volume's private lock, scp_volume_go_private): a server exec'd by a shell script that ran
     * commands first (bash forks for each, mariadb-install-db before mariadbd) would otherwise
     * pay a commit per write for its whole life. It goes shared at its first fork
     * (sh_fork_share) or when another process opens the volume shared (which waits for that in
     * scp_volume_join_shared; a watcher thread of this process sees its mark, priv_watch in holding.c).
     * From a trap handler (mariadbd's first use of its data directory is glibc's realpath) the
     * watcher starts at the next call outside one (sh_priv_poll); shared if it cannot start.
     * Under vol_open_mu, which a fork holds too: sh.forked is stable. */
    /* Outside a shared family the same private lock makes this process the volume's sole
     * holder (docs/volume-format.md, "Sole holder"): every other open waits for it, so its
     * commits skip the cross-process lock and the catch-up (sqlite3's WAL transaction: two
     * fcntl, an fstat and a pread fewer; a DELETE-mode one, a catch-up per namespace call).
     * Its watcher lets a newcomer in by releasing the lock, without going shared (sh_priv_end). */
    int priv = 0;
    if (sh.cfg.flags & SCP_SHIELD_F_SHARED) {
        sh_in_lib++;
        if (!sh.forked && scp_volume_go_private(v)) priv = 1;
        else if (scp_volume_join_shared(v, &e) < 0) {
            scp_volume_close(v, NULL);
            sh_lib_leave();
            sh_trace("cannot open the protected volume at %s shared: %s", sv->mount, e.msg);
            return -(long)(e.sys ? e.sys : EIO);
        } else {
            __atomic_store_n(&sh_resole_on, 1, __ATOMIC_RELAXED); /* (sh_resole_poll) */
        }
        sh_lib_leave();
    } else if (!sh.forked && !sh_in_trap) {
        /* Also while the shield starts (a program whose cwd lies in a mount opens the volume
         * in sh_ctor, before its filter): the holding is taken now and its watcher starts once
         * the filter is in, a few system calls later (sh_priv_begin; internal.h, sh_filter_up) */
        sh_in_lib++;
        priv = scp_volume_go_private(v);
        /* Another process has the volume open: another program (a second scpctl run of the
         * volume), whose sole holding ended when this one opened (sh_priv_end). The two may
         * write the same files, so both work in shared mode: each write published, the
         * writer lock held only inside a call. */
        if (!priv) (void)join_other(v, sv);
        sh_lib_leave();
    } else if (!sh.forked) {
        /* Not now, from a trap handler: no watcher could start there, and a newcomer, perhaps
         * a second `scpctl run` that never waited before, would wait for this program's next
         * call outside one. So the volume opens in the ordinary mode, and the next call
         * outside a trap tries for the sole holding (sh_sole_try). mariadbd under scpctl run
         * (its first use of the data directory is glibc's realpath, a trapped readlink) never
         * got it before. Until then a newcomer gets in as beside any program, and go_private
         * then finds it present and does not take the holding. */
        __atomic_store_n(&sv->sole_pending, 1, __ATOMIC_RELEASE);
        __atomic_add_fetch(&sh_priv_npending, 1, __ATOMIC_RELEASE);
    }
    if (priv) sh_priv_begin(i, v); /* publishes v */
    else __atomic_store_n(&sv->v, v, __ATOMIC_RELEASE);
    sh_trace("volume at %s opened", sv->mount);
    return 0;
}

void sh_sole_try(int i) {
    assert(i >= 0 && i < sh.nvol && !sh_in_trap);
    struct sh_volume *sv = &sh.vol[i];
    /* vol_open_mu keeps sh.forked stable (a fork's prepare holds it) until the watcher runs;
     * tried, not waited for: this thread may hold it already (a fork's prepare that commits) */
    if (!__atomic_load_n(&sh_filter_up, __ATOMIC_ACQUIRE) || pthread_mutex_trylock(&vol_open_mu)) return;
    if (__atomic_exchange_n(&sv->sole_pending, 0, __ATOMIC_ACQ_REL)) {
        __atomic_sub_fetch(&sh_priv_npending, 1, __ATOMIC_RELEASE);
        scp_volume *v = __atomic_load_n(&sv->v, __ATOMIC_ACQUIRE);
        assert(v); /* published by open_volume before the flag could be seen here */
        int priv = 0;
        if (!sh.forked && !(sh.cfg.flags & SCP_SHIELD_F_SHARED)) {
            /* (a volume in use: go_private's first vol_lock catches up with whatever other
             * processes committed while it was open in the ordinary mode; another program
             * there: shared, as in open_volume) */
            sh_in_lib++;
            priv = scp_volume_go_private(v);
            int joined = !priv && join_other(v, sv) == 0;
            sh_lib_leave();
            /* what it wrote in the ordinary mode: committed, and its writer locks let go */
            if (joined) sh_go_shared(v);
        }
        if (priv) sh_priv_begin(i, v);
        else sh_trace("volume at %s: not the sole holder (forked, or another process has it open)", sv->mount);
    }
    pthread_mutex_unlock(&vol_open_mu);
}

/* Back to the sole holding (internal.h, sh_resole_on): at most one try per RESOLE_EVERY_NS,
 * by the first call outside a trap that finds it due; under vol_open_mu (tried), which a
 * fork's prepare holds, so that sh.forked and a fork's move are stable meanwhile. */
#define RESOLE_EVERY_NS 100000000ull
static uint64_t resole_next;
void sh_resole_poll(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* (the vDSO: no system call) */
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    uint64_t next = __atomic_load_n(&resole_next, __ATOMIC_RELAXED);
    if (now < next || sh_in_lib || sh_in_trap) return;
    if (!__atomic_compare_exchange_n(&resole_next, &next, now + RESOLE_EVERY_NS, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    /* not before the filter (no thread may start), nor in a vfork child (our memory) */
    if (!__atomic_load_n(&sh_filter_up, __ATOMIC_ACQUIRE) || (pid_t)syscall(SYS_getpid) != sh.pid ||
        pthread_mutex_trylock(&vol_open_mu))
        return;
    for (int i = 0; i < sh.nvol; i++) sh_priv_resole(i);
    pthread_mutex_unlock(&vol_open_mu);
}

long sh_volume_ready(int i) {
    assert(i >= 0 && i < sh.nvol);
    sh_priv_poll();
    if (__builtin_expect(__atomic_load_n(&sh.vol[i].v, __ATOMIC_ACQUIRE) != NULL, 1)) return 0;
    /* a vfork or posix_spawn child shares our memory (but not our descriptor table): the
     * volume it opened would be half its own, half its parent's (as for protected opens) */
    if ((pid_t)syscall(SYS_getpid) != sh.pid) return -EACCES;
    if (vol_opening) return -EDEADLK;
    vol_opening = 1;
    pthread_mutex_lock(&vol_open_mu);
    long r = sh.vol[i].v ? 0 : open_volume(i);
    pthread_mutex_unlock(&vol_open_mu);
    vol_opening = 0;
    return r;
}

/* SCP_SHIELD_F_OPEN_CHECK: the launcher left a volume's first open to this image (launch.c,
 * shield_checks_volumes: a program that names a path in the volume). Each such volume is
 * opened now, before main, with the same checks (the header and the key, the manifest's
 * authentication), and one that fails stops the program as the launcher's own open did: its
 * line on standard error ("scpctl: volume DIR: ...", the volume library's message with DIR
 * where it names the descriptor path this process opens it by) and its exit status
 * (scp_err_exit_status: 4 a wrong key, 3 a manifest that fails authentication, 1 the rest).
 * The opened volume is kept aside (checked[]), not published: the program's first use takes
 * it (open_volume) instead of opening the volume a second time, and until then nothing of the
 * holding starts (no private lock, no watcher thread: a program that changes its credentials
 * first, setpriv, runs as before). A fork's prepare and an exec close what was not taken: the
 * images after it open at first use again, against the state checked here (`seen`). */
void sh_vol_open_check(void) {
    sh.cfg.flags &= ~SCP_SHIELD_F_OPEN_CHECK;
    for (int i = 0; i < sh.nvol; i++) {
        const char *dir = sh.cfg.check_dir[i];
        if (!memchr(dir, 0, sizeof sh.cfg.check_dir[i]) || !dir[0]) continue; /* the launcher opened it */
        scp_shield_volume *cv = &sh.cfg.vol[i];
        scp_err e = {0};
        sh_in_lib++;
        scp_volume *v = scp_volume_open(sh.vol[i].dirpath, sh.keys[i], cv->have_seen ? &cv->seen : NULL, &e);
        sh_lib_leave();
        if (v) {
            scp_volume_tag_get(v, &cv->seen); /* as the launcher's open: nothing older from now on */
            cv->have_seen = 1;
            checked[i] = v;
            sh_trace("volume at %s checked before main", sh.vol[i].mount);
            continue;
        }
        sh_trace("cannot open the protected volume at %s: %s", sh.vol[i].mount, e.msg);
        char msg[sizeof e.msg + 4 * SCP_SHIELD_MAX_MOUNT], line[sizeof msg + 2 * SCP_SHIELD_MAX_MOUNT];
        e.msg[sizeof e.msg - 1] = 0;
        const char *from = sh.vol[i].dirpath, *p = e.msg[0] ? e.msg : scp_code_name(e.code);
        size_t fl = strlen(from), n = 0;
        while (*p && n + 1 < sizeof msg) { /* the launcher's path where the message names ours */
            if (!strncmp(p, from, fl) && !(p[fl] >= '0' && p[fl] <= '9')) {
                n += (size_t)snprintf(msg + n, sizeof msg - n, "%s", dir);
                if (n >= sizeof msg) n = sizeof msg - 1;
                p += fl;
            } else {
                msg[n++] = *p++;
            }
        }
        msg[n] = 0;
        sh.cfg.check_who[sizeof sh.cfg.check_who - 1] = 0;
        int l = snprintf(line, sizeof line, "%s: volume %s: %s\n", sh.cfg.check_who, dir, msg);
        if (l > 0) {
            ssize_t w = write(2, line, (size_t)l < sizeof line ? (size_t)l : sizeof line - 1);
            (void)w;
        }
        _exit(scp_err_exit_status(e.code));
    }
}

static int checked_any(void) {
    for (int i = 0; i < sh.nvol; i++)
        if (__atomic_load_n(&checked[i], __ATOMIC_RELAXED)) return 1;
    return 0;
}

/* Close the checked volumes nobody took (a fork's prepare, an exec; under vol_open_mu or in the
 * only thread that may open one). */
static void checked_drop(void) {
    for (int i = 0; i < sh.nvol; i++) {
        if (!checked[i]) continue;
        sh_in_lib++;
        scp_volume_close(checked[i], NULL);
        sh_lib_leave();
        checked[i] = NULL;
    }
}

void sh_vol_fork_prepare(void) {
    pthread_mutex_lock(&vol_open_mu);
    checked_drop(); /* the child does not get them: what is used after the fork opens again */
}

void sh_vol_fork_done(void) { pthread_mutex_unlock(&vol_open_mu); }

void sh_vol_exec_drop(void) {
    /* the mutex only when there is something to close: an exec from a handler that
     * interrupted its holder in this thread would wait forever */
    if (vol_opening || !checked_any()) return;
    pthread_mutex_lock(&vol_open_mu);
    checked_drop();
    pthread_mutex_unlock(&vol_open_mu);
}

void sh_vol_open_hold(int on) {
    if (vol_opening) return; /* this thread holds it, in open_volume */
    if (on) pthread_mutex_lock(&vol_open_mu);
    else pthread_mutex_unlock(&vol_open_mu);
}
