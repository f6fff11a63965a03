/* runtime/notify.c - the supervisor that serves static images (seccomp user notification).
 *
 * Every notified call is read from the target's registers (the notification) and memory
 * (process_vm_readv; a bad pointer gives EFAULT, a path longer than PATH_MAX ENAMETOOLONG),
 * then SECCOMP_IOCTL_NOTIF_ID_VALID confirms the target is still the same thread before
 * anything acts on what was read. Paths are made absolute (the target's cwd or directory
 * descriptor, from /proc) and normalized lexically; one under a mount point is served here,
 * any other continues to the kernel (SECCOMP_USER_NOTIF_FLAG_CONTINUE), which re-reads it: a
 * path the program changes in between then reaches the empty read-only mount point (fails).
 *
 * Files: an open copies the plaintext into a memfd (named "scp-static-N", N its entry here)
 * and injects a descriptor of it with the program's access mode; reads, writes, seeks and
 * mmap then run in the kernel. A writable file is written back (whole, then committed) at
 * fsync/fdatasync (which return only after the commit: EIO otherwise), at close (the same,
 * then the close continues), and for every such descriptor the process holds at exec and
 * exit_group. A process killed by a signal loses what it wrote since its last commit.
 * Opens of one file share its memfd while a writer holds it (one memfd per file, so two
 * processes that write one file do not lose each other's bytes at commit).
 * Directories: an open injects a descriptor of a directory view, a directory on a private
 * detached tmpfs holding one empty entry per name, so getdents runs in the kernel; a
 * directory descriptor of a view serves as the base of *at calls.
 * Permissions: each served call is checked with the calling thread's credentials (from
 * /proc/TID/status, kept per thread while it lives) by the shield's rules (shield/perm.c). */
#include "runtime/notify.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "runtime/userns.h"
#include "shield/perm.h"

/* ---- does the supervisor serve it? --------------------------------------------------------- */

/* Whether the notes at [off, off + len) of fd hold Go's build ID (name "Go\0\0", type 4: the
 * .note.go.buildid section, which Go's linker writes into every program). */
static int go_note(int fd, uint64_t off, uint64_t len) {
    uint8_t buf[1024];
    if (len > sizeof buf) len = sizeof buf; /* (it comes first in a Go program's notes) */
    if (scp_pread_full(fd, buf, (size_t)len, (off_t)off) != (ssize_t)len) return 0;
    for (uint64_t at = 0; at + 12 <= len;) {
        uint32_t namesz, descsz, type;
        memcpy(&namesz, buf + at, 4);
        memcpy(&descsz, buf + at + 4, 4);
        memcpy(&type, buf + at + 8, 4);
        uint64_t name = at + 12, desc = name + ((namesz + 3ull) & ~3ull);
        if ((namesz == 3 || namesz == 4) && type == 4 && name + namesz <= len &&
            memcmp(buf + name, "Go", 3) == 0)
            return 1;
        at = desc + ((descsz + 3ull) & ~3ull);
    }
    return 0;
}

int scp_notify_image(int fd) {
    Elf64_Ehdr eh;
    if (scp_pread_full(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh) return SCP_IMAGE_SHIELD;
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64) return SCP_IMAGE_SHIELD;
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 256) return -1;
    int interp = 0, go = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (scp_pread_full(fd, &ph, sizeof ph, eh.e_phoff + (uint64_t)i * sizeof ph) != (ssize_t)sizeof ph)
            return -1;
        if (ph.p_type == PT_INTERP) interp = 1;
        if (ph.p_type == PT_NOTE && eh.e_type == ET_EXEC && !go) go = go_note(fd, ph.p_offset, ph.p_filesz);
    }
    return !interp ? SCP_IMAGE_STATIC : go ? SCP_IMAGE_GO_FIXED : SCP_IMAGE_SHIELD;
}

/* ---- the filter ---------------------------------------------------------------------------- */

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5) /* Linux 5.19 */
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS /* Linux 6.6 */
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

/* where the kernel reports the shield gate's `syscall` (shield/gate.c, GATE_RET_OFF) */
#define GATE_SYSCALL_RET (SCP_SHIELD_GATE_ADDR + 25)

/* the calls the supervisor sees; everything else runs in the kernel at once */
static const int notified[] = {
    SYS_open, SYS_openat, SYS_openat2, SYS_creat, SYS_stat, SYS_lstat, SYS_newfstatat, SYS_statx,
    SYS_access, SYS_faccessat, SYS_faccessat2, SYS_mkdir, SYS_mkdirat, SYS_rmdir, SYS_unlink,
    SYS_unlinkat, SYS_rename, SYS_renameat, SYS_renameat2, SYS_link, SYS_linkat, SYS_chmod, SYS_fchmodat, SYS_chown,
    SYS_lchown, SYS_fchownat, SYS_utimensat, SYS_truncate, SYS_readlink, SYS_readlinkat,
    SYS_execve, SYS_execveat, SYS_fsync, SYS_fdatasync, SYS_close, SYS_exit_group, SYS_exit,
    SYS_dup2, SYS_dup3, SYS_close_range, /* they close a descriptor too */
    SYS_fstat, /* a served file's identity is its volume's (cp compares fstat with stat) */
    SYS_getxattr, SYS_lgetxattr, SYS_listxattr, SYS_llistxattr,
    /* credential changes: the thread's cached credentials are read again after them */
    SYS_setuid, SYS_setgid, SYS_setreuid, SYS_setregid, SYS_setresuid, SYS_setresgid, SYS_setfsuid,
    SYS_setfsgid, SYS_setgroups,
    /* the working directory inside a mount (cwd_view): set, read and left */
    SYS_chdir, SYS_fchdir, SYS_getcwd,
};

static int filter_install(void) {
    struct sock_filter f[16 + 2 * sizeof notified / sizeof notified[0]];
    unsigned n = 0, nn = sizeof notified / sizeof notified[0];
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    /* the shield's gate (a shielded process on its way to exec the static image) */
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)GATE_SYSCALL_RET, 0, 3);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4);
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(GATE_SYSCALL_RET >> 32), 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (unsigned i = 0; i < nn; i++) /* jump to the USER_NOTIF return after the ALLOW */
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)notified[i],
                                              (uint8_t)(nn - i), 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -1;
    /* WAIT_KILLABLE_RECV: once the supervisor has received a call, only SIGKILL interrupts
     * the target's wait. Otherwise a signal (Go preempts its threads with SIGURG) would
     * restart a call the supervisor already carried out: a rename done twice fails with
     * ENOENT, an exclusive create with EEXIST. */
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                        SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &prog);
}

/* ---- supervisor state ---------------------------------------------------------------------- */

struct vol {
    char mount[PATH_MAX];
    size_t mlen;
    scp_volume *v;
    dev_t dev; /* what its names show as st_dev: the shield's number for it (init.c) */
};

/* an injected memfd or directory view: where it lives in which volume (path NULL once the
 * file was unlinked or replaced: its bytes then have nowhere to go, as on a file system) */
struct entry {
    int vol;
    char *path;
    int writable;
    /* the supervisor's own read-only description of the memfd while it is shared (every
     * open of the file joins it while some description holds it open for writing), else -1 */
    int fd;
    int dropped; /* was shared, and no description held it for writing any more */
    /* SHA-256 and size of the plaintext that the last commit of this memfd stored: a close
     * after an fsync with no write in between (Go's os.File.Sync then Close) need not store
     * and commit the same bytes again */
    int committed;
    uint64_t csize;
    uint8_t csum[32];
};

struct sup {
    int listener;
    struct vol vol[SCP_SHIELD_MAX_VOLUMES];
    unsigned nvol;
    struct entry *e; /* memfds, by N of "scp-static-N" */
    size_t ne, cap;
    struct entry *vw; /* views, by N of "/vN" on the view tmpfs */
    size_t nvw, capvw;
    int views;        /* the detached tmpfs, or -1 */
    dev_t view_dev;
    uint64_t max_file;
    int share;        /* the kernel grants leases on memfds: opens of one file share one memfd */
    int unshared;     /* a writable open could not be shared (no descriptor left) */
    uid_t euid;       /* the supervisor's own, which the volume library gives new entries */
    gid_t egid;
    size_t *live;     /* the entries whose memfd is shared (fd >= 0) */
    size_t nlive, caplive;
    /* the credentials of threads seen, each with a pidfd of its thread (PIDFD_THREAD): kept
     * while that thread lives and makes no credential change or exec (cred_begin) */
    struct cached_cred { pid_t tid; int pidfd; struct scp_cred c; } cc[32];
    unsigned ncc, ccnext;
    int pidfd_thread; /* the kernel has thread pidfds (Linux 6.9) */
    /* working directories inside a mount, per process (below, "Working directories") */
    struct cwd_view { pid_t tgid; char *view, *kcwd; } cw[64];
    unsigned ncw;
    /* files the exec'ing image handed on whose cursor other processes share (hand_on): the
     * description handed out (ours too), its entry, and the shared cursor, which each commit
     * of the entry sets from the description */
    struct handed { int desc; size_t nr; int64_t *off; } hd[SCP_SHIELD_MAX_INHERIT];
    unsigned nhd;
};

/* the current request */
struct req {
    struct sup *s;
    struct seccomp_notif *n;
    struct seccomp_notif_resp *r;
    int answered; /* ADDFD sent the response */
    int cred_ok;  /* cred read and confirmed (req_cred) */
    int umask_ok; /* umask read (it is the process's: never cached) */
    int pidfd;    /* of the thread, to cache cred once confirmed, or -1 */
    struct scp_cred cred;
    mode_t umask;
};

static int add_entry(struct entry **arr, size_t *n, size_t *cap, int vol, const char *path, int writable) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct entry *ne = realloc(*arr, nc * sizeof *ne);
        if (!ne) return -1;
        *arr = ne;
        *cap = nc;
    }
    struct entry *en = &(*arr)[*n];
    en->vol = vol;
    en->writable = writable;
    en->committed = 0;
    en->fd = -1;
    en->dropped = 0;
    en->path = strdup(path);
    if (!en->path) return -1;
    return (int)(*n)++;
}

/* ---- the target's memory and files ---------------------------------------------------------- */

/* Read a NUL-terminated string at addr, page by page (a string that ends just before an
 * unmapped page is fine). 0, -EFAULT or -ENAMETOOLONG. */
