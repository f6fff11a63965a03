/* shield/locks.c - record locks (fcntl F_SETLK and OFD locks) and flock on protected files.
 *
 * The program's locks are the kernel's own on a descriptor of the file's object; while a
 * process holds its volume alone they are kept in the process instead (no kernel call). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "shield/internal.h"
#include "shield/core.h"

/* ---- record locks ------------------------------------------------------------------------ */

/* The program's locks on a protected file are the kernel's own, taken on a descriptor of the
 * file's table object (scp_vfile_lock_fd), one per open file description: OFD and flock locks
 * belong to that description (shared by dup and fork, as the kernel's), process-associated
 * locks to the process and the inode, which every process opening the file shares. So the
 * kernel gives exclusion across processes, blocking waits, EDEADLK, F_GETLK's holder pid and
 * release at exit. The descriptor is in the volume library's zone: the program never sees its
 * number and cannot close it. */

/* The program's lock ranges end here; the byte at it is the shield's guard (sh_map_guard). */
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
    if (have < 0 && sh_in_vfork_child()) return -ENOLCK;
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
        sh_pf_put(q);
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
 * reference to drop with sh_pf_put after use (or NULL). Returns it or -errno. */
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

long sh_map_guard(pfile *pf) {
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
 * Closing any descriptor of a file drops them (POSIX, sh_locks_on_close). A volume's locks are
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
static pthread_mutex_t lk_mu = PTHREAD_MUTEX_INITIALIZER; /* a leaf but for sh_lk_handoff's calls */
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
 * library's context: sh_in_lib). The file references go to *drop, for sh_pf_put after lk_mu. */
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
        sh_pf_put(ref);
        drop[(*ndrop)++] = f->pf;
        f->pf = NULL;
        f->n = 0;
    }
}

void sh_lk_handoff(int vi) {
    pfile *drop[LK_FILES];
    int ndrop = 0;
    sh_in_lib++;
    pthread_mutex_lock(&lk_mu);
    lk_handoff_locked(vi, drop, &ndrop);
    pthread_mutex_unlock(&lk_mu);
    for (int i = 0; i < ndrop; i++) sh_pf_put(drop[i]);
    sh_lib_leave();
}

/* F_SETLK, F_SETLKW or F_GETLK on fl (SEEK_SET, the range cut as sh_do_record_lock does) kept in
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
    for (int i = 0; i < ndrop; i++) sh_pf_put(drop[i]);
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
    for (int i = 0; i < ndrop; i++) sh_pf_put(drop[i]);
}

void sh_lk_fork_child(void) {
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
    sh_pf_put(drop);
    return kept;
}

long sh_do_record_lock(pfile *pf, int cmd, void *arg) {
    struct flock fl;
    long r = sh_copy_in(&fl, arg, sizeof fl);
    if (r) return r;
    int get = cmd == F_GETLK || cmd == F_OFD_GETLK;
    if (pf->kind != PF_FILE) { /* a directory: only read locks can be asked for, and exclude nothing */
        if (fl.l_type == F_WRLCK && !get) return -EBADF;
        if (get) {
            fl.l_type = F_UNLCK;
            return sh_copy_out(arg, &fl, sizeof fl);
        }
        return 0;
    }
    long long base = 0;
    if (fl.l_whence == SEEK_CUR) base = sh_cur_offset(pf);
    else if (fl.l_whence == SEEK_END) base = (long long)scp_vfile_size(pf->vf);
    else if (fl.l_whence != SEEK_SET) return -EINVAL;
    if (base < 0) return base;
    if (fl.l_start > 0 && base > LLONG_MAX - fl.l_start) return -EOVERFLOW;
    fl.l_start += base;
    fl.l_whence = SEEK_SET;
    /* The program's ranges end at SH_LOCK_LIMIT, so the shield's own guard byte (sh_map_guard)
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
        if (sh_copy_in(&fl, arg, sizeof fl)) return -EFAULT; /* (as the kernel: only l_type changes) */
        fl.l_type = F_UNLCK;
        return sh_copy_out(arg, &fl, sizeof fl);
    }
    if (!posix) lk_kernel_only(pf->vol);
    pfile *ref = NULL;
    long fd = posix ? posix_lock_fd(pf, &ref) : own_lock_fd(pf);
    if (fd < 0) return fd;
    if ((cmd == F_SETLK || cmd == F_SETLKW) && fl.l_type != F_UNLCK)
        __atomic_store_n(&posix_locks_taken, 1, __ATOMIC_RELEASE);
    r = sh_gate(SYS_fcntl, fd, cmd, (long)&fl, 0, 0, 0);
    sh_pf_put(ref);
    if (r || !get) return r;
    if (fl.l_type == F_UNLCK) { /* the kernel changes only l_type then */
        if (sh_copy_in(&fl, arg, sizeof fl)) return -EFAULT;
        fl.l_type = F_UNLCK;
    } else if (fl.l_len > 0 && fl.l_start + fl.l_len == SH_LOCK_LIMIT) {
        fl.l_len = 0; /* a holder's "to the end of the file" */
    }
    return sh_copy_out(arg, &fl, sizeof fl);
}

long sh_do_flock(pfile *pf, int op) {
    if (pf->kind != PF_FILE) return 0; /* directories: accepted, exclude nothing (docs/shield.md) */
    long fd = own_lock_fd(pf);
    return fd < 0 ? fd : sh_gate(SYS_flock, fd, op, 0, 0, 0, 0);
}

void sh_locks_on_close(pfile *pf) {
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
    sh_pf_put(ref);
}
