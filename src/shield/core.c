/* shield/core.c - protected descriptors and the dispatcher of the emulated system calls.
 *
 * sh_syscall(nr, args) is the one place where a system call on a protected descriptor is
 * carried out; sh_path_call(nr, args) (path.c) is the one place where a path-based call under
 * a protected mount point is. Both return what the kernel would: a result or -errno. This file
 * holds the descriptor table (numbers to pfile, slots, aliases), fcntl, dup and close, and the
 * dispatch; the calls themselves are in fileops.c, path.c, shmap.c and locks.c, the sharing of
 * descriptions and volumes across fork and exec in ofd.c, holding.c and exec.c (core.h).
 *
 * They may run inside the SIGSYS handler, on top of whatever the program was doing at a system
 * call on a protected descriptor: typically inside stdio with the FILE lock held, never inside
 * malloc (glibc's allocator makes no such calls). They take only the shield's own mutex and
 * the volume library's locks, which the program cannot hold.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shield/internal.h"
#include "shield/net.h"
#include "shield/core.h"

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

pfile *sh_pf_new(enum pf_kind kind, int vol, int flags, const char *path) {
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

static long pf_destroy(pfile *pf) {
    long r = 0;
    if (pf->ofd) sh_ofd_put(pf->ofd);
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

long sh_pf_put(pfile *pf) {
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
    sh_pf_put(pf);
    return 0;
}

pfile *sh_pf_get(long fd, long *e) {
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

long sh_slot_alloc(pfile *pf, long min, int cloexec) {
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

/* ---- fcntl, dup, close ------------------------------------------------------------------- */

/* Make the ordinary number fd an alias of pf (whose reference the caller gives away); the
 * description an alias there had (one the program closed raw, not yet noticed, or one a dup2
 * replaces) is closed. The kernel's number already holds the placeholder. */
static void alias_set(long fd, pfile *pf) {
    assert(fd >= 0 && fd < sh.lo && fd < (long)SCP_SHIELD_MAX_ALIAS_FD);
    pthread_mutex_lock(&sh.mu);
    pfile *old = sh.alias[fd];
    sh.alias[fd] = pf;
    if (!old) sh.nalias++;
    pthread_mutex_unlock(&sh.mu);
    sh_locks_on_close(old);
    sh_pf_put(old);
}