static int read_str(pid_t pid, uint64_t addr, char *out, size_t max) {
    size_t got = 0;
    if (!addr) return -EFAULT;
    while (got < max) {
        size_t room = 4096 - ((addr + got) & 4095);
        if (room > max - got) room = max - got;
        struct iovec l = {out + got, room}, r = {(void *)(uintptr_t)(addr + got), room};
        ssize_t k = process_vm_readv(pid, &l, 1, &r, 1, 0);
        if (k <= 0) return -EFAULT;
        void *z = memchr(out + got, 0, (size_t)k);
        if (z) return 0;
        got += (size_t)k;
    }
    return -ENAMETOOLONG;
}

static int read_mem(pid_t pid, uint64_t addr, void *out, size_t n) {
    struct iovec l = {out, n}, r = {(void *)(uintptr_t)addr, n};
    return process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

static int write_mem(pid_t pid, uint64_t addr, const void *in, size_t n) {
    struct iovec l = {(void *)in, n}, r = {(void *)(uintptr_t)addr, n};
    return process_vm_writev(pid, &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

static int still_valid(struct req *q) {
    return ioctl(q->s->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &q->n->id) == 0;
}

/* N of a memfd this supervisor made, reached as descriptor fd of the target; -1 otherwise */
static long memfd_entry(struct sup *s, pid_t pid, int fd) {
    char link[64], target[128];
    snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, fd);
    ssize_t l = readlink(link, target, sizeof target - 1);
    if (l <= 0) return -1;
    target[l] = 0;
    unsigned long nr;
    char tail[16] = "";
    if (sscanf(target, "/memfd:scp-static-%lu%15s", &nr, tail) < 1 || nr >= s->ne) return -1;
    return (long)nr;
}

/* The value after `key` at the start of a line of /proc/PID/status, or NULL. */
static const char *status_field(const char *buf, const char *key) {
    size_t kl = strlen(key);
    for (const char *l = buf; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (!strncmp(l, key, kl)) return l + kl;
    return NULL;
}

/* Read the credentials and umask of the thread whose call this is (n->pid is the thread's
 * id, /proc/TID its own status). Not yet confirmed: see req_cred. 0 or -errno. */
static int cred_read(struct req *q) {
    static char buf[16384]; /* the supervisor serves one call at a time */
    char p[64];
    snprintf(p, sizeof p, "/proc/%u/status", (unsigned)q->n->pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -ENOENT; /* the thread is gone: nobody reads the answer */
    ssize_t n;
    do n = pread(fd, buf, sizeof buf - 1, 0); /* procfs gives it whole at once */
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) return -EACCES;
    buf[n] = 0;
    struct scp_cred *c = &q->cred;
    const char *um = status_field(buf, "Umask:"), *u = status_field(buf, "Uid:"), *g = status_field(buf, "Gid:"),
               *gr = status_field(buf, "Groups:");
    unsigned umask_v, ids[8], x;
    /* real, effective, saved and file system ids; the kernel checks file access with the
     * file system ids, which follow the effective ones unless the program called setfsuid */
    if (!um || !u || !g || !gr || sscanf(um, "%o", &umask_v) != 1 ||
        sscanf(u, "%u %u %u %u", &ids[0], &x, &x, &ids[1]) != 4 || sscanf(g, "%u %u %u %u", &ids[2], &x, &x, &ids[3]) != 4)
        return -EACCES; /* unreadable: refuse rather than guess */
    c->ngroups = 0;
    for (const char *t = gr;;) {
        char *end;
        unsigned long v = strtoul(t, &end, 10);
        /* a number the buffer cut short is not taken for another group */
        if (end == t || (*end != ' ' && *end != '\t' && *end != '\n')) break;
        if (c->ngroups < SCP_PERM_MAX_GROUPS) c->groups[c->ngroups++] = (gid_t)v;
        t = end;
    }
    c->ruid = ids[0];
    c->euid = ids[1];
    c->rgid = ids[2];
    c->egid = ids[3];
    q->umask = (mode_t)(umask_v & 0777);
    q->umask_ok = 1;
    return 0;
}

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* Linux 6.9 */
#endif

static void cache_drop(struct sup *s, pid_t tid) { /* tid 0: all */
    for (unsigned i = 0; i < s->ncc;) {
        if (tid && s->cc[i].tid != tid) {
            i++;
            continue;
        }
        close(s->cc[i].pidfd);
        s->cc[i] = s->cc[--s->ncc];
    }
}

/* Start reading the caller's credentials: from the cache while the thread they were read from
 * still lives (its pidfd is not readable: a thread id reused by another thread is another
 * pidfd's), else from /proc, with a pidfd of the thread opened first so that what the cache
 * keeps is tied to the thread the status was read from. Not confirmed yet (req_cred). */
static int cred_begin(struct req *q) {
    struct sup *s = q->s;
    pid_t tid = (pid_t)q->n->pid;
    for (unsigned i = 0; i < s->ncc; i++) {
        if (s->cc[i].tid != tid) continue;
        struct pollfd p = {s->cc[i].pidfd, POLLIN, 0};
        if (poll(&p, 1, 0) == 0) {
            q->cred = s->cc[i].c;
            return 0;
        }
        cache_drop(s, tid); /* that thread is gone */
        break;
    }
    if (q->pidfd < 0 && s->pidfd_thread) q->pidfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
    return cred_read(q);
}

/* The credentials are confirmed (the thread still waits in this call): keep them. */
static void cred_confirmed(struct req *q) {
    struct sup *s = q->s;
    q->cred_ok = 1;
    if (q->pidfd < 0) return;
    if (s->ncc == sizeof s->cc / sizeof s->cc[0]) { /* full: replace one, round robin */
        unsigned v = s->ccnext++ % s->ncc;
        close(s->cc[v].pidfd);
        s->cc[v] = s->cc[--s->ncc];
    }
    s->cc[s->ncc++] = (struct cached_cred){(pid_t)q->n->pid, q->pidfd, q->cred};
    q->pidfd = -1;
}

/* The calling thread's credentials and umask, read once for the request when a permission is
 * to be checked, and confirmed after the read: the thread still waits in this call, so they
 * are the ids it makes the call with (only the thread itself changes its ids, and it is
 * blocked here), not those of a thread that took its number. 0 or -errno. */
static int req_cred(struct req *q) {
    if (q->cred_ok) return 0;
    int rc = cred_begin(q);
    if (rc) return rc;
    if (!still_valid(q)) return -ENOENT;
    cred_confirmed(q);
    return 0;
}

/* The process's umask, for a call that creates: read for the call (a umask change by another
 * thread is not reported), confirmed as the credentials are. */
static int req_umask(struct req *q) {
    if (q->umask_ok) return 0;
    int rc = cred_read(q);
    if (rc) return rc;
    return still_valid(q) ? 0 : -ENOENT;
}

/* A new entry belongs to its creator: the volume library records the supervisor's ids, which
 * need not be the program's (a root supervisor, a program that changed its ids). */
static int own_new(struct req *q, scp_volume *vol, const char *rel) {
    if (q->cred.euid == q->s->euid && q->cred.egid == q->s->egid) return 0;
    scp_err e;
    return scp_volume_setattr(vol, rel, -1, q->cred.euid, q->cred.egid, INT64_MIN, &e) ? -(e.sys ? e.sys : EIO) : 0;
}

/* ---- paths ---------------------------------------------------------------------------------- */

/* A resolved path: vol < 0 means not under a mount point (the kernel's business). */
struct rpath {
    int vol;
    char rel[PATH_MAX]; /* inside the volume, "" for its root */
    char abs[PATH_MAX]; /* the path, absolute and normalized */
    char kcwd[PATH_MAX]; /* the kernel's cwd when a view was the base, else "" */
};

static void classify(struct sup *s, const char *abs, struct rpath *rp) {
    rp->vol = -1;
    for (unsigned i = 0; i < s->nvol; i++) {
        size_t ml = s->vol[i].mlen;
        if (!strncmp(abs, s->vol[i].mount, ml) && (abs[ml] == 0 || abs[ml] == '/')) {
            rp->vol = (int)i;
            snprintf(rp->rel, sizeof rp->rel, "%s", abs[ml] ? abs + ml + 1 : "");
            return;
        }
    }
}

/* ---- working directories -------------------------------------------------------------------
 * The kernel cannot make a directory inside a volume a process's cwd (the mount point it sees
 * is empty): a shielded program whose working directory lies below a mount point keeps it in
 * the shield (its "view"), and its kernel cwd is the mount point. A static image it execs gets
 * the view here (scp_notify_spawn), and so do the processes that image forks (a child takes
 * its parent's at its first relative call, found through PPid). chdir and fchdir into a
 * directory below a mount point set a view; getcwd reads it. A view holds only while the
 * process's kernel cwd is the one it had when the view was set (kcwd): a change the supervisor
 * did not see ends it. Without this a static program started in a volume's subdirectory took
 * relative names from the volume's root: it read and created files in the wrong directory. */

static void cwd_drop(struct sup *s, unsigned i) {
    free(s->cw[i].view);
    free(s->cw[i].kcwd);
    s->cw[i] = s->cw[--s->ncw];
}

/* The thread tid's process id and parent's (/proc/TID/status). 0, or -1. */
static int proc_ids(pid_t tid, pid_t *tgid, pid_t *ppid) {
    char p[64], buf[2048];
    snprintf(p, sizeof p, "/proc/%d/status", tid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0); /* Tgid and PPid are in its first lines */
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *t = status_field(buf, "Tgid:"), *pp = status_field(buf, "PPid:");
    char *e1 = NULL, *e2 = NULL;
    long a = t ? strtol(t, &e1, 10) : 0, b = pp ? strtol(pp, &e2, 10) : 0;
    if (!t || !pp || e1 == t || e2 == pp || a <= 0 || b < 0) return -1;
    *tgid = (pid_t)a;
    *ppid = (pid_t)b;
    return 0;
}

static int cwd_index(const struct sup *s, pid_t tgid) {
    for (unsigned i = 0; i < s->ncw; i++)
        if (s->cw[i].tgid == tgid) return (int)i;
    return -1;
}

/* Set (view non-NULL) or end the view of tid's process; kcwd: its kernel cwd now. 0 or -errno. */
static int cwd_set(struct sup *s, pid_t tid, const char *view, const char *kcwd) {
    pid_t tgid, pp;
    if (proc_ids(tid, &tgid, &pp)) return -ESRCH;
    int i = cwd_index(s, tgid);
    if (i >= 0) cwd_drop(s, (unsigned)i);
    if (!view) return 0;
    for (unsigned j = 0; s->ncw == sizeof s->cw / sizeof s->cw[0] && j < s->ncw;) { /* the dead go */
        char d[64];
        snprintf(d, sizeof d, "/proc/%d", s->cw[j].tgid);
        if (access(d, F_OK)) cwd_drop(s, j);
        else j++;
    }
    if (s->ncw == sizeof s->cw / sizeof s->cw[0]) return -ENOMEM; /* (no view: the kernel's cwd) */
    char *v = strdup(view), *k = strdup(kcwd);
    if (!v || !k) {
        free(v);
        free(k);
        return -ENOMEM;
    }
    s->cw[s->ncw++] = (struct cwd_view){tgid, v, k};
    return 0;
}

/* The view of tid's process, given its kernel cwd now (kcwd), or NULL: its own, else its
 * nearest ancestor's (taken as its own: a forked child starts in its parent's directory). */
static const char *cwd_view(struct sup *s, pid_t tid, const char *kcwd) {
    if (!s->ncw) return NULL; /* (no view anywhere: no /proc read) */
    pid_t tgid, pp, first;
    if (proc_ids(tid, &tgid, &pp)) return NULL;
    first = tgid;
    int i = cwd_index(s, tgid);
    for (int depth = 0; i < 0 && depth < 16 && pp > 1; depth++) {
        if ((i = cwd_index(s, pp)) >= 0) break;
        pid_t up;
        if (proc_ids(pp, &tgid, &up)) break;
        pp = up;
    }
    if (i < 0) return NULL;
    if (strcmp(s->cw[i].kcwd, kcwd)) { /* moved by a call the supervisor did not see */
        if (s->cw[i].tgid == first) cwd_drop(s, (unsigned)i);
        return NULL;
    }
    char inherited[PATH_MAX]; /* (a copy: cwd_set may drop the ancestor's entry, if it died) */
    snprintf(inherited, sizeof inherited, "%s", s->cw[i].view);
    if (s->cw[i].tgid != first && cwd_set(s, tid, inherited, kcwd)) return NULL;
    i = cwd_index(s, first);
    return i < 0 ? NULL : s->cw[i].view;
}

/* The kernel's cwd of pid into out (n bytes). 0 or -EBADF. */
static int kernel_cwd(pid_t pid, char *out, size_t n) {
    char link[64];
    snprintf(link, sizeof link, "/proc/%d/cwd", pid);
    ssize_t l = readlink(link, out, n - 1);
    if (l <= 0) return -EBADF;
    out[l] = 0;
    return 0;
}

/* The base directory of a relative path: the target's cwd (its view, when it has one: then
 * kout, if given, receives the kernel's cwd, else "") or its directory descriptor. A view
 * descriptor gives its place in its volume. 0, or -errno (EBADF and the like: the kernel's). */
static int base_dir(struct sup *s, pid_t pid, int dirfd, char *out, size_t n, char *kout) {
    char link[64];
    if (kout) kout[0] = 0;
    if (dirfd == AT_FDCWD) {
        if (kernel_cwd(pid, out, n)) return -EBADF;
        const char *v = cwd_view(s, pid, out);
        if (v) {
            if (kout) snprintf(kout, n, "%s", out);
            snprintf(out, n, "%s", v);
        }
        return 0;
    }
    snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, dirfd);
    struct stat st;
    if (stat(link, &st)) return -EBADF;
    if (s->views >= 0 && st.st_dev == s->view_dev) {
        char t[64];
        ssize_t l = readlink(link, t, sizeof t - 1);
        unsigned long nr;
        if (l <= 0) return -EBADF;
        t[l] = 0;
        if (sscanf(t, "/v%lu", &nr) != 1 || nr >= s->nvw || !s->vw[nr].path) return -ENOENT;
        const struct entry *v = &s->vw[nr];
        snprintf(out, n, "%s/%s", s->vol[v->vol].mount, v->path);
        return 0;
    }
    ssize_t l = readlink(link, out, n - 1);
    if (l <= 0) return -EBADF;
    out[l] = 0;
    return 0;
}

/* Read the path argument and resolve it. Returns 0 (rp filled), or -errno to answer. The
 * target is confirmed still waiting after its memory was read. */
static int resolve(struct req *q, int dirfd, uint64_t addr, struct rpath *rp) {
    char path[PATH_MAX], base[PATH_MAX], kcwd[PATH_MAX], abs[2 * PATH_MAX + 2], norm[PATH_MAX];
    pid_t pid = (pid_t)q->n->pid;
    int rc = read_str(pid, addr, path, sizeof path);
    if (rc) return rc;
    rp->vol = -1;
    rp->abs[0] = 0;
    if (!path[0]) return -ENOENT;
    kcwd[0] = 0;
    if (path[0] == '/') {
        snprintf(abs, sizeof abs, "%s", path);
    } else {
        rc = base_dir(q->s, pid, dirfd, base, sizeof base, kcwd);
        if (rc == -EBADF) return 1; /* not ours to judge: the kernel answers */
        if (rc) return rc;
        snprintf(abs, sizeof abs, "%s/%s", base, path);
    }
    if (scp_shield_path_normalize(abs, norm, sizeof norm)) return 1; /* too long: outside (kernel) */
    snprintf(rp->abs, sizeof rp->abs, "%s", norm);
    snprintf(rp->kcwd, sizeof rp->kcwd, "%s", kcwd);
    classify(q->s, norm, rp);
    if (rp->vol < 0 && kcwd[0]) {
        /* relative to a view, out of the volumes: the kernel, which reads the path again,
         * would take it from its own cwd; only where both agree may it answer */
        char k[2 * PATH_MAX + 2], kn[PATH_MAX];
        snprintf(k, sizeof k, "%s/%s", kcwd, path);
        if (scp_shield_path_normalize(k, kn, sizeof kn) || strcmp(kn, norm)) return -EXDEV;
    }
    if (rp->vol < 0) return 0; /* the kernel's: it reads the path again */
    /* the caller's credentials, for the permission checks that follow (req_cred) */
    if (!q->cred_ok && (rc = cred_begin(q))) return rc;
    /* what was read (the path, the base from /proc/PID, the credentials) is that thread's,
     * waiting in that call: one confirmation for all of it, before anything acts on it */
    if (!still_valid(q)) return -ENOENT;
    if (!q->cred_ok) cred_confirmed(q);
    return 0;
}

/* ---- answers -------------------------------------------------------------------------------- */

static void answer(struct req *q, long val, int error) {
    q->r->id = q->n->id;
    q->r->val = val;
    q->r->error = error;
    q->r->flags = 0;
}

static void pass(struct req *q) {
    answer(q, 0, 0);
    q->r->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
}

static int verr(const scp_err *e) { return -(e->sys ? e->sys : EIO); }

/* ---- committing ----------------------------------------------------------------------------- */

/* Is the target's descriptor fd open for writing (its description's flags)? */
static int fd_writable(pid_t pid, int fd) {
    char p[64], line[128];
    snprintf(p, sizeof p, "/proc/%d/fdinfo/%d", pid, fd);
    FILE *f = fopen(p, "re");
    unsigned flags = O_RDWR; /* unreadable: store, as before */
    if (!f) return 1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "flags: %o", &flags) == 1) break;
    fclose(f);
    return (flags & O_ACCMODE) != O_RDONLY;
}

