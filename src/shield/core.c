/* shield/core.c - protected descriptors and the emulated system calls.
 *
 * sh_syscall(nr, args) is the one place where a system call on a protected descriptor is
 * carried out; sh_path_call(nr, args) is the one place where a path-based call under a
 * protected mount point is. Both return what the kernel would: a result or -errno.
 *
 * They may run inside the SIGSYS handler, on top of whatever the program was doing at a system
 * call on a protected descriptor: typically inside stdio with the FILE lock held, never inside
 * malloc (glibc's allocator makes no such calls). They take only the shield's own mutex and
 * the volume library's locks, which the program cannot hold.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "shield/internal.h"
#include "shield/net.h"

struct sh_state sh = {.mu = PTHREAD_MUTEX_INITIALIZER, .placeholder = -1};

__thread int sh_in_trap;
__thread int sh_in_lib;

/* ---- trace ------------------------------------------------------------------------------- */

void sh_vlog_line(int fd, const char *head, const char *fmt, va_list ap) {
    char line[PATH_MAX + 256];
    int n = snprintf(line, sizeof line, "%s", head);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0) return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    /* a sealed stderr is a placeholder the host never sees: the line leaves as a record like
     * the program's own output, so the owner reads it with `scpctl logs` and the host does not */
    long a[6] = {fd, (long)line, (long)len, 0, 0, 0}, r;
    if (!sh_console_fd(fd) || !sh_console_call(SYS_write, a, &r)) sh_gate(SYS_write, fd, (long)line, (long)len, 0, 0, 0);
}

void sh_trace(const char *fmt, ...) {
    if (!(sh.cfg.flags & SCP_SHIELD_F_TRACE) || sh.cfg.trace_fd < 0) return;
    char head[64];
    snprintf(head, sizeof head, "scp-shield[%ld]%s: ", (long)syscall(SYS_getpid), sh_in_trap ? " trap" : "");
    va_list ap;
    va_start(ap, fmt);
    sh_vlog_line(sh.cfg.trace_fd, head, fmt, ap);
    va_end(ap);
}

void sh_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sh_vlog_line(2, "scp-shield: ", fmt, ap);
    va_end(ap);
}

/* ---- descriptors ------------------------------------------------------------------------- */

static long neg(const scp_err *e) { return -(long)(e->sys ? e->sys : EIO); }

static pfile *pf_new(enum pf_kind kind, int vol, int flags, const char *path) {
    pfile *pf = calloc(1, sizeof *pf);
    if (!pf) return NULL;
    pf->path = strdup(path);
    if (!pf->path) {
        free(pf);
        return NULL;
    }
    pf->kind = kind;
    pf->vol = vol;
    pf->flags = flags;
    pf->refs = 1;
    pf->lkfd = -1;
    pthread_mutex_init(&pf->mu, NULL);
    return pf;
}

static void ofd_put(struct sh_ofd *o);

static long pf_destroy(pfile *pf) {
    long r = 0;
    if (pf->ofd) ofd_put(pf->ofd);
    if (pf->vf) {
        scp_err e;
        if (scp_vfile_close(pf->vf, &e)) {
            sh_trace("close of '%s' failed to commit: %s", pf->path, e.msg);
            r = neg(&e);
        }
    }
    if (pf->lkfd >= 0) { /* releases its OFD and flock locks, as the last close would */
        sh_in_lib++; /* a volume-library descriptor: close() forgets it */
        close(pf->lkfd);
        sh_lib_leave();
    }
    for (size_t i = 0; i < pf->nents; i++) free(pf->ents[i].name);
    free(pf->ents);
    pthread_mutex_destroy(&pf->mu);
    free(pf->path);
    free(pf);
    return r;
}

static long pf_put(pfile *pf) {
    if (!pf) return 0;
    if (__atomic_sub_fetch(&pf->refs, 1, __ATOMIC_ACQ_REL) == 0) return pf_destroy(pf);
    return 0;
}

static int alias_valid(long fd) {
    long fl = sh_gate(SYS_fcntl, fd, F_GETFL, 0, 0, 0, 0);
    return fl >= 0 && (fl & O_PATH);
}

int sh_is_prot(long fd) {
    if (!sh.active) return 0;
    if (sh_reserved(fd) || sh_console_fd(fd)) return 1;
    if (fd < 0 || fd >= sh.lo || !__atomic_load_n(&sh.nalias, __ATOMIC_ACQUIRE)) return 0;
    pthread_mutex_lock(&sh.mu);
    pfile *pf = sh.alias[fd];
    pthread_mutex_unlock(&sh.mu);
    if (!pf) return 0;
    if (alias_valid(fd)) return 1;
    /* the program closed the alias behind the shield's back: forget it */
    pthread_mutex_lock(&sh.mu);
    if (sh.alias[fd] == pf) {
        sh.alias[fd] = NULL;
        sh.nalias--;
    } else pf = NULL;
    pthread_mutex_unlock(&sh.mu);
    pf_put(pf);
    return 0;
}

/* Reference to the description behind fd, or NULL with *e = -EBADF. */
static pfile *pf_get(long fd, long *e) {
    sh_priv_poll();
    pfile *pf = NULL;
    pthread_mutex_lock(&sh.mu);
    if (fd >= sh.base && fd < sh.base + sh.nslots) pf = sh.slot[fd - sh.base];
    else if (fd >= 0 && fd < sh.lo) pf = sh.alias[fd];
    if (pf) __atomic_add_fetch(&pf->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&sh.mu);
    if (!pf) *e = -EBADF;
    return pf;
}

/* The kernel's close-on-exec flag of a slot's placeholder mirrors the slot's, so that the
 * kernel's descriptor table says which protected descriptors an exec hands on, also in a
 * vfork child (which shares the shield's memory with its parent and so must not change it). */
static void kset_cloexec(long fd, int on) { sh_gate(SYS_fcntl, fd, F_SETFD, on ? FD_CLOEXEC : 0, 0, 0, 0); }

/* Put pf (whose reference the caller gives away) into the lowest free slot >= min. */
static long slot_alloc(pfile *pf, long min, int cloexec) {
    long idx = min > sh.base ? min - sh.base : 0;
    pthread_mutex_lock(&sh.mu);
    for (; idx < sh.nslots; idx++)
        if (!sh.slot[idx]) {
            sh.slot[idx] = pf;
            /* a free slot's placeholder keeps the flag its last user left (slot_take does not
             * reset it): a server that opens and closes a file per request pays no fcntl */
            if (sh.slot_cloexec[idx] != (cloexec != 0)) {
                sh.slot_cloexec[idx] = (unsigned char)(cloexec != 0);
                kset_cloexec(sh.base + idx, cloexec);
            }
            pthread_mutex_unlock(&sh.mu);
            return sh.base + idx;
        }
    pthread_mutex_unlock(&sh.mu);
    return -EMFILE;
}

/* Remove fd's description from its slot or alias; returns it (reference passes to caller). */
static pfile *slot_take(long fd) {
    pfile *pf = NULL;
    pthread_mutex_lock(&sh.mu);
    if (fd >= sh.base && fd < sh.base + sh.nslots) {
        pf = sh.slot[fd - sh.base];
        sh.slot[fd - sh.base] = NULL; /* its placeholder may stay inheritable: harmless, an
                                         * exec hands on occupied slots only */
    } else if (fd >= 0 && fd < sh.lo && sh.alias[fd]) {
        pf = sh.alias[fd];
        sh.alias[fd] = NULL;
        sh.nalias--;
    }
    pthread_mutex_unlock(&sh.mu);
    return pf;
}


/* A vfork/posix_spawn child: same memory as the parent (atfork does not run for it). */
static int in_vfork_child(void) { return (pid_t)syscall(SYS_getpid) != sh.pid; }

/* ---- shared open file descriptions ---------------------------------------------------------
 * The kernel keeps a file's offset and status flags in the open file description, which fork
 * and exec share: `{ echo 1; sh -c 'echo 2'; echo 3; } > f` writes 1, 2, 3 one after the other.
 * A protected description's cursor lives in the volume library's handle, in process memory, so
 * once another process may hold the description (sh_fork_share: fork, vfork, posix_spawn) its
 * offset and flags move to a slot of a region that every process of the program maps shared
 * (struct sh_ofd). Every cursor operation then runs under the slot's lock, on the handle's
 * cursor set from the slot and stored back: two processes' writes land one after the other. A
 * description that no other process can hold keeps the handle's cursor and pays nothing. */

#define OFD_MAP_LEN ((size_t)SCP_SHIELD_OFD_SLOTS * sizeof(struct sh_ofd))
#define OFD_UNSET (-1) /* off: take the first user's cursor (the fork copied it to both) */