static long do_dup_to(long oldfd, long newfd, int cloexec) {
    long e = 0;
    if (oldfd == newfd) return sh_is_prot(oldfd) ? newfd : -EBADF;
    if (!sh_is_prot(oldfd)) {
        /* an ordinary descriptor onto an alias (a shell restoring stdout): the alias ends */
        if (sh_reserved(newfd)) return -EBADF;
        long r = sh_gate(SYS_dup3, oldfd, newfd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
        if (r >= 0) {
            if (sh_in_vfork_child()) sh_vfk_forget((pid_t)syscall(SYS_getpid), newfd);
            else {
                pfile *old = slot_take(newfd);
                sh_locks_on_close(old);
                sh_pf_put(old);
            }
        }
        return r;
    }
    pfile *pf = sh_pf_get(oldfd, &e);
    if (!pf) return e;
    if (sh_in_vfork_child()) {
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
            if (r >= 0) r = sh_vfk_add(pf, newfd);
            if (r >= 0) r = newfd;
        }
        sh_pf_put(pf);
        return r;
    }
    if (newfd >= sh.base && newfd < sh.base + sh.nslots) {
        pthread_mutex_lock(&sh.mu);
        pfile *old = sh.slot[newfd - sh.base];
        sh.slot[newfd - sh.base] = pf;
        sh.slot_cloexec[newfd - sh.base] = (unsigned char)cloexec;
        pthread_mutex_unlock(&sh.mu);
        kset_cloexec(newfd, cloexec);
        sh_locks_on_close(old);
        sh_pf_put(old);
        return newfd;
    }
    if (newfd >= 0 && newfd < sh.lo && newfd < (long)SCP_SHIELD_MAX_ALIAS_FD) {
        /* A protected description at an ordinary number (dd, shell redirections): the kernel
         * descriptor becomes an O_PATH placeholder, on which no raw I/O can succeed, and the
         * shield's wrappers serve it. Raw system calls on it fail (EBADF): closed, not open. */
        long r = sh_gate(SYS_dup3, sh.placeholder, newfd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
        if (r < 0) {
            sh_pf_put(pf);
            return r;
        }
        if (!sh.alias_filtered[newfd]) {
            scp_err fe;
            if (sh_filter_install((int)newfd, 1, 0, &fe)) {
                sh_trace("cannot filter descriptor %ld: %s", newfd, fe.msg);
                sh_gate(SYS_close, newfd, 0, 0, 0, 0, 0);
                sh_pf_put(pf);
                return -EMFILE;
            }
            sh.alias_filtered[newfd] = 1;
        }
        alias_set(newfd, pf);
        sh_trace("descriptor %ld now refers to protected '%s' (alias)", newfd, pf->path);
        return newfd;
    }
    sh_pf_put(pf);
    return -EBADF;
}

/* dup and F_DUPFD from the program's libc calls: the kernel's rule, the lowest free number at
 * or above min. PostgreSQL counts its free descriptors by dup(2) up to a thousand times and
 * takes every number below the highest it got as in use: with stderr a protected file, slots at
 * 2048 and up made it count 2,048 open and refuse to start (docs/shield.md, "Why 2048"). So the
 * copy is an alias at the number the kernel picks for a copy of the placeholder, and unlike
 * dup2's aliases it gets no filter of its own: one per number could never be removed, and a
 * thousand would slow every system call. Raw calls on it meet the O_PATH placeholder and fail
 * (EBADF), closed rather than open; before such a number reaches code the shield does not see
 * (fdopen's stdio, a spawn's file actions, an exec) it gets its filter (sh_alias_filter). A
 * number at or above SCP_SHIELD_MAX_ALIAS_FD, and a vfork child's copy, takes a slot as the
 * raw dup does (sh_syscall's SYS_dup: a raw caller uses the copy raw, and a slot traps). */
long sh_dup_low(long fd, long min, int cloexec) {
    long e = 0;
    if (min < 0) return -EINVAL;
    pfile *pf = sh_pf_get(fd, &e);
    if (!pf) return e;
    long n = -EMFILE;
    if (!sh_in_vfork_child() && min < sh.lo && min < (long)SCP_SHIELD_MAX_ALIAS_FD)
        n = sh_gate(SYS_fcntl, sh.placeholder, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, min, 0, 0, 0);
    if (n >= sh.lo || n >= (long)SCP_SHIELD_MAX_ALIAS_FD) { /* every lower number is taken */
        sh_gate(SYS_close, n, 0, 0, 0, 0, 0);
        n = -EMFILE;
    }
    if (n < 0) {
        n = sh_slot_alloc(pf, min, cloexec);
        if (n < 0) sh_pf_put(pf);
        return n;
    }
    alias_set(n, pf);
    sh_trace("descriptor %ld now refers to protected '%s' (dup, alias)", n, pf->path);
    return n;
}

int sh_alias_filter(long fd) {
    if (fd < 0 || fd >= sh.lo || fd >= (long)SCP_SHIELD_MAX_ALIAS_FD || sh.alias_filtered[fd]) return 0;
    pthread_mutex_lock(&sh.mu);
    int alias = sh.alias[fd] != NULL;
    pthread_mutex_unlock(&sh.mu);
    if (!alias) return 0;
    scp_err fe;
    if (sh_filter_install((int)fd, 1, 0, &fe)) {
        sh_trace("cannot filter descriptor %ld: %s", fd, fe.msg);
        return -EMFILE;
    }
    /* (a vfork child's filter is its own: the parent's number stays unfiltered) */
    if (!sh_in_vfork_child()) sh.alias_filtered[fd] = 1;
    return 1;
}

static long do_close(long fd) {
    if (!sh_is_prot(fd)) return -EBADF;
    if (sh_in_vfork_child()) { /* the kernel's copy only: the exec hands on what is still open */
        if (sh_is_libfd(fd) || fd >= sh.base + sh.nslots) return -EBADF;
        sh_vfk_forget((pid_t)syscall(SYS_getpid), fd);
        return sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    }
    pfile *pf = slot_take(fd);
    if (!pf) return -EBADF;
    if (fd < sh.lo) sh_gate(SYS_close, fd, 0, 0, 0, 0, 0); /* the alias placeholder */
    sh_locks_on_close(pf);
    return sh_pf_put(pf);
}

static long do_fcntl(long fd, int cmd, long arg) {
    long e = 0;
    pfile *pf = sh_pf_get(fd, &e);
    if (!pf) return e;
    long r;
    switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
        if (sh_in_vfork_child()) {
            r = -EMFILE; /* not supported between vfork and exec */
            break;
        }
        r = sh_slot_alloc(pf, arg, cmd == F_DUPFD_CLOEXEC);
        if (r >= 0) return r; /* the reference moved into the new slot */
        break;
    case F_GETFD:
        r = sh_gate(SYS_fcntl, fd, F_GETFD, 0, 0, 0, 0);
        break;
    case F_SETFD:
        if (fd >= sh.base && fd < sh.base + sh.nslots && !sh_in_vfork_child())
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
        struct sh_ofd *o = pf->kind == PF_FILE ? sh_ofd_enter(pf) : NULL;
        pf->flags = (pf->flags & ~settable) | ((int)arg & settable);
        if (pf->kind == PF_FILE) scp_vfile_set_append(pf->vf, pf->flags & O_APPEND);
        if (o) __atomic_store_n(&o->flags, pf->flags & (O_APPEND | O_NONBLOCK), __ATOMIC_RELEASE);
        if (pf->kind == PF_FILE) sh_ofd_leave(pf, o);
        r = 0;
        break;
    }
    case F_GETLK:
    case F_OFD_GETLK:
    case F_SETLK:
    case F_SETLKW:
    case F_OFD_SETLK:
    case F_OFD_SETLKW: r = sh_do_record_lock(pf, cmd, (void *)arg); break;
    default: r = -EINVAL; sh_trace("fcntl %d on a protected descriptor is not supported", cmd);
    }
    sh_pf_put(pf);
    return r;
}