/* Write the memfd reached as the target's descriptor fd back into its file and commit.
 * 0 or -errno. The whole file is written each time (what changed is not known). */
static int commit_fd(struct sup *s, pid_t pid, int fd, long nr) {
    struct entry *en = &s->e[nr];
    for (unsigned i = 0; i < s->nhd; i++) { /* where a shell that writes on after the program goes on */
        off_t at = s->hd[i].nr == (size_t)nr ? lseek(s->hd[i].desc, 0, SEEK_CUR) : -1;
        if (at >= 0) __atomic_store_n(s->hd[i].off, (int64_t)at, __ATOMIC_RELEASE);
    }
    if (!en->writable || !en->path) return 0;
    /* every writer of a memfd that is shared no more committed at its close: a reader left
     * has nothing to store (a writable reopen of /proc/PID/fd/N by the program still does) */
    if (en->dropped && !fd_writable(pid, fd)) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, fd);
    /* our own read-only description of the memfd: the shared one, or one opened for this */
    int own = en->fd < 0, m = own ? open(link, O_RDONLY | O_CLOEXEC) : en->fd;
    if (m < 0) return -EIO;
    struct stat st;
    int rc = 0;
    scp_err e;
    scp_vfile *f = NULL;
    uint8_t *data = NULL, sum[32];
    size_t n = 0;
    if (fstat(m, &st)) {
        rc = -EIO;
    } else if ((uint64_t)st.st_size > s->max_file) {
        rc = -EFBIG;
    } else if (!(data = malloc((n = (size_t)st.st_size) ? n : 1)) || scp_pread_full(m, data, n, 0) != (ssize_t)n) {
        rc = -EIO; /* the bytes are read once: what is hashed is what is stored */
    } else if (scp_sha256_buf(data, n, sum), en->committed && en->csize == n && !memcmp(en->csum, sum, sizeof sum)) {
        rc = 0; /* the same bytes as the last commit: stored and durable already */
    } else if (!(f = scp_vfile_open(s->vol[en->vol].v, en->path, O_RDWR, 0, &e))) {
        rc = e.code == SCP_E_NOENT ? 0 : -EIO; /* removed meanwhile: nowhere to store it */
    } else {
        if (n && scp_vfile_pwrite(f, data, n, 0, &e) != (ssize_t)n) rc = -EIO;
        if (rc == 0 && scp_vfile_truncate(f, (uint64_t)n, &e)) rc = -EIO;
        if (rc == 0 && scp_vfile_fsync(f, &e)) rc = -EIO;
        if (scp_vfile_close(f, &e) && rc == 0) rc = -EIO;
        en->committed = rc == 0;
        en->csize = n;
        memcpy(en->csum, sum, sizeof sum);
    }
    if (data) scp_wipe(data, n);
    free(data);
    if (own) close(m);
    return rc;
}