static struct sh_ofd *ofd_map_fd(int fd) {
    long p = sh_gate(SYS_mmap, 0, (long)OFD_MAP_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return (unsigned long)p >= -4095ul ? NULL : (struct sh_ofd *)p;
}

/* The region, made once per program (forks and execs inherit its descriptor). Under sh.mu. */
static int ofd_region(void) {
    assert(scp_mutex_held(&sh.mu));
    if (sh.ofd_map) return 0;
    long m = sh_gate(SYS_memfd_create, (long)"scp-shield-ofd", 0, 0, 0, 0, 0);
    if (m < 0) return (int)m;
    long r = sh_gate(SYS_ftruncate, m, (long)OFD_MAP_LEN, 0, 0, 0, 0);
    if (r == 0) r = sh_gate(SYS_dup3, m, SH_OFD_FD(), 0, 0, 0, 0);
    sh_gate(SYS_close, m, 0, 0, 0, 0, 0);
    if (r < 0) return (int)r;
    struct sh_ofd *map = ofd_map_fd(SH_OFD_FD());
    if (!map) {
        sh_gate(SYS_close, SH_OFD_FD(), 0, 0, 0, 0, 0);
        return -ENOMEM;
    }
    sh.ofd_map = map;
    sh.cfg.flags |= SCP_SHIELD_F_OFD; /* the images this one execs map it too */
    return 0;
}

static int32_t ofd_index(const struct sh_ofd *o) { return o ? (int32_t)(o - sh.ofd_map) : -1; }

/* A free slot (refs 0) with refs references, or NULL when all are taken. */
static struct sh_ofd *ofd_alloc(int flags, int32_t refs) {
    static uint32_t next;
    for (uint32_t n = 0; n < SCP_SHIELD_OFD_SLOTS; n++) {
        struct sh_ofd *o = &sh.ofd_map[(next + n) % SCP_SHIELD_OFD_SLOTS];
        int32_t free_ = 0;
        /* -1 while it is set up: nobody else holds it, so no put can see it */
        if (!__atomic_compare_exchange_n(&o->refs, &free_, -1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            continue;
        pthread_mutexattr_t at;
        pthread_mutexattr_init(&at);
        pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
        pthread_mutex_init(&o->mu, &at);
        pthread_mutexattr_destroy(&at);
        o->off = OFD_UNSET;
        o->flags = flags & (O_APPEND | O_NONBLOCK);
        __atomic_store_n(&o->refs, refs, __ATOMIC_RELEASE);
        next = (uint32_t)(o - sh.ofd_map) + 1;
        return o;
    }
    return NULL;
}

static void ofd_get(struct sh_ofd *o) { __atomic_add_fetch(&o->refs, 1, __ATOMIC_ACQ_REL); }
static void ofd_put(struct sh_ofd *o) {
    int32_t left = __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL);
    assert(left >= 0);
    (void)left; /* 0: the slot is free again */
}

/* Every operation that uses or moves a protected description's cursor runs between
 * ofd_enter and ofd_leave. Two locks, in this order:
 *   pf->mu  the process's own: threads of one process take turns on the cursor (the kernel's
 *           f_pos_lock), and, what it is for, a fork never happens in the middle of such an
 *           operation: ofd_share takes it before it makes the description shared. Without it a
 *           thread that entered before the fork (seeing no shared slot) moved the parent's cursor
 *           after the child had copied it, and both wrote at one offset (shield_ofd, py_thr:
 *           "T 000T 0001").
 *   o->mu   the shared slot's, across processes, once another process may hold the description.
 * pf->mu is held across the operation, so the fork's prepare waits for it; an operation that
 * can block for long (sendfile into a full pipe) delays a fork of another thread until it ends,
 * as the kernel's f_pos_lock delays the child's own cursor calls. */

/* The shared slot's half: lock it and put its offset and flags into the handle; NULL when pf
 * has none (the handle's own cursor is the description's). pf->mu is held. */
static struct sh_ofd *ofd_lock(pfile *pf) {
    struct sh_ofd *o = __atomic_load_n(&pf->ofd, __ATOMIC_ACQUIRE);
    if (!o) return NULL;
    /* a holder that died inside a call leaves the last offset it stored: take it as it is */
    if (pthread_mutex_lock(&o->mu) == EOWNERDEAD) pthread_mutex_consistent(&o->mu);
    if (o->off == OFD_UNSET) o->off = scp_vfile_seek(pf->vf, 0, SEEK_CUR, NULL);
    else scp_vfile_seek(pf->vf, o->off, SEEK_SET, NULL);
    if ((o->flags ^ pf->flags) & O_APPEND) scp_vfile_set_append(pf->vf, o->flags & O_APPEND);
    pf->flags = (pf->flags & ~(O_APPEND | O_NONBLOCK)) | o->flags;
    return o;
}

static void ofd_unlock(pfile *pf, struct sh_ofd *o) {
    if (!o) return;
    int64_t off = scp_vfile_seek(pf->vf, 0, SEEK_CUR, NULL);
    if (off >= 0) o->off = off;
    pthread_mutex_unlock(&o->mu);
}

static struct sh_ofd *ofd_enter(pfile *pf) {
    assert(pf->kind == PF_FILE);
    pthread_mutex_lock(&pf->mu);
    return ofd_lock(pf);
}

static void ofd_leave(pfile *pf, struct sh_ofd *o) {
    ofd_unlock(pf, o);
    pthread_mutex_unlock(&pf->mu);
}

/* The description's offset as an exec hands it on (the new image's cursor if it cannot map
 * the region). */
static int64_t pf_offset(const pfile *pf) {
    struct sh_ofd *o = pf->ofd;
    int64_t off = o ? __atomic_load_n(&o->off, __ATOMIC_ACQUIRE) : OFD_UNSET;
    return off >= 0 ? off : scp_vfile_seek(pf->vf, 0, SEEK_CUR, NULL);
}

/* Give pf a shared slot (once) and, for a fork, the child's reference. pass marks the
 * descriptions already seen in this walk (dup'ed numbers share one). Under sh.mu. */
static void ofd_share(pfile *pf, int fork_child, unsigned pass) {
    if (!pf || pf->kind != PF_FILE || !pf->vf || pf->ofd_pass == pass) return;
    pf->ofd_pass = pass;
    if (!pf->ofd) {
        if (ofd_region() < 0) {
            sh_trace("no region for shared offsets: '%s' keeps a cursor per process", pf->path);
            return;
        }
        /* no cursor operation of another thread is under way (ofd_enter): the offset the slot
         * takes at its first use is the one every process copied */
        pthread_mutex_lock(&pf->mu);
        struct sh_ofd *o = ofd_alloc(pf->flags, 1);
        if (o) __atomic_store_n(&pf->ofd, o, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&pf->mu);
        if (!o) {
            sh_trace("all %u shared offsets taken: '%s' keeps a cursor per process", SCP_SHIELD_OFD_SLOTS, pf->path);
            return;
        }
    }
    if (fork_child) ofd_get(pf->ofd);
}

static unsigned ofd_pass;

/* The descriptions at numbers, for i < ndesc(): the aliases (only numbers below
 * SCP_SHIELD_MAX_ALIAS_FD can be), then the slots; NULL where there is none. Under sh.mu. */
static unsigned ndesc(void) { return SCP_SHIELD_MAX_ALIAS_FD + (unsigned)sh.nslots; }
static pfile *desc_at(unsigned i) {
    if (i >= SCP_SHIELD_MAX_ALIAS_FD) return sh.slot[i - SCP_SHIELD_MAX_ALIAS_FD];
    return i < (unsigned)sh.lo && sh.nalias ? sh.alias[i] : NULL;
}

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

void sh_fork_share(int fork_child) {
    if (in_vfork_child()) { /* a vfork child's own spawn: the memory is its parent's */
        if (fork_child) pthread_mutex_lock(&sh.mu);
        return;
    }
    if (!fork_child) { /* vfork, posix_spawn: only what a child's exec could inherit */
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
    int priv = 0;
    for (int i = 0; i < sh.nvol; i++) priv |= __atomic_load_n(&sh.vol[i].priv, __ATOMIC_ACQUIRE);
    if (priv) sh_priv_end(-1);
    if (!(sh.cfg.flags & SCP_SHIELD_F_SHARED) && sh.nvol) {
        sh.cfg.flags |= SCP_SHIELD_F_SHARED; /* and for the volumes opened later, their execs */
        sh_go_shared(NULL);
    }
    if (!fork_child) sh_vol_open_hold(0);
    pthread_mutex_lock(&sh.mu);
    if (sh.active) {
        unsigned pass = ++ofd_pass;
        for (unsigned i = 0; i < ndesc(); i++) ofd_share(desc_at(i), fork_child, pass);
    }
    if (!fork_child) pthread_mutex_unlock(&sh.mu); /* a fork's handlers release it */
}

/* Private volumes (open_volume, init.c; docs/shield.md "fork"). One mutex for the move from
 * private to shared, whoever makes it (the watcher, a fork's prepare, a failed watcher start):
 * lock order vol_open_mu (a fork's prepare) before priv_mu before sh.mu and the volume
 * library's locks (sh_commit_all). The watcher takes nothing before priv_mu, so a thread of
 * this process that waits in open_volume (holding vol_open_mu) for another process's private
 * volume never holds up the move of our own. */
static pthread_mutex_t priv_mu = PTHREAD_MUTEX_INITIALIZER;
static void lk_handoff(int vi);
/* Per volume, the holding's number (under priv_mu): a watcher ends only the holding it was
 * started for. One woken by the end of an earlier holding that has not yet run its move when
 * the process holds the volume again (sh_priv_resole) would otherwise end the new one. */
static unsigned priv_gen[SCP_SHIELD_MAX_VOLUMES];

static void priv_end(int i, unsigned gen) {
    pthread_mutex_lock(&priv_mu);
    for (int k = i < 0 ? 0 : i; k < (i < 0 ? sh.nvol : i + 1); k++) {
        struct sh_volume *sv = &sh.vol[k];
        if (!__atomic_load_n(&sv->priv, __ATOMIC_ACQUIRE)) continue;
        if (gen && gen != priv_gen[k]) continue; /* (a watcher of an earlier holding) */
        scp_volume *v = __atomic_load_n(&sv->v, __ATOMIC_ACQUIRE);
        assert(v); /* published before priv can be seen by anyone but open_volume */
        /* The locks kept in the process while nobody else could be present go to the kernel
         * first: a newcomer gets in once the private lock goes (lk_handoff) */
        lk_handoff(k);
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
    pthread_mutex_unlock(&priv_mu);
}

void sh_priv_end(int i) { priv_end(i, 0); }

/* At exit: no move from now on (the watcher would commit and seal beside the exit's own
 * commit and OpenSSL's cleanup). What is private is committed by the exit's sh_commit_all, and
 * the kernel releases the private lock with the process: a waiting newcomer then goes on. Held
 * until the end; once per process (the destructor and the atexit handler both come here). */
void sh_priv_exit(void) {
    static int held;
    if (__atomic_exchange_n(&held, 1, __ATOMIC_ACQ_REL)) return;
    pthread_mutex_lock(&priv_mu);
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
    sh_commit_all();
    return 1;
}

/* The watcher of a private volume: sleeps on the volume's "shared wanted" word (a futex in the
 * lock file's shared page) and makes the move when a process opening the volume sets it. A
 * thread, not a check on the hot path: a private process that makes no volume call (a server
 * idle in accept, a writer blocked on a pipe that the newcomer reads) would never see a mark,
 * and the newcomer would wait for it forever. The move at a fork wakes it too
 * (scp_volume_private_end sets the word); it then finds nothing private and ends. */
static void *priv_watch(void *arg) {
    int i = (int)((uintptr_t)arg & 0xff);
    unsigned gen = (unsigned)((uintptr_t)arg >> 8);
    pthread_mutex_lock(&priv_mu); /* sh_priv_begin holds it until v is published */
    scp_volume *v = __atomic_load_n(&sh.vol[i].v, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&priv_mu);
    assert(v);
    sh_in_lib++;
    scp_volume_private_wait(v);
    sh_lib_leave();
    priv_end(i, gen);
    return NULL;
}

int sh_priv_npending;

/* Start volume i's watcher (caller holds priv_mu; not in a trap handler): 0, or -1 */
static int priv_watch_start(int i) {
    assert(scp_mutex_held(&priv_mu) && !sh_in_trap);
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
    r = pthread_attr_setsigmask_np(&at, &all) || pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    _Static_assert(SCP_SHIELD_MAX_VOLUMES <= 256, "priv_watch's argument: the volume in 8 bits");
    unsigned gen = ++priv_gen[i] & 0xffffffu;
    if (!gen) gen = priv_gen[i] = 1;
    sh_in_lib++;
    if (!r) r = pthread_create(&t, &at, priv_watch, (void *)((uintptr_t)i | (uintptr_t)gen << 8));
    sh_lib_leave();
    pthread_attr_destroy(&at);
    return r ? -1 : 0;
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
    scp_volume *v = __atomic_load_n(&sv->v, __ATOMIC_ACQUIRE);
    if (v && !sv->priv && !sv->priv_pending && !sv->sole_pending) {
        scp_err e;
        sh_in_lib++;
        int r = scp_volume_try_sole(v, &e);
        sh_lib_leave();
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
            sh_trace("volume at %s: nobody else has it open any more, %s again", sv->mount,
                     sh.cfg.flags & SCP_SHIELD_F_SHARED ? "private" : "the sole holder");
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
    struct sh_ofd *o = ofd_enter(pf); /* the handle keeps the offset, for a late write */
    __atomic_store_n(&pf->ofd, NULL, __ATOMIC_RELEASE);
    ofd_leave(pf, o);
    ofd_put(o);
}

static void lk_fork_child(void);
void sh_fork_child_guards(void) {
    /* The watcher may hold it at the fork (ending its move, which the fork's prepare need not
     * wait for when nothing is private any more); the child has no watcher. */
    pthread_mutex_init(&priv_mu, NULL);
    lk_fork_child();
    for (unsigned i = 0; i < ndesc(); i++) {
        pfile *pf = desc_at(i);
        if (pf) pthread_mutex_init(&pf->mu, NULL);
    }
}

static void shm_release_all(void);
void sh_ofd_release_all(void) {
    shm_release_all();
    if (!sh.active || !sh.ofd_map || in_vfork_child()) return;
    pthread_mutex_lock(&sh.mu);
    unsigned pass = ++ofd_pass;
    for (unsigned i = 0; i < ndesc(); i++) ofd_release(desc_at(i), pass);
    pthread_mutex_unlock(&sh.mu);
}

/* Protected descriptors that a vfork child set up before exec (dup2 onto stdout...). Indexed
 * by nothing: entries carry the child's pid; the parent never reads them. */
#define MAXVFK 16
static struct vfk {
    pid_t pid;
    int fd;
    const void *id; /* the description (compared, never dereferenced) */
    scp_shield_inherit e;
} vfk[MAXVFK];

static void vfk_forget(pid_t pid, long fd) {
    for (int i = 0; i < MAXVFK; i++)
        if (vfk[i].pid == pid && vfk[i].fd == fd) vfk[i].pid = 0;
}

static long vfk_add(pfile *pf, long fd) {
    pid_t pid = (pid_t)syscall(SYS_getpid);
    vfk_forget(pid, fd);
    for (int i = 0; i < MAXVFK; i++) {
        /* in use while its owner still shares our memory (a vfork child that has not exec'd) */
        if (vfk[i].pid) {
            long same = sh_gate(SYS_kcmp, pid, vfk[i].pid, 0 /* KCMP_VM */, 0, 0, 0);
            if (same == 0 || (same == -ENOSYS && !sh_gate(SYS_kill, vfk[i].pid, 0, 0, 0, 0, 0))) continue;
        }
        if (strlen(pf->path) >= sizeof vfk[i].e.path) return -ENAMETOOLONG;
        if (__atomic_load_n(&pf->nameless, __ATOMIC_ACQUIRE)) return -EOPNOTSUPP; /* no name to reopen */
        vfk[i].fd = (int)fd;
        vfk[i].id = pf;
        vfk[i].e.fd = (int)fd;
        vfk[i].e.share = -1;
        vfk[i].e.vol = pf->vol;
        vfk[i].e.flags = pf->flags & (O_ACCMODE | O_APPEND);
        vfk[i].e.offset = pf->kind == PF_FILE ? pf_offset(pf) : 0;
        vfk[i].e.ofd = ofd_index(pf->ofd);
        strcpy(vfk[i].e.path, pf->path);
        vfk[i].pid = pid;
        return 0;
    }
    return -EMFILE;
}

/* ---- paths ------------------------------------------------------------------------------- */

static int match_mount(const char *abs, char *rel, size_t relsz) {
    int best = -1;
    size_t bestlen = 0;
    for (int i = 0; i < sh.nvol; i++) {
        size_t ml = sh.vol[i].mlen;
        if (strncmp(abs, sh.vol[i].mount, ml) == 0 && (abs[ml] == 0 || abs[ml] == '/') &&
            ml >= bestlen) {
            best = i;
            bestlen = ml;
        }
    }
    if (best < 0) return 0;
    long ready = sh_volume_ready(best); /* opened at the first use of its mount */
    if (ready < 0) return (int)ready;
    const char *r = abs + bestlen;
    while (*r == '/') r++;
    if (strlen(r) >= relsz) return -ENAMETOOLONG;
    strcpy(rel, r);
    return best + 1;
}

/* Can the program's page holding [q, q+8) be read (wr = 0) or written (wr = 1)? The kernel
 * answers: rt_sigprocmask copies its 8-byte set from q (an invalid `how` then changes nothing)
 * or its old mask to q, and fails with EFAULT where a system call would. One cheap call per
 * page; protections are per page, so the rest of the page needs no probe. The caller keeps
 * [q, q+8) inside one page. Through the gate: the filter traps rt_sigprocmask. */
static int page_ok(uintptr_t q, int wr) {
    if (q < 4096) return 0; /* NULL means "no set" to the kernel; page zero is never mapped */
    long r = wr ? sh_gate(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)q, 8, 0, 0)
                : sh_gate(SYS_rt_sigprocmask, -1, (long)q, 0, 8, 0, 0);
    return r != -EFAULT;
}

/* Copy n (>= 8) bytes from the program's address src: 0, or -EFAULT. */
static long copy_in(void *dst, const void *src, size_t n) {
    uintptr_t a = (uintptr_t)src, end = a + n;
    if (n < 8 || end < a) return -EFAULT;
    if (sh_nf_usable()) return sh_nf_copy(dst, src, n);
    for (uintptr_t pg = a & ~(uintptr_t)4095; pg < end; pg += 4096) {
        uintptr_t lo = a > pg ? a : pg, hi = end < pg + 4096 ? end : pg + 4096;
        if (!page_ok(hi - lo >= 8 ? lo : hi - 8, 0)) return -EFAULT;
    }
    memcpy(dst, src, n);
    return 0;
}

/* Inside a path call (path_run): the copies of its paths that every look-up and the kernel
 * read. A nested call (a signal handler of the program) sets its own and puts these back. */
static __thread const char *own_path[2];

/* Copy the program's string at p (NUL included) into buf: its length, or -EFAULT for an
 * address the kernel would refuse (the program gets EFAULT, not a SIGSEGV in the shield), or
 * -ENAMETOOLONG. */
long sh_copy_path_in(const char *p, char *buf, size_t n) {
    if (!p) return -EFAULT;
    if (p == own_path[0] || p == own_path[1]) { /* this call's copy: our own memory, no probe */
        size_t l = strnlen(p, n);
        if (l >= n) return -ENAMETOOLONG;
        memcpy(buf, p, l + 1);
        return (long)l;
    }
    if (sh_nf_usable()) { /* no probe: a fault in the copy returns -EFAULT (nofault.c) */
        long l = sh_nf_strcpy(buf, p, n);
        return l == (long)n ? -ENAMETOOLONG : l;
    }
    uintptr_t at = (uintptr_t)p;
    for (size_t got = 0; got < n;) {
        uintptr_t page = (at + got) & ~(uintptr_t)4095;
        uintptr_t q = at + got;
        if (q > page + 4088) q = page + 4088;
        if (!page_ok(q, 0)) return -EFAULT;
        size_t len = page + 4096 - (at + got);
        if (len > n - got) len = n - got;
        const char *src = (const char *)(at + got);
        const char *z = memchr(src, 0, len);
        size_t take = z ? (size_t)(z - src) + 1 : len;
        memcpy(buf + got, src, take);
        if (z) return (long)(got + take - 1);
        got += take;
    }
    return -ENAMETOOLONG;
}

/* Does the normalized absolute path abs name a descriptor link of this process
 * (/proc/self/fd/N, /proc/thread-self/fd/N, /proc/PID/fd/N, /proc/PID/task/TID/fd/N, /dev/fd/N,
 * /dev/stdin...)? Returns 1 with *fd and *rest (what follows N: "" or "/..."), 0 if not, and -1
 * for a reserved number of another process (whose protected files this one cannot reach). */
static int proc_fd_link(const char *abs, long *fd, const char **rest) {
    static const char *const stdnames[] = {"/dev/stdin", "/dev/stdout", "/dev/stderr"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(stdnames[i]);
        if (!strncmp(abs, stdnames[i], l) && (abs[l] == 0 || abs[l] == '/')) {
            *fd = i;
            *rest = abs + l;
            return 1;
        }
    }
    const char *p;
    int mine = 1;
    if (!strncmp(abs, "/dev/fd/", 8)) p = abs + 8;
    else if (!strncmp(abs, "/proc/self/fd/", 14)) p = abs + 14;
    else if (!strncmp(abs, "/proc/thread-self/fd/", 21)) p = abs + 21;
    else if (!strncmp(abs, "/proc/", 6) && abs[6] >= '0' && abs[6] <= '9') {
        char *end;
        long pid = strtol(abs + 6, &end, 10);
        if (!strncmp(end, "/task/", 6)) {
            strtol(end + 6, &end, 10); /* a thread of PID: same descriptor table (no CLONE_FILES split assumed) */
        }
        if (strncmp(end, "/fd/", 4)) return 0;
        p = end + 4;
        mine = pid == (long)getpid();
    } else return 0;
    if (*p < '0' || *p > '9') return 0;
    char *end;
    long n = strtol(p, &end, 10);
    if (*end && *end != '/') return 0;
    *fd = n;
    *rest = end;
    if (!mine) return sh_reserved(n) ? -1 : 0;
    return 1;
}

/* Set by sh_classify when the path named a protected descriptor's /proc link itself (for
 * readlink and the calls that act on the link, not on the file): that descriptor + 1. */
static __thread int fd_link_named;
/* Set around the classification of linkat's first path with AT_SYMLINK_FOLLOW: the one call
 * that may name a nameless file's /proc link. */
static __thread int nameless_link_ok;

/* Classify (dirfd, path): 0 not protected, >0 protected (volume index + 1, rel filled),
 * <0 an error to return (-errno). */
int sh_classify(int dirfd, const char *path, int *vol, char *rel, size_t relsz) {
    /* room for the mount point before a path the kernel would take relative to the cwd (up
     * to PATH_MAX - 1 bytes); rel, without the mount point, must still fit relsz */
    char abs[PATH_MAX + SCP_SHIELD_MAX_MOUNT];
    int a = sh_abspath(dirfd, path, abs, sizeof abs);
    if (a <= 0) return a;
    int m = match_mount(abs, rel, relsz);
    if (m > 0) *vol = m - 1;
    return m;
}

/* (dirfd, path_in) as the program sees it, absolute and normalized: 1 (abs filled), 0 when it
 * cannot be told (the shield is off, no path, a directory descriptor without a path), <0 an
 * error to return (-errno; -EFAULT for a bad pointer). A /proc/self/fd link of a protected
 * descriptor becomes the protected file's path (fd_link_named says it named the link). */
static int abspath_compute(int dirfd, const char *path_in, char *abs, size_t abssz) {
    fd_link_named = 0;
    if (!sh.active || !path_in) return 0;
    /* One buffer (its frame is on every served path call's stack: docs/shield.md, "Stack
     * budget"): the program's path is copied into its upper half, a relative one's base is
     * written into the lower half and the path moved down after it. */
    char joined[PATH_MAX * 2];
    char *path = joined + PATH_MAX;
    long pl = sh_copy_path_in(path_in, path, PATH_MAX);
    if (pl < 0) return (int)pl;
    if (path[0] != '/') {
        char *base = joined; /* PATH_MAX bytes: the path's copy lies above them */
        if (dirfd == AT_FDCWD) {
            pthread_mutex_lock(&sh.mu);
            int v = sh.vcwd;
            if (v) strcpy(base, sh.cwd);
            pthread_mutex_unlock(&sh.mu);
            if (!v && sh_gate(SYS_getcwd, (long)base, PATH_MAX, 0, 0, 0, 0) < 0) return 0;
        } else if (sh_is_prot(dirfd)) {
            long e;
            pfile *pf = pf_get(dirfd, &e);
            if (!pf) return (int)e;
            if (pf->kind != PF_DIR) {
                pf_put(pf);
                return -ENOTDIR;
            }
            int n = snprintf(base, PATH_MAX, "%s/%s", sh.vol[pf->vol].mount, pf->path);
            pf_put(pf);
            if (n >= PATH_MAX) return -ENAMETOOLONG;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            long n = sh_gate(SYS_readlinkat, AT_FDCWD, (long)link, (long)base, PATH_MAX - 1, 0, 0);
            if (n <= 0 || base[0] != '/') return 0;
            base[n] = 0;
        }
        size_t bl = strlen(base); /* < PATH_MAX, and pl < PATH_MAX: both fit with the '/' */
        assert(bl < PATH_MAX && (size_t)pl < PATH_MAX);
        base[bl] = '/';
        memmove(base + bl + 1, path, (size_t)pl + 1);
        path = joined;
    }
    _Static_assert(sizeof sh.cwd <= PATH_MAX, "the cwd fits the base's half");
    if (scp_shield_path_normalize(path, abs, abssz)) return -ENAMETOOLONG;
    long lfd;
    const char *rest;
    int k = proc_fd_link(abs, &lfd, &rest);
    if (k < 0) return -ENXIO;
    if (k > 0 && sh_is_prot(lfd)) {
        /* the kernel would follow the link to the placeholder: the file is the protected
         * one, reopened with the new flags */
        long e;
        pfile *pf = pf_get(lfd, &e);
        if (!pf) return (int)e;
        /* a nameless file (O_TMPFILE) has no path to stand for it: only linkat may name its
         * link (it gives the file a name, link_fd); a reopen or a stat through it is refused */
        int nameless = __atomic_load_n(&pf->nameless, __ATOMIC_ACQUIRE);
        int n = snprintf(joined, sizeof joined, "%s/%s%s", sh.vol[pf->vol].mount, pf->path, rest);
        pf_put(pf);
        int named = !rest[0]; /* rest points into abs, which the normalization rewrites */
        if (nameless && (!named || !nameless_link_ok)) return named ? -EOPNOTSUPP : -ENOTDIR;
        if (n >= (int)sizeof joined || scp_shield_path_normalize(joined, abs, abssz)) return -ENAMETOOLONG;
        fd_link_named = named ? (int)lfd + 1 : 0;
    }
    return 1;
}

/* One shield call looks at its path up to three times (the console's and the injected files'
 * look-ups, the mount classification, and after an open the trusted-file check), and each look
 * is a normalization (and a cwd or directory look-up for a relative path). The memo keeps the
 * first answer for the rest of the call: inside a scope (sh_abspath_scope_enter/leave,
 * depth > 0) a look-up of the same (dirfd, pointer) reuses it. The pointer is the call's own
 * copy of the path (path_run), which nothing else writes while the scope lasts. A nested scope
 * (a signal handler of the program that makes a shielded call while an outer one runs) starts
 * empty and leaves nothing behind. */
static __thread struct abs_memo {
    int depth, valid, dirfd, r, link_named, nameless_ok;
    const char *p;
} memo;
/* The memo's path lives in the thread's shield scratch (init.c), not in TLS: a thread's static
 * TLS comes out of the stack its creator asked for, and 5 KiB of it overflowed a thread made
 * with PTHREAD_STACK_MIN. No scratch (no memory for it): no memo. */
#define MEMO_ABS_MAX (PATH_MAX + SCP_SHIELD_MAX_MOUNT)
_Static_assert(MEMO_ABS_MAX <= SH_SCRATCH_SIZE, "the memo's path fits the thread's scratch");

void sh_abspath_scope_enter(void) {
    memo.depth++;
    memo.valid = 0;
}

void sh_abspath_scope_leave(void) {
    assert(memo.depth > 0);
    memo.depth--;
    memo.valid = 0;
}

static int memo_hit(int dirfd, const char *path_in, char *abs, size_t abssz) {
    if (!memo.valid || memo.dirfd != dirfd || memo.p != path_in || memo.nameless_ok != nameless_link_ok) return 0;
    if (memo.r > 0) {
        const char *m = sh_scratch();
        assert(m); /* valid only after a store into it */
        size_t n = strlen(m);
        if (n >= abssz) return 0;
        memcpy(abs, m, n + 1);
    }
    fd_link_named = memo.link_named;
    return 1;
}

int sh_abspath(int dirfd, const char *path_in, char *abs, size_t abssz) {
    if (memo.depth > 0 && memo_hit(dirfd, path_in, abs, abssz)) return memo.r;
    int r = abspath_compute(dirfd, path_in, abs, abssz);
    memo.valid = 0;
    char *m = memo.depth > 0 ? sh_scratch() : NULL;
    if (m && (r <= 0 || strlen(abs) < MEMO_ABS_MAX)) {
        memo.dirfd = dirfd;
        memo.p = path_in;
        memo.r = r;
        memo.link_named = fd_link_named;
        memo.nameless_ok = nameless_link_ok;
        if (r > 0) strcpy(m, abs);
        memo.valid = 1;
    }
    return r;
}

/* ---- stat -------------------------------------------------------------------------------- */


static void fill_stat(int vol, const scp_vstat *v, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_dev = (dev_t)(0x5c500 + vol);
    st->st_ino = (ino_t)(v->ino + 2);
    st->st_mode = (v->type == SCP_VTYPE_DIR    ? S_IFDIR
                   : v->type == SCP_VTYPE_NODE ? v->node_type
                   : v->type == SCP_VTYPE_LINK ? S_IFLNK
                                               : S_IFREG) |
                  (v->mode & 07777);
    /* 0: unlinked while open; a directory: 2 and one per subdirectory, at least 2 */
    st->st_nlink = v->type == SCP_VTYPE_DIR ? (v->nlink > 2 ? v->nlink : 2) : v->nlink;
    st->st_rdev = (dev_t)v->rdev;
    st->st_uid = v->uid;
    st->st_gid = v->gid;
    st->st_size = (off_t)v->size;
    st->st_blksize = 65536;
    st->st_blocks = (blkcnt_t)((v->size + 511) / 512);
    st->st_mtim.tv_sec = v->mtime_ns / 1000000000;
    st->st_mtim.tv_nsec = v->mtime_ns % 1000000000;
    st->st_ctim.tv_sec = v->ctime_ns / 1000000000;
    st->st_ctim.tv_nsec = v->ctime_ns % 1000000000;
    st->st_atim.tv_sec = v->atime_ns / 1000000000;
    st->st_atim.tv_nsec = v->atime_ns % 1000000000;
}

void sh_statx_from_stat(const struct stat *st, uint32_t dev_major, uint32_t dev_minor, struct statx *sx) {
    memset(sx, 0, sizeof *sx);
    sx->stx_mask = STATX_BASIC_STATS;
    sx->stx_blksize = (uint32_t)st->st_blksize;
    sx->stx_nlink = (uint32_t)st->st_nlink;
    sx->stx_uid = st->st_uid;
    sx->stx_gid = st->st_gid;
    sx->stx_mode = (uint16_t)st->st_mode;
    sx->stx_ino = st->st_ino;
    sx->stx_size = (uint64_t)st->st_size;
    sx->stx_blocks = (uint64_t)st->st_blocks;
    sx->stx_atime.tv_sec = st->st_atim.tv_sec;
    sx->stx_atime.tv_nsec = (uint32_t)st->st_atim.tv_nsec;
    sx->stx_mtime.tv_sec = st->st_mtim.tv_sec;
    sx->stx_mtime.tv_nsec = (uint32_t)st->st_mtim.tv_nsec;
    sx->stx_ctime.tv_sec = st->st_ctim.tv_sec;
    sx->stx_ctime.tv_nsec = (uint32_t)st->st_ctim.tv_nsec;
    sx->stx_rdev_major = major(st->st_rdev);
    sx->stx_rdev_minor = minor(st->st_rdev);
    sx->stx_dev_major = dev_major;
    sx->stx_dev_minor = dev_minor;
}

static void fill_statx(int vol, const scp_vstat *v, struct statx *sx) {
    struct stat st;
    fill_stat(vol, v, &st);
    sh_statx_from_stat(&st, 0x5c, (uint32_t)(0x500 + vol), sx);
}

/* Copy n (>= 8) bytes to the program's address dst: 0, or -EFAULT where the kernel would
 * give it (each page is probed first; see page_ok). */
static long copy_out(void *dst, const void *src, size_t n) {
    assert(n >= 8);
    uintptr_t d = (uintptr_t)dst, end = d + n;
    if (end < d) return -EFAULT;
    if (sh_nf_usable()) return sh_nf_copy(dst, src, n);
    for (uintptr_t pg = d & ~(uintptr_t)4095; pg < end; pg += 4096) {
        uintptr_t lo = d > pg ? d : pg, hi = end < pg + 4096 ? end : pg + 4096;
        if (!page_ok(hi - lo >= 8 ? lo : hi - 8, 1)) return -EFAULT;
    }
    memcpy(dst, src, n);
    return 0;
}

/* Any length (the console shield's writes and reads): each page that [addr, addr + n) touches
 * is probed with an 8-byte window inside that page. */
static long user_span_ok(uintptr_t a, size_t n, int wr) {
    uintptr_t end = a + n;
    if (end < a) return -EFAULT;
    for (uintptr_t pg = a & ~(uintptr_t)4095; pg < end; pg += 4096) {
        uintptr_t lo = a > pg ? a : pg;
        if (!page_ok(lo < pg + 4096 - 8 ? lo : pg + 4096 - 8, wr)) return -EFAULT;
    }
    return 0;
}
long sh_copy_in(void *dst, const void *src, size_t n) {
    if (n && sh_nf_usable()) return (uintptr_t)src + n < (uintptr_t)src ? -EFAULT : sh_nf_copy(dst, src, n);
    long r = n ? user_span_ok((uintptr_t)src, n, 0) : 0;
    if (r == 0 && n) memcpy(dst, src, n);
    return r;
}
long sh_copy_out(void *dst, const void *src, size_t n) {
    if (n && sh_nf_usable()) return (uintptr_t)dst + n < (uintptr_t)dst ? -EFAULT : sh_nf_copy(dst, src, n);
    long r = n ? user_span_ok((uintptr_t)dst, n, 1) : 0;
    if (r == 0 && n) memcpy(dst, src, n);
    return r;
}

static long put_stat(int vol, const scp_vstat *v, void *dst) {
    struct stat st;
    fill_stat(vol, v, &st);
    return copy_out(dst, &st, sizeof st);
}

static long put_statx(int vol, const scp_vstat *v, void *dst) {
    struct statx sx;
    fill_statx(vol, v, &sx);
    return copy_out(dst, &sx, sizeof sx);
}

static long pf_vstat(pfile *pf, scp_vstat *v) {
    scp_err e;
    if (pf->kind == PF_FILE) {
        if (scp_vfile_stat(pf->vf, v, &e)) return neg(&e);
    } else if (scp_volume_stat(sh.vol[pf->vol].v, pf->path, v, &e) == 0) {
        sh_cred_owner(v);
    } else {
        if (!pf->path[0]) { /* the volume root */
            memset(v, 0, sizeof *v);
            v->type = SCP_VTYPE_DIR;
            v->mode = 0755;
            return 0;
        }
        return neg(&e);
    }
    return 0;
}

static long path_vstat(int vol, const char *rel, scp_vstat *v) {
    scp_err e;
    if (!rel[0]) {
        memset(v, 0, sizeof *v);
        v->type = SCP_VTYPE_DIR;
        v->mode = 0755;
        v->uid = (uint32_t)getuid();
        v->gid = (uint32_t)getgid();
        return 0;
    }
    if (scp_volume_stat(sh.vol[vol].v, rel, v, &e)) return neg(&e);
    sh_cred_owner(v);
    return 0;
}

/* ---- open -------------------------------------------------------------------------------- */

/* A node holds no data in the volume, and no process can be on its other side: a FIFO opened
 * for reading without blocking is an empty pipe whose writers have gone (reads give end of
 * file, as the kernel's FIFO without writers); every other open of a FIFO or socket fails
 * with ENXIO (the kernel's answer for a FIFO without readers), and a device with EACCES, as on
 * a file system mounted nodev: a volume never opens a host device. */
static long open_node(int vol, const char *rel, const scp_vstat *v, int flags) {
    if (flags & O_CREAT && flags & O_EXCL) return -EEXIST;
    long r = sh_cred_open(v, flags);
    if (r) return r;
    if (flags & O_PATH) { /* fstat, fchmod, fchown and /proc/self/fd/N act on the name: as a
                           * directory's descriptor, whose listing says ENOTDIR */
        pfile *pf = pf_new(PF_DIR, vol, flags, rel);
        if (!pf) return -ENOMEM;
        long fd = slot_alloc(pf, 0, (flags & O_CLOEXEC) != 0);
        if (fd < 0) pf_put(pf);
        return fd;
    }
    if (v->type == SCP_VTYPE_LINK) return -ELOOP; /* O_NOFOLLOW on a symbolic link */
    if (v->node_type == S_IFCHR || v->node_type == S_IFBLK) return -EACCES;
    int acc = flags & O_ACCMODE;
    if (v->node_type != S_IFIFO || (acc == O_RDONLY && !(flags & O_NONBLOCK)) || acc == O_WRONLY)
        return -ENXIO;
    int p[2];
    r = sh_gate(SYS_pipe2, (long)p, O_NONBLOCK | (flags & O_CLOEXEC), 0, 0, 0, 0);
    if (r) return r;
    if (acc == O_RDONLY) {
        sh_gate(SYS_close, p[1], 0, 0, 0, 0, 0);
        return p[0];
    }
    /* O_RDWR (which the kernel never blocks): the pipe reopened read-write is its own peer */
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", p[0]);
    r = sh_gate(SYS_openat, AT_FDCWD, (long)link, O_RDWR | (flags & (O_NONBLOCK | O_CLOEXEC)), 0, 0, 0);
    sh_gate(SYS_close, p[0], 0, 0, 0, 0, 0);
    sh_gate(SYS_close, p[1], 0, 0, 0, 0, 0);
    return r < 0 ? -ENXIO : r;
}

/* mknod/mkfifo, in the kernel's order: the type, then the name (EEXIST), the parent's
 * permissions, and CAP_MKNOD (root) for a device. A regular file is created empty. */
static long mknod_rel(int vol, const char *rel, mode_t mode, dev_t dev) {
    mode_t t = mode & S_IFMT;
    if (t == S_IFDIR) return -EPERM;
    if (t != 0 && t != S_IFREG && t != S_IFIFO && t != S_IFSOCK && t != S_IFCHR && t != S_IFBLK)
        return -EINVAL;
    scp_vstat v;
    long r = path_vstat(vol, rel, &v);
    if (r == 0) return -EEXIST;
    if (r != -ENOENT) return r;
    if ((r = sh_cred_parent(vol, rel, 3))) return r;
    if ((t == S_IFCHR || t == S_IFBLK) && !sh_cred_root()) return -EPERM;
    uint32_t perm = (uint32_t)(mode & ~sh.umask & 07777);
    scp_err e;
    if (t == 0 || t == S_IFREG) {
        scp_vfile *vf = scp_vfile_open(sh.vol[vol].v, rel, O_WRONLY | O_CREAT | O_EXCL, perm, &e);
        if (!vf) return neg(&e);
        return scp_vfile_close(vf, &e) ? neg(&e) : 0;
    }
    return scp_volume_mknod(sh.vol[vol].v, rel, (uint32_t)t | perm, (uint64_t)dev, &e) ? neg(&e) : 0;
}

/* symlink(2): the target is stored as given (never resolved at creation). */
static long symlink_rel(int vol, const char *rel, const char *target_in) {
    char target[PATH_MAX];
    long r = sh_copy_path_in(target_in, target, sizeof target);
    if (r < 0) return r;
    if (!target[0]) return -ENOENT;
    scp_vstat v;
    if (!rel[0] || path_vstat(vol, rel, &v) == 0) return -EEXIST;
    if ((r = sh_cred_parent(vol, rel, 3))) return r;
    scp_err e;
    return scp_volume_symlink(sh.vol[vol].v, target, rel, &e) ? neg(&e) : 0;
}

/* O_TMPFILE: a protected file with no name in directory rel, until linkat gives it one
 * (link_fd); closed without one it leaves nothing in the volume (scp_vfile_open_nameless). */
static long open_nameless(int vol, const char *rel, int flags, mode_t mode) {
    int acc = flags & O_ACCMODE;
    /* the kernel's checks, in its order: the flags, then the directory (glibc's O_TMPFILE
     * holds O_DIRECTORY's bit) */
    if ((flags & (O_TMPFILE | O_CREAT)) != O_TMPFILE || (acc != O_WRONLY && acc != O_RDWR))
        return -EINVAL;
    scp_vstat v;
    long r = path_vstat(vol, rel, &v);
    if (r) return r;
    if (v.type != SCP_VTYPE_DIR) return -ENOTDIR;
    if ((r = sh_cred_access(&v, 3))) return r;
    scp_err e;
    scp_vfile *vf = scp_vfile_open_nameless(sh.vol[vol].v, rel, acc | (flags & O_EXCL),
                                            (uint32_t)(mode & ~sh.umask & 07777), &e);
    if (!vf) return neg(&e);
    pfile *pf = pf_new(PF_FILE, vol, flags & ~(O_TMPFILE | O_EXCL | O_CLOEXEC), rel);
    char *room = pf ? realloc(pf->path, PATH_MAX) : NULL;
    if (!room) {
        if (pf) pf_put(pf);
        scp_vfile_close(vf, NULL);
        return -ENOMEM;
    }
    pf->path = room;
    pf->vf = vf;
    pf->nameless = 1;
    if (flags & O_APPEND) scp_vfile_set_append(vf, 1);
    long fd = slot_alloc(pf, 0, (flags & O_CLOEXEC) != 0);
    if (fd < 0) pf_put(pf);
    sh_trace("open(O_TMPFILE) in '%s' = %ld", rel, fd);
    return fd;
}

static long open_rel(int vol, const char *rel, int flags, mode_t mode) {
    /* O_DIRECT is accepted and ignored: the shield does its own buffered, encrypted I/O,
     * so the page cache is bypassed in spirit and no alignment is required */
    flags &= ~O_DIRECT;
    if ((flags & O_TMPFILE) == O_TMPFILE) return open_nameless(vol, rel, flags, mode);
    int cloexec = (flags & O_CLOEXEC) != 0;
    scp_vstat v;
    long r = path_vstat(vol, rel, &v);
    if (r == 0 && v.type == SCP_VTYPE_DIR) {
        if ((flags & O_CREAT) && (flags & O_EXCL)) return -EEXIST;
        if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_CREAT)) return -EISDIR;
        if ((r = sh_cred_open(&v, flags))) return r;
        pfile *pf = pf_new(PF_DIR, vol, flags, rel);
        if (!pf) return -ENOMEM;
        long fd = slot_alloc(pf, 0, cloexec);
        if (fd < 0) pf_put(pf);
        return fd;
    }
    if (r == 0 && (flags & O_DIRECTORY)) return -ENOTDIR;
    if (r == 0 && (v.type == SCP_VTYPE_NODE || v.type == SCP_VTYPE_LINK)) return open_node(vol, rel, &v, flags);
    if (r < 0 && r != -ENOENT) return r;
    if (r == -ENOENT && !(flags & O_CREAT)) return -ENOENT;
    if ((r = r == 0 ? sh_cred_open(&v, flags) : sh_cred_parent(vol, rel, 3))) return r;
    int acc = flags & O_ACCMODE;
    if (flags & O_PATH) acc = O_RDONLY;
    int vflags = acc | (flags & (O_CREAT | O_EXCL | O_TRUNC | O_APPEND));
    if (flags & O_PATH) vflags &= ~(O_CREAT | O_EXCL | O_TRUNC | O_APPEND);
    scp_err e;
    scp_vfile *vf = scp_vfile_open(sh.vol[vol].v, rel, vflags, (uint32_t)(mode & ~sh.umask & 07777), &e);
    if (!vf) {
        sh_trace("open of '%s' failed: %s", rel, e.msg);
        return neg(&e);
    }
    pfile *pf = pf_new(PF_FILE, vol, (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC)), rel);
    if (!pf) {
        scp_vfile_close(vf, NULL);
        return -ENOMEM;
    }
    pf->vf = vf;
    long fd = slot_alloc(pf, 0, cloexec);
    if (fd < 0) pf_put(pf);
    return fd;
}

/* ---- directories ------------------------------------------------------------------------- */

struct list_ctx {
    pfile *pf;
    int err;
};

static int list_cb(void *ctx, const char *name, const scp_vstat *st) {
    struct list_ctx *c = ctx;
    pfile *pf = c->pf;
    struct dent *n = realloc(pf->ents, (pf->nents + 1) * sizeof *n);
    if (!n) return c->err = -ENOMEM;
    pf->ents = n;
    n[pf->nents].name = strdup(name);
    if (!n[pf->nents].name) return c->err = -ENOMEM;
    n[pf->nents].ino = st->ino + 2;
    n[pf->nents].type = st->type == SCP_VTYPE_DIR    ? DT_DIR
                        : st->type == SCP_VTYPE_NODE ? IFTODT(st->node_type)
                        : st->type == SCP_VTYPE_LINK ? DT_LNK
                                                     : DT_REG;
    pf->nents++;
    return 0;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static long do_getdents(pfile *pf, char *buf, size_t len) {
    if (pf->kind != PF_DIR) return -ENOTDIR;
    pthread_mutex_lock(&pf->mu);
    if (!pf->listed) {
        struct list_ctx c = {pf, 0};
        scp_err e;
        int r = scp_volume_readdir(sh.vol[pf->vol].v, pf->path, list_cb, &c, &e);
        if (r < 0 || c.err) {
            pthread_mutex_unlock(&pf->mu);
            return c.err ? c.err : neg(&e);
        }
        pf->listed = 1;
    }
    size_t out = 0;
    while (pf->pos < pf->nents + 2) {
        const char *name;
        uint64_t ino;
        unsigned char type;
        if (pf->pos == 0) name = ".", ino = 1, type = DT_DIR;
        else if (pf->pos == 1) name = "..", ino = 1, type = DT_DIR;
        else {
            struct dent *d = &pf->ents[pf->pos - 2];
            name = d->name, ino = d->ino, type = d->type;
        }
        size_t nl = strlen(name);
        size_t reclen = (offsetof(struct linux_dirent64, d_name) + nl + 1 + 7) & ~(size_t)7;
        if (out + reclen > len) break;
        struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + out);
        d->d_ino = ino;
        d->d_off = (int64_t)pf->pos + 1;
        d->d_reclen = (unsigned short)reclen;
        d->d_type = type;
        memcpy(d->d_name, name, nl + 1);
        out += reclen;
        pf->pos++;
    }
    pthread_mutex_unlock(&pf->mu);
    if (out == 0 && pf->pos < pf->nents + 2) return -EINVAL;
    return (long)out;
}

/* ---- I/O --------------------------------------------------------------------------------- */

static int readable(const pfile *pf) { return (pf->flags & O_ACCMODE) != O_WRONLY && !(pf->flags & O_PATH); }
static int writable(const pfile *pf) { return (pf->flags & O_ACCMODE) != O_RDONLY && !(pf->flags & O_PATH); }

static long io_read(pfile *pf, void *buf, size_t n, long long off) {
    if (pf->kind == PF_DIR) return -EISDIR;
    if (!readable(pf)) return -EBADF;
    scp_err e;
    ssize_t r = off < 0 ? scp_vfile_read(pf->vf, buf, n, &e)
                        : scp_vfile_pread(pf->vf, buf, n, (uint64_t)off, &e);
    if (r < 0) {
        sh_trace("read of '%s' failed: %s", pf->path, e.msg);
        return neg(&e);
    }
    return r;
}

/* A write by a process without CAP_FSETID (here: not root) clears the set-user-ID and
 * set-group-ID bits as the kernel's file_remove_privs does (sh_cred_after_write).
 * Checked at the first write through each open file: a bit that chmod sets again after it
 * stays until the file is opened again (the kernel clears it at every write). */
static long write_drops_privs(pfile *pf) {
    pf->privs_checked = 1;
    if (pf->nameless || sh_cred_root()) return 0;
    scp_vstat v;
    scp_err e;
    long r = pf_vstat(pf, &v);
    if (r) return r == -ENOENT ? 0 : r; /* no name left: nothing to clear */
    uint32_t m = v.mode & 07777, nm = sh_cred_after_write(&v);
    if (nm == m) return 0;
    return scp_volume_setattr(sh.vol[pf->vol].v, pf->path, nm, -1, -1, INT64_MIN, &e) ? neg(&e) : 0;
}

static long io_write(pfile *pf, const void *buf, size_t n, long long off) {
    if (pf->kind == PF_DIR) return -EISDIR;
    if (!writable(pf)) return -EBADF;
    long pr = n && !pf->privs_checked ? write_drops_privs(pf) : 0;
    if (pr) return pr;
    scp_err e;
    /* Marked before the write, not after: a commit of everything (sh_commit_all: a fork's
     * move to shared mode, sh_go_shared) that ran between the library's return and the mark
     * skipped the description, and a write made outside shared mode (a private or sole
     * holding) then stayed uncommitted with its writer lock into shared mode; a fork child
     * waiting for that lock while holding the shared offset the writing thread waited for hung
     * (tests/shield/forkwrite.c, once the holding came back after every round: branch sole21).
     * A failed write only costs that commit a look at the file. */
    pf->wpid = sh.pid;
    ssize_t r = off < 0 ? scp_vfile_write(pf->vf, buf, n, &e)
                        : scp_vfile_pwrite(pf->vf, buf, n, (uint64_t)off, &e);
    if (r < 0) {
        sh_trace("write of '%s' failed: %s", pf->path, e.msg);
        return neg(&e);
    }
    /* O_SYNC and O_DSYNC (O_SYNC includes O_DSYNC's bit): the write is durable when it returns,
     * as the kernel's; a failed commit is the write's error, never a silent success */
    if ((pf->flags & O_DSYNC) && r > 0 && scp_vfile_fsync(pf->vf, &e) < 0) {
        sh_trace("O_DSYNC commit of '%s' failed: %s", pf->path, e.msg);
        return neg(&e);
    }
    return r;
}

static long io_vec(pfile *pf, const struct iovec *iov, long cnt, long long off, int wr) {
    if (cnt < 0 || cnt > IOV_MAX) return -EINVAL;
    long total = 0;
    for (long i = 0; i < cnt; i++) {
        if (!iov[i].iov_len) continue;
        long r = wr ? io_write(pf, iov[i].iov_base, iov[i].iov_len, off < 0 ? -1 : off + total)
                    : io_read(pf, iov[i].iov_base, iov[i].iov_len, off < 0 ? -1 : off + total);
        if (r < 0) return total ? total : r;
        total += r;
        if ((size_t)r < iov[i].iov_len) break;
    }
    return total;
}

static long do_lseek(pfile *pf, long long off, int whence) {
    if (pf->kind == PF_DIR) {
        if (whence == SEEK_SET && off == 0) {
            pthread_mutex_lock(&pf->mu);
            pf->pos = 0;
            pf->listed = 0;
            for (size_t i = 0; i < pf->nents; i++) free(pf->ents[i].name);
            free(pf->ents);
            pf->ents = NULL;
            pf->nents = 0;
            pthread_mutex_unlock(&pf->mu);
            return 0;
        }
        return -EINVAL;
    }
    scp_err e;
    if (whence == SEEK_DATA || whence == SEEK_HOLE) {
        uint64_t size = scp_vfile_size(pf->vf);
        if (off < 0 || (uint64_t)off >= size) return -ENXIO;
        long long to = whence == SEEK_DATA ? off : (long long)size;
        int64_t r = scp_vfile_seek(pf->vf, to, SEEK_SET, &e);
        return r < 0 ? neg(&e) : (long)r;
    }
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return -EINVAL;
    int64_t r = scp_vfile_seek(pf->vf, off, whence, &e);
    return r < 0 ? neg(&e) : (long)r;
}

/* The description's offset, shared or not (fcntl locks relative to SEEK_CUR). */
static long cur_offset(pfile *pf) {
    struct sh_ofd *o = ofd_enter(pf);
    long r = do_lseek(pf, 0, SEEK_CUR);
    ofd_leave(pf, o);
    return r;
}

/* Copy between two descriptors, at least one of them protected (sendfile, splice,
 * copy_file_range). Offsets: NULL means the descriptor's cursor. */
#define COPY_BUF (128u << 10)
#define COPY_IOV 128 /* cached chunks per writev (512 KiB with 4 KiB chunks) */
static __thread char *copy_buf; /* per thread, mapped on first use (no malloc: may run in the trap) */

/* ofd_enter for the two descriptions of a copy (either may be NULL, never the same one): the
 * process's guards by address, then the shared slots by slot, one order in every process, so
 * two copies between the same two files in opposite directions cannot wait for each other. */
static void ofd_enter_pair(pfile *a, struct sh_ofd **oa, pfile *b, struct sh_ofd **ob) {
    assert(!a || a != b);
    pfile *g1 = a, *g2 = b;
    if (a && b && (uintptr_t)b < (uintptr_t)a) g1 = b, g2 = a;
    if (g1) pthread_mutex_lock(&g1->mu);
    if (g2) pthread_mutex_lock(&g2->mu);
    if (a && b && (uintptr_t)b->ofd < (uintptr_t)a->ofd) *ob = ofd_lock(b);
    if (a) *oa = ofd_lock(a);
    if (b && !*ob) *ob = ofd_lock(b);
}

static long do_copy(long in, long long *inoff, long out, long long *outoff, size_t count) {
    if (!copy_buf) {
        void *m = (void *)syscall(SYS_mmap, NULL, COPY_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if ((unsigned long)m > -4096ul) return (long)m;
        copy_buf = m;
    }
    char *buf = copy_buf;
    long total = 0, e = 0;
    /* a shielded connection as the input: the kernel refuses it (no pipe, or no file), and a
     * plain read here would take TLS records out of the connection (net_io.c serves splice
     * into a pipe) */
    if (!sh_is_prot(in) && sh_net_on && sh_net_is((int)in)) return -EINVAL;
    pfile *pin = sh_is_prot(in) ? pf_get(in, &e) : NULL;
    if (e) return e;
    pfile *pout = sh_is_prot(out) ? pf_get(out, &e) : NULL;
    if (e) {
        pf_put(pin);
        return e;
    }
    /* the cursors this copy moves: the process's guards by address, then the shared slots
     * in one order (by slot) across processes */
    pfile *ci = pin && !inoff && pin->kind == PF_FILE ? pin : NULL;
    pfile *co = pout && !outoff && pout != pin && pout->kind == PF_FILE ? pout : NULL;
    struct sh_ofd *oi = NULL, *oo = NULL;
    ofd_enter_pair(ci, &oi, co, &oo);
    while ((size_t)total < count) {
        size_t want = count - (size_t)total;
        if (pin && !pout && inoff && pin->kind == PF_FILE && readable(pin)) {
            /* Chunks in the volume's plaintext cache go to the output straight from there (no
             * copy through buf); the first read of a chunk takes the copy path below. */
            struct iovec iov[COPY_IOV];
            int niov;
            ssize_t c = scp_vfile_pin(pin->vf, (uint64_t)*inoff, want, iov, COPY_IOV, &niov, NULL);
            if (c > 0) {
                long w = outoff    ? sh_gate(SYS_pwritev, out, (long)iov, niov, *outoff, 0, 0)
                         : sh_net_on ? sh_net_writev((int)out, iov, niov) /* a shielded socket: TLS */
                                     : sh_gate(SYS_writev, out, (long)iov, niov, 0, 0, 0);
                scp_vfile_unpin(pin->vf);
                if (w <= 0) {
                    if (!total) total = w ? w : -EIO;
                    break;
                }
                *inoff += w;
                if (outoff) *outoff += w;
                total += w;
                if (w < c) break; /* the output is full */
                continue;
            }
        }
        if (want > COPY_BUF) want = COPY_BUF;
        long r;
        if (pin) r = io_read(pin, buf, want, inoff ? *inoff : -1);
        else {
            r = inoff ? sh_gate(SYS_pread64, in, (long)buf, (long)want, *inoff, 0, 0)
                      : sh_gate(SYS_read, in, (long)buf, (long)want, 0, 0, 0);
        }
        if (r <= 0) {
            if (r < 0 && !total) total = r;
            break;
        }
        size_t got = (size_t)r, done = 0;
        while (done < got) {
            long w;
            if (pout) w = io_write(pout, buf + done, got - done, outoff ? *outoff : -1);
            else if (outoff) {
                w = sh_gate(SYS_pwrite64, out, (long)(buf + done), (long)(got - done), *outoff, 0, 0);
            } else {
                w = sh_net_on ? sh_net_write((int)out, buf + done, got - done)
                              : sh_gate(SYS_write, out, (long)(buf + done), (long)(got - done), 0, 0, 0);
            }
            if (w <= 0) {
                /* the output took only `done` bytes of this piece (EAGAIN on a socket...):
                 * account for exactly those, and give the rest back to the input */
                if (inoff) *inoff += (long long)done;
                else if (pin && got > done) scp_vfile_seek(pin->vf, -(int64_t)(got - done), SEEK_CUR, NULL);
                total += (long)done;
                if (!total) total = w ? w : -EIO;
                goto out;
            }
            done += (size_t)w;
            if (outoff) *outoff += w;
        }
        if (inoff) *inoff += (long long)got;
        total += (long)got;
        if (got < want) break;
    }
out:
    if (co) ofd_leave(co, oo);
    if (ci) ofd_leave(ci, oi); /* the guards in any order */
    pf_put(pin);
    pf_put(pout);
    return total;
}

/* ---- mmap -------------------------------------------------------------------------------- */

#define MAXMAP 64
static struct shmap {
    char *addr;
    size_t len;
    pfile *pf;
    long long off;
    pid_t pid; /* the process that mapped it */
    int shm;   /* the shared object it maps (shm_attach), or -1: a copy of its own */
} maps[MAXMAP];

static long map_guard(pfile *pf);

/* ---- shared objects of writable shared mappings --------------------------------------------
 *
 * Every process that maps a protected file writable and shared maps one shared memory object
 * of that file, so that each sees the others' stores at once (sqlite's WAL index, the -shm
 * file, is the user). The object is a file in tmpfs (/dev/shm, memory: never on the host's
 * disk; like all of the program's memory, readable by the host in sim mode), in a directory
 * of the program's user that only it may enter (0700), named by an HMAC of the file's inode
 * number under its volume key (the name tells nothing about the file; only a holder of the
 * key finds it). Its content is the plaintext of the mapped range, as the private copy was;
 * written back to the volume at msync, munmap and exit as before.
 * Who uses it is told by OFD locks on the object: every attached description holds a read
 * lock on byte 0; byte 1 is held for writing while one attaches or detaches. The first to
 * attach (no other reader) fills it from the volume (a previous program's leftover after a
 * crash is overwritten), the last to detach unlinks it; a description that attached a name
 * unlinked meanwhile (nlink 0) opens it again. */
#define SHM_USERS 0
#define SHM_INIT 1

static int shm_lock(int fd, short type, int start, int wait) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = 1};
    return (int)sh_gate(SYS_fcntl, fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, (long)&fl, 0, 0, 0);
}

