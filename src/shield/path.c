/* shield/path.c - paths under protected mount points, and the path-based calls.
 *
 * sh_path_call(nr, args) (path_run) is the one place where a path-based call under a protected
 * mount point is carried out: the program's path copied in once, resolved against the mounts
 * and the volume's symbolic links, and served by the volume, or left to the kernel. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "shield/internal.h"
#include "shield/core.h"

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
        if (!sh_page_ok(q, 0)) return -EFAULT;
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
            if (!sh_cwd_view(base) && sh_gate(SYS_getcwd, (long)base, PATH_MAX, 0, 0, 0, 0) < 0) return 0;
        } else if (sh_is_prot(dirfd)) {
            long e;
            pfile *pf = sh_pf_get(dirfd, &e);
            if (!pf) return (int)e;
            if (pf->kind != PF_DIR) {
                sh_pf_put(pf);
                return -ENOTDIR;
            }
            int n = snprintf(base, PATH_MAX, "%s/%s", sh.vol[pf->vol].mount, pf->path);
            sh_pf_put(pf);
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
        pfile *pf = sh_pf_get(lfd, &e);
        if (!pf) return (int)e;
        /* a nameless file (O_TMPFILE) has no path to stand for it: only linkat may name its
         * link (it gives the file a name, sh_link_fd); a reopen or a stat through it is refused */
        int nameless = __atomic_load_n(&pf->nameless, __ATOMIC_ACQUIRE);
        int n = snprintf(joined, sizeof joined, "%s/%s%s", sh.vol[pf->vol].mount, pf->path, rest);
        sh_pf_put(pf);
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

/* ---- path-based calls -------------------------------------------------------------------- */

static long setattr_rel(int vol, const char *rel, int64_t mode, int64_t uid, int64_t gid, int64_t mt) {
    scp_err e;
    scp_vstat cv;
    long c = (mode >= 0 || uid >= 0 || gid >= 0) ? sh_path_vstat(vol, rel, &cv) : 0;
    if (c || (mode >= 0 || uid >= 0 || gid >= 0 ? (c = sh_cred_setattr(&cv, &mode, uid, gid)) : 0)) return c;
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
    if (times && sh_copy_in(tsb, times, sizeof tsb)) return -EFAULT;
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
    if ((r = sh_path_vstat(vol, rel, &cv)) || (r = sh_cred_utimes(&cv, explicit_times))) return r;
    if (mt == -1 || at == -1) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t n = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        if (mt == -1) mt = n;
        if (at == -1) at = n;
    }
    scp_err e;
    return scp_volume_setattr_times(sh.vol[vol].v, rel, -1, -1, -1, at, mt, &e) ? neg(&e) : 0;
}
int sh_proc_fd_link(const char *abs, long *fd, const char **rest) { return proc_fd_link(abs, fd, rest); }