/* Commit every memfd of ours that process pid holds (exec, exit_group, rename). With `path`,
 * only those of that file. Returns the first error. */
static int commit_fds(struct sup *s, pid_t pid, int vol, const char *path, unsigned lo, unsigned hi);
static long shared_entry(struct sup *s, int vol, const char *path);
static int commit_all(struct sup *s, pid_t pid, int vol, const char *path) {
    return commit_fds(s, pid, vol, path, 0, ~0u);
}
static int commit_range(struct sup *s, pid_t pid, unsigned lo, unsigned hi) {
    return commit_fds(s, pid, -1, NULL, lo, hi);
}
static int commit_fds(struct sup *s, pid_t pid, int vol, const char *path, unsigned lo, unsigned hi) {
    /* with sharing, a writable memfd is shared while a writable description of it is open
     * (sweep ran for this call): none shared for the file, nothing of it left to commit, and
     * no need to look through the process's descriptors (a rename of a closed file) */
    if (path && s->share && !s->unshared && shared_entry(s, vol, path) < 0) return 0;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return 0;
    char buf[4096];
    int rc = 0;
    for (;;) {
        long k = syscall(SYS_getdents64, dfd, buf, sizeof buf);
        if (k <= 0) break;
        for (long off = 0; off < k;) {
            struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d =
                (void *)(buf + off);
            off += d->reclen;
            char *end;
            long fd = strtol(d->name, &end, 10);
            if (*end || end == d->name || fd < (long)lo || fd > (long)hi) continue;
            long nr = memfd_entry(s, pid, (int)fd);
            if (nr < 0) continue;
            if (path && (!s->e[nr].path || s->e[nr].vol != vol || strcmp(s->e[nr].path, path))) continue;
            int r = commit_fd(s, pid, (int)fd, nr);
            if (r && !rc) rc = r;
        }
    }
    close(dfd);
    return rc;
}

/* A name that stops naming the file it named (unlink, rename over it): entries of it lose
 * their path, and a renamed file's or directory's entries follow it. */
static void entries_moved(struct entry *arr, size_t n, int vol, const char *from, const char *to) {
    size_t fl = strlen(from);
    for (size_t i = 0; i < n; i++) {
        struct entry *en = &arr[i];
        if (!en->path || en->vol != vol || strncmp(en->path, from, fl) || (en->path[fl] && en->path[fl] != '/'))
            continue;
        char *np = NULL;
        if (to) {
            size_t len = strlen(to) + strlen(en->path + fl) + 1;
            np = malloc(len);
            if (np) snprintf(np, len, "%s%s", to, en->path + fl);
        }
        free(en->path);
        en->path = np;
    }
}

/* ---- one memfd per file -------------------------------------------------------------------- */

/* Two opens of one file must see one file: a second copy would be committed over the first,
 * and the last to commit would win (silent loss). So every open of a file joins the memfd that
 * an earlier open made, while some description (of any process) holds it open for writing;
 * with none, the next open loads the file afresh from the volume (which then holds what the
 * writers committed at their close, and what other processes committed since). Whether a
 * writer is left is the kernel's count of writable descriptions of the inode: a read lease
 * on the supervisor's read-only description is granted only when there is none (it is given
 * back at once; SIGIO, the signal of a lease break, is ignored). */
static int writer_left(const struct entry *en) {
    if (fcntl(en->fd, F_SETLEASE, F_RDLCK)) return 1; /* EAGAIN: a writable description */
    fcntl(en->fd, F_SETLEASE, F_UNLCK);
    return 0;
}

/* Stop sharing the memfds that no description holds open for writing any more. A notified
 * close has not happened yet: its memfd goes at a later call. */
static void sweep(struct sup *s) {
    for (size_t i = 0; i < s->nlive;) {
        struct entry *en = &s->e[s->live[i]];
        if (en->fd >= 0 && writer_left(en)) {
            i++;
            continue;
        }
        if (en->fd >= 0) close(en->fd);
        en->fd = -1;
        en->dropped = 1;
        s->live[i] = s->live[--s->nlive];
    }
}

/* The shared memfd of (vol, path), or -1. */
static long shared_entry(struct sup *s, int vol, const char *path) {
    for (size_t i = 0; i < s->nlive; i++) {
        const struct entry *en = &s->e[s->live[i]];
        if (en->fd >= 0 && en->path && en->vol == vol && !strcmp(en->path, path)) return (long)s->live[i];
    }
    return -1;
}

/* Keep a read-only description of memfd m for entry nr, to share it with later opens. Without
 * one (no descriptor left) the file is not shared: as before, a copy per open. */
static void share_entry(struct sup *s, size_t nr, int m) {
    if (!s->share) return;
    if (s->nlive == s->caplive) {
        size_t nc = s->caplive ? s->caplive * 2 : 16;
        size_t *nl = realloc(s->live, nc * sizeof *nl);
        if (!nl) {
            s->unshared = 1;
            return;
        }
        s->live = nl;
        s->caplive = nc;
    }
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", m);
    int ro = open(link, O_RDONLY | O_CLOEXEC);
    if (ro < 0) {
        s->unshared = 1; /* for the rest of the run: its commits are found by looking */
        return;
    }
    s->e[nr].fd = ro;
    s->live[s->nlive++] = nr;
}

/* Do memfds take leases here (fs.leases-enable, the kernel's support)? */
static int leases_work(void) {
    int m = memfd_create("scp-static-probe", MFD_CLOEXEC), ok = 0;
    if (m < 0) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", m);
    int ro = open(link, O_RDONLY | O_CLOEXEC);
    close(m);
    if (ro >= 0) {
        struct entry probe = {.fd = ro};
        ok = fcntl(ro, F_SETLEASE, F_RDLCK) == 0 && (fcntl(ro, F_SETLEASE, F_UNLCK), !writer_left(&probe));
        close(ro);
    }
    return ok;
}

/* ---- serving -------------------------------------------------------------------------------- */

static void fill_stat(const struct sup *s, int vol, const scp_vstat *v, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_dev = s->vol[vol].dev;
    st->st_ino = v->ino ? v->ino : 1;
    st->st_mode = (v->type == SCP_VTYPE_DIR ? S_IFDIR : S_IFREG) | (v->mode & 07777);
    st->st_nlink = v->type == SCP_VTYPE_DIR ? 2 : v->nlink;
    st->st_uid = v->uid;
    st->st_gid = v->gid;
    st->st_size = (off_t)v->size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((v->size + 511) / 512);
    st->st_mtim.tv_sec = v->mtime_ns / 1000000000;
    st->st_mtim.tv_nsec = v->mtime_ns % 1000000000;
    st->st_atim = st->st_ctim = st->st_mtim;
}

/* An entry that records no owner (the volume root) is reported as the caller's. */
static int vstat(struct req *q, const struct rpath *rp, scp_vstat *v) {
    scp_err e;
    if (scp_volume_stat(q->s->vol[rp->vol].v, rp->rel, v, &e)) return verr(&e);
    if (v->owner_unset) {
        int rc = req_cred(q);
        if (rc) return rc;
        scp_perm_owner(&q->cred, v);
    }
    return 0;
}

static int put_stat(struct req *q, int vol, const scp_vstat *v, uint64_t buf) {
    struct stat st;
    fill_stat(q->s, vol, v, &st);
    return write_mem((pid_t)q->n->pid, buf, &st, sizeof st);
}

static int put_statx(struct req *q, int vol, const scp_vstat *v, uint64_t buf) {
    struct stat st;
    fill_stat(q->s, vol, v, &st);
    struct statx x;
    memset(&x, 0, sizeof x);
    x.stx_mask = STATX_BASIC_STATS;
    x.stx_blksize = (uint32_t)st.st_blksize;
    x.stx_nlink = (uint32_t)st.st_nlink;
    x.stx_uid = st.st_uid;
    x.stx_gid = st.st_gid;
    x.stx_mode = (uint16_t)st.st_mode;
    x.stx_ino = st.st_ino;
    x.stx_size = (uint64_t)st.st_size;
    x.stx_blocks = (uint64_t)st.st_blocks;
    x.stx_atime.tv_sec = x.stx_mtime.tv_sec = x.stx_ctime.tv_sec = st.st_mtim.tv_sec;
    x.stx_atime.tv_nsec = x.stx_mtime.tv_nsec = x.stx_ctime.tv_nsec = (uint32_t)st.st_mtim.tv_nsec;
    x.stx_dev_major = major(st.st_dev);
    x.stx_dev_minor = minor(st.st_dev);
    return write_mem((pid_t)q->n->pid, buf, &x, sizeof x);
}

static int serve_stat(struct req *q, const struct rpath *rp, uint64_t buf, int x) {
    scp_vstat v;
    int rc = vstat(q, rp, &v);
    if (rc) return rc;
    return x ? put_statx(q, rp->vol, &v, buf) : put_stat(q, rp->vol, &v, buf);
}

/* fstat of a served descriptor: the file's identity, owner and mode from the volume, its
 * size and time from the memfd (what the program wrote so far). 1: not ours (the kernel). */
static int serve_fstat(struct req *q, int fd, uint64_t buf, int x) {
    struct sup *s = q->s;
    pid_t pid = (pid_t)q->n->pid;
    char link[64], t[64];
    struct stat ms;
    snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, fd);
    long nr = memfd_entry(s, pid, fd);
    const struct entry *en = NULL;
    if (nr >= 0) {
        en = &s->e[nr];
    } else if (s->views >= 0 && stat(link, &ms) == 0 && ms.st_dev == s->view_dev) {
        ssize_t l = readlink(link, t, sizeof t - 1);
        unsigned long vn;
        if (l > 0 && (t[l] = 0, sscanf(t, "/v%lu", &vn) == 1) && vn < s->nvw) en = &s->vw[vn];
    }
    if (!en || !en->path) return 1;
    struct rpath rp = {.vol = en->vol};
    snprintf(rp.rel, sizeof rp.rel, "%s", en->path);
    scp_vstat v;
    if (vstat(q, &rp, &v)) return 1;
    if (nr >= 0) {
        if (stat(link, &ms)) return 1;
        v.size = (uint64_t)ms.st_size;
        v.mtime_ns = (int64_t)ms.st_mtim.tv_sec * 1000000000 + ms.st_mtim.tv_nsec;
    }
    return x ? put_statx(q, en->vol, &v, buf) : put_stat(q, en->vol, &v, buf);
}