/* Does another description hold byte 0 (a user)? 1 yes, 0 no, <0 -errno. */
static int shm_others(int fd) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = SHM_USERS, .l_len = 1};
    long r = sh_gate(SYS_fcntl, fd, F_OFD_GETLK, (long)&fl, 0, 0, 0);
    return r < 0 ? (int)r : fl.l_type != F_UNLCK;
}

static int shm_name(const pfile *pf, char *out, size_t n) {
    scp_vstat st;
    scp_err e;
    if (scp_vfile_stat(pf->vf, &st, &e)) return (int)neg(&e);
    uint8_t mac[32];
    char msg[40];
    int ml = snprintf(msg, sizeof msg, "scp-shm %llu", (unsigned long long)st.ino);
    if (scp_hmac_buf(sh.keys[pf->vol], SCP_VOLUME_KEY_LEN, msg, (size_t)ml, mac, &e)) return -EIO;
    char hex[33];
    for (size_t i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    unsigned uid = (unsigned)sh_gate(SYS_geteuid, 0, 0, 0, 0, 0, 0);
    char dir[64];
    snprintf(dir, sizeof dir, "/dev/shm/scp-shm-%u", uid);
    (void)sh_gate(SYS_mkdirat, AT_FDCWD, (long)dir, 0700, 0, 0, 0); /* EEXIST: checked below */
    struct stat ds;
    /* the directory must be ours, private and no link: another user could otherwise read the
     * plaintext or plant an object */
    if (sh_gate(SYS_newfstatat, AT_FDCWD, (long)dir, (long)&ds, AT_SYMLINK_NOFOLLOW, 0, 0) < 0 ||
        !S_ISDIR(ds.st_mode) || ds.st_uid != uid || (ds.st_mode & 077))
        return -EACCES;
    return snprintf(out, n, "%s/%s", dir, hex) < (int)n ? 0 : -ENAMETOOLONG;
}

/* Fill a fresh object from the volume: the file's bytes in [off, off + need) (zeros beyond). */
static long shm_fill(pfile *pf, int fd, long long off, size_t need) {
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, off + (off_t)need) < 0) return -errno;
    uint64_t size = scp_vfile_size(pf->vf);
    char buf[16384];
    scp_err e;
    for (uint64_t at = (uint64_t)off; at < size && at < (uint64_t)off + need;) {
        size_t want = sizeof buf;
        if (want > size - at) want = (size_t)(size - at);
        ssize_t r = scp_vfile_pread(pf->vf, buf, want, at, &e);
        if (r <= 0) return r < 0 ? neg(&e) : -EIO;
        if (pwrite(fd, buf, (size_t)r, (off_t)at) != r) return -EIO;
        at += (uint64_t)r;
    }
    return 0;
}