static long do_close_range(unsigned lo, unsigned hi, unsigned flags) {
    int vf = sh_in_vfork_child();
    for (long fd = sh.base; fd < sh.base + sh.nslots; fd++) {
        if (fd < (long)lo || fd > (long)hi) continue;
        if (vf) { /* the kernel's copy only (placeholders), never the shield's own numbers */
            if (flags & CLOSE_RANGE_CLOEXEC) kset_cloexec(fd, 1);
            else sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
            sh_vfk_forget((pid_t)syscall(SYS_getpid), fd);
        } else if (flags & CLOSE_RANGE_CLOEXEC) {
            sh.slot_cloexec[fd - sh.base] = 1;
            kset_cloexec(fd, 1);
        } else {
            pfile *old = slot_take(fd);
            sh_locks_on_close(old);
            sh_pf_put(old);
        }
    }
    for (long fd = lo; fd <= (long)hi && fd < sh.lo && sh.nalias && !vf; fd++)
        if (sh.alias[fd] && !(flags & CLOSE_RANGE_CLOEXEC)) {
            pfile *old = slot_take(fd);
            sh_locks_on_close(old);
            sh_pf_put(old);
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

int sh_own_fd(long fd) {
    if (fd < 0 || !sh.lo) return (int)fd;
    long hi = sh_gate(SYS_fcntl, fd, F_DUPFD_CLOEXEC, SH_LIB_FD_MIN(sh.lo), 0, 0, 0);
    if (hi < 0 || hi >= sh.lo) {
        if (hi >= 0) sh_gate(SYS_close, hi, 0, 0, 0, 0, 0);
        return (int)fd;
    }
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    sh.libfd[hi - SH_LIB_FD_MIN(sh.lo)] = 1;
    return (int)hi;
}

void sh_close_own(long fd) {
    if (sh.lo && fd >= SH_LIB_FD_MIN(sh.lo) && fd < sh.lo) sh.libfd[fd - SH_LIB_FD_MIN(sh.lo)] = 0;
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
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
long sh_at_form(long nr, const long a[6], long b[6]) {
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
    char cwd[PATH_MAX];
    if (!sh_cwd_view(cwd)) return sh_gate(SYS_getcwd, (long)buf, (long)size, 0, 0, 0, 0);
    size_t n = strlen(cwd) + 1;
    if (size < n) return -ERANGE;
    long r = sh_copy_out(buf, cwd, n);
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
    if (nr == SYS_fchdir && !sh_is_prot(a[0])) return sh_fchdir_out(a[0]);
    if (h == HND_CWD && nr == SYS_chdir) {
        int handled;
        long r = sh_chdir((const char *)a[0], &handled);
        return handled ? r : sh_gate(nr, a[0], 0, 0, 0, 0, 0);
    }
    if (h == HND_CWD && nr == SYS_getcwd) return do_getcwd((char *)a[0], (unsigned long)a[1]);
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
        pf = sh_pf_get(a[0], &e);
        if (!pf) return e;
        r = sh_slot_alloc(pf, 0, 0);
        if (r < 0) sh_pf_put(pf);
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
        r = sh_do_copy(a[1], po, a[0], NULL, (size_t)a[3]);
        if (a[2] && r >= 0) *(long long *)a[2] = off;
        return r;
    }
    case SYS_splice:
    case SYS_copy_file_range: {
        long long ino = 0, outo = 0, *pi = NULL, *po = NULL;
        if (a[1]) ino = *(long long *)a[1], pi = &ino;
        if (a[3]) outo = *(long long *)a[3], po = &outo;
        r = sh_do_copy(a[0], pi, a[2], po, (size_t)a[4]);
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
        pf = sh_pf_get(a[4], &e);
        if (!pf) return e;
        r = sh_do_mmap(pf, (void *)a[0], (size_t)a[1], (int)a[2], (int)a[3], a[5]);
        sh_pf_put(pf);
        return r;
    default: break;
    }

    pf = sh_pf_get(a[0], &e);
    if (!pf) return e;
    /* calls that move or use the description's offset: between sh_ofd_enter and sh_ofd_leave;
     * positional writes use its status flags (O_APPEND) only: under the shared slot's lock when
     * other processes may hold it, and never the process's cursor guard (threads' pwrites of
     * one file run side by side) */
    struct sh_ofd *ofd = NULL;
    int cursor = pf->kind == PF_FILE &&
                 (nr == SYS_read || nr == SYS_write || nr == SYS_readv || nr == SYS_writev || nr == SYS_lseek ||
                  ((nr == SYS_preadv2 || nr == SYS_pwritev2) && a[3] == -1));
    if (cursor) ofd = sh_ofd_enter(pf);
    else if (pf->ofd && pf->kind == PF_FILE && (nr == SYS_pwrite64 || nr == SYS_pwritev || nr == SYS_pwritev2))
        ofd = sh_ofd_lock(pf);
    switch (nr) {
    case SYS_read: r = sh_io_read(pf, (void *)a[1], (size_t)a[2], -1); break;
    case SYS_write: r = sh_io_write(pf, (const void *)a[1], (size_t)a[2], -1); break;
    case SYS_pread64: r = a[3] < 0 ? -EINVAL : sh_io_read(pf, (void *)a[1], (size_t)a[2], a[3]); break;
    case SYS_pwrite64: r = a[3] < 0 ? -EINVAL : sh_io_write(pf, (const void *)a[1], (size_t)a[2], a[3]); break;
    case SYS_readv: r = sh_io_vec(pf, (const struct iovec *)a[1], a[2], -1, 0); break;
    case SYS_writev: r = sh_io_vec(pf, (const struct iovec *)a[1], a[2], -1, 1); break;
    case SYS_preadv: r = a[3] < 0 ? -EINVAL : sh_io_vec(pf, (const struct iovec *)a[1], a[2], a[3], 0); break;
    case SYS_pwritev: r = a[3] < 0 ? -EINVAL : sh_io_vec(pf, (const struct iovec *)a[1], a[2], a[3], 1); break;
    case SYS_preadv2: r = sh_io_vec(pf, (const struct iovec *)a[1], a[2], a[3] == -1 ? -1 : a[3], 0); break;
    case SYS_pwritev2:
        r = sh_io_vec(pf, (const struct iovec *)a[1], a[2], a[3] == -1 ? -1 : a[3], 1);
        /* RWF_DSYNC/RWF_SYNC: this write durable when it returns (O_DSYNC files already are) */
        if (r > 0 && (a[5] & (RWF_DSYNC | RWF_SYNC)) && !(pf->flags & O_DSYNC)) {
            scp_err se;
            if (scp_vfile_fsync(pf->vf, &se) < 0) r = neg(&se);
        }
        break;
    case SYS_lseek: r = sh_do_lseek(pf, a[1], (int)a[2]); break;
    case SYS_fstat: {
        scp_vstat v;
        r = sh_pf_vstat(pf, &v);
        if (!r) r = sh_put_stat(pf->vol, &v, (void *)a[1]);
        break;
    }
    case SYS_getdents64: r = sh_do_getdents(pf, (char *)a[1], (size_t)a[2]); break;
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
        pf->wpid = sh.pid; /* (before: see sh_io_write) */
        r = scp_vfile_truncate(pf->vf, (uint64_t)a[1], &se) ? neg(&se) : 0;
        break;
    }
    case SYS_fallocate: {
        if (pf->kind != PF_FILE || !writable(pf)) { r = -EBADF; break; }
        int mode = (int)a[1], keep = !!(mode & FALLOC_FL_KEEP_SIZE);
        int zero = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE);
        /* (the kernel's checks, vfs_fallocate: a punch keeps the size and is not a zeroing;
         * collapse, insert and unshare ranges are not served) */
        if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) ||
            ((mode & FALLOC_FL_PUNCH_HOLE) && (!keep || (mode & FALLOC_FL_ZERO_RANGE)))) {
            r = -EOPNOTSUPP;
            break;
        }
        if (a[2] < 0 || a[3] <= 0) { r = -EINVAL; break; }
        if (zero) { r = sh_io_zero(pf, a[2], a[3], keep); break; }
        scp_err se;
        pf->wpid = sh.pid; /* (before: see sh_io_write) */
        r = scp_vfile_allocate(pf->vf, (uint64_t)a[2], (uint64_t)a[3], keep, &se) ? neg(&se) : 0;
        break;
    }
    case SYS_fadvise64:
    case SYS_readahead: r = 0; break;
    case SYS_flock: r = sh_do_flock(pf, (int)a[1]); break;
    case SYS_ioctl: r = -ENOTTY; break;
    case SYS_fchdir: {
        scp_vstat fv;
        if (pf->kind != PF_DIR || sh_pf_vstat(pf, &fv) || fv.type != SCP_VTYPE_DIR) { r = -ENOTDIR; break; }
        char view[PATH_MAX];
        r = snprintf(view, sizeof view, "%s%s%s", sh.vol[pf->vol].mount, pf->path[0] ? "/" : "", pf->path) >= (int)sizeof view
                ? -ENAMETOOLONG
                : sh_cwd_set(view);
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
        if ((r = sh_pf_vstat(pf, &cv)) || (r = sh_cred_setattr(&cv, &mode, uid, gid))) break;
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
    if (cursor) sh_ofd_leave(pf, ofd);
    else sh_ofd_unlock(pf, ofd);
    sh_pf_put(pf);
    return r;
}