static int inject(struct req *q, int fd, int cloexec) {
    struct seccomp_notif_addfd a = {.id = q->n->id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = (uint32_t)fd,
                                    .newfd = 0, .newfd_flags = cloexec ? O_CLOEXEC : 0};
    int r = ioctl(q->s->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
    if (r >= 0 || errno == ENOENT) { /* sent, or the target is gone */
        q->answered = 1;
        return 0;
    }
    return -errno;
}

struct view_fill {
    int dfd;
    int rc;
};

static int view_entry(void *ctx, const char *name, const scp_vstat *st) {
    struct view_fill *vf = ctx;
    int r = st->type == SCP_VTYPE_DIR ? mkdirat(vf->dfd, name, 0755)
                                      : mknodat(vf->dfd, name, S_IFREG | 0644, 0);
    if (r && errno != EEXIST) vf->rc = -errno;
    return 0;
}

static int open_view(struct req *q, const struct rpath *rp, int flags) {
    struct sup *s = q->s;
    if (s->views < 0) return -EOPNOTSUPP;
    char name[32];
    snprintf(name, sizeof name, "v%zu", s->nvw);
    if (mkdirat(s->views, name, 0755)) return -errno;
    int d = openat(s->views, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) return -errno;
    struct view_fill vf = {d, 0};
    scp_err e;
    int rc = 0;
    if (scp_volume_readdir(s->vol[rp->vol].v, rp->rel, view_entry, &vf, &e)) rc = verr(&e);
    else if (vf.rc) rc = vf.rc;
    else if (add_entry(&s->vw, &s->nvw, &s->capvw, rp->vol, rp->rel, 0) < 0) rc = -ENOMEM;
    if (rc == 0) {
        int ro = openat(s->views, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* a fresh cursor */
        rc = ro < 0 ? -errno : inject(q, ro, flags & O_CLOEXEC);
        if (ro >= 0) close(ro);
    }
    close(d);
    return rc;
}

static int copy_in(scp_vfile *f, int m, uint64_t size) {
    static uint8_t buf[1 << 16];
    scp_err e;
    for (uint64_t off = 0; off < size;) {
        ssize_t k = scp_vfile_pread(f, buf, sizeof buf, off, &e);
        if (k <= 0) return k < 0 ? verr(&e) : -EIO;
        if (scp_pwrite_full(m, buf, (size_t)k, off)) return -errno;
        off += (uint64_t)k;
    }
    return 0;
}

/* An open of a file whose memfd a writer holds: a new description of that memfd with the
 * program's access mode (O_TRUNC empties it for all, as the kernel's truncate; the volume
 * gets it at the next commit, like any write). */
static int join_desc(struct entry *en, int acc, int flags) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", en->fd);
    int fd = open(link, acc | (flags & O_APPEND) | O_CLOEXEC);
    if (fd < 0) return -errno;
    if ((flags & O_TRUNC) && acc != O_RDONLY && ftruncate(fd, 0)) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    en->writable |= acc != O_RDONLY;
    return fd;
}
static int join_shared(struct req *q, struct entry *en, int acc, int flags) {
    int fd = join_desc(en, acc, flags);
    if (fd < 0) return fd;
    int rc = inject(q, fd, flags & O_CLOEXEC);
    close(fd);
    return rc;
}

/* The plaintext of f (closed here) in a new memfd, listed as entry N of (vol, rel) under the
 * name scp-static-N (memfd_entry) and shared while writable, and the program's description
 * of it: its access mode (a write on a read-only descriptor fails with EBADF, as the kernel's
 * would) and O_APPEND; nobody can add seals. creator: the request that created the file,
 * whose caller then owns it, or NULL. Returns the description (close-on-exec) or -errno. */
static int load_entry(struct sup *s, int vol, const char *rel, scp_vfile *f, int flags, struct req *creator) {
    int acc = flags & O_ACCMODE, rc = 0, fd = -1;
    scp_err e;
    char name[48];
    snprintf(name, sizeof name, "scp-static-%zu", s->ne);
    int m = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    uint64_t size = scp_vfile_size(f);
    if (m < 0) rc = -errno;
    else if (size > s->max_file) rc = -EFBIG;
    else rc = copy_in(f, m, size);
    if (scp_vfile_close(f, &e) && rc == 0) rc = -EIO;
    if (rc == 0 && creator) rc = own_new(creator, s->vol[vol].v, rel);
    if (rc == 0 && fcntl(m, F_ADD_SEALS, F_SEAL_SEAL)) rc = -errno;
    if (rc == 0) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", m);
        fd = open(link, acc | (flags & O_APPEND) | O_CLOEXEC);
        if (fd < 0) rc = -errno;
    }
    int nr = rc == 0 ? add_entry(&s->e, &s->ne, &s->cap, vol, rel, acc != O_RDONLY) : -1;
    if (rc == 0 && nr < 0) rc = -ENOMEM;
    if (rc == 0 && acc != O_RDONLY) share_entry(s, (size_t)nr, m); /* a reader alone needs no sharing */
    if (m >= 0) close(m);
    if (rc && fd >= 0) close(fd);
    return rc ? rc : fd;
}

static int serve_open(struct req *q, const struct rpath *rp, int flags, mode_t mode) {
    struct sup *s = q->s;
    scp_volume *vol = s->vol[rp->vol].v;
    int acc = flags & O_ACCMODE;
    scp_vstat v;
    scp_err e;
    if (flags & (O_PATH | (O_TMPFILE & ~O_DIRECTORY))) return -EOPNOTSUPP;
    if (acc == O_ACCMODE) return -EINVAL;
    int rc = req_cred(q);
    if (rc) return rc;
    int exists = scp_volume_stat(vol, rp->rel, &v, &e) == 0;
    if (!exists && e.code != SCP_E_NOENT) return verr(&e);
    if (exists) scp_perm_owner(&q->cred, &v);
    if (exists && (flags & O_CREAT) && (flags & O_EXCL)) return -EEXIST;
    if (exists && v.type == SCP_VTYPE_DIR) {
        if (acc != O_RDONLY || (flags & O_TRUNC)) return -EISDIR;
        if ((rc = (int)scp_perm_open(&q->cred, &v, flags))) return rc;
        return open_view(q, rp, flags);
    }
    if (flags & O_DIRECTORY) return exists ? -ENOTDIR : -ENOENT;
    /* the caller's rights (perm.c, as the shield checks them): the file's mode bits, or to
     * create it, write and search on its directory */
    if (exists) rc = (int)scp_perm_open(&q->cred, &v, flags);
    else if (flags & O_CREAT) rc = (int)scp_perm_parent(&q->cred, vol, rp->rel, 3);
    if (rc) return rc;
    if (exists && v.size > s->max_file) return -EFBIG;
    if (acc == O_RDONLY && (flags & O_TRUNC) && exists) flags &= ~O_TRUNC; /* Linux: unspecified; keep */
    long shared = exists ? shared_entry(s, rp->vol, rp->rel) : -1;
    if (shared >= 0) return join_shared(q, &s->e[shared], acc, flags);
    /* the copy starts as the file's content, which the supervisor reads even when the program
     * opens it write-only (O_APPEND, or no O_TRUNC); the program's descriptor gets acc below */
    int vflags = (acc == O_RDONLY ? O_RDONLY : O_RDWR) | (flags & (O_CREAT | O_EXCL | O_TRUNC));
    if (!exists && (flags & O_CREAT) && (rc = req_umask(q))) return rc;
    scp_vfile *f = scp_vfile_open(vol, rp->rel, vflags, (uint32_t)(mode & ~q->umask & 07777), &e);
    if (!f) return verr(&e);
    int fd = load_entry(s, rp->vol, rp->rel, f, flags, !exists && (flags & O_CREAT) ? q : NULL);
    if (fd < 0) return fd;
    rc = inject(q, fd, flags & O_CLOEXEC);
    close(fd);
    return rc;
}

/* A file the exec'ing image hands on (scp_notify_file), served as if the image had opened
 * it: joined to its memfd when one is shared, else loaded into one. Returns the description to
 * put at its number (its cursor at the image's), or -errno. No rights to check: the image
 * holds the file open with these. */