/* A descriptor of pf's shared object, at least off + len bytes long, with this description's
 * user lock; or -errno (then the mapping is a copy of its own, as before). */
static int shm_attach(pfile *pf, long long off, size_t len) {
    char name[128];
    int r = shm_name(pf, name, sizeof name);
    if (r < 0) return r;
    for (int tries = 0; tries < 8; tries++) {
        int fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600); /* library zone */
        if (fd < 0) return -errno;
        struct stat st = {0};
        if ((r = shm_lock(fd, F_WRLCK, SHM_INIT, 1)) == 0 && fstat(fd, &st) < 0) r = -errno;
        if (r == 0 && st.st_nlink == 0) { /* the last user unlinked it while we waited */
            close(fd);
            continue;
        }
        int others = r == 0 ? shm_others(fd) : r;
        if (others == 1 && st.st_size < off + (off_t)len && ftruncate(fd, off + (off_t)len) < 0) others = -errno;
        if (others == 0) others = (int)shm_fill(pf, fd, off, len);
        if (others >= 0) others = shm_lock(fd, F_RDLCK, SHM_USERS, 0);
        shm_lock(fd, F_UNLCK, SHM_INIT, 0);
        if (others < 0) {
            close(fd);
            return others;
        }
        return fd;
    }
    return -EAGAIN;
}

/* This description stops using the object: the last user unlinks it (its plaintext goes). */
static void shm_detach(pfile *pf, int fd) {
    char name[128];
    if (shm_lock(fd, F_WRLCK, SHM_INIT, 1) == 0 && shm_others(fd) == 0 && shm_name(pf, name, sizeof name) == 0)
        unlink(name);
    close(fd); /* drops both locks, unless a forked child still holds the description */
}

/* At exit (after the write-back of sh_commit_all): the mappings go with the process, and the
 * last user's object with them. */
static void shm_release_all(void) {
    if (!sh.active || in_vfork_child()) return;
    sh_in_lib++;
    pthread_mutex_lock(&sh.mu);
    for (int i = 0; i < MAXMAP; i++)
        if (maps[i].addr && maps[i].pid == sh.pid && maps[i].shm >= 0) {
            shm_detach(maps[i].pf, maps[i].shm);
            maps[i].shm = -1;
        }
    pthread_mutex_unlock(&sh.mu);
    sh_lib_leave();
}

/* Keep a writable shared mapping for its write-back (and its object's detach): m, or -errno. */
static long map_record(pfile *pf, char *m, size_t len, long long off, int shm) {
    pthread_mutex_lock(&sh.mu);
    int i;
    for (i = 0; i < MAXMAP && maps[i].addr; i++) {}
    if (i == MAXMAP) {
        pthread_mutex_unlock(&sh.mu);
        syscall(SYS_munmap, m, len);
        if (shm >= 0) shm_detach(pf, shm);
        return -ENOMEM;
    }
    __atomic_add_fetch(&pf->refs, 1, __ATOMIC_ACQ_REL);
    maps[i] = (struct shmap){m, len, pf, off, sh.pid, shm};
    pthread_mutex_unlock(&sh.mu);
    return (long)m;
}

static long do_mmap(pfile *pf, void *addr, size_t len, int prot, int flags, long long off) {
    if (pf->kind == PF_DIR) return -ENODEV;
    if (!readable(pf)) return -EACCES;
    int shared = (flags & MAP_TYPE) == MAP_SHARED || (flags & MAP_TYPE) == MAP_SHARED_VALIDATE;
    /* MAP_SYNC promises that stores reach the file without msync (DAX, persistent memory):
     * the shield's copy is written back only on msync/munmap, so refuse it as the kernel does
     * for a file that is not DAX (InnoDB would otherwise keep its redo log there, not durable) */
    if ((flags & MAP_TYPE) == MAP_SHARED_VALIDATE && (flags & MAP_SYNC)) return -EOPNOTSUPP;
    int wb = shared && (prot & PROT_WRITE);
    if (wb && !writable(pf)) return -EACCES;
    if (len == 0 || off < 0 || (off & 4095)) return -EINVAL;
    int shm = wb ? shm_attach(pf, off, len) : -1;
    if (wb && shm < 0) {
        sh_trace("no shared object for a mapping of '%s' (%d): a copy of its own", pf->path, shm);
        long g = map_guard(pf);
        if (g < 0) return g;
    }
    int fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE | MAP_POPULATE);
    if (shm >= 0) { /* every process's stores land in the one object */
        char *m = (char *)sh_gate(SYS_mmap, (long)addr, (long)len, prot, MAP_SHARED | fixed, shm, off);
        if ((unsigned long)m > -4096ul) {
            shm_detach(pf, shm);
            return (long)m;
        }
        return map_record(pf, m, len, off, shm);
    }
    int mf = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | fixed;
    char *m = (char *)syscall(SYS_mmap, addr, len, PROT_READ | PROT_WRITE, mf, -1, 0);
    if ((unsigned long)m > -4096ul) return (long)m;
    uint64_t size = scp_vfile_size(pf->vf);
    if ((uint64_t)off < size) {
        size_t want = (size_t)(size - (uint64_t)off) < len ? (size_t)(size - (uint64_t)off) : len;
        scp_err e;
        size_t done = 0;
        while (done < want) {
            ssize_t r = scp_vfile_pread(pf->vf, m + done, want - done, (uint64_t)off + done, &e);
            if (r <= 0) {
                syscall(SYS_munmap, m, len);
                return r < 0 ? neg(&e) : -EIO;
            }
            done += (size_t)r;
        }
    }
    if (syscall(SYS_mprotect, m, len, prot)) {
        long r = -errno;
        syscall(SYS_munmap, m, len);
        return r;
    }
    return wb ? map_record(pf, m, len, off, -1) : (long)m;
}

static void map_writeback(struct shmap *mp) {
    uint64_t size = scp_vfile_size(mp->pf->vf);
    if ((uint64_t)mp->off >= size) return;
    size_t n = (size_t)(size - (uint64_t)mp->off) < mp->len ? (size_t)(size - (uint64_t)mp->off) : mp->len;
    scp_err e;
    if (scp_vfile_pwrite(mp->pf->vf, mp->addr, n, (uint64_t)mp->off, &e) < 0)
        sh_trace("write-back of a shared mapping of '%s' failed: %s", mp->pf->path, e.msg);
    else mp->pf->wpid = sh.pid;
}

/* msync/munmap of [addr, addr+len): write back overlapping shared mappings; drop them on
 * unmap. Returns 1 if a protected mapping was involved. */
static int sh_unmap_hook_(void *addr, size_t len, int unmap);
int sh_unmap_hook(void *addr, size_t len, int unmap) {
    /* The volume library's own unmaps (a file's state freed under its volume mutex) are never
     * the program's mappings; taking sh.mu there would invert the order sh.mu -> volume locks
     * that the fork handlers rely on (the shield's prepare runs before the library's). */
    if (!sh.active || sh_in_lib) return 0;
    sh_in_lib++;
    int r = sh_unmap_hook_(addr, len, unmap);
    sh_lib_leave();
    return r;
}
static int sh_unmap_hook_(void *addr, size_t len, int unmap) {
    char *a = addr;
    int hit = 0;
    pfile *drop[MAXMAP];
    int dshm[MAXMAP];
    int nd = 0;
    pthread_mutex_lock(&sh.mu);
    for (int i = 0; i < MAXMAP; i++) {
        if (!maps[i].addr || maps[i].addr >= a + len || maps[i].addr + maps[i].len <= a) continue;
        hit = 1;
        map_writeback(&maps[i]);
        if (unmap) {
            dshm[nd] = maps[i].pid == sh.pid ? maps[i].shm : -1; /* a fork child's copy: the parent's */
            drop[nd++] = maps[i].pf;
            maps[i].addr = NULL;
        }
    }
    pthread_mutex_unlock(&sh.mu);
    for (int i = 0; i < nd; i++) {
        if (dshm[i] >= 0) shm_detach(drop[i], dshm[i]);
        pf_put(drop[i]);
    }
    return hit;
}

/* ---- record locks ------------------------------------------------------------------------ */

/* The program's locks on a protected file are the kernel's own, taken on a descriptor of the
 * file's table object (scp_vfile_lock_fd), one per open file description: OFD and flock locks
 * belong to that description (shared by dup and fork, as the kernel's), process-associated
 * locks to the process and the inode, which every process opening the file shares. So the
 * kernel gives exclusion across processes, blocking waits, EDEADLK, F_GETLK's holder pid and
 * release at exit. The descriptor is in the volume library's zone: the program never sees its
 * number and cannot close it. */

/* The program's lock ranges end here; the byte at it is the shield's guard (map_guard). */
#define SH_LOCK_LIMIT (1LL << 62)

/* Set once this process took a process-associated lock: from then on a close must release them. */
static int posix_locks_taken;

/* Why pf's lock descriptor is opened lazily, and why with care: opening one moves it from the
 * lowest free number into the library's zone, and the close of the temporary number is a
 * close of a descriptor of the file, on which the kernel drops every process-associated lock
 * of this process on it (POSIX). So process-associated locks go through a descriptor the
 * process already has for the file when there is one (locks_fd_of), and a new description
 * for OFD or flock locks is refused with ENOLCK while the process holds such locks, rather
 * than dropping them silently (own_lock_fd). */

/* Open pf's lock descriptor; or -errno. */
static long open_lock_fd(pfile *pf) {
    assert(pf->kind == PF_FILE);
    int have = __atomic_load_n(&pf->lkfd, __ATOMIC_ACQUIRE);
    /* a vfork child shares the shield's memory but not its descriptor table */
    if (have < 0 && in_vfork_child()) return -ENOLCK;
    scp_err e;
    int fd = scp_vfile_lock_fd(pf->vf, have, &e);
    if (fd < 0) return neg(&e);
    if (fd == have) return fd;
    scp_vstat st;
    if (scp_vfile_stat(pf->vf, &st, &e)) {
        close(fd); /* we run inside sh_in_lib: close forgets the library descriptor */
        return neg(&e);
    }
    pf->lkino = st.ino;
    int none = -1;
    if (__atomic_compare_exchange_n(&pf->lkfd, &none, fd, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return fd;
    close(fd); /* another thread opened one first */
    return none;
}

/* Another description of the same file with a lock descriptor (a reference), or NULL. */
static pfile *lock_sibling(pfile *pf) {
    scp_vstat st;
    scp_err e;
    if (scp_vfile_stat(pf->vf, &st, &e)) return NULL;
    pfile *hit = NULL;
    pthread_mutex_lock(&sh.mu);
    long amax = (long)SCP_SHIELD_MAX_ALIAS_FD, nalias = sh.nalias ? (sh.lo < amax ? sh.lo : amax) : 0;
    for (long i = 0; i < sh.nslots + nalias && !hit; i++) {
        pfile *q = i < sh.nslots ? sh.slot[i] : sh.alias[i - sh.nslots];
        if (q && q != pf && q->kind == PF_FILE && q->vol == pf->vol &&
            __atomic_load_n(&q->lkfd, __ATOMIC_ACQUIRE) >= 0 && q->lkino == st.ino)
            hit = q;
    }
    if (hit) __atomic_add_fetch(&hit->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&sh.mu);
    return hit;
}

/* Does this process hold process-associated locks on the file of lock descriptor fd? The
 * kernel lists them in the descriptor's fdinfo. */
static int holds_posix_locks(long fd) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%ld", fd);
    long f = sh_gate(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (f < 0) return 1; /* unknown: assume so (refusing is safe, dropping is not) */
    long n = sh_gate(SYS_read, f, (long)buf, sizeof buf - 1, 0, 0, 0);
    sh_gate(SYS_close, f, 0, 0, 0, 0, 0);
    if (n < 0) return 1;
    buf[n] = 0;
    return strstr(buf, "POSIX") != NULL;
}

/* The descriptor for pf's own (OFD, flock) locks; or -errno. */
static long own_lock_fd(pfile *pf) {
    int have = __atomic_load_n(&pf->lkfd, __ATOMIC_ACQUIRE);
    if (have >= 0) return open_lock_fd(pf); /* returns it after the library's fork check */
    if (__atomic_load_n(&posix_locks_taken, __ATOMIC_ACQUIRE)) {
        pfile *q = lock_sibling(pf);
        int busy = q && holds_posix_locks(q->lkfd);
        pf_put(q);
        if (busy) {
            sh_trace("'%s': an OFD or flock lock through a second open while this process holds fcntl "
                     "locks on the file is not supported (ENOLCK)", pf->path);
            return -ENOLCK;
        }
    }
    return open_lock_fd(pf);
}

/* A descriptor for the process-associated locks of pf's file: any lock descriptor of the file
 * in this process will do (the kernel keeps those locks per process and file). *ref: a
 * reference to drop with pf_put after use (or NULL). Returns it or -errno. */
static long posix_lock_fd(pfile *pf, pfile **ref) {
    *ref = NULL;
    if (__atomic_load_n(&pf->lkfd, __ATOMIC_ACQUIRE) < 0) {
        pfile *q = lock_sibling(pf);
        if (q) {
            *ref = q;
            return open_lock_fd(q);
        }
    }
    return open_lock_fd(pf);
}

/* A writable shared mapping of a protected file is a copy private to the process that made
 * it (written back at msync and munmap, see do_mmap): two open descriptions that map one file
 * so would each change their own copy and the later write-back would undo the other's changes
 * (two sqlite3 processes on one WAL database: the -shm index). Until such copies are shared,
 * the second is refused loudly instead: every description that maps a file writable and
 * shared holds an OFD read lock on the guard byte SH_LOCK_LIMIT of the file's lock object
 * (past every range of the program's own locks, do_record_lock), and a mapping is refused with
 * EAGAIN when another description holds one. The lock lasts as long as the description. */
static long map_guard(pfile *pf) {
    long fd = own_lock_fd(pf);
    if (fd < 0) return fd;
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = SH_LOCK_LIMIT, .l_len = 1};
    long r = sh_gate(SYS_fcntl, fd, F_OFD_SETLK, (long)&fl, 0, 0, 0);
    if (r) return r;
    fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = SH_LOCK_LIMIT, .l_len = 1};
    r = sh_gate(SYS_fcntl, fd, F_OFD_GETLK, (long)&fl, 0, 0, 0);
    if (r) return r;
    if (fl.l_type != F_UNLCK) {
        sh_log("'%s' is mapped writable and shared by another process (or open file): a second such "
               "mapping is refused (EAGAIN), as each would be a separate copy (docs/shield.md)", pf->path);
        return -EAGAIN;
    }
    return 0;
}