int sh_follow_links(int *vol, char *rel, size_t relsz, int follow_last, char *abs, size_t abssz) {
    char target[PATH_MAX], joined[PATH_MAX * 2];
    for (int hops = 0;; hops++) {
        scp_err e;
        /* (inside the library: the first volume call of a forked child is often this one, and
         * its fork repair opens the lock file and the objects; outside sh_in_lib they took the
         * program's lowest free numbers, where the program may close or dup2 onto them, and each
         * open of an object was classified as a path of the program's: a readlink of
         * /proc/self/fd per open) */
        sh_in_lib++;
        long n = scp_volume_first_link(sh.vol[*vol].v, rel, follow_last, target, sizeof target, &e);
        sh_lib_leave();
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

/* lstat of /proc/self/fd/N itself, N a protected descriptor: what the kernel says of its own
 * link (procfs: a symbolic link of the process; N holds a placeholder there), with the access
 * bits that the kernel derives from the open mode (read: r-x, write: -wx) taken from the
 * protected descriptor's mode instead of the placeholder's (O_PATH: none). */
static long fd_link_lstat(long nr, const long a[6], long fd) {
    long r = sh_gate(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (r < 0) return r;
    long e;
    pfile *pf = sh_pf_get(fd, &e);
    if (!pf) return e;
    int acc = pf->flags & O_ACCMODE;
    sh_pf_put(pf);
    unsigned bits = (acc == O_RDONLY || acc == O_RDWR ? 0500u : 0) | (acc == O_WRONLY || acc == O_RDWR ? 0300u : 0);
    if (nr == SYS_statx) {
        uint16_t m;
        char *at = (char *)a[4] + offsetof(struct statx, stx_mode);
        if (sh_copy_in(&m, at, sizeof m)) return -EFAULT;
        m = (uint16_t)((m & S_IFMT) | bits);
        return sh_copy_out(at, &m, sizeof m) ? -EFAULT : 0;
    }
    mode_t m;
    char *at = (char *)a[2] + offsetof(struct stat, st_mode);
    if (sh_copy_in(&m, at, sizeof m)) return -EFAULT;
    m = (m & S_IFMT) | bits;
    return sh_copy_out(at, &m, sizeof m) ? -EFAULT : 0;
}

/* The call on the path that a link outside the volumes led to: the kernel's business. */
static long call_at(long nr, const struct sh_sysent *s, const long a[6], const char *abs,
                    const char *abs2) {
    long b[6];
    memcpy(b, a, sizeof b);
    if (abs) { /* (NULL: the program's own path, never a volume's) */
        b[s->path] = (long)abs;
        if (s->dirfd >= 0) b[s->dirfd] = AT_FDCWD;
    }
    if (abs2) { /* (rename, link: the second path likewise) */
        b[s->path2] = (long)abs2;
        if (s->dirfd2 >= 0) b[s->dirfd2] = AT_FDCWD;
    }
    return sh_gate(nr, b[0], b[1], b[2], b[3], b[4], b[5]);
}

/* The kernel looks at a path's last component before it removes or renames: 1 if it is ".",
 * 2 if "..", else 0. The shield normalizes "d/." to "d", so this is asked of the program's
 * string as the call gave it (path_run's copy: every path here is in the shield's memory). */
static int last_is_dot(const char *p) {
    if (!p) return 0;
    size_t n = strlen(p), s;
    while (n > 1 && p[n - 1] == '/') n--;
    for (s = n; s > 0 && p[s - 1] != '/';) s--;
    if (n - s == 1 && p[s] == '.') return 1;
    if (n - s == 2 && p[s] == '.' && p[s + 1] == '.') return 2;
    return 0;
}

/* Does the program's path end in a slash after a name ("d/", not "/"), or in "/."? The kernel
 * then wants a directory there (slash_rule); the shield's paths are normalized without it, so
 * this too is asked of the program's string as the call gave it. */
static int trailing_slash(const char *p) {
    if (!p) return 0;
    size_t n = strlen(p), m = n;
    while (m > 0 && p[m - 1] == '/') m--;
    if (m == 0) return 0;  /* "/" */
    if (m < n) return 1;   /* "d/" */
    /* "d/." (ls -la d/ looks at d/.): "." is the last name, d is followed */
    return n >= 3 && p[n - 1] == '.' && p[n - 2] == '/';
}

/* Does the call make the path's last name (so that a trailing slash does not follow it)? */
static int creates_name(long nr, long oflags) {
    return nr == SYS_mkdirat || nr == SYS_mknodat || nr == SYS_symlinkat ||
           ((nr == SYS_openat || nr == SYS_openat2) && (oflags & O_CREAT));
}

/* The kernel's rule for a single-path call whose path ends in "/" or "/." after a name
 * (namei.c: the last component must be a directory): 0 to go on, or the call's error. `have`
 * says whether rel (followed to its end, except where the call makes or removes the name
 * itself) exists, and `type` its type. Lookups want a directory (ENOTDIR; a missing name is
 * the call's own ENOENT); unlink never follows the last name and says EISDIR, ENOTDIR or
 * ENOENT; rmdir wants the name itself to be a directory; open with O_CREAT says EISDIR;
 * mkdir goes on ("d/" names the directory to make; "d/." is a "." EEXIST or ENOENT); mknod
 * and symlink say EEXIST or ENOENT. */
static long slash_rule(long nr, const long a[6], long oflags, const char *path, int have, int type) {
    int dot = last_is_dot(path) == 1; /* ("x/.": "." is the last name) */
    switch (nr) {
    case SYS_unlinkat:
        if (a[2] & AT_REMOVEDIR) return have && type != SCP_VTYPE_DIR ? -ENOTDIR : 0;
        return !have ? -ENOENT : type == SCP_VTYPE_DIR ? -EISDIR : -ENOTDIR;
    case SYS_mkdirat: return dot ? (have ? -EEXIST : -ENOENT) : 0;
    case SYS_mknodat:
    case SYS_symlinkat: return have ? -EEXIST : -ENOENT;
    default:
        if (creates_name(nr, oflags)) return -EISDIR; /* open(O_CREAT) */
        return have && type != SCP_VTYPE_DIR ? -ENOTDIR : 0;
    }
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
            pfile *pf = sh_pf_get(dirfd, &ee);
            if (!pf) { *ret = ee; return 1; }
            *ret = pf->nameless ? -EOPNOTSUPP /* its path is its directory's */
                                : utimes_rel(pf->vol, pf->path, (const struct timespec *)a[2]);
            sh_pf_put(pf);
            return 1;
        }
        break;
    case SYS_newfstatat:
    case SYS_statx:
        if ((a[nr == SYS_statx ? 2 : 3] & AT_EMPTY_PATH) && path && sh_copy_path_in(path, rel, sizeof rel) == 0) {
            if (!sh_is_prot(dirfd)) return 0;
            long ee = 0;
            pfile *pf = sh_pf_get(dirfd, &ee);
            if (!pf) { *ret = ee; return 1; }
            scp_vstat v;
            r = sh_pf_vstat(pf, &v);
            if (!r) {
                if (nr == SYS_statx) r = sh_put_statx(pf->vol, &v, (void *)a[4]);
                else r = sh_put_stat(pf->vol, &v, (void *)a[2]);
            }
            sh_pf_put(pf);
            *ret = r;
            return 1;
        }
        break;
    default: break;
    }
    if (sh_injected_call(nr, a, ret)) return 1; /* injected.c: files served from memory */
    if (nr == SYS_linkat && (a[4] & AT_EMPTY_PATH) && sh_is_prot(dirfd) && path &&
        sh_copy_path_in(path, rel, sizeof rel) == 0)
        return sh_link_fd(dirfd, a, ret);
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
        /* Each path that names a volume is followed through its links first: one that a link
         * led out of every volume (f 2, its absolute path in la) is the kernel's as much as one
         * that never named a volume (c 0), and a call whose two paths are both the kernel's is
         * made there (PostgreSQL's `initdb --waldir`: pg_wal a link in the volume to a plain
         * directory, its segments renamed within it: EXDEV before). */
        char la[PATH_MAX], la2[PATH_MAX];
        int f1 = c1 == 0 ? 2 : sh_follow_links(&vol, rel, sizeof rel, nr == SYS_linkat && (a[4] & AT_SYMLINK_FOLLOW), la, sizeof la);
        int f2 = f1 < 0 ? 1 : c2 == 0 ? 2 : sh_follow_links(&vol2, rel2, sizeof rel2, 0, la2, sizeof la2);
        if (f1 < 0 || f2 < 0) { *ret = f1 < 0 ? f1 : f2; return 1; }
        if (f1 == 2 && f2 == 2 && !named1) {
            *ret = call_at(nr, s, a, c1 ? la : NULL, c2 ? la2 : NULL);
            return 1;
        }
        if (f1 == 2 || f2 == 2 || vol != vol2) { *ret = -EXDEV; return 1; }
        /* rename of "d/." or "d/..", or onto one: EBUSY, as the kernel's (not LAST_NORM) */
        if (nr != SYS_linkat && (last_is_dot(path) || last_is_dot(path2))) { *ret = -EBUSY; return 1; }
        /* A trailing slash (namei.c): rename wants a directory to move when either path has
         * one (ENOTDIR, the name itself: rename follows no link); link follows its first path
         * to a directory, which it cannot link (ENOTDIR, or the EPERM of a directory), and its
         * second names nothing to make (EEXIST, ENOENT). */
        int sl1 = !named1 && trailing_slash(path), sl2 = trailing_slash(path2);
        if (sl1 || sl2) {
            scp_vstat v1, v2;
            int have1 = sh_path_vstat(vol, rel, &v1) == 0, have2 = sh_path_vstat(vol2, rel2, &v2) == 0;
            if (nr != SYS_linkat && have1 && v1.type != SCP_VTYPE_DIR) { *ret = -ENOTDIR; return 1; }
            if (nr == SYS_linkat && sl1 && have1) {
                char r1[PATH_MAX];
                int vx = vol, fx;
                memcpy(r1, rel, sizeof r1);
                if ((fx = sh_follow_links(&vx, r1, sizeof r1, 1, la, sizeof la)) < 0) { *ret = fx; return 1; }
                *ret = fx == 1 && sh_path_vstat(vx, r1, &v1) == 0 && v1.type == SCP_VTYPE_DIR ? -EPERM : -ENOTDIR;
                return 1;
            }
            if (nr == SYS_linkat && sl2 && have1) { *ret = have2 ? -EEXIST : -ENOENT; return 1; }
        }
        if (nr == SYS_linkat) {
            /* without AT_SYMLINK_FOLLOW, link names /proc's magic link itself: another file
             * system (the kernel says EXDEV); with it, the file that the descriptor names */
            if (named1 && !(a[4] & AT_SYMLINK_FOLLOW)) { *ret = -EXDEV; return 1; }
            /* with it, the file the descriptor holds, whatever name it has now (or none yet) */
            if (named1) return sh_link_fd(named1 - 1, a, ret);
            *ret = sh_link_rel(vol, rel, rel2, a[4]);
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
        if (!same_parent(rel, rel2) && sh_path_vstat(vol, rel, &v) == 0 && v.type == SCP_VTYPE_DIR &&
            (cr = sh_cred_access(&v, 2))) { *ret = cr; return 1; }
        if ((flags & RENAME_NOREPLACE) && sh_path_vstat(vol, rel2, &v) == 0) { *ret = -EEXIST; return 1; }
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
            *ret = sh_copy_out((char *)a[2], link, len);
            if (!*ret) *ret = (long)len;
            return 1;
        }
        if (nr == SYS_unlinkat || nr == SYS_mkdirat || nr == SYS_mknodat) { *ret = -EACCES; return 1; }
        if ((nr == SYS_newfstatat || nr == SYS_statx) && !follows_last(nr, a, 0)) {
            *ret = fd_link_lstat(nr, a, fd_link_named - 1); /* (`ls -l /proc/self/fd`) */
            return 1;
        }
    }
    struct open_how { uint64_t flags, mode, resolve; } how = {0};
    if (nr == SYS_openat2) {
        r = (size_t)a[3] < sizeof how ? -EINVAL : sh_copy_in(&how, (const void *)a[2], sizeof how);
        if (r) { *ret = r; return 1; }
    }
    long of = nr == SYS_openat ? a[2] : (long)how.flags;
    /* A trailing slash makes the kernel follow the last name to a directory, whatever the
     * call's no-follow flag says, except where the call makes or removes that name */
    int slash = !fd_link_named && trailing_slash(path);
    if (!fd_link_named) {
        char abs[PATH_MAX];
        int follow = follows_last(nr, a, of) || (slash && nr != SYS_unlinkat && !creates_name(nr, of));
        int f = sh_follow_links(&vol, rel, sizeof rel, follow, abs, sizeof abs);
        if (f < 0) { *ret = f; return 1; }
        if (f == 2) {
            size_t n = strlen(abs);
            if (slash && n + 1 < sizeof abs && abs[n - 1] != '/') memcpy(abs + n, "/", 2);
            *ret = call_at(nr, s, a, abs, NULL);
            return 1;
        }
    }
    if ((nr == SYS_openat || nr == SYS_openat2) && sh_in_vfork_child()) {
        /* a vfork or posix_spawn child shares the shield's memory with its parent, which a new
         * protected descriptor would change (a raw open from glibc's spawn file actions) */
        sh_trace("open of protected '%s' in a vfork child refused", rel);
        *ret = -EACCES;
        return 1;
    }
    if (!fd_link_named && (r = sh_cred_search(vol, rel))) { *ret = r; return 1; }
    if (slash && !(nr == SYS_unlinkat && last_is_dot(path))) { /* ("d/." and "d/..": below) */
        scp_vstat sv;
        int have = sh_path_vstat(vol, rel, &sv) == 0;
        if ((r = slash_rule(nr, a, of, path, have, have ? (int)sv.type : 0))) { *ret = r; return 1; }
    }
    sh_in_lib++;
    switch (nr) {
    case SYS_openat:
        r = sh_open_rel(vol, rel, (int)a[2], (mode_t)a[3]);
        break;
    case SYS_openat2: r = sh_open_rel(vol, rel, (int)how.flags, (mode_t)how.mode); break;
    case SYS_symlinkat: r = sh_symlink_rel(vol, rel, (const char *)a[0]); break;
    case SYS_newfstatat:
    case SYS_statx: {
        scp_vstat v;
        r = sh_path_vstat(vol, rel, &v);
        if (!r) {
            if (nr == SYS_statx) r = sh_put_statx(vol, &v, (void *)a[4]);
            else r = sh_put_stat(vol, &v, (void *)a[2]);
        }
        break;
    }
    case SYS_faccessat:
    case SYS_faccessat2: {
        scp_vstat v;
        r = sh_path_vstat(vol, rel, &v);
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
            /* a socket's or FIFO's last name: its kernel object in the rendezvous goes */
            uint64_t rdv = sh_rdv_last_name(vol, rel);
            r = scp_volume_unlink(sh.vol[vol].v, rel, &e) ? neg(&e) : 0;
            if (r == 0 && rdv) sh_rdv_gone(vol, rdv);
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
        if (nr == SYS_fchmodat2 && (a[3] & AT_SYMLINK_NOFOLLOW) && sh_path_vstat(vol, rel, &lv) == 0 &&
            lv.type == SCP_VTYPE_LINK) { r = -EOPNOTSUPP; break; } /* Linux links have no mode */
        r = setattr_rel(vol, rel, a[2] & 07777, -1, -1, INT64_MIN);
        break;
    }
    case SYS_fchownat: r = setattr_rel(vol, rel, -1, (int64_t)(int)a[2] == -1 ? -1 : (int64_t)(unsigned)a[2],
                                      (int64_t)(int)a[3] == -1 ? -1 : (int64_t)(unsigned)a[3], INT64_MIN); break;
    case SYS_utimensat: r = utimes_rel(vol, rel, (const struct timespec *)a[2]); break;
    case SYS_futimesat: r = setattr_rel(vol, rel, -1, -1, -1, INT64_MIN); break;
    case SYS_mknodat: r = sh_mknod_rel(vol, rel, (mode_t)a[2], (dev_t)a[3]); break;
    case SYS_name_to_handle_at: r = -EOPNOTSUPP; break;
    case SYS_truncate: {
        scp_vstat cv;
        if ((r = sh_path_vstat(vol, rel, &cv))) break;
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
    case SYS_execveat: r = -EACCES; break; /* (an exec is the exec handler's: exec_script.c) */
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
    long at = sh_at_form(nr, c.a, b); /* the raw open, stat... as the *at call the dispatcher serves */
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

/* ---- the program's working directory ------------------------------------------------------
 * Inside a mount the kernel's cwd is the mount point and the program's view is sh.cwd
 * (sh.vcwd set). A vfork or posix_spawn child shares the shield's memory with its parent, so
 * its chdir must not change that view: the child shares its parent thread's TLS as well, and
 * that thread waits until the child execs or exits, so the child's own view lives there (a
 * page of its own, "" for the kernel's cwd) for its path calls, getcwd and exec (Python's
 * subprocess with cwd= in a volume; the chdir was refused with EACCES before session 50). */
static __thread pid_t vfk_cwd_pid;
static __thread char *vfk_cwd;

void sh_vfork_cwd_reset(void) {
    if (vfk_cwd) syscall(SYS_munmap, vfk_cwd, (size_t)PATH_MAX);
    vfk_cwd = NULL;
    vfk_cwd_pid = 0;
}

int sh_cwd_view(char *out) {
    if (__builtin_expect(vfk_cwd_pid != 0, 0) && vfk_cwd_pid == (pid_t)syscall(SYS_getpid)) {
        if (!vfk_cwd[0]) return 0;
        strcpy(out, vfk_cwd);
        return 1;
    }
    pthread_mutex_lock(&sh.mu);
    int v = sh.vcwd;
    if (v) strcpy(out, sh.cwd);
    pthread_mutex_unlock(&sh.mu);
    return v;
}

/* Without this, a relative path after rsync's fchdir out of a volume still named the volume:
 * its receiver wrote into the volume's root, and the copy reported success with nothing
 * copied (session 55); a raw fchdir (glibc's nftw with FTW_CHDIR) is trapped for it. */
long sh_fchdir_out(long fd) {
    long r = sh_gate(SYS_fchdir, fd, 0, 0, 0, 0, 0);
    if (r == 0) (void)sh_cwd_set(NULL);
    return r;
}

long sh_cwd_set(const char *view) {
    if (view && strlen(view) >= sizeof sh.cwd) return -ENAMETOOLONG;
    if (sh_in_vfork_child()) {
        pid_t me = (pid_t)syscall(SYS_getpid);
        if (vfk_cwd_pid != me || !vfk_cwd) {
            char *page = (char *)syscall(SYS_mmap, NULL, (size_t)PATH_MAX, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if ((unsigned long)page > -4096ul) return (long)page;
            /* (a page that an earlier child of this thread left: the parent's next vfork frees
             * it, sh_vfork_cwd_reset; this one is the child's) */
            vfk_cwd = page;
            vfk_cwd_pid = me;
        }
        strcpy(vfk_cwd, view ? view : "");
        return 0;
    }
    pthread_mutex_lock(&sh.mu);
    if (view) strcpy(sh.cwd, view);
    sh.vcwd = view != NULL;
    pthread_mutex_unlock(&sh.mu);
    return 0;
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
        if (r == 0) r = sh_cwd_set(NULL);
        *handled = 1;
        return r;
    }
    char abs[PATH_MAX];
    int f = sh_follow_links(&vol, rel, sizeof rel, 1, abs, sizeof abs);
    if (f < 0) return f;
    if (f == 2) { /* a link out of the volumes: the kernel's cwd from now on */
        long r = sh_gate(SYS_chdir, (long)abs, 0, 0, 0, 0, 0);
        return r == 0 ? sh_cwd_set(NULL) : r;
    }
    scp_vstat v;
    long r = sh_path_vstat(vol, rel, &v);
    if (r) return r;
    if (v.type != SCP_VTYPE_DIR) return -ENOTDIR;
    if (snprintf(abs, sizeof abs, "%s%s%s", sh.vol[vol].mount, rel[0] ? "/" : "", rel) >= (int)sizeof abs)
        return -ENAMETOOLONG;
    if ((r = sh_cwd_set(abs))) return r;
    sh_gate(SYS_chdir, (long)sh.vol[vol].mount, 0, 0, 0, 0, 0);
    sh_trace("chdir into protected '%s'", rel);
    return 0;
}