static int hand_on(struct sup *s, const struct scp_notify_file *hf) {
    int acc = hf->flags & O_ACCMODE, vol = (int)hf->vol, fd;
    if (hf->vol >= s->nvol || acc == O_ACCMODE) return -EINVAL;
    long nr = shared_entry(s, vol, hf->path);
    if (nr >= 0) {
        fd = join_desc(&s->e[nr], acc, hf->flags);
    } else {
        scp_err e;
        scp_vfile *f = scp_vfile_open(s->vol[vol].v, hf->path, acc == O_RDONLY ? O_RDONLY : O_RDWR, 0, &e);
        if (!f) return verr(&e);
        fd = load_entry(s, vol, hf->path, f, hf->flags, NULL);
        nr = (long)s->ne - 1;
    }
    if (fd < 0) return fd;
    if (hf->offset > 0 && lseek(fd, hf->offset, SEEK_SET) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    if (hf->shared_off && s->nhd < SCP_SHIELD_MAX_INHERIT) {
        int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (own >= 0) s->hd[s->nhd++] = (struct handed){own, (size_t)nr, hf->shared_off};
    }
    return fd;
}

static int serve_rename(struct req *q, int d1, uint64_t p1, int d2, uint64_t p2, unsigned flags) {
    struct sup *s = q->s;
    struct rpath a, b;
    int rc = resolve(q, d1, p1, &a);
    if (rc < 0) return rc;
    int rc2 = resolve(q, d2, p2, &b);
    if (rc2 < 0) return rc2;
    if (rc == 1 || rc2 == 1 || (a.vol < 0 && b.vol < 0)) return 1;
    if (a.vol != b.vol) return -EXDEV;
    if (flags & ~(unsigned)RENAME_NOREPLACE) return -EINVAL;
    scp_volume *vol = s->vol[a.vol].v;
    if ((rc = req_cred(q)) || (rc = (int)scp_perm_search(&q->cred, vol, a.rel)) ||
        (rc = (int)scp_perm_search(&q->cred, vol, b.rel)) || (rc = (int)scp_perm_parent(&q->cred, vol, a.rel, 3)) ||
        (rc = (int)scp_perm_parent(&q->cred, vol, b.rel, 3)) || (rc = (int)scp_perm_sticky(&q->cred, vol, a.rel)) ||
        (rc = (int)scp_perm_sticky(&q->cred, vol, b.rel)))
        return rc;
    scp_vstat v;
    scp_err e;
    if ((flags & RENAME_NOREPLACE) && scp_volume_stat(s->vol[b.vol].v, b.rel, &v, &e) == 0) return -EEXIST;
    /* what the program wrote to the source and not yet committed goes with it */
    rc = commit_all(s, (pid_t)q->n->pid, a.vol, a.rel);
    if (rc) return rc;
    if (scp_volume_rename(s->vol[a.vol].v, a.rel, b.rel, &e)) return verr(&e);
    entries_moved(s->e, s->ne, b.vol, b.rel, NULL);
    entries_moved(s->e, s->ne, a.vol, a.rel, b.rel);
    entries_moved(s->vw, s->nvw, b.vol, b.rel, NULL);
    entries_moved(s->vw, s->nvw, a.vol, a.rel, b.rel);
    return 0;
}

/* link/linkat within one volume (names only: the served copies of open files are written
 * back at their close, as for any two opens of a file). AT_EMPTY_PATH (a descriptor, no path)
 * goes to the kernel: a served file is a memfd there, which no volume holds, so it fails. */
static int serve_link(struct req *q, int d1, uint64_t p1, int d2, uint64_t p2, long flags) {
    struct sup *s = q->s;
    struct rpath a, b;
    if (flags & AT_EMPTY_PATH) return 1;
    if (flags & ~(long)AT_SYMLINK_FOLLOW) return -EINVAL;
    int rc = resolve(q, d1, p1, &a);
    if (rc < 0) return rc;
    int rc2 = resolve(q, d2, p2, &b);
    if (rc2 < 0) return rc2;
    if (rc == 1 || rc2 == 1 || (a.vol < 0 && b.vol < 0)) return 1;
    if (a.vol != b.vol) return -EXDEV;
    /* link(2)'s checks: search on both paths, the new name's directory, protected_hardlinks */
    scp_vstat v;
    if ((rc = req_cred(q)) || (rc = (int)scp_perm_search(&q->cred, s->vol[a.vol].v, a.rel)) ||
        (rc = vstat(q, &a, &v)) || (rc = (int)scp_perm_search(&q->cred, s->vol[a.vol].v, b.rel)) ||
        (rc = (int)scp_perm_parent(&q->cred, s->vol[a.vol].v, b.rel, 3)))
        return rc;
    if (v.type == SCP_VTYPE_DIR) return -EPERM;
    if ((rc = (int)scp_perm_link(&q->cred, &v))) return rc;
    rc = commit_all(s, (pid_t)q->n->pid, a.vol, a.rel); /* the new name shows what was written */
    if (rc) return rc;
    scp_err e;
    return scp_volume_link(s->vol[a.vol].v, a.rel, b.rel, &e) ? verr(&e) : 0;
}

static int serve_utimens(struct req *q, const struct rpath *rp, uint64_t times) {
    struct timespec ts[2];
    int64_t mt;
    if (times && read_mem((pid_t)q->n->pid, times, ts, sizeof ts)) return -EFAULT;
    /* explicit times only by the owner (EPERM), "now" also with write permission (EACCES) */
    int explicit_times = times && !((ts[0].tv_nsec == UTIME_NOW || ts[0].tv_nsec == UTIME_OMIT) &&
                                    (ts[1].tv_nsec == UTIME_NOW || ts[1].tv_nsec == UTIME_OMIT));
    if (times && ts[0].tv_nsec == UTIME_OMIT && ts[1].tv_nsec == UTIME_OMIT) return 0;
    scp_vstat v;
    int rc = vstat(q, rp, &v);
    if (rc || (rc = req_cred(q)) || (rc = (int)scp_perm_utimes(&q->cred, &v, explicit_times))) return rc;
    if (times && ts[1].tv_nsec == UTIME_OMIT) return 0;
    if (!times || ts[1].tv_nsec == UTIME_NOW) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        mt = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    } else {
        if (ts[1].tv_nsec < 0 || ts[1].tv_nsec >= 1000000000) return -EINVAL;
        mt = (int64_t)ts[1].tv_sec * 1000000000 + ts[1].tv_nsec;
    }
    scp_err e;
    return scp_volume_setattr(q->s->vol[rp->vol].v, rp->rel, -1, -1, -1, mt, &e) ? verr(&e) : 0;
}

static int serve_truncate(struct req *q, const struct rpath *rp, int64_t len) {
    if (len < 0) return -EINVAL;
    if ((uint64_t)len > q->s->max_file) return -EFBIG;
    scp_vstat v;
    int rc = vstat(q, rp, &v);
    if (rc) return rc;
    /* the kernel's order: the type, then write permission */
    if (v.type != SCP_VTYPE_FILE) return v.type == SCP_VTYPE_DIR ? -EISDIR : -EINVAL;
    if ((rc = req_cred(q)) || (rc = (int)scp_perm_access(&q->cred, &v, 2))) return rc;
    scp_err e;
    scp_vfile *f = scp_vfile_open(q->s->vol[rp->vol].v, rp->rel, O_RDWR, 0, &e);
    if (!f) return verr(&e);
    rc = scp_vfile_truncate(f, (uint64_t)len, &e) ? verr(&e) : 0;
    if (scp_vfile_close(f, &e) && rc == 0) rc = -EIO;
    return rc;
}

/* chmod/chown by the kernel's rules for the caller (perm.c), which may adjust the mode (a
 * chown clears set-id bits); an entry that recorded no owner keeps the one it was shown with. */
static int setattr_checked(struct req *q, const struct rpath *rp, int64_t mode, int64_t uid, int64_t gid) {
    scp_vstat v;
    scp_err e;
    int rc = vstat(q, rp, &v);
    if (rc || (rc = req_cred(q)) || (rc = (int)scp_perm_setattr(&q->cred, &v, &mode, uid, gid))) return rc;
    if (!rp->rel[0]) return 0; /* the volume root holds no attributes */
    if (v.owner_unset) {
        if (uid < 0) uid = v.uid;
        if (gid < 0) gid = v.gid;
    }
    return scp_volume_setattr(q->s->vol[rp->vol].v, rp->rel, mode, uid, gid, INT64_MIN, &e) ? verr(&e) : 0;
}

/* Make the directory at rp (in a volume) the process's working directory: a view, unless it
 * is the kernel's cwd itself (the mount point). The kernel's checks: a directory, search
 * permission on the path and on it. */
static int cwd_enter(struct req *q, const struct rpath *rp) {
    scp_vstat v;
    char kc[PATH_MAX];
    int rc;
    if ((rc = req_cred(q)) || (rc = (int)scp_perm_search(&q->cred, q->s->vol[rp->vol].v, rp->rel)) ||
        (rc = vstat(q, rp, &v)))
        return rc;
    if (v.type != SCP_VTYPE_DIR) return -ENOTDIR;
    if ((rc = (int)scp_perm_access(&q->cred, &v, 1))) return rc;
    if (rp->kcwd[0]) snprintf(kc, sizeof kc, "%s", rp->kcwd);
    else if ((rc = kernel_cwd((pid_t)q->n->pid, kc, sizeof kc))) return rc;
    return cwd_set(q->s, (pid_t)q->n->pid, strcmp(rp->abs, kc) ? rp->abs : NULL, kc);
}

static int serve_chdir(struct req *q, uint64_t p) {
    struct rpath rp;
    int rc = resolve(q, AT_FDCWD, p, &rp);
    if (rc < 0) return rc;
    if (rc == 1 || rp.vol < 0) { /* out of the volumes: the kernel's chdir, which ends a view */
        if (q->s->ncw) cwd_set(q->s, (pid_t)q->n->pid, NULL, NULL);
        return 1;
    }
    return cwd_enter(q, &rp);
}

static int serve_fchdir(struct req *q, int fd) {
    struct sup *s = q->s;
    struct rpath rp;
    char link[64], t[PATH_MAX];
    struct stat st;
    snprintf(link, sizeof link, "/proc/%d/fd/%d", (int)q->n->pid, fd);
    if (s->views < 0 || stat(link, &st) || st.st_dev != s->view_dev) { /* the kernel's */
        if (s->ncw) cwd_set(s, (pid_t)q->n->pid, NULL, NULL);
        return 1;
    }
    int rc = base_dir(s, (pid_t)q->n->pid, fd, t, sizeof t, NULL);
    if (rc) return rc;
    if (scp_shield_path_normalize(t, rp.abs, sizeof rp.abs)) return -ENAMETOOLONG;
    classify(s, rp.abs, &rp);
    rp.kcwd[0] = 0;
    if (rp.vol < 0) return -ENOENT;
    if (!still_valid(q)) return -ENOENT;
    return cwd_enter(q, &rp);
}

/* getcwd of a process with a view: the view. 1: the kernel's. Else the length or -errno. */
static long serve_getcwd(struct req *q, uint64_t buf, uint64_t size) {
    char kc[PATH_MAX];
    if (!q->s->ncw || kernel_cwd((pid_t)q->n->pid, kc, sizeof kc)) return 1;
    const char *v = cwd_view(q->s, (pid_t)q->n->pid, kc);
    if (!v) return 1;
    size_t len = strlen(v) + 1;
    if (size < len) return -ERANGE;
    if (!still_valid(q)) return -ENOENT;
    return write_mem((pid_t)q->n->pid, buf, v, len) ? -EFAULT : (long)len;
}