/* ---- process-associated locks kept in the process while it holds its volume alone ----------
 * While this process holds a volume's private lock (sh_volume.priv: the sole holder, or a
 * private process of a shared family), no other process is past its open of the volume: every
 * open waits for that lock (docs/volume-format.md, "Sole holder"). The process's own
 * process-associated (F_SETLK) locks never conflict with each other, so while the holding
 * lasts every F_SETLK/F_SETLKW succeeds and F_GETLK answers "unlocked", whatever the kernel
 * would hold: sqlite's WAL transaction makes six of them on its -shm file, each a kernel
 * fcntl on the file's lock descriptor. They are kept here instead (the ranges and types per
 * file, as the kernel keeps them per process and inode) and handed to the kernel where the
 * holding ends, before the private lock goes (sh_priv_end: the watcher's release, a fork's,
 * vfork's or posix_spawn's move to shared), so a newcomer finds them where it would have.
 * Closing any descriptor of a file drops them (POSIX, locks_on_close). A volume's locks are
 * kept here only if this process took none in the kernel before (posix_locks_taken), and
 * never once handed over (lk_mode 2); a file with more ranges than LK_SEGS, or more files
 * than LK_FILES, hands the volume's over at once. OFD and flock locks stay the kernel's: two
 * descriptions of one process can conflict. */
#define LK_SEGS 16
#define LK_FILES 8
struct lk_seg {
    long long s, e; /* [s, e) */
    short type;     /* F_RDLCK or F_WRLCK */
};
struct lk_file {
    pfile *pf; /* a reference: a description of the file, for its lock descriptor; NULL: free */
    int vol;
    uint64_t ino;
    int n;
    struct lk_seg seg[LK_SEGS];
};
static pthread_mutex_t lk_mu = PTHREAD_MUTEX_INITIALIZER; /* a leaf but for lk_handoff's calls */
static struct lk_file lk_files[LK_FILES];
static int lk_mode[SCP_SHIELD_MAX_VOLUMES]; /* 0 not decided, 1 kept here, 2 the kernel's */

/* The file's inode number in its volume, or 0 (the file's stat failed: use the kernel). */
static uint64_t lk_ino(pfile *pf) {
    uint64_t ino = __atomic_load_n(&pf->kino, __ATOMIC_RELAXED);
    if (ino) return ino; /* (a handle's file, and so its number, never changes) */
    scp_vstat st;
    scp_err e;
    if (scp_vfile_stat(pf->vf, &st, &e) != 0) return 0;
    __atomic_store_n(&pf->kino, st.ino, __ATOMIC_RELAXED);
    return st.ino;
}

/* Set [s, e) of f to type (F_UNLCK: remove), as the kernel merges a process's ranges. Caller
 * holds lk_mu. -1 if the result needs more than LK_SEGS ranges (f unchanged). */
static int lk_apply(struct lk_file *f, long long s, long long e, short type) {
    assert(scp_mutex_held(&lk_mu));
    struct lk_seg out[LK_SEGS + 3];
    int n = 0;
    for (int i = 0; i < f->n; i++) {
        struct lk_seg g = f->seg[i];
        if (g.e <= s || g.s >= e) {
            out[n++] = g;
            continue;
        }
        if (g.s < s) out[n++] = (struct lk_seg){g.s, s, g.type};
        if (g.e > e) out[n++] = (struct lk_seg){e, g.e, g.type};
        if (n > LK_SEGS + 1) return -1;
    }
    if (type != F_UNLCK) out[n++] = (struct lk_seg){s, e, type};
    /* sorted by start, neighbours of one type merged */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j].s < out[j - 1].s; j--) {
            struct lk_seg t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && out[m - 1].e == out[i].s && out[m - 1].type == out[i].type) out[m - 1].e = out[i].e;
        else out[m++] = out[i];
    }
    if (m > LK_SEGS) return -1;
    memcpy(f->seg, out, (size_t)m * sizeof *out);
    f->n = m;
    return 0;
}

/* Hand volume vi's kept locks to the kernel, for good (caller holds lk_mu, and is in the
 * library's context: sh_in_lib). The file references go to *drop, for pf_put after lk_mu. */
static void lk_handoff_locked(int vi, pfile **drop, int *ndrop) {
    assert(scp_mutex_held(&lk_mu));
    lk_mode[vi] = 2;
    for (int k = 0; k < LK_FILES; k++) {
        struct lk_file *f = &lk_files[k];
        if (!f->pf || f->vol != vi) continue;
        pfile *ref = NULL;
        long fd = f->n ? posix_lock_fd(f->pf, &ref) : 0;
        for (int i = 0; i < f->n && fd >= 0; i++) {
            struct flock fl = {.l_type = f->seg[i].type, .l_whence = SEEK_SET, .l_start = f->seg[i].s,
                               .l_len = f->seg[i].e - f->seg[i].s};
            __atomic_store_n(&posix_locks_taken, 1, __ATOMIC_RELEASE);
            long r = sh_gate(SYS_fcntl, fd, F_SETLK, (long)&fl, 0, 0, 0);
            if (r) sh_trace("'%s': a lock kept while the volume was private could not be handed to "
                            "the kernel (%ld)", f->pf->path, r);
        }
        if (fd < 0) sh_trace("'%s': no lock descriptor for the locks kept while private (%ld)", f->pf->path, fd);
        pf_put(ref);
        drop[(*ndrop)++] = f->pf;
        f->pf = NULL;
        f->n = 0;
    }
}

/* The holding of volume vi ends (sh_priv_end, before the private lock goes). */
static void lk_handoff(int vi) {
    pfile *drop[LK_FILES];
    int ndrop = 0;
    sh_in_lib++;
    pthread_mutex_lock(&lk_mu);
    lk_handoff_locked(vi, drop, &ndrop);
    pthread_mutex_unlock(&lk_mu);
    for (int i = 0; i < ndrop; i++) pf_put(drop[i]);
    sh_lib_leave();
}

/* F_SETLK, F_SETLKW or F_GETLK on fl (SEEK_SET, the range cut as do_record_lock does) kept in
 * the process: 0 done (fl's l_type set to F_UNLCK for F_GETLK), 1 not kept here (the
 * kernel's), or -errno. */
static long lk_local(pfile *pf, int cmd, struct flock *fl) {
    int vi = pf->vol;
    /* (no vfork child gets here with a volume's locks kept: a vfork, as a fork or posix_spawn,
     * ends the holding first, sh_fork_share, which hands them over; a getpid per lock call
     * to tell would cost what the kernel's fcntl did) */
    if (vi < 0 || vi >= (int)SCP_SHIELD_MAX_VOLUMES || __atomic_load_n(&lk_mode[vi], __ATOMIC_ACQUIRE) == 2)
        return 1;
    uint64_t ino = lk_ino(pf);
    if (!ino) return 1;
    pfile *drop[LK_FILES];
    int ndrop = 0;
    long r = 1;
    pthread_mutex_lock(&lk_mu);
    if (lk_mode[vi] == 0) /* (kept here only from the start of a holding with no kernel locks) */
        lk_mode[vi] = __atomic_load_n(&sh.vol[vi].priv, __ATOMIC_ACQUIRE) &&
                              !__atomic_load_n(&posix_locks_taken, __ATOMIC_ACQUIRE)
                          ? 1
                          : 2;
    if (lk_mode[vi] == 1) {
        struct lk_file *f = NULL, *free_f = NULL;
        for (int k = 0; k < LK_FILES && !f; k++) {
            if (lk_files[k].pf && lk_files[k].vol == vi && lk_files[k].ino == ino) f = &lk_files[k];
            else if (!lk_files[k].pf && !free_f) free_f = &lk_files[k];
        }
        if (cmd == F_GETLK) {
            fl->l_type = F_UNLCK; /* (a process's own locks never conflict; nobody else is present) */
            r = 0;
        } else if (!f && fl->l_type == F_UNLCK) {
            r = 0; /* (nothing held on the file) */
        } else if (!f && !free_f) {
            lk_handoff_locked(vi, drop, &ndrop); /* (too many files: the kernel's from now) */
        } else {
            if (!f) {
                f = free_f;
                __atomic_add_fetch(&pf->refs, 1, __ATOMIC_ACQ_REL);
                *f = (struct lk_file){.pf = pf, .vol = vi, .ino = ino};
            }
            if (lk_apply(f, fl->l_start, fl->l_start + fl->l_len, fl->l_type) == 0) {
                r = 0;
                if (!f->n) { /* (nothing left: the reference goes) */
                    drop[ndrop++] = f->pf;
                    f->pf = NULL;
                }
            } else {
                lk_handoff_locked(vi, drop, &ndrop); /* (too many ranges: the kernel's from now) */
            }
        }
    }
    pthread_mutex_unlock(&lk_mu);
    for (int i = 0; i < ndrop; i++) pf_put(drop[i]);
    return r;
}

/* An OFD lock on one of volume vi's files: the kernel makes OFD and process-associated locks
 * of one process conflict, so the volume's kept locks go to the kernel first and stay there. */
static void lk_kernel_only(int vi) {
    if (vi < 0 || vi >= (int)SCP_SHIELD_MAX_VOLUMES || __atomic_load_n(&lk_mode[vi], __ATOMIC_ACQUIRE) == 2)
        return;
    pfile *drop[LK_FILES];
    int ndrop = 0;
    pthread_mutex_lock(&lk_mu);
    lk_handoff_locked(vi, drop, &ndrop); /* (mode 2, and what was kept goes to the kernel) */
    pthread_mutex_unlock(&lk_mu);
    for (int i = 0; i < ndrop; i++) pf_put(drop[i]);
}

/* A fork's child: lk_mu may have been held by a thread it does not have. It holds no kept
 * locks: the fork's prepare handed them to the kernel (sh_fork_share, sh_priv_end), and the
 * kernel's are not inherited either. */
static void lk_fork_child(void) {
    pthread_mutex_init(&lk_mu, NULL);
    for (int k = 0; k < LK_FILES; k++) { /* (none: so nothing to release) */
        lk_files[k].pf = NULL;
        lk_files[k].n = 0;
    }
}

/* The program closes a descriptor of pf's file: its kept locks on the file go (POSIX). 1 if
 * the volume's locks are kept here (none of them in the kernel to release), else 0. */
static int lk_close(pfile *pf) {
    int vi = pf->vol;
    if (vi < 0 || vi >= (int)SCP_SHIELD_MAX_VOLUMES || __atomic_load_n(&lk_mode[vi], __ATOMIC_ACQUIRE) != 1)
        return 0;
    int any = 0;
    pthread_mutex_lock(&lk_mu);
    for (int k = 0; k < LK_FILES; k++) any |= lk_files[k].pf && lk_files[k].vol == vi;
    int kept = lk_mode[vi] == 1;
    pthread_mutex_unlock(&lk_mu);
    if (!kept || !any) return kept;
    uint64_t ino = lk_ino(pf); /* (outside lk_mu: the library) */
    pfile *drop = NULL;
    pthread_mutex_lock(&lk_mu);
    kept = lk_mode[vi] == 1; /* (handed over meanwhile: the kernel releases them) */
    for (int k = 0; kept && k < LK_FILES; k++)
        if (lk_files[k].pf && lk_files[k].vol == vi &&
            (ino ? lk_files[k].ino == ino : lk_files[k].pf == pf)) {
            drop = lk_files[k].pf;
            lk_files[k].pf = NULL;
            lk_files[k].n = 0;
        }
    pthread_mutex_unlock(&lk_mu);
    pf_put(drop);
    return kept;
}

/* fcntl's record-lock commands. The range is the plaintext file's: SEEK_CUR and SEEK_END are
 * resolved against the protected file's position and size (the lock descriptor has neither). */
static long do_record_lock(pfile *pf, int cmd, void *arg) {
    struct flock fl;
    long r = copy_in(&fl, arg, sizeof fl);
    if (r) return r;
    int get = cmd == F_GETLK || cmd == F_OFD_GETLK;
    if (pf->kind != PF_FILE) { /* a directory: only read locks can be asked for, and exclude nothing */
        if (fl.l_type == F_WRLCK && !get) return -EBADF;
        if (get) {
            fl.l_type = F_UNLCK;
            return copy_out(arg, &fl, sizeof fl);
        }
        return 0;
    }
    long long base = 0;
    if (fl.l_whence == SEEK_CUR) base = cur_offset(pf);
    else if (fl.l_whence == SEEK_END) base = (long long)scp_vfile_size(pf->vf);
    else if (fl.l_whence != SEEK_SET) return -EINVAL;
    if (base < 0) return base;
    if (fl.l_start > 0 && base > LLONG_MAX - fl.l_start) return -EOVERFLOW;
    fl.l_start += base;
    fl.l_whence = SEEK_SET;
    /* The program's ranges end at SH_LOCK_LIMIT, so the shield's own guard byte (map_guard)
     * never conflicts with them: "to the end of the file" (l_len 0) and ranges past it are cut
     * there, and are reported back as "to the end". */
    if (fl.l_start >= SH_LOCK_LIMIT) return -EINVAL;
    if (fl.l_len == 0 || (fl.l_len > 0 && fl.l_len > SH_LOCK_LIMIT - fl.l_start)) fl.l_len = SH_LOCK_LIMIT - fl.l_start;
    if (!get) { /* the kernel checks the access mode of the descriptor the lock is taken on */
        int acc = pf->flags & O_ACCMODE;
        if ((fl.l_type == F_WRLCK && acc == O_RDONLY) || (fl.l_type == F_RDLCK && acc == O_WRONLY)) return -EBADF;
    }
    int posix = cmd == F_SETLK || cmd == F_SETLKW || cmd == F_GETLK;
    if (posix && (r = lk_local(pf, cmd, &fl)) <= 0) {
        if (r || cmd != F_GETLK) return r;
        if (copy_in(&fl, arg, sizeof fl)) return -EFAULT; /* (as the kernel: only l_type changes) */
        fl.l_type = F_UNLCK;
        return copy_out(arg, &fl, sizeof fl);
    }
    if (!posix) lk_kernel_only(pf->vol);
    pfile *ref = NULL;
    long fd = posix ? posix_lock_fd(pf, &ref) : own_lock_fd(pf);
    if (fd < 0) return fd;
    if ((cmd == F_SETLK || cmd == F_SETLKW) && fl.l_type != F_UNLCK)
        __atomic_store_n(&posix_locks_taken, 1, __ATOMIC_RELEASE);
    r = sh_gate(SYS_fcntl, fd, cmd, (long)&fl, 0, 0, 0);
    pf_put(ref);
    if (r || !get) return r;
    if (fl.l_type == F_UNLCK) { /* the kernel changes only l_type then */
        if (copy_in(&fl, arg, sizeof fl)) return -EFAULT;
        fl.l_type = F_UNLCK;
    } else if (fl.l_len > 0 && fl.l_start + fl.l_len == SH_LOCK_LIMIT) {
        fl.l_len = 0; /* a holder's "to the end of the file" */
    }
    return copy_out(arg, &fl, sizeof fl);
}

static long do_flock(pfile *pf, int op) {
    if (pf->kind != PF_FILE) return 0; /* directories: accepted, exclude nothing (docs/shield.md) */
    long fd = own_lock_fd(pf);
    return fd < 0 ? fd : sh_gate(SYS_flock, fd, op, 0, 0, 0, 0);
}

/* The program closes a descriptor of pf: POSIX releases every process-associated lock of this
 * process on the file, whichever descriptor took it (the kernel keeps them per inode, so an
 * unlock of the whole file on any descriptor of the table object releases them all). */
static void locks_on_close(pfile *pf) {
    if (!pf || pf->kind != PF_FILE) return;
    if (lk_close(pf)) return; /* (kept in the process: none in the kernel) */
    if (!__atomic_load_n(&posix_locks_taken, __ATOMIC_ACQUIRE)) return;
    pfile *ref = NULL;
    long fd = -1;
    if (__atomic_load_n(&pf->lkfd, __ATOMIC_ACQUIRE) >= 0) fd = open_lock_fd(pf);
    /* without a lock descriptor of the file in this process, it holds no such locks on it */
    else if ((ref = lock_sibling(pf))) fd = open_lock_fd(ref);
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fd >= 0) sh_gate(SYS_fcntl, fd, F_SETLK, (long)&fl, 0, 0, 0);
    pf_put(ref);
}

/* ---- fcntl, dup, close ------------------------------------------------------------------- */

