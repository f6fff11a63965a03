/* shield/ofd.c - open file descriptions shared across fork and exec.
 *
 * A protected descriptor that a fork child or a new image also holds keeps one offset and one
 * set of status flags for all of them, as the kernel's open file description does: a slot in
 * a shared mapping (sh.ofd_map), reference-counted, locked while a call uses it. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>

#include "common/util.h"
#include "shield/internal.h"
#include "shield/core.h"

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

struct sh_ofd *sh_ofd_map_fd(int fd) {
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
    struct sh_ofd *map = sh_ofd_map_fd(SH_OFD_FD());
    if (!map) {
        sh_gate(SYS_close, SH_OFD_FD(), 0, 0, 0, 0, 0);
        return -ENOMEM;
    }
    sh.ofd_map = map;
    sh.cfg.flags |= SCP_SHIELD_F_OFD; /* the images this one execs map it too */
    return 0;
}

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

void sh_ofd_put(struct sh_ofd *o) {
    int32_t left = __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL);
    assert(left >= 0);
    (void)left; /* 0: the slot is free again */
}

/* Every operation that uses or moves a protected description's cursor runs between
 * sh_ofd_enter and sh_ofd_leave. Two locks, in this order:
 *   pf->mu  the process's own: threads of one process take turns on the cursor (the kernel's
 *           f_pos_lock), and, what it is for, a fork never happens in the middle of such an
 *           operation: sh_ofd_share takes it before it makes the description shared. Without it a
 *           thread that entered before the fork (seeing no shared slot) moved the parent's cursor
 *           after the child had copied it, and both wrote at one offset (shield_ofd, py_thr:
 *           "T 000T 0001").
 *   o->mu   the shared slot's, across processes, once another process may hold the description.
 * pf->mu is held across the operation, so the fork's prepare waits for it; an operation that
 * can block for long (sendfile into a full pipe) delays a fork of another thread until it ends,
 * as the kernel's f_pos_lock delays the child's own cursor calls. */

struct sh_ofd *sh_ofd_lock(pfile *pf) {
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

void sh_ofd_unlock(pfile *pf, struct sh_ofd *o) {
    if (!o) return;
    int64_t off = scp_vfile_seek(pf->vf, 0, SEEK_CUR, NULL);
    if (off >= 0) o->off = off;
    pthread_mutex_unlock(&o->mu);
}

struct sh_ofd *sh_ofd_enter(pfile *pf) {
    assert(pf->kind == PF_FILE);
    pthread_mutex_lock(&pf->mu);
    return sh_ofd_lock(pf);
}

void sh_ofd_leave(pfile *pf, struct sh_ofd *o) {
    sh_ofd_unlock(pf, o);
    pthread_mutex_unlock(&pf->mu);
}

int64_t sh_pf_offset(const pfile *pf) {
    struct sh_ofd *o = pf->ofd;
    int64_t off = o ? __atomic_load_n(&o->off, __ATOMIC_ACQUIRE) : OFD_UNSET;
    return off >= 0 ? off : scp_vfile_seek(pf->vf, 0, SEEK_CUR, NULL);
}

void sh_ofd_share(pfile *pf, int fork_child, unsigned pass) {
    if (!pf || pf->kind != PF_FILE || !pf->vf || pf->ofd_pass == pass) return;
    pf->ofd_pass = pass;
    if (!pf->ofd) {
        if (ofd_region() < 0) {
            sh_trace("no region for shared offsets: '%s' keeps a cursor per process", pf->path);
            return;
        }
        /* no cursor operation of another thread is under way (sh_ofd_enter): the offset the slot
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

unsigned sh_ofd_pass;