/* A call that names one path: read and resolve it, answer the kernel's way outside. */
static int path_call(struct req *q, long nr, const uint64_t *a) {
    struct sup *s = q->s;
    struct rpath rp;
    int dirfd = AT_FDCWD, rc;
    uint64_t p;
    switch (nr) {
    case SYS_openat: case SYS_openat2: case SYS_newfstatat: case SYS_statx: case SYS_faccessat:
    case SYS_faccessat2: case SYS_mkdirat: case SYS_unlinkat: case SYS_fchmodat: case SYS_fchownat:
    case SYS_utimensat: case SYS_readlinkat: case SYS_execveat:
        dirfd = (int)a[0];
        p = a[1];
        break;
    default:
        p = a[0];
    }
    /* calls on the descriptor itself (fstat as newfstatat(fd, "", AT_EMPTY_PATH), futimens,
     * fexecve) are the kernel's: a memfd or a view serves them */
    if ((nr == SYS_utimensat && !p) || (nr == SYS_newfstatat && (a[3] & AT_EMPTY_PATH)) ||
        (nr == SYS_statx && (a[2] & AT_EMPTY_PATH)) || (nr == SYS_execveat && (a[4] & AT_EMPTY_PATH))) {
        char c = 1;
        if (!p || (read_mem((pid_t)q->n->pid, p, &c, 1) == 0 && c == 0)) {
            if (nr == SYS_execveat) commit_all(s, (pid_t)q->n->pid, -1, NULL);
            if (nr == SYS_newfstatat && dirfd >= 0) return serve_fstat(q, dirfd, a[2], 0);
            if (nr == SYS_statx && dirfd >= 0) return serve_fstat(q, dirfd, a[4], 1);
            return 1;
        }
    }
    rc = resolve(q, dirfd, p, &rp);
    if (rc) return rc;
    if (rp.vol < 0) {
        if (nr == SYS_execve || nr == SYS_execveat) commit_all(s, (pid_t)q->n->pid, -1, NULL);
        return 1;
    }
    scp_volume *vol = s->vol[rp.vol].v;
    scp_vstat v;
    scp_err e;
    /* search permission on each directory of the path, with the caller's ids (perm.c) */
    if ((rc = req_cred(q)) || (rc = (int)scp_perm_search(&q->cred, vol, rp.rel))) return rc;
    switch (nr) {
    case SYS_open: return serve_open(q, &rp, (int)a[1], (mode_t)a[2]);
    case SYS_creat: return serve_open(q, &rp, O_CREAT | O_WRONLY | O_TRUNC, (mode_t)a[1]);
    case SYS_openat: return serve_open(q, &rp, (int)a[2], (mode_t)a[3]);
    case SYS_openat2: {
        struct { uint64_t flags, mode, resolve; } how = {0, 0, 0};
        if (a[3] < sizeof how) return -EINVAL;
        if (read_mem((pid_t)q->n->pid, a[2], &how, sizeof how)) return -EFAULT;
        if (how.resolve) return -EOPNOTSUPP;
        return serve_open(q, &rp, (int)how.flags, (mode_t)how.mode);
    }
    case SYS_stat: case SYS_lstat: return serve_stat(q, &rp, a[1], 0);
    case SYS_newfstatat: return serve_stat(q, &rp, a[2], 0);
    case SYS_statx: return serve_stat(q, &rp, a[4], 1);
    case SYS_getxattr: case SYS_lgetxattr: case SYS_listxattr: case SYS_llistxattr:
        rc = vstat(q, &rp, &v); /* volumes hold no extended attributes */
        return rc ? rc : nr == SYS_listxattr || nr == SYS_llistxattr ? 0 : -ENODATA;
    case SYS_readlink: case SYS_readlinkat:
        rc = vstat(q, &rp, &v);
        return rc ? rc : -EINVAL;
    case SYS_access: case SYS_faccessat: case SYS_faccessat2: {
        int want = (int)a[nr == SYS_access ? 1 : 2] & 7;
        if ((rc = vstat(q, &rp, &v))) return rc;
        /* the real ids, or the effective ones for faccessat2 with AT_EACCESS */
        if (nr == SYS_faccessat2 && (a[3] & AT_EACCESS)) return (int)scp_perm_access(&q->cred, &v, want);
        return (int)scp_perm_access_real(&q->cred, &v, want);
    }
    case SYS_mkdir: case SYS_mkdirat:
        if ((rc = (int)scp_perm_parent(&q->cred, vol, rp.rel, 3)) || (rc = req_umask(q))) return rc;
        if (scp_volume_mkdir(vol, rp.rel, (uint32_t)(a[nr == SYS_mkdir ? 1 : 2] & ~q->umask & 07777), &e)) return verr(&e);
        return own_new(q, vol, rp.rel);
    case SYS_rmdir:
        if ((rc = (int)scp_perm_parent(&q->cred, vol, rp.rel, 3)) || (rc = (int)scp_perm_sticky(&q->cred, vol, rp.rel)))
            return rc;
        return scp_volume_rmdir(vol, rp.rel, &e) ? verr(&e) : (entries_moved(s->vw, s->nvw, rp.vol, rp.rel, NULL), 0);
    case SYS_unlink: case SYS_unlinkat:
        if ((rc = (int)scp_perm_parent(&q->cred, vol, rp.rel, 3)) || (rc = (int)scp_perm_sticky(&q->cred, vol, rp.rel)))
            return rc;
        if (nr == SYS_unlinkat && (a[2] & AT_REMOVEDIR))
            return scp_volume_rmdir(vol, rp.rel, &e) ? verr(&e) : (entries_moved(s->vw, s->nvw, rp.vol, rp.rel, NULL), 0);
        if (scp_volume_unlink(vol, rp.rel, &e)) return verr(&e);
        entries_moved(s->e, s->ne, rp.vol, rp.rel, NULL);
        return 0;
    case SYS_chmod: case SYS_fchmodat:
        return setattr_checked(q, &rp, (int64_t)(a[nr == SYS_chmod ? 1 : 2] & 07777), -1, -1);
    case SYS_chown: case SYS_lchown: case SYS_fchownat: {
        int k = nr == SYS_fchownat ? 2 : 1;
        int64_t uid = (int32_t)a[k] == -1 ? -1 : (int64_t)(uint32_t)a[k];
        int64_t gid = (int32_t)a[k + 1] == -1 ? -1 : (int64_t)(uint32_t)a[k + 1];
        return setattr_checked(q, &rp, -1, uid, gid);
    }
    case SYS_utimensat: return serve_utimens(q, &rp, a[2]);
    case SYS_truncate: return serve_truncate(q, &rp, (int64_t)a[1]);
    case SYS_execve: case SYS_execveat: return -EACCES; /* nothing on a volume is executed */
    default: return -ENOSYS;
    }
}

static void handle(struct req *q) {
    const struct seccomp_data *d = &q->n->data;
    const uint64_t *a = (const uint64_t *)d->args;
    struct sup *s = q->s;
    pid_t pid = (pid_t)q->n->pid;
    int rc;
    if (s->nlive) sweep(s);
    switch (d->nr) {
    case SYS_setuid: case SYS_setgid: case SYS_setreuid: case SYS_setregid: case SYS_setresuid:
    case SYS_setresgid: case SYS_setfsuid: case SYS_setfsgid: case SYS_setgroups:
        /* before the change: this thread makes no other call until it is done */
        cache_drop(s, pid);
        pass(q);
        return;
    case SYS_fsync: case SYS_fdatasync: case SYS_close: {
        long nr = memfd_entry(s, pid, (int)a[0]);
        if (nr < 0) { pass(q); return; }
        rc = commit_fd(s, pid, (int)a[0], nr);
        if (rc) answer(q, -1, rc == -EFBIG ? -EFBIG : -EIO);
        else if (d->nr == SYS_close) pass(q);
        else answer(q, 0, 0);
        return;
    }
    case SYS_dup2: case SYS_dup3: {
        long nr = a[0] == a[1] ? -1 : memfd_entry(s, pid, (int)a[1]);
        rc = nr < 0 ? 0 : commit_fd(s, pid, (int)a[1], nr);
        if (rc) answer(q, -1, -EIO);
        else pass(q);
        return;
    }
    case SYS_close_range: {
        unsigned lo = (unsigned)a[0], hi = (unsigned)a[1];
        /* CLOSE_RANGE_CLOEXEC closes nothing now: exec commits them */
        rc = lo <= hi && !(a[2] & CLOSE_RANGE_CLOEXEC) ? commit_range(s, pid, lo, hi) : 0;
        if (rc) answer(q, -1, -EIO);
        else pass(q);
        return;
    }
    case SYS_exit: /* the last thread's exit ends the process without exit_group */
    case SYS_exit_group: {
        if (d->nr == SYS_exit_group && s->ncw) cwd_set(s, pid, NULL, NULL);
        int r = commit_all(s, pid, -1, NULL);
        if (r) scp_log(SCP_LOG_ERROR, "scpctl run", "a static program's file could not be stored at its exit (%s)", strerror(-r));
        pass(q);
        return;
    }
    case SYS_getcwd: {
        long r = serve_getcwd(q, a[0], a[1]);
        if (r == 1) pass(q);
        else answer(q, r < 0 ? -1 : r, r < 0 ? (int)r : 0);
        return;
    }
    case SYS_chdir: rc = serve_chdir(q, a[0]); break;
    case SYS_fchdir: rc = serve_fchdir(q, (int)a[0]); break;
    case SYS_fstat: rc = serve_fstat(q, (int)a[0], a[1], 0); break;
    case SYS_rename: rc = serve_rename(q, AT_FDCWD, a[0], AT_FDCWD, a[1], 0); break;
    case SYS_renameat: rc = serve_rename(q, (int)a[0], a[1], (int)a[2], a[3], 0); break;
    case SYS_renameat2: rc = serve_rename(q, (int)a[0], a[1], (int)a[2], a[3], (unsigned)a[4]); break;
    case SYS_link: rc = serve_link(q, AT_FDCWD, a[0], AT_FDCWD, a[1], 0); break;
    case SYS_linkat: rc = serve_link(q, (int)a[0], a[1], (int)a[2], a[3], (long)a[4]); break;
    default: rc = path_call(q, d->nr, a);
    }
    if (q->answered) return;
    if (rc == 1) pass(q);
    else answer(q, rc ? -1 : 0, rc);
}

static int view_mount(dev_t *dev) {
    int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC), mnt = -1;
    if (fs >= 0 && !syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0755", 0) &&
        !syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0))
        mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    if (fs >= 0) close(fs);
    struct stat st;
    if (mnt >= 0 && fstat(mnt, &st) == 0) *dev = st.st_dev;
    return mnt;
}