static long do_dup_to(long oldfd, long newfd, int cloexec) {
    long e = 0;
    if (oldfd == newfd) return sh_is_prot(oldfd) ? newfd : -EBADF;
    if (!sh_is_prot(oldfd)) {
        /* an ordinary descriptor onto an alias (a shell restoring stdout): the alias ends */
        if (sh_reserved(newfd)) return -EBADF;
        long r = sh_gate(SYS_dup3, oldfd, newfd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
        if (r >= 0) {
            if (in_vfork_child()) vfk_forget((pid_t)syscall(SYS_getpid), newfd);
            else {
                pfile *old = slot_take(newfd);
                locks_on_close(old);
                pf_put(old);
            }
        }
        return r;
    }
    pfile *pf = pf_get(oldfd, &e);
    if (!pf) return e;
    if (in_vfork_child()) {
        /* only the child's own kernel table and a note for its exec */
        long r = -EBADF;
        if ((newfd >= sh.base && newfd < sh.base + sh.nslots) ||
            (newfd >= 0 && newfd < sh.lo && newfd < (long)SCP_SHIELD_MAX_ALIAS_FD)) {
            r = 0;
            if (newfd < sh.lo && !sh.alias_filtered[newfd]) {
                scp_err fe;
                if (sh_filter_install((int)newfd, 1, 0, &fe)) r = -EMFILE;
            }
            if (!r) r = sh_gate(SYS_dup3, sh.placeholder, newfd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
            if (r >= 0) r = vfk_add(pf, newfd);
            if (r >= 0) r = newfd;
        }
        pf_put(pf);
        return r;
    }
    if (newfd >= sh.base && newfd < sh.base + sh.nslots) {
        pthread_mutex_lock(&sh.mu);
        pfile *old = sh.slot[newfd - sh.base];
        sh.slot[newfd - sh.base] = pf;
        sh.slot_cloexec[newfd - sh.base] = (unsigned char)cloexec;
        pthread_mutex_unlock(&sh.mu);
        kset_cloexec(newfd, cloexec);
        locks_on_close(old);
        pf_put(old);
        return newfd;
    }
    if (newfd >= 0 && newfd < sh.lo && newfd < (long)SCP_SHIELD_MAX_ALIAS_FD) {
        /* A protected description at an ordinary number (dd, shell redirections): the kernel
         * descriptor becomes an O_PATH placeholder, on which no raw I/O can succeed, and the
         * shield's wrappers serve it. Raw system calls on it fail (EBADF): closed, not open. */
        long r = sh_gate(SYS_dup3, sh.placeholder, newfd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
        if (r < 0) {
            pf_put(pf);
            return r;
        }
        if (!sh.alias_filtered[newfd]) {
            scp_err fe;
            if (sh_filter_install((int)newfd, 1, 0, &fe)) {
                sh_trace("cannot filter descriptor %ld: %s", newfd, fe.msg);
                sh_gate(SYS_close, newfd, 0, 0, 0, 0, 0);
                pf_put(pf);
                return -EMFILE;
            }
            sh.alias_filtered[newfd] = 1;
        }
        pthread_mutex_lock(&sh.mu);
        pfile *old = sh.alias[newfd];
        sh.alias[newfd] = pf;
        if (!old) sh.nalias++;
        pthread_mutex_unlock(&sh.mu);
        locks_on_close(old);
        pf_put(old);
        sh_trace("descriptor %ld now refers to protected '%s' (alias)", newfd, pf->path);
        return newfd;
    }
    pf_put(pf);
    return -EBADF;
}

static long do_close(long fd) {
    if (!sh_is_prot(fd)) return -EBADF;
    if (in_vfork_child()) { /* the kernel's copy only: the exec hands on what is still open */
        if (sh_is_libfd(fd) || fd >= sh.base + sh.nslots) return -EBADF;
        vfk_forget((pid_t)syscall(SYS_getpid), fd);
        return sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    }
    pfile *pf = slot_take(fd);
    if (!pf) return -EBADF;
    if (fd < sh.lo) sh_gate(SYS_close, fd, 0, 0, 0, 0, 0); /* the alias placeholder */
    locks_on_close(pf);
    return pf_put(pf);
}

static long do_fcntl(long fd, int cmd, long arg) {
    long e = 0;
    pfile *pf = pf_get(fd, &e);
    if (!pf) return e;
    long r;
    switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
        if (in_vfork_child()) {
            r = -EMFILE; /* not supported between vfork and exec */
            break;
        }
        r = slot_alloc(pf, arg, cmd == F_DUPFD_CLOEXEC);
        if (r >= 0) return r; /* the reference moved into the new slot */
        break;
    case F_GETFD:
        r = sh_gate(SYS_fcntl, fd, F_GETFD, 0, 0, 0, 0);
        break;
    case F_SETFD:
        if (fd >= sh.base && fd < sh.base + sh.nslots && !in_vfork_child())
            sh.slot_cloexec[fd - sh.base] = (arg & FD_CLOEXEC) != 0;
        r = sh_gate(SYS_fcntl, fd, F_SETFD, arg & FD_CLOEXEC, 0, 0, 0);
        break;
    case F_GETFL: {
        int fl = pf->flags;
        if (pf->ofd) /* the status flags are the description's: another process may set them */
            fl = (fl & ~(O_APPEND | O_NONBLOCK)) | __atomic_load_n(&pf->ofd->flags, __ATOMIC_ACQUIRE);
        r = (fl & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC | O_NOATIME | O_PATH | O_DIRECTORY)) | O_LARGEFILE;
        break;
    }
    case F_SETFL: {
        /* the kernel's F_SETFL changes O_APPEND too (O_ASYNC and O_DIRECT mean nothing here) */
        const int settable = O_APPEND | O_NONBLOCK | O_NOATIME;
        struct sh_ofd *o = pf->kind == PF_FILE ? ofd_enter(pf) : NULL;
        pf->flags = (pf->flags & ~settable) | ((int)arg & settable);
        if (pf->kind == PF_FILE) scp_vfile_set_append(pf->vf, pf->flags & O_APPEND);
        if (o) __atomic_store_n(&o->flags, pf->flags & (O_APPEND | O_NONBLOCK), __ATOMIC_RELEASE);
        if (pf->kind == PF_FILE) ofd_leave(pf, o);
        r = 0;
        break;
    }
    case F_GETLK:
    case F_OFD_GETLK:
    case F_SETLK:
    case F_SETLKW:
    case F_OFD_SETLK:
    case F_OFD_SETLKW: r = do_record_lock(pf, cmd, (void *)arg); break;
    default: r = -EINVAL; sh_trace("fcntl %d on a protected descriptor is not supported", cmd);
    }
    pf_put(pf);
    return r;
}

static long do_close_range(unsigned lo, unsigned hi, unsigned flags) {
    int vf = in_vfork_child();
    for (long fd = sh.base; fd < sh.base + sh.nslots; fd++) {
        if (fd < (long)lo || fd > (long)hi) continue;
        if (vf) { /* the kernel's copy only (placeholders), never the shield's own numbers */
            if (flags & CLOSE_RANGE_CLOEXEC) kset_cloexec(fd, 1);
            else sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
            vfk_forget((pid_t)syscall(SYS_getpid), fd);
        } else if (flags & CLOSE_RANGE_CLOEXEC) {
            sh.slot_cloexec[fd - sh.base] = 1;
            kset_cloexec(fd, 1);
        } else {
            pfile *old = slot_take(fd);
            locks_on_close(old);
            pf_put(old);
        }
    }
    for (long fd = lo; fd <= (long)hi && fd < sh.lo && sh.nalias && !vf; fd++)
        if (sh.alias[fd] && !(flags & CLOSE_RANGE_CLOEXEC)) {
            pfile *old = slot_take(fd);
            locks_on_close(old);
            pf_put(old);
        }
    /* the parts outside the reserved range are the kernel's, except the volume library's own
     * descriptors just below it (a program closing "everything" must not take them) */
    long r = 0;
    unsigned zone = (unsigned)SH_LIB_FD_MIN(sh.lo);
    if (lo < zone) r = sh_gate(SYS_close_range, lo, hi < zone ? hi : zone - 1, flags, 0, 0, 0);
    for (unsigned fd = lo > zone ? lo : zone; r == 0 && fd < (unsigned)sh.lo && fd <= hi; fd++)
        if (!sh.libfd[fd - zone])
            sh_gate((flags & CLOSE_RANGE_CLOEXEC) ? SYS_fcntl : SYS_close, fd, F_SETFD, FD_CLOEXEC, 0, 0, 0);
    if (r == 0 && hi >= (unsigned)sh.hi) r = sh_gate(SYS_close_range, lo > (unsigned)sh.hi ? lo : (unsigned)sh.hi, hi, flags, 0, 0, 0);
    return r;
}

/* ---- the dispatcher for descriptor-based calls ------------------------------------------- */

/* Does a trapped call involve a protected descriptor (or is it one the shield always handles)?
 * If not (an ordinary number that once was an alias), the trap handler forwards it. The
 * table's descriptor column says which arguments to look at. */
int sh_trap_involves_prot(long nr, const long a[6]) {
    const struct sh_sysent *s = sh_sys(nr);
    if (!s) return sh_is_prot((int)a[0]);
    if (s->handler == HND_EXEC || s->filter == FILT_ALWAYS || s->filter == FILT_CLOSE_RANGE ||
        s->filter == FILT_SIGACTION)
        return 1;
    for (int i = 0; i < 6; i++)
        if ((s->fds & SH_ARG(i)) && sh_is_prot((int)a[i])) return 1;
    return 0;
}

static long sh_syscall_(long nr, const long a[6]);
/* A trapped path call without a directory descriptor (a raw open, stat, mkdir...) as the
 * *at call that the path dispatcher serves: its number, b filled (nr and a copy of a when it
 * is served as it is). */
static long at_form(long nr, const long a[6], long b[6]) {
    const long cwd = AT_FDCWD;
    long at = nr;
    long v[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
#define AT(n, x0, x1, x2, x3, x4) (at = (n), v[0] = (x0), v[1] = (x1), v[2] = (x2), v[3] = (x3), v[4] = (x4))
    switch (nr) {
    case SYS_open: AT(SYS_openat, cwd, a[0], a[1], a[2], 0); break;
    case SYS_creat: AT(SYS_openat, cwd, a[0], O_CREAT | O_WRONLY | O_TRUNC, a[1], 0); break;
    case SYS_stat: AT(SYS_newfstatat, cwd, a[0], a[1], 0, 0); break;
    case SYS_lstat: AT(SYS_newfstatat, cwd, a[0], a[1], AT_SYMLINK_NOFOLLOW, 0); break;
    case SYS_access: AT(SYS_faccessat, cwd, a[0], a[1], 0, 0); break;
    case SYS_mkdir: AT(SYS_mkdirat, cwd, a[0], a[1], 0, 0); break;
    case SYS_rmdir: AT(SYS_unlinkat, cwd, a[0], AT_REMOVEDIR, 0, 0); break;
    case SYS_unlink: AT(SYS_unlinkat, cwd, a[0], 0, 0, 0); break;
    case SYS_rename: AT(SYS_renameat, cwd, a[0], cwd, a[1], 0); break;
    case SYS_link: AT(SYS_linkat, cwd, a[0], cwd, a[1], 0); break;
    case SYS_symlink: AT(SYS_symlinkat, a[0], cwd, a[1], 0, 0); break;
    case SYS_readlink: AT(SYS_readlinkat, cwd, a[0], a[1], a[2], 0); break;
    case SYS_chmod: AT(SYS_fchmodat, cwd, a[0], a[1], 0, 0); break;
    case SYS_chown: AT(SYS_fchownat, cwd, a[0], a[1], a[2], 0); break;
    case SYS_lchown: AT(SYS_fchownat, cwd, a[0], a[1], a[2], AT_SYMLINK_NOFOLLOW); break;
    case SYS_mknod: AT(SYS_mknodat, cwd, a[0], a[1], a[2], 0); break;
    case SYS_utimes: AT(SYS_futimesat, cwd, a[0], a[1], 0, 0); break;
    case SYS_utime: AT(SYS_futimesat, cwd, a[0], 0, 0, 0); break; /* times: as futimesat */
    default: break;
    }
#undef AT
    memcpy(b, v, sizeof v);
    return at;
}

/* getcwd: the program's view when its cwd lies inside a mount (the kernel's is the mount
 * point); the kernel's result otherwise. Returns the length with the NUL, as the kernel. */
static long do_getcwd(char *buf, unsigned long size) {
    char cwd[sizeof sh.cwd];
    pthread_mutex_lock(&sh.mu);
    int v = sh.vcwd;
    if (v) memcpy(cwd, sh.cwd, sizeof cwd);
    pthread_mutex_unlock(&sh.mu);
    if (!v) return sh_gate(SYS_getcwd, (long)buf, (long)size, 0, 0, 0, 0);
    size_t n = strlen(cwd) + 1;
    if (size < n) return -ERANGE;
    if (n < 8) { /* "/" and other short paths: copy_out takes 8 bytes at least */
        char pad[8] = {0};
        memcpy(pad, cwd, n);
        long r = size >= 8 ? copy_out(buf, pad, 8) : (page_ok((uintptr_t)buf & ~(uintptr_t)4095, 0) ? 0 : -EFAULT);
        if (!r && size < 8) memcpy(buf, cwd, n);
        return r ? r : (long)n;
    }
    long r = copy_out(buf, cwd, n);
    return r ? r : (long)n;
}

/* The dispatcher: the table's handler column says who serves nr. */
long sh_syscall(long nr, const long a[6]) {
    const struct sh_sysent *s = sh_sys(nr);
    int h = s ? s->handler : HND_DESC;
    /* exec may run in a vfork child, which shares this thread's TLS with its parent and never
     * returns on success: it must not leave sh_in_lib raised */
    if (h == HND_EXEC) {
        int d = s->dirfd;
        return sh_execve(d < 0 ? AT_FDCWD : (int)a[d], (const char *)a[s->path], (char *const *)a[s->path + 1],
                         (char *const *)a[s->path + 2], d < 0 ? 0 : (int)a[s->path + 3]);
    }
    if (h == HND_CWD && nr == SYS_chdir) {
        int handled;
        long r = sh_chdir((const char *)a[0], &handled);
        return handled ? r : sh_gate(nr, a[0], 0, 0, 0, 0, 0);
    }
    if (h == HND_CWD) return do_getcwd((char *)a[0], (unsigned long)a[1]);
    /* (outside the library: a try takes the library's locks and may start a thread) */
    if (__builtin_expect(__atomic_load_n(&sh_resole_on, __ATOMIC_RELAXED) != 0, 0)) sh_resole_poll();
    sh_in_lib++;
    long r = h == HND_PATH ? sh_path_syscall(nr, a, 0) : sh_syscall_(nr, a);
    sh_lib_leave();
    if (sh.cfg.flags & SCP_SHIELD_F_TRACE) sh_trace("%s(%ld) = %ld", sh_sysname(nr), a[0], r);
    return r;
}

static long sh_syscall_(long nr, const long a[6]) {
    long e = 0, r;
    if (sh_console_call(nr, a, &r)) return r; /* console.c: sealed stdio numbers */
    pfile *pf = NULL;
    switch (nr) {
    case SYS_close: return do_close(a[0]);
    case SYS_dup: {
        pf = pf_get(a[0], &e);
        if (!pf) return e;
        r = slot_alloc(pf, 0, 0);
        if (r < 0) pf_put(pf);
        return r;
    }
    case SYS_dup2: return do_dup_to(a[0], a[1], 0);
    case SYS_dup3:
        if (a[0] == a[1]) return -EINVAL;
        return do_dup_to(a[0], a[1], (a[2] & O_CLOEXEC) != 0);
    case SYS_fcntl: return do_fcntl(a[0], (int)a[1], a[2]);
    case SYS_close_range: return do_close_range((unsigned)a[0], (unsigned)a[1], (unsigned)a[2]);
    case SYS_sendfile: {
        long long off, *po = NULL;
        if (a[2]) {
            off = *(long long *)a[2];
            po = &off;
        }
        r = do_copy(a[1], po, a[0], NULL, (size_t)a[3]);
        if (a[2] && r >= 0) *(long long *)a[2] = off;
        return r;
    }
    case SYS_splice:
    case SYS_copy_file_range: {
        long long ino = 0, outo = 0, *pi = NULL, *po = NULL;
        if (a[1]) ino = *(long long *)a[1], pi = &ino;
        if (a[3]) outo = *(long long *)a[3], po = &outo;
        r = do_copy(a[0], pi, a[2], po, (size_t)a[4]);
        if (r >= 0) {
            if (a[1]) *(long long *)a[1] = ino;
            if (a[3]) *(long long *)a[3] = outo;
        }
        return r;
    }
    case SYS_tee:
    case SYS_vmsplice: return -EINVAL;
    case SYS_rt_sigaction:
        /* SIGSYS stays the shield's: report the current action, change nothing */
        if (a[2]) sh_gate(SYS_rt_sigaction, SIGSYS, 0, a[2], a[3], 0, 0);
        return 0;
    case SYS_epoll_ctl: return sh_is_prot(a[2]) ? -EPERM : -EBADF;
    case SYS_mmap:
        pf = pf_get(a[4], &e);
        if (!pf) return e;
        r = do_mmap(pf, (void *)a[0], (size_t)a[1], (int)a[2], (int)a[3], a[5]);
        pf_put(pf);
        return r;
    default: break;
    }

    pf = pf_get(a[0], &e);
    if (!pf) return e;
    /* calls that move or use the description's offset: between ofd_enter and ofd_leave;
     * positional writes use its status flags (O_APPEND) only: under the shared slot's lock when
     * other processes may hold it, and never the process's cursor guard (threads' pwrites of
     * one file run side by side) */
    struct sh_ofd *ofd = NULL;
    int cursor = pf->kind == PF_FILE &&
                 (nr == SYS_read || nr == SYS_write || nr == SYS_readv || nr == SYS_writev || nr == SYS_lseek ||
                  ((nr == SYS_preadv2 || nr == SYS_pwritev2) && a[3] == -1));
    if (cursor) ofd = ofd_enter(pf);
    else if (pf->ofd && pf->kind == PF_FILE && (nr == SYS_pwrite64 || nr == SYS_pwritev || nr == SYS_pwritev2))
        ofd = ofd_lock(pf);
    switch (nr) {
    case SYS_read: r = io_read(pf, (void *)a[1], (size_t)a[2], -1); break;
    case SYS_write: r = io_write(pf, (const void *)a[1], (size_t)a[2], -1); break;
    case SYS_pread64: r = a[3] < 0 ? -EINVAL : io_read(pf, (void *)a[1], (size_t)a[2], a[3]); break;
    case SYS_pwrite64: r = a[3] < 0 ? -EINVAL : io_write(pf, (const void *)a[1], (size_t)a[2], a[3]); break;
    case SYS_readv: r = io_vec(pf, (const struct iovec *)a[1], a[2], -1, 0); break;
    case SYS_writev: r = io_vec(pf, (const struct iovec *)a[1], a[2], -1, 1); break;
    case SYS_preadv: r = a[3] < 0 ? -EINVAL : io_vec(pf, (const struct iovec *)a[1], a[2], a[3], 0); break;
    case SYS_pwritev: r = a[3] < 0 ? -EINVAL : io_vec(pf, (const struct iovec *)a[1], a[2], a[3], 1); break;
    case SYS_preadv2: r = io_vec(pf, (const struct iovec *)a[1], a[2], a[3] == -1 ? -1 : a[3], 0); break;
    case SYS_pwritev2:
        r = io_vec(pf, (const struct iovec *)a[1], a[2], a[3] == -1 ? -1 : a[3], 1);
        /* RWF_DSYNC/RWF_SYNC: this write durable when it returns (O_DSYNC files already are) */
        if (r > 0 && (a[5] & (RWF_DSYNC | RWF_SYNC)) && !(pf->flags & O_DSYNC)) {
            scp_err se;
            if (scp_vfile_fsync(pf->vf, &se) < 0) r = neg(&se);
        }
        break;
    case SYS_lseek: r = do_lseek(pf, a[1], (int)a[2]); break;
    case SYS_fstat: {
        scp_vstat v;
        r = pf_vstat(pf, &v);
        if (!r) r = put_stat(pf->vol, &v, (void *)a[1]);
        break;
    }
    case SYS_getdents64: r = do_getdents(pf, (char *)a[1], (size_t)a[2]); break;
    case SYS_getdents: r = -ENOSYS; break;
    case SYS_fsync:
    case SYS_fdatasync:
    case SYS_syncfs:
        if (pf->kind == PF_FILE) {
            scp_err se;
            r = scp_vfile_fsync(pf->vf, &se) ? neg(&se) : 0;
        } else { /* a directory: its creates, renames and unlinks become durable */
            scp_err se;
            r = scp_volume_sync(sh.vol[pf->vol].v, &se) ? neg(&se) : 0;
        }
        break;
    case SYS_sync_file_range: r = 0; break;
    case SYS_ftruncate: {
        if (pf->kind != PF_FILE || !writable(pf)) { r = -EINVAL; break; }
        if (a[1] < 0) { r = -EINVAL; break; }
        scp_err se;
        pf->wpid = sh.pid; /* (before: see io_write) */
        r = scp_vfile_truncate(pf->vf, (uint64_t)a[1], &se) ? neg(&se) : 0;
        break;
    }
    case SYS_fallocate: {
        if (pf->kind != PF_FILE || !writable(pf)) { r = -EBADF; break; }
        int mode = (int)a[1];
        if (mode & ~FALLOC_FL_KEEP_SIZE) { r = -EOPNOTSUPP; break; }
        uint64_t end = (uint64_t)a[2] + (uint64_t)a[3];
        r = 0;
        if (!(mode & FALLOC_FL_KEEP_SIZE) && end > scp_vfile_size(pf->vf)) {
            scp_err se;
            pf->wpid = sh.pid; /* (before: see io_write) */
            r = scp_vfile_truncate(pf->vf, end, &se) ? neg(&se) : 0;
        }
        break;
    }
    case SYS_fadvise64:
    case SYS_readahead: r = 0; break;
    case SYS_flock: r = do_flock(pf, (int)a[1]); break;
    case SYS_ioctl: r = -ENOTTY; break;
    case SYS_fchdir: {
        scp_vstat fv;
        if (pf->kind != PF_DIR || pf_vstat(pf, &fv) || fv.type != SCP_VTYPE_DIR) { r = -ENOTDIR; break; }
        pthread_mutex_lock(&sh.mu);
        r = 0;
        if (snprintf(sh.cwd, sizeof sh.cwd, "%s%s%s", sh.vol[pf->vol].mount, pf->path[0] ? "/" : "", pf->path) >= (int)sizeof sh.cwd) r = -ENAMETOOLONG;
        else sh.vcwd = 1;
        pthread_mutex_unlock(&sh.mu);
        if (!r) sh_gate(SYS_chdir, (long)sh.vol[pf->vol].mount, 0, 0, 0, 0, 0); /* the kernel's cwd: the mount point */
        break;
    }
    case SYS_fchmod:
    case SYS_fchown: {
        scp_err se;
        int64_t mode = nr == SYS_fchmod ? (a[1] & 07777) : -1;
        int64_t uid = nr == SYS_fchown ? (int64_t)(int)a[1] : -1, gid = nr == SYS_fchown ? (int64_t)(int)a[2] : -1;
        if (nr == SYS_fchown && uid == -1) uid = -1;
        scp_vstat cv;
        if (pf->nameless) { r = -EOPNOTSUPP; break; } /* its path is its directory's */
        if ((r = pf_vstat(pf, &cv)) || (r = sh_cred_setattr(&cv, &mode, uid, gid))) break;
        if (cv.owner_unset) { /* record the owner it was reported with */
            if (uid < 0) uid = cv.uid;
            if (gid < 0) gid = cv.gid;
        }
        r = scp_volume_setattr(sh.vol[pf->vol].v, pf->path, mode, uid, gid, INT64_MIN, &se) ? neg(&se) : 0;
        break;
    }
    case SYS_fstatfs: {
        r = sh_gate(SYS_statfs, (long)sh.vol[pf->vol].dirpath, a[1], 0, 0, 0, 0);
        break;
    }
    case SYS_fsetxattr:
    case SYS_fgetxattr:
    case SYS_flistxattr:
    case SYS_fremovexattr: r = -EOPNOTSUPP; break;
    default:
        sh_trace("system call %ld on protected '%s' is not supported", nr, pf->path);
        r = -EOPNOTSUPP;
    }
    if (cursor) ofd_leave(pf, ofd);
    else ofd_unlock(pf, ofd);
    pf_put(pf);
    return r;
}

/* ---- path-based calls -------------------------------------------------------------------- */

static long setattr_rel(int vol, const char *rel, int64_t mode, int64_t uid, int64_t gid, int64_t mt) {
    scp_err e;
    scp_vstat cv;
    long c = (mode >= 0 || uid >= 0 || gid >= 0) ? path_vstat(vol, rel, &cv) : 0;
    if (c || (mode >= 0 || uid >= 0 || gid >= 0 ? (c = sh_cred_setattr(&cv, &mode, uid, gid)) : 0)) return c;
    if (!rel[0]) return 0;
    if ((mode >= 0 || uid >= 0 || gid >= 0) && cv.owner_unset) { /* record the owner it was reported with */
        if (uid < 0) uid = cv.uid;
        if (gid < 0) gid = cv.gid;
    }
    return scp_volume_setattr(sh.vol[vol].v, rel, mode, uid, gid, mt, &e) ? neg(&e) : 0;
}

/* utimensat/futimens: the access and modification times, checked as the kernel checks them
 * (creds.c); ctime moves to now (the library's setattr). */
static long utimes_rel(int vol, const char *rel, const struct timespec *times) {
    struct timespec tsb[2];
    const struct timespec *ts = times ? tsb : NULL;
    if (times && copy_in(tsb, times, sizeof tsb)) return -EFAULT;
    int64_t mt, at;
    if (ts && ((ts[0].tv_nsec != UTIME_NOW && ts[0].tv_nsec != UTIME_OMIT && (unsigned long)ts[0].tv_nsec >= 1000000000ul) ||
               (ts[1].tv_nsec != UTIME_NOW && ts[1].tv_nsec != UTIME_OMIT && (unsigned long)ts[1].tv_nsec >= 1000000000ul)))
        return -EINVAL;
    if (!ts || ts[1].tv_nsec == UTIME_NOW) mt = -1;
    else if (ts[1].tv_nsec == UTIME_OMIT) mt = INT64_MIN;
    else mt = (int64_t)ts[1].tv_sec * 1000000000 + ts[1].tv_nsec;
    if (!ts || ts[0].tv_nsec == UTIME_NOW) at = -1;
    else if (ts[0].tv_nsec == UTIME_OMIT) at = INT64_MIN;
    else at = (int64_t)ts[0].tv_sec * 1000000000 + ts[0].tv_nsec;
    if (mt == INT64_MIN && at == INT64_MIN) return 0; /* both omitted: nothing changes, not even ctime */
    int explicit_times = ts && !((ts[0].tv_nsec == UTIME_NOW || ts[0].tv_nsec == UTIME_OMIT) &&
                                 (ts[1].tv_nsec == UTIME_NOW || ts[1].tv_nsec == UTIME_OMIT));
    scp_vstat cv;
    long r;
    if ((r = path_vstat(vol, rel, &cv)) || (r = sh_cred_utimes(&cv, explicit_times))) return r;
    if (mt == -1 || at == -1) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t n = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        if (mt == -1) mt = n;
        if (at == -1) at = n;
    }
    scp_err e;
    if (!rel[0]) return 0; /* the volume root keeps no times */
    return scp_volume_setattr_times(sh.vol[vol].v, rel, -1, -1, -1, at, mt, &e) ? neg(&e) : 0;
}
int sh_proc_fd_link(const char *abs, long *fd, const char **rest) { return proc_fd_link(abs, fd, rest); }

/* Follow the volume's symbolic links in (vol, rel) as the kernel does: every component but
 * the last, and the last if follow_last; a relative target from the link's directory, an
 * absolute one from the program's root (".." lexically, as everywhere in the shield). 1:
 * (vol, rel) now name the result inside a volume; 2: it lies outside every volume, abs holds
 * it (the kernel serves the call there); <0: -errno (ELOOP after 40 links). */
static int follow_links(int *vol, char *rel, size_t relsz, int follow_last, char *abs, size_t abssz) {
    char target[PATH_MAX], joined[PATH_MAX * 2];
    for (int hops = 0;; hops++) {
        scp_err e;
        long n = scp_volume_first_link(sh.vol[*vol].v, rel, follow_last, target, sizeof target, &e);
        if (n < 0) return (int)neg(&e);
        if (n == 0) return 1;
        if (hops >= 40) return -ELOOP;
        const char *rest = rel + n;
        int k;
        if (target[0] == '/') {
            k = snprintf(joined, sizeof joined, "%s%s", target, rest);
        } else {
            const char *slash = memrchr(rel, '/', (size_t)n);
            int dl = slash ? (int)(slash - rel) : 0;
            k = snprintf(joined, sizeof joined, "%s/%.*s%s%s%s", sh.vol[*vol].mount, dl, rel, dl ? "/" : "",
                         target, rest);
        }
        if (k < 0 || (size_t)k >= sizeof joined || scp_shield_path_normalize(joined, abs, abssz))
            return -ENAMETOOLONG;
        int m = match_mount(abs, rel, relsz);
        if (m <= 0) return m < 0 ? m : 2;
        *vol = m - 1;
    }
}

/* Does the call follow a symbolic link in its path's last component (the kernel's rule)? */
static int follows_last(long nr, const long a[6], long oflags) {
    switch (nr) {
    case SYS_openat:
    case SYS_openat2: return !(oflags & O_NOFOLLOW) && (oflags & (O_CREAT | O_EXCL)) != (O_CREAT | O_EXCL);
    case SYS_newfstatat: return !(a[3] & AT_SYMLINK_NOFOLLOW);
    case SYS_statx: return !(a[2] & AT_SYMLINK_NOFOLLOW);
    case SYS_faccessat2:
    case SYS_fchmodat2:
    case SYS_utimensat: return !(a[3] & AT_SYMLINK_NOFOLLOW);
    case SYS_fchownat: return !(a[4] & AT_SYMLINK_NOFOLLOW);
    case SYS_execveat: return !(a[4] & AT_SYMLINK_NOFOLLOW);
    case SYS_mkdirat:
    case SYS_mknodat:
    case SYS_unlinkat:
    case SYS_readlinkat:
    case SYS_symlinkat:
    case SYS_lgetxattr:
    case SYS_lsetxattr:
    case SYS_llistxattr:
    case SYS_lremovexattr:
    case SYS_name_to_handle_at: return 0;
    default: return 1;
    }
}

/* The call on the path that a link outside the volumes led to: the kernel's business. */
static long call_at(long nr, const struct sh_sysent *s, const long a[6], const char *abs) {
    long b[6];
    memcpy(b, a, sizeof b);
    b[s->path] = (long)abs;
    if (s->dirfd >= 0) b[s->dirfd] = AT_FDCWD;
    return sh_gate(nr, b[0], b[1], b[2], b[3], b[4], b[5]);
}

/* ---- hard links -------------------------------------------------------------------------- */

/* The checks of link(2) before the volume gives `to` (new name) to `v` (the file): search on
 * both paths, write and search on the new name's directory, fs.protected_hardlinks. */
static long link_check(int vol, const char *to, const scp_vstat *v) {
    long r;
    if ((r = sh_cred_search(vol, to)) || (r = sh_cred_parent(vol, to, 3))) return r;
    if (v->type == SCP_VTYPE_DIR) return -EPERM;
    return sh_cred_link(v);
}

static long link_rel(int vol, const char *from, const char *to, long flags) {
    scp_vstat v;
    scp_err e;
    long r;
    if (flags & ~(long)(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH)) return -EINVAL;
    if ((r = sh_cred_search(vol, from)) || (r = path_vstat(vol, from, &v))) return r;
    if ((r = link_check(vol, to, &v))) return r;
    sh_in_lib++;
    r = scp_volume_link(sh.vol[vol].v, from, to, &e) ? neg(&e) : 0;
    sh_lib_leave();
    sh_trace("link('%s', '%s' in volume %d) = %ld", from, to, vol, r);
    return r;
}

/* linkat(fd, "", dirfd2, path2, AT_EMPTY_PATH): a new name for the open protected file fd,
 * whatever name it has now. */
static int link_fd(int fd, const long a[6], long *ret) {
    char rel2[PATH_MAX];
    int vol2 = -1;
    long ee = 0;
    int c2 = sh_classify((int)a[2], (const char *)a[3], &vol2, rel2, sizeof rel2);
    if (c2 < 0) { *ret = c2; return 1; }
    pfile *pf = pf_get(fd, &ee);
    if (!pf) { *ret = ee; return 1; }
    long r = 0;
    if (c2 == 0 || vol2 != pf->vol) r = -EXDEV;
    else if (pf->kind != PF_FILE) r = -EPERM; /* a directory (or the console's) */
    else if ((a[4] & ~(long)(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH))) r = -EINVAL;
    if (!r) {
        char la[PATH_MAX];
        int f2 = follow_links(&vol2, rel2, sizeof rel2, 0, la, sizeof la);
        r = f2 < 0 ? f2 : f2 == 2 || vol2 != pf->vol ? -EXDEV : 0;
    }
    scp_vstat v;
    if (!r) r = pf_vstat(pf, &v);
    if (!r) r = link_check(pf->vol, rel2, &v);
    if (!r) {
        scp_err e;
        sh_in_lib++;
        r = scp_vfile_link(pf->vf, rel2, &e) ? neg(&e) : 0;
        sh_lib_leave();
        /* a nameless file's first name is the one its descriptor goes by from now on */
        if (!r && pf->nameless) {
            snprintf(pf->path, PATH_MAX, "%s", rel2);
            __atomic_store_n(&pf->nameless, 0, __ATOMIC_RELEASE);
        }
    }
    sh_trace("linkat(%d, '', '%s' in volume %d, AT_EMPTY_PATH) = %ld", fd, rel2, pf->vol, r);
    pf_put(pf);
    *ret = r;
    return 1;
}

/* The kernel looks at a path's last component before it removes or renames: 1 if it is ".",
 * 2 if "..", else 0 (also for a bad address: the call then reports EFAULT itself). The shield
 * normalizes "d/." to "d", so this must be asked of the program's own string. */
static int last_is_dot(const char *path) {
    char p[PATH_MAX];
    if (!path || sh_copy_path_in(path, p, sizeof p) < 0) return 0;
    size_t n = strlen(p), s;
    while (n > 1 && p[n - 1] == '/') n--;
    for (s = n; s > 0 && p[s - 1] != '/';) s--;
    if (n - s == 1 && p[s] == '.') return 1;
    if (n - s == 2 && p[s] == '.' && p[s + 1] == '.') return 2;
    return 0;
}

/* Do volume paths a and b name entries of one directory? */
static int same_parent(const char *a, const char *b) {
    const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');
    size_t la = sa ? (size_t)(sa - a) : 0, lb = sb ? (size_t)(sb - b) : 0;
    return la == lb && strncmp(a, b, la) == 0;
}

static int path_call(long nr, const long a[6], long *ret) {
    char rel[PATH_MAX], rel2[PATH_MAX];
    int vol = -1, vol2 = -1;
    const struct sh_sysent *s = sh_sys(nr);
    if (!s || s->path < 0) return 0;
    /* where the table says the directory descriptor and the path are */
    int dirfd = s->dirfd < 0 ? AT_FDCWD : (int)a[s->dirfd];
    const char *path = (const char *)a[s->path];
    scp_err e;
    long r;
    int c;
    if (sh_console_open(nr, a, ret)) return 1; /* /dev/stdout and the like of a console number */
    switch (nr) {
    case SYS_inotify_add_watch:
        c = sh_classify(dirfd, path, &vol, rel, sizeof rel);
        if (c == 0) return 0;
        *ret = c < 0 ? c : -EOPNOTSUPP;
        return 1;
    case SYS_utimensat:
        if (!path && sh_is_prot(dirfd)) { /* futimens() */
            long ee = 0;
            pfile *pf = pf_get(dirfd, &ee);
            if (!pf) { *ret = ee; return 1; }
            *ret = pf->nameless ? -EOPNOTSUPP /* its path is its directory's */
                                : utimes_rel(pf->vol, pf->path, (const struct timespec *)a[2]);
            pf_put(pf);
            return 1;
        }
        break;
    case SYS_newfstatat:
    case SYS_statx:
        if ((a[nr == SYS_statx ? 2 : 3] & AT_EMPTY_PATH) && path && sh_copy_path_in(path, rel, sizeof rel) == 0) {
            if (!sh_is_prot(dirfd)) return 0;
            long ee = 0;
            pfile *pf = pf_get(dirfd, &ee);
            if (!pf) { *ret = ee; return 1; }
            scp_vstat v;
            r = pf_vstat(pf, &v);
            if (!r) {
                if (nr == SYS_statx) r = put_statx(pf->vol, &v, (void *)a[4]);
                else r = put_stat(pf->vol, &v, (void *)a[2]);
            }
            pf_put(pf);
            *ret = r;
            return 1;
        }
        break;
    default: break;
    }
    if (sh_injected_call(nr, a, ret)) return 1; /* injected.c: files served from memory */
    if (nr == SYS_linkat && (a[4] & AT_EMPTY_PATH) && sh_is_prot(dirfd) && path &&
        sh_copy_path_in(path, rel, sizeof rel) == 0)
        return link_fd(dirfd, a, ret);
    if (s->path2 >= 0) { /* rename, link */
        const char *path2 = (const char *)a[s->path2];
        nameless_link_ok = nr == SYS_linkat && (a[4] & AT_SYMLINK_FOLLOW);
        int c1 = sh_classify(dirfd, path, &vol, rel, sizeof rel);
        nameless_link_ok = 0;
        int named1 = fd_link_named; /* /proc/self/fd/N of a protected descriptor, + 1 */
        int c2 = sh_classify(s->dirfd2 < 0 ? AT_FDCWD : (int)a[s->dirfd2], path2, &vol2, rel2, sizeof rel2);
        if (c1 == 0 && c2 == 0) return 0;
        if (c1 < 0 || c2 < 0) { *ret = c1 < 0 ? c1 : c2; return 1; }
        if (!path || !path2) { *ret = -EFAULT; return 1; } /* the other one is protected */
        if (c1 == 0 || c2 == 0 || vol != vol2) { *ret = -EXDEV; return 1; }
        char la[PATH_MAX];
        int f1 = follow_links(&vol, rel, sizeof rel, nr == SYS_linkat && (a[4] & AT_SYMLINK_FOLLOW), la, sizeof la);
        int f2 = f1 < 0 ? 1 : follow_links(&vol2, rel2, sizeof rel2, 0, la, sizeof la);
        if (f1 < 0 || f2 < 0) { *ret = f1 < 0 ? f1 : f2; return 1; }
        if (f1 == 2 || f2 == 2 || vol != vol2) { *ret = -EXDEV; return 1; }
        /* rename of "d/." or "d/..", or onto one: EBUSY, as the kernel's (not LAST_NORM) */
        if (nr != SYS_linkat && (last_is_dot(path) || last_is_dot(path2))) { *ret = -EBUSY; return 1; }
        if (nr == SYS_linkat) {
            /* without AT_SYMLINK_FOLLOW, link names /proc's magic link itself: another file
             * system (the kernel says EXDEV); with it, the file that the descriptor names */
            if (named1 && !(a[4] & AT_SYMLINK_FOLLOW)) { *ret = -EXDEV; return 1; }
            /* with it, the file the descriptor holds, whatever name it has now (or none yet) */
            if (named1) return link_fd(named1 - 1, a, ret);
            *ret = link_rel(vol, rel, rel2, a[4]);
            return 1;
        }
        unsigned flags = nr == SYS_renameat2 ? (unsigned)a[4] : 0;
        if (flags & ~RENAME_NOREPLACE) { *ret = -EINVAL; return 1; }
        scp_vstat v;
        long cr;
        if ((cr = sh_cred_search(vol, rel)) || (cr = sh_cred_search(vol, rel2)) ||
            (cr = sh_cred_parent(vol, rel, 3)) || (cr = sh_cred_parent(vol, rel2, 3)) ||
            (cr = sh_cred_sticky(vol, rel)) || (cr = sh_cred_sticky(vol, rel2))) { *ret = cr; return 1; }
        /* a directory that moves to another parent changes its own ".." entry: the kernel wants
         * write permission on it (may_rename, inode_permission(source, MAY_WRITE)) */
        if (!same_parent(rel, rel2) && path_vstat(vol, rel, &v) == 0 && v.type == SCP_VTYPE_DIR &&
            (cr = sh_cred_access(&v, 2))) { *ret = cr; return 1; }
        if ((flags & RENAME_NOREPLACE) && path_vstat(vol, rel2, &v) == 0) { *ret = -EEXIST; return 1; }
        sh_in_lib++;
        *ret = scp_volume_rename(sh.vol[vol].v, rel, rel2, &e) ? neg(&e) : 0;
        sh_lib_leave();
        sh_trace("rename('%s', '%s') = %ld", rel, rel2, *ret);
        return 1;
    }
    c = sh_classify(dirfd, path, &vol, rel, sizeof rel);
    if (c == 0) return 0;
    if (c < 0) { *ret = c; return 1; }
    if (fd_link_named) { /* /proc/self/fd/N itself, N protected */
        if (nr == SYS_readlinkat) {
            char link[PATH_MAX * 2];
            int n = snprintf(link, sizeof link, "%s%s%s", sh.vol[vol].mount, rel[0] ? "/" : "", rel);
            if ((long)a[3] <= 0) { *ret = -EINVAL; return 1; }
            size_t len = (size_t)n < (size_t)a[3] ? (size_t)n : (size_t)a[3];
            if (len >= 8) *ret = copy_out((char *)a[2], link, len);
            else { /* too small to probe by writing 8 bytes: its pages must at least be readable */
                uintptr_t b0 = (uintptr_t)a[2], b1 = b0 + len - 1;
                *ret = page_ok(b0 & ~(uintptr_t)4095, 0) && page_ok(b1 & ~(uintptr_t)4095, 0) ? 0 : -EFAULT;
                if (!*ret) memcpy((char *)a[2], link, len);
            }
            if (!*ret) *ret = (long)len;
            return 1;
        }
        if (nr == SYS_unlinkat || nr == SYS_mkdirat || nr == SYS_mknodat) { *ret = -EACCES; return 1; }
    }
    struct open_how { uint64_t flags, mode, resolve; } how = {0};
    if (nr == SYS_openat2) {
        r = (size_t)a[3] < sizeof how ? -EINVAL : copy_in(&how, (const void *)a[2], sizeof how);
        if (r) { *ret = r; return 1; }
    }
    if (!fd_link_named) {
        char abs[PATH_MAX];
        long of = nr == SYS_openat ? a[2] : (long)how.flags;
        int f = follow_links(&vol, rel, sizeof rel, follows_last(nr, a, of), abs, sizeof abs);
        if (f < 0) { *ret = f; return 1; }
        if (f == 2) { *ret = call_at(nr, s, a, abs); return 1; }
    }
    if ((nr == SYS_openat || nr == SYS_openat2) && in_vfork_child()) {
        /* a vfork or posix_spawn child shares the shield's memory with its parent, which a new
         * protected descriptor would change (a raw open from glibc's spawn file actions) */
        sh_trace("open of protected '%s' in a vfork child refused", rel);
        *ret = -EACCES;
        return 1;
    }
    if (!fd_link_named && (r = sh_cred_search(vol, rel))) { *ret = r; return 1; }
    sh_in_lib++;
    switch (nr) {
    case SYS_openat:
        r = open_rel(vol, rel, (int)a[2], (mode_t)a[3]);
        break;
    case SYS_openat2: r = open_rel(vol, rel, (int)how.flags, (mode_t)how.mode); break;
    case SYS_symlinkat: r = symlink_rel(vol, rel, (const char *)a[0]); break;
    case SYS_newfstatat:
    case SYS_statx: {
        scp_vstat v;
        r = path_vstat(vol, rel, &v);
        if (!r) {
            if (nr == SYS_statx) r = put_statx(vol, &v, (void *)a[4]);
            else r = put_stat(vol, &v, (void *)a[2]);
        }
        break;
    }
    case SYS_faccessat:
    case SYS_faccessat2: {
        scp_vstat v;
        r = path_vstat(vol, rel, &v);
        int eff = nr == SYS_faccessat2 && (a[3] & AT_EACCESS);
        if (!r) r = eff ? sh_cred_access(&v, (int)a[2] & 7) : sh_cred_access_real(&v, (int)a[2] & 7);
        break;
    }
    case SYS_mkdirat:
        if ((r = sh_cred_parent(vol, rel, 3))) break;
        r = scp_volume_mkdir(sh.vol[vol].v, rel, (uint32_t)(a[2] & ~sh.umask & 07777), &e) ? neg(&e) : 0;
        break;
    case SYS_unlinkat:
        if ((r = last_is_dot(path))) { /* rmdir "d/.": EINVAL, "d/..": ENOTEMPTY; unlink: EISDIR */
            r = !(a[2] & AT_REMOVEDIR) ? -EISDIR : r == 1 ? -EINVAL : -ENOTEMPTY;
            break;
        }
        if ((r = sh_cred_parent(vol, rel, 3)) || (r = sh_cred_sticky(vol, rel))) break;
        if (a[2] & AT_REMOVEDIR) r = scp_volume_rmdir(sh.vol[vol].v, rel, &e) ? neg(&e) : 0;
        else {
            uint64_t sock = sh_unix_last_name(vol, rel); /* a socket's last name: its host socket goes */
            r = scp_volume_unlink(sh.vol[vol].v, rel, &e) ? neg(&e) : 0;
            if (r == 0 && sock) sh_unix_node_gone(vol, sock);
        }
        break;
    case SYS_readlinkat: {
        char t[PATH_MAX];
        if ((long)a[3] <= 0) { r = -EINVAL; break; }
        r = rel[0] ? scp_volume_readlink(sh.vol[vol].v, rel, t, sizeof t, &e) : -EINVAL;
        if (r < 0) { r = rel[0] ? neg(&e) : r; break; }
        size_t len = (size_t)r < (size_t)a[3] ? (size_t)r : (size_t)a[3];
        if (sh_copy_out((char *)a[2], t, len)) r = -EFAULT;
        else r = (long)len;
        break;
    }
    case SYS_fchmodat:
    case SYS_fchmodat2: {
        scp_vstat lv;
        if (nr == SYS_fchmodat2 && (a[3] & AT_SYMLINK_NOFOLLOW) && path_vstat(vol, rel, &lv) == 0 &&
            lv.type == SCP_VTYPE_LINK) { r = -EOPNOTSUPP; break; } /* Linux links have no mode */
        r = setattr_rel(vol, rel, a[2] & 07777, -1, -1, INT64_MIN);
        break;
    }
    case SYS_fchownat: r = setattr_rel(vol, rel, -1, (int64_t)(int)a[2] == -1 ? -1 : (int64_t)(unsigned)a[2],
                                      (int64_t)(int)a[3] == -1 ? -1 : (int64_t)(unsigned)a[3], INT64_MIN); break;
    case SYS_utimensat: r = utimes_rel(vol, rel, (const struct timespec *)a[2]); break;
    case SYS_futimesat: r = setattr_rel(vol, rel, -1, -1, -1, INT64_MIN); break;
    case SYS_mknodat: r = mknod_rel(vol, rel, (mode_t)a[2], (dev_t)a[3]); break;
    case SYS_name_to_handle_at: r = -EOPNOTSUPP; break;
    case SYS_truncate: {
        scp_vstat cv;
        if ((r = path_vstat(vol, rel, &cv))) break;
        /* the kernel's order: the type (EISDIR, EINVAL for a node), then write permission */
        if (cv.type != SCP_VTYPE_FILE) { r = cv.type == SCP_VTYPE_DIR ? -EISDIR : -EINVAL; break; }
        if ((r = sh_cred_access(&cv, 2))) break;
        scp_vfile *vf = scp_vfile_open(sh.vol[vol].v, rel, O_WRONLY, 0, &e);
        if (!vf) { r = neg(&e); break; }
        r = (long)a[1] < 0 ? -EINVAL : scp_vfile_truncate(vf, (uint64_t)a[1], &e) ? neg(&e) : 0;
        scp_err e2;
        if (scp_vfile_close(vf, &e2) && !r) r = neg(&e2);
        break;
    }
    case SYS_execve:
    case SYS_execveat: r = -EACCES; break; /* nothing runs from a protected volume */
    case SYS_statfs: r = sh_gate(SYS_statfs, (long)sh.vol[vol].dirpath, a[1], 0, 0, 0, 0); break;
    case SYS_getxattr:
    case SYS_lgetxattr: r = -ENODATA; break; /* protected files have no extended attributes */
    case SYS_listxattr:
    case SYS_llistxattr: r = 0; break;
    case SYS_setxattr:
    case SYS_lsetxattr:
    case SYS_removexattr:
    case SYS_lremovexattr: r = -EOPNOTSUPP; break;
    default: r = -EOPNOTSUPP;
    }
    sh_lib_leave();
    sh_trace("%s('%s' in volume %d) = %ld", sh_sysname(nr), rel, vol, r);
    *ret = r;
    return 1;
}

/* A path call's arguments with its paths (the table's path and path2 positions) copied once
 * from the program's memory. The console's and the injected files' look-ups, the mount
 * classification, the emulation, the trusted-file check and, when the path is not protected,
 * the kernel all read this one copy: reading the program's string again at each step let
 * another thread of the program change it in between, so that the shield classified one path
 * ("/tmp/x": not protected) and the kernel acted on another ("/secure/x", the empty read-only
 * mount point, or "/proc/self/fd/N" of a number in the shield's range), unchecked
 * (tests/shield/pathrace.c). */
struct path_copy {
    long a[6];
    char buf[2][PATH_MAX];
};

/* 0, or the kernel's error for a path it cannot read: -EFAULT (a bad address), -ENAMETOOLONG
 * (no NUL within PATH_MAX bytes). A NULL path stays NULL: the kernel's EFAULT, or the calls
 * that take NULL for "the descriptor itself" (futimens). */
static long path_copy_in(long nr, const long a[6], struct path_copy *c) {
    const struct sh_sysent *s = sh_sys(nr);
    const int at[2] = {s ? s->path : -1, s ? s->path2 : -1};
    memcpy(c->a, a, sizeof c->a);
    for (int i = 0; i < 2; i++) {
        if (at[i] < 0 || !a[at[i]]) continue;
        long n = sh_copy_path_in((const char *)a[at[i]], c->buf[i], sizeof c->buf[i]);
        if (n < 0) return n;
        c->a[at[i]] = (long)c->buf[i];
    }
    return 0;
}

/* The trusted-file check of a descriptor that the kernel just opened on the path the call
 * named (b: the openat form): the descriptor, or -EACCES with it closed. */
static long trusted_after_open(long fd, const long b[6]) {
    long t = sh_trusted_check_open((int)fd, (int)b[0], (const char *)b[1], b[2]);
    if (t >= 0) return fd;
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    return t;
}

/* Serve (nr, a) when its path is protected (1, *ret); else, with pass, let the kernel carry it
 * out on the same copy (0, *ret its result; without pass the caller does, *ret unset). */
static int path_run(long nr, const long a[6], int pass, int trusted, long *ret) {
    struct path_copy c;
    long r = path_copy_in(nr, a, &c);
    if (r < 0) {
        *ret = r;
        return 1;
    }
    const char *outer[2] = {own_path[0], own_path[1]};
    const struct sh_sysent *s = sh_sys(nr);
    own_path[0] = s && s->path >= 0 ? (const char *)c.a[s->path] : NULL;
    own_path[1] = s && s->path2 >= 0 ? (const char *)c.a[s->path2] : NULL;
    long b[6];
    long at = at_form(nr, c.a, b); /* the raw open, stat... as the *at call the dispatcher serves */
    sh_abspath_scope_enter();
    int served = path_call(at, b, ret);
    if (!served && pass) {
        *ret = sh_gate(nr, c.a[0], c.a[1], c.a[2], c.a[3], c.a[4], c.a[5]);
        if (trusted && *ret >= 0 && at == SYS_openat) *ret = trusted_after_open(*ret, b);
    }
    sh_abspath_scope_leave();
    own_path[0] = outer[0];
    own_path[1] = outer[1];
    return served;
}

int sh_path_call(long nr, const long a[6], long *ret) { return path_run(nr, a, 0, 0, ret); }

long sh_path_syscall(long nr, const long a[6], int trusted) {
    long r;
    path_run(nr, a, 1, trusted, &r);
    return r;
}

long sh_chdir(const char *path_in, int *handled) {
    char rel[PATH_MAX], path[PATH_MAX];
    int vol;
    /* one copy, classified and handed to the kernel alike (see path_copy) */
    long pl = path_in ? sh_copy_path_in(path_in, path, sizeof path) : 0;
    if (pl < 0) {
        *handled = 1;
        return pl;
    }
    if (!path_in) {
        *handled = 1;
        return sh_gate(SYS_chdir, 0, 0, 0, 0, 0, 0); /* the kernel's EFAULT */
    }
    int c = sh_classify(AT_FDCWD, path, &vol, rel, sizeof rel);
    *handled = c != 0;
    if (c < 0) return c;
    if (c == 0) {
        long r = sh_gate(SYS_chdir, (long)path, 0, 0, 0, 0, 0);
        if (r == 0 && !in_vfork_child()) {
            pthread_mutex_lock(&sh.mu);
            sh.vcwd = 0;
            pthread_mutex_unlock(&sh.mu);
        }
        *handled = 1;
        return r;
    }
    char abs[PATH_MAX];
    int f = follow_links(&vol, rel, sizeof rel, 1, abs, sizeof abs);
    if (f < 0) return f;
    if (f == 2) return sh_gate(SYS_chdir, (long)abs, 0, 0, 0, 0, 0); /* a link out of the volumes */
    scp_vstat v;
    long r = path_vstat(vol, rel, &v);
    if (r) return r;
    if (v.type != SCP_VTYPE_DIR) return -ENOTDIR;
    if (in_vfork_child()) return -EACCES; /* the program's cwd view is the parent's memory */
    pthread_mutex_lock(&sh.mu);
    if (snprintf(sh.cwd, sizeof sh.cwd, "%s%s%s", sh.vol[vol].mount, rel[0] ? "/" : "", rel) >= (int)sizeof sh.cwd) {
        pthread_mutex_unlock(&sh.mu);
        return -ENAMETOOLONG;
    }
    sh.vcwd = 1;
    pthread_mutex_unlock(&sh.mu);
    sh_gate(SYS_chdir, (long)sh.vol[vol].mount, 0, 0, 0, 0, 0);
    sh_trace("chdir into protected '%s'", rel);
    return 0;
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
    for (int i = 0; i < MAXMAP; i++)
        if (maps[i].addr && maps[i].pid == sh.pid) map_writeback(&maps[i]);
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

/* ---- exec hand-over ------------------------------------------------------------------------ */

/* Fill the exec-time parts of cfg: numbers with their own filter (kept occupied across exec by
 * non-close-on-exec placeholders so that the new image's loader never gets them) and the
 * protected files that stay open. held[] receives the placeholders added here (to undo them
 * if exec fails). */
/* ids[i]: the description behind cfg->inherit[i], so that numbers sharing one description
 * share it again after exec (one cursor, as dup2 promises) */
static void inherit_link(scp_shield_config *cfg, const void **ids, const void *id) {
    uint32_t n = cfg->ninherit - 1;
    ids[n] = id;
    cfg->inherit[n].share = -1;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id) {
            cfg->inherit[n].share = (int)i;
            break;
        }
}

static void inherit_add(scp_shield_config *cfg, const void **ids, long fd, const pfile *pf) {
    if (cfg->ninherit >= SCP_SHIELD_MAX_INHERIT || pf->kind != PF_FILE) return;
    if (__atomic_load_n(&pf->nameless, __ATOMIC_ACQUIRE)) { /* the next image reopens by name */
        sh_trace("exec: nameless (O_TMPFILE) descriptor %ld is not handed on", fd);
        return;
    }
    scp_shield_inherit *e = &cfg->inherit[cfg->ninherit];
    if (strlen(pf->path) >= sizeof e->path) return;
    e->fd = (int)fd;
    e->vol = pf->vol;
    int fl = pf->ofd ? (pf->flags & ~O_APPEND) | (__atomic_load_n(&pf->ofd->flags, __ATOMIC_ACQUIRE) & O_APPEND) : pf->flags;
    e->flags = fl & (O_ACCMODE | O_APPEND);
    e->offset = pf_offset(pf);
    e->ofd = ofd_index(pf->ofd);
    strcpy(e->path, pf->path);
    cfg->ninherit++;
    inherit_link(cfg, ids, pf);
}

/* Open in the kernel's table (ours, or a vfork child's own copy) and not close-on-exec. */
static int kernel_keeps(long fd) {
    long fl = sh_gate(SYS_fcntl, fd, F_GETFD, 0, 0, 0, 0);
    return fl >= 0 && !(fl & FD_CLOEXEC);
}

/* Fill the exec-time parts of cfg: numbers with their own filter (kept occupied across exec by
 * non-close-on-exec placeholders so that the new image's loader never gets them) and the
 * protected files that stay open, read from the kernel's descriptor table (so that what a
 * vfork child closed or redirected counts). held[] receives the placeholders added here (to
 * undo them if exec fails). */
/* The references to shared descriptions that the new image holds. A vfork child's exec takes
 * one for each it hands on (the parent keeps its own; taken before the exec, so that a parent
 * that closes at once cannot free the slot first: took[] lists them, to give back if the exec
 * fails). Any other exec hands its own on, and lists those it does not for the new image to
 * drop (an exec cannot undo anything once it succeeded). Under sh.mu. */
static int exec_ofd_refs(scp_shield_config *cfg, const void **ids, int vf, struct sh_ofd **took) {
    int ntook = 0;
    cfg->nofd_drop = 0;
    if (!sh.ofd_map) return 0;
    if (vf) {
        for (uint32_t i = 0; i < cfg->ninherit; i++)
            if (cfg->inherit[i].share < 0 && cfg->inherit[i].ofd >= 0) {
                took[ntook] = &sh.ofd_map[cfg->inherit[i].ofd];
                ofd_get(took[ntook++]);
            }
        return ntook;
    }
    unsigned pass = ++ofd_pass;
    for (unsigned n = 0; n < ndesc(); n++) {
        pfile *pf = desc_at(n);
        if (!pf || !pf->ofd || pf->ofd_pass == pass) continue;
        pf->ofd_pass = pass;
        int kept = 0;
        for (uint32_t i = 0; i < cfg->ninherit; i++) kept |= ids[i] == pf;
        if (kept) continue;
        if (cfg->nofd_drop < SCP_SHIELD_MAX_OFD_DROP) cfg->ofd_drop[cfg->nofd_drop++] = ofd_index(pf->ofd);
        else sh_trace("exec: more than %u shared offsets to drop; '%s' keeps its slot", SCP_SHIELD_MAX_OFD_DROP, pf->path);
    }
    return 0;
}

int sh_exec_prepare(scp_shield_config *cfg, int *held, int maxheld, struct sh_ofd **took, int *ntook) {
    int nheld = 0;
    pid_t me = (pid_t)syscall(SYS_getpid);
    int vf = me != sh.pid;
    const void *ids[SCP_SHIELD_MAX_INHERIT] = {0}; /* (set with each entry: inherit_add) */
    memset(cfg->filtered, 0, sizeof cfg->filtered);
    cfg->ninherit = 0;
    pthread_mutex_lock(&sh.mu);
    if (sh.vcwd) snprintf(cfg->vcwd, sizeof cfg->vcwd, "%s", sh.cwd);
    else cfg->vcwd[0] = 0;
    /* what a vfork child set up itself comes first */
    for (int i = 0; vf && i < MAXVFK; i++)
        if (vfk[i].pid == me && kernel_keeps(vfk[i].fd) && cfg->ninherit < SCP_SHIELD_MAX_INHERIT) {
            cfg->inherit[cfg->ninherit++] = vfk[i].e;
            inherit_link(cfg, ids, vfk[i].id);
        }
    for (int n = 0; n < sh.lo && n < (int)SCP_SHIELD_MAX_ALIAS_FD; n++) {
        int noted = 0;
        for (int i = 0; vf && i < MAXVFK; i++) noted |= vfk[i].pid == me && vfk[i].fd == n;
        if (!sh.alias_filtered[n] && !noted) continue;
        cfg->filtered[n / 8] |= (uint8_t)(1u << (n % 8));
        long fdfl = sh_gate(SYS_fcntl, n, F_GETFD, 0, 0, 0, 0);
        if (fdfl == -EBADF) {
            if (nheld < maxheld && sh_gate(SYS_dup3, sh.placeholder, n, 0, 0, 0, 0) == n) held[nheld++] = n;
        } else if (noted) {
            continue;
        } else if (sh.alias[n] && (fdfl & FD_CLOEXEC)) {
            sh_gate(SYS_fcntl, n, F_SETFD, 0, 0, 0, 0); /* stays occupied, is not inherited */
        } else if (sh.alias[n]) {
            long fl = sh_gate(SYS_fcntl, n, F_GETFL, 0, 0, 0, 0);
            if (fl >= 0 && (fl & O_PATH)) inherit_add(cfg, ids, n, sh.alias[n]);
        }
    }
    for (int i = 0; i < sh.nslots; i++) {
        pfile *pf = sh.slot[i];
        if (!pf) continue;
        int noted = 0;
        for (int j = 0; vf && j < MAXVFK; j++) noted |= vfk[j].pid == me && vfk[j].fd == sh.base + i;
        if (!noted && kernel_keeps(sh.base + i)) inherit_add(cfg, ids, sh.base + i, pf);
    }
    *ntook = exec_ofd_refs(cfg, ids, vf, took);
    pthread_mutex_unlock(&sh.mu);
    return nheld;
}

void sh_exec_failed(struct sh_ofd **took, int ntook) {
    for (int i = 0; i < ntook; i++) ofd_put(took[i]);
}

/* In the new image: take over what the previous image handed on. */
void sh_exec_adopt(void) {
    scp_shield_config *cfg = &sh.cfg;
    sh_in_lib++;
    /* the region of shared offsets that the previous image used (its descriptor is inherited) */
    if ((cfg->flags & SCP_SHIELD_F_OFD) && !(sh.ofd_map = ofd_map_fd(SH_OFD_FD()))) {
        sh_trace("the region of shared offsets could not be mapped: inherited descriptors keep a cursor per process");
        cfg->flags &= ~(uint32_t)SCP_SHIELD_F_OFD;
    }
    for (uint32_t i = 0; sh.ofd_map && i < cfg->nofd_drop; i++) ofd_put(&sh.ofd_map[cfg->ofd_drop[i]]);
    cfg->nofd_drop = 0;
    pfile *made[SCP_SHIELD_MAX_INHERIT] = {0}, *drop[SCP_SHIELD_MAX_INHERIT];
    int ndrop = 0;
    assert(cfg->ninherit <= SCP_SHIELD_MAX_INHERIT);
    for (uint32_t i = 0; i < cfg->ninherit; i++) {
        scp_shield_inherit *e = &cfg->inherit[i];
        scp_err err;
        pfile *pf;
        if (e->share >= 0 && (uint32_t)e->share < i && made[e->share]) {
            pf = made[e->share];
            __atomic_add_fetch(&pf->refs, 1, __ATOMIC_ACQ_REL);
            goto place;
        }
        /* the first entry of a description holds its reference (sh_exec_prepare) */
        struct sh_ofd *o = sh.ofd_map && e->ofd >= 0 && e->share < 0 ? &sh.ofd_map[e->ofd] : NULL;
        long ready = sh_volume_ready(e->vol);
        scp_vfile *vf = ready < 0 ? NULL
                                  : scp_vfile_open(sh.vol[e->vol].v, e->path, e->flags & (O_ACCMODE | O_APPEND), 0, &err);
        if (ready < 0) scp_fail(&err, SCP_E_SYS, (int)-ready, "its volume cannot be opened");
        if (!vf) {
            sh_trace("descriptor %d ('%s') could not be reopened after exec: %s", e->fd, e->path, err.msg);
            if (o) ofd_put(o);
            continue;
        }
        if (e->offset > 0) scp_vfile_seek(vf, e->offset, SEEK_SET, NULL);
        pf = pf_new(PF_FILE, e->vol, e->flags, e->path);
        if (!pf) {
            scp_vfile_close(vf, NULL);
            if (o) ofd_put(o);
            continue;
        }
        pf->vf = vf;
        pf->ofd = o; /* the reference the previous image held (or took for us) */
        made[i] = pf;
    place:
        if (e->fd >= sh.base && e->fd < sh.base + sh.nslots) {
            sh.slot[e->fd - sh.base] = pf;
        } else if (e->fd >= 0 && e->fd < sh.lo) {
            sh.alias[e->fd] = pf;
            sh.nalias++;
        } else {
            /* (a number this image has no place for: the entry's reference goes back after
             * the loop, since a later entry may share the description through made[]) */
            drop[ndrop++] = pf;
            continue;
        }
        sh_trace("descriptor %d refers to protected '%s' after exec", e->fd, e->path);
    }
    for (int i = 0; i < ndrop; i++) pf_put(drop[i]);
    for (int n = 0; n < sh.lo && n < (int)SCP_SHIELD_MAX_ALIAS_FD; n++) {
        if (!(cfg->filtered[n / 8] & (1u << (n % 8)))) continue;
        sh.alias_filtered[n] = 1;
        if (sh.alias[n] || sh_console_fd(n)) continue;
        long fl = sh_gate(SYS_fcntl, n, F_GETFL, 0, 0, 0, 0);
        if (fl >= 0 && (fl & O_PATH)) sh_gate(SYS_close, n, 0, 0, 0, 0, 0); /* a stale placeholder */
    }
    memset(cfg->filtered, 0, sizeof cfg->filtered);
    cfg->ninherit = 0;
    sh_lib_leave();
}