static int send_fd(int sock, int fd) {
    char c = 0;
    struct iovec io = {&c, 1};
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
    memset(&u, 0, sizeof u);
    struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int recv_fd(int sock);

/* The directories' views live in a tmpfs of the supervisor's own, mounted nowhere. Making one
 * takes CAP_SYS_ADMIN over the mount namespace. A supervisor that scpctl run starts has it (as
 * root, or in the user namespace scpctl makes for an ordinary user: scp_run_isolate); one that
 * a shielded program starts for an image it execs has not (the exec dropped the capabilities),
 * and every open of a directory in a volume was then EOPNOTSUPP (Go's os.ReadDir, `go build`
 * below a shielded shell run by an ordinary user). So a helper makes it in a user namespace of
 * its own (mapping its uid and gid to themselves) and a mount namespace that one owns, and
 * hands it over: the supervisor itself stays in the program's user namespace, where it may read
 * the program's memory (process_vm_readv between namespaces needs CAP_SYS_PTRACE). */
static int view_fs(dev_t *dev) {
    int mnt = view_mount(dev);
    if (mnt >= 0 || errno != EPERM) return mnt;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp)) return -1;
    /* (a raw clone, as scp_notify_spawn's: no fork handlers of a shielded parent's run) */
    pid_t c = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (c == 0) {
        uid_t u = geteuid();
        gid_t g = getegid();
        dev_t d;
        int m = -1;
        scp_err e;
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0 && scp_userns_map_self(u, g, &e) == 0) m = view_mount(&d);
        syscall(SYS_exit_group, m >= 0 && send_fd(sp[1], m) == 0 ? 0 : 1);
    }
    close(sp[1]);
    mnt = c > 0 ? recv_fd(sp[0]) : -1;
    close(sp[0]);
    if (c > 0) waitpid(c, NULL, 0);
    struct stat st;
    if (mnt >= 0 && fstat(mnt, &st) == 0) *dev = st.st_dev;
    return mnt;
}

static int recv_fd(int sock) {
    char c;
    struct iovec io = {&c, 1};
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
    if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1) return -1;
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    if (!h || h->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(h), sizeof fd);
    return fd;
}

static void serve(struct sup *s) {
    struct seccomp_notif n;
    struct seccomp_notif_resp r;
    for (;;) {
        struct pollfd p = {s->listener, POLLIN, 0};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (!(p.revents & POLLIN)) break; /* POLLHUP: no process is left under the filter */
        memset(&n, 0, sizeof n);
        if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_RECV, &n)) {
            if (errno == EINTR || errno == ENOENT) continue;
            break;
        }
        memset(&r, 0, sizeof r);
        struct req q = {.s = s, .n = &n, .r = &r, .pidfd = -1};
        /* an exec may give a thread another's id (the leader's) */
        if (n.data.nr == SYS_execve || n.data.nr == SYS_execveat) cache_drop(s, 0);
        handle(&q);
        if (q.pidfd >= 0) close(q.pidfd); /* not confirmed */
        if (!q.answered) ioctl(s->listener, SECCOMP_IOCTL_NOTIF_SEND, &r); /* ENOENT: gone */
    }
}

static void supervise(int sock, const struct scp_notify_volume *v, unsigned n, const struct scp_notify_start *start,
                      pid_t pid) {
    const char *cwd = start->cwd;
    static struct sup s;
    memset(&s, 0, sizeof s);
    s.views = -1;
    const char *mb = getenv("SCP_STATIC_MAX_MB");
    int64_t max_mb = SCP_NOTIFY_DEFAULT_MAX_MB;
    if (mb && scp_parse_i64(mb, 1, 1 << 20, &max_mb) < 0) {
        scp_log(SCP_LOG_WARN, "scpctl run", "SCP_STATIC_MAX_MB='%s' is not a size in MiB from 1 to 1048576: %u MiB",
                mb, SCP_NOTIFY_DEFAULT_MAX_MB);
        max_mb = SCP_NOTIFY_DEFAULT_MAX_MB;
    }
    s.max_file = (uint64_t)max_mb << 20;
    for (unsigned i = 0; i < n; i++) {
        char p[64];
        scp_err e;
        snprintf(p, sizeof p, "/proc/self/fd/%d", v[i].dirfd);
        snprintf(s.vol[i].mount, sizeof s.vol[i].mount, "%s", v[i].mount);
        s.vol[i].mlen = strlen(s.vol[i].mount);
        s.vol[i].v = scp_volume_open(p, v[i].key, NULL, &e);
        if (!s.vol[i].v) {
            scp_log(SCP_LOG_ERROR, "scpctl run", "static-image supervisor: %s", e.msg);
            syscall(SYS_exit_group, 1);
        }
        /* (struct scp_notify_start, family) */
        if (start->family && scp_volume_join_shared(s.vol[i].v, &e) < 0)
            scp_log(SCP_LOG_WARN, "scpctl run", "static-image supervisor: the volume at %s stays unshared: %s", v[i].mount, e.msg);
        /* the number the shield gives the same volume (init.c's volume_dev), so that the
         * static and the dynamic programs of one run see one device for it */
        struct stat st;
        unsigned taken[SCP_SHIELD_MAX_VOLUMES];
        for (unsigned j = 0; j < i; j++) taken[j] = minor(s.vol[j].dev);
        if (fstat(v[i].dirfd, &st) != 0) memset(&st, 0, sizeof st);
        s.vol[i].dev = makedev(SCP_SHIELD_DEV_MAJOR,
                               scp_shield_volume_minor((uint64_t)st.st_dev, (uint64_t)st.st_ino, taken, i));
        close(v[i].dirfd);
    }
    s.nvol = n;
    s.views = view_fs(&s.view_dev);
    struct rpath rp;
    if (cwd) classify(&s, cwd, &rp);
    if (cwd && rp.vol >= 0 && rp.rel[0]) /* the exec'ing process: its kernel cwd is the mount point */
        (void)cwd_set(&s, pid, cwd, s.vol[rp.vol].mount);
    /* a lease break (an open for writing while writer_left holds its lease) signals SIGIO */
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigaction(SIGIO, &ign, NULL);
    s.share = leases_work();
    s.euid = geteuid();
    s.egid = getegid();
    int self = (int)syscall(SYS_pidfd_open, getpid(), PIDFD_THREAD);
    s.pidfd_thread = self >= 0;
    if (self >= 0) close(self);
    /* the files handed on, in order: a description each, or a message without one */
    for (unsigned i = 0; i < start->nfiles; i++) {
        int d = hand_on(&s, &start->files[i]);
        if (d < 0)
            scp_log(SCP_LOG_WARN, "scpctl run", "'%s' cannot be handed to the static image (%s): its descriptor stays unusable",
                    start->files[i].path, strerror(-d));
        if ((d >= 0 ? send_fd(sock, d) : (int)write(sock, "x", 1)) < 0) syscall(SYS_exit_group, 1);
        if (d >= 0) close(d);
    }
    /* ready: only now may the caller make its calls wait for this process */
    if (write(sock, "r", 1) != 1) syscall(SYS_exit_group, 1);
    s.listener = recv_fd(sock);
    close(sock);
    if (s.listener < 0) syscall(SYS_exit_group, 0); /* the launch failed before exec */
    /* Each reported call is a hand-over: the program waits while this process answers. Synchronous
     * wake-ups run each side on the CPU the other leaves, instead of a wake-up on another CPU
     * and a migration (the kernel's commit measured 12 -> 3 us a round trip). Before Linux 6.6:
     * EINVAL, and the ordinary wake-ups. */
    (void)ioctl(s.listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
    serve(&s);
    for (unsigned i = 0; i < s.nvol; i++) {
        scp_err e;
        scp_volume_close(s.vol[i].v, &e);
    }
    /* not _exit: forked from a shielded process, whose exit would commit its files again */
    syscall(SYS_exit_group, 0);
}

int scp_notify_spawn(const struct scp_notify_volume *v, unsigned n, const struct scp_notify_start *start, scp_err *err) {
    int sp[2];
    unsigned nfiles = start->nfiles;
    int *fds = start->fds;
    for (unsigned i = 0; i < nfiles; i++) fds[i] = -1;
    pid_t self = (pid_t)syscall(SYS_getpid);
    if (n > SCP_SHIELD_MAX_VOLUMES) return scp_fail(err, SCP_E_INVAL, EINVAL, "too many volumes");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp))
        return scp_fail_errno(err, "cannot create the static-image supervisor's socket");
    /* raw clones, not fork(): no fork handlers run (this may be a vfork child sharing its
     * parent's memory, or inside the shield's SIGSYS handler). Their children use only
     * what they set up themselves; the caller must be single-threaded here (a lock another
     * thread held, malloc's, would stay held in them). */
    pid_t a = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (a < 0) {
        close(sp[0]);
        close(sp[1]);
        return scp_fail_errno(err, "cannot start the static-image supervisor");
    }
    if (a == 0) {
        close(sp[0]);
        pid_t b = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
        if (b == 0) {
            /* its own session: a terminal's ^C stops the program, which then commits at exit */
            setsid();
            int null = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null >= 0) {
                dup2(null, 0);
                dup2(null, 1);
                close(null);
            }
            supervise(sp[1], v, n, start, self);
        }
        syscall(SYS_exit_group, b < 0); /* not _exit: see supervise */
    }
    close(sp[1]);
    int st;
    char ready;
    int ok = waitpid(a, &st, 0) == a && WIFEXITED(st) && !WEXITSTATUS(st);
    for (unsigned i = 0; ok && i < nfiles; i++) fds[i] = recv_fd(sp[0]);
    if (!ok || read(sp[0], &ready, 1) != 1 || ready != 'r') {
        for (unsigned i = 0; i < nfiles; i++)
            if (fds[i] >= 0) close(fds[i]);
        for (unsigned i = 0; i < nfiles; i++) fds[i] = -1;
        close(sp[0]);
        return scp_fail(err, SCP_E_SYS, ECHILD, "cannot start the static-image supervisor (it could not open the volumes)");
    }
    return sp[0];
}

int scp_notify_attach(int sock, scp_err *err) {
    int l = filter_install();
    if (l < 0) {
        close(sock);
        return scp_fail_errno(err, "cannot install the static image's notification filter");
    }
    /* nothing this process calls before the supervisor has the listener may be notified */
    int k = send_fd(sock, l);
    int e = errno;
    /* close_range is not notified: a failed hand-over must not wait for a supervisor that
     * never got the listener (once it is closed, notified calls fail with ENOSYS) */
    syscall(SYS_close_range, (unsigned)l, (unsigned)l, 0);
    syscall(SYS_close_range, (unsigned)sock, (unsigned)sock, 0);
    if (k < 0) {
        errno = e;
        return scp_fail_errno(err, "cannot hand the notification listener to the supervisor");
    }
    return 0;
}
