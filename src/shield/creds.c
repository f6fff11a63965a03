/* shield/creds.c - the program's credentials and the protected volumes.
 *
 * Two things, both about who the program is:
 *  - A daemon that drops privileges (nginx's `user www-data;`, PostgreSQL, MariaDB, redis)
 *    must keep its volumes. The volume library opens its backing objects by name (openat on
 *    the volume's objects/ directory) each time a file is opened, and the backing store is
 *    created 0700/0600 for the user who launched the program. After setuid(www-data) the
 *    kernel refuses those opens with EACCES. So just before the program gives up its user id,
 *    while it still may, the shield hands the backing store (the volume directory, objects/
 *    and every file in them; no file contents change) to the user the program becomes.
 *    A process that stays root (nginx's master) keeps access through CAP_DAC_OVERRIDE.
 *  - Inside a volume the program's own view of ownership is enforced: the manifest keeps
 *    each file's owner, group and mode, and opens, chmod and chown are checked against the
 *    caller's effective ids and groups as the kernel checks them (root bypasses the read and
 *    write bits, not a missing execute bit).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shield/internal.h"

/* ---- permission checks inside a volume --------------------------------------------------- */

/* The program's credentials, read once and again after each change that goes through the
 * interposed set*id calls below: the read path (open of a protected file) makes no system call. */
static struct {
    int valid; /* atomic */
    uid_t euid, ruid;
    gid_t egid, rgid;
    gid_t groups[256];
    int ngroups;
} cr;

static void cred_load(void) {
    if (__atomic_load_n(&cr.valid, __ATOMIC_ACQUIRE)) return;
    cr.euid = geteuid();
    cr.egid = getegid();
    cr.ruid = getuid();
    cr.rgid = getgid();
    int n = getgroups(256, cr.groups);
    cr.ngroups = n < 0 ? 0 : n;
    __atomic_store_n(&cr.valid, 1, __ATOMIC_RELEASE);
}
static void cred_changed(void) { __atomic_store_n(&cr.valid, 0, __ATOMIC_RELEASE); }

static int in_group_as(gid_t g, gid_t primary) {
    cred_load();
    if (g == primary) return 1;
    for (int i = 0; i < cr.ngroups; i++)
        if (cr.groups[i] == g) return 1;
    return 0;
}
static int in_group(gid_t g) { return in_group_as(g, (cred_load(), cr.egid)); }

/* The mode bits against (uid, gid): the effective ids, or the real ones for access(2). */
static long access_as(const scp_vstat *v, int want, uid_t uid, gid_t gid) {
    uint32_t mode = v->mode & 0777;
    if (uid == 0) {
        /* root: read and write always; execute needs one x bit on a file (the kernel's rule) */
        if ((want & 1) && v->type != SCP_VTYPE_DIR && !(mode & 0111)) return -EACCES;
        return 0;
    }
    unsigned bits;
    if (v->uid == uid) bits = (mode >> 6) & 7;
    else if (in_group_as((gid_t)v->gid, gid)) bits = (mode >> 3) & 7;
    else bits = mode & 7;
    return ((unsigned)want & ~bits) ? -EACCES : 0;
}

int sh_cred_root(void) {
    cred_load();
    return cr.euid == 0;
}

long sh_cred_access(const scp_vstat *v, int want) {
    cred_load();
    return access_as(v, want, cr.euid, cr.egid);
}

/* access/faccessat check the real ids, faccessat2 with AT_EACCESS the effective ones. */
long sh_cred_access_real(const scp_vstat *v, int want) {
    cred_load();
    return access_as(v, want, cr.ruid, cr.rgid);
}

/* The kernel checks search permission on every directory a path walks through (root passes
 * by CAP_DAC_OVERRIDE): each directory above `rel` in the volume. A missing or non-directory
 * component is left to the call itself (ENOENT, ENOTDIR). */
long sh_cred_search(int vol, const char *rel) {
    cred_load();
    if (cr.euid == 0) return 0;
    char p[PATH_MAX];
    size_t n = strlen(rel);
    if (n >= sizeof p) return -ENAMETOOLONG;
    memcpy(p, rel, n + 1);
    for (char *s = p; (s = strchr(s, '/')); *s++ = '/') {
        *s = '\0';
        scp_vstat v;
        scp_err e;
        if (scp_volume_stat(sh.vol[vol].v, p, &v, &e) || v.type != SCP_VTYPE_DIR) return 0;
        sh_cred_owner(&v);
        long r = access_as(&v, 1, cr.euid, cr.egid);
        if (r) return r;
    }
    return 0;
}

/* utimensat: explicit times only by the owner (EPERM); "now" also with write permission
 * (EACCES otherwise). Root may do both. */
long sh_cred_utimes(const scp_vstat *v, int explicit_times) {
    cred_load();
    if (cr.euid == 0 || v->uid == cr.euid) return 0;
    if (explicit_times) return -EPERM;
    return access_as(v, 2, cr.euid, cr.egid);
}

/* Entries that record no owner (the volume root; directories made before owners were kept for
 * directories, which hold 0/0) are reported as the caller's (real ids). */
void sh_cred_owner(scp_vstat *v) {
    if (!v->owner_unset) return;
    cred_load();
    v->uid = cr.ruid;
    v->gid = cr.rgid;
}

long sh_cred_open(const scp_vstat *v, int flags) {
    if (flags & O_PATH) return 0;
    int acc = flags & O_ACCMODE, want = 0;
    if (acc == O_RDONLY || acc == O_RDWR) want |= 4;
    if (acc == O_WRONLY || acc == O_RDWR || (flags & O_TRUNC)) want |= 2;
    return sh_cred_access(v, want);
}

/* chmod/chown by the kernel's rules. *mode (-1: unchanged) may come back adjusted: chmod by
 * a non-root caller outside the file's group drops S_ISGID; a chown of a regular file drops
 * S_ISUID, and S_ISGID where group execute is set (for root too, as Linux does). */
long sh_cred_setattr(const scp_vstat *v, int64_t *mode, int64_t uid, int64_t gid) {
    cred_load();
    uid_t me = cr.euid;
    if (me != 0) {
        if (*mode >= 0 && v->uid != me && !v->owner_unset) return -EPERM;
        /* chown: only root gives a file away; the owner may change its group to one of its own */
        if (uid >= 0 && (uid != (int64_t)v->uid || v->uid != me)) return -EPERM;
        if (gid >= 0 && gid != (int64_t)v->gid && (v->uid != me || !in_group((gid_t)gid))) return -EPERM;
        if (gid >= 0 && v->uid != me) return -EPERM;
        if (*mode >= 0 && v->type != SCP_VTYPE_DIR && (*mode & S_ISGID) && !in_group((gid_t)v->gid))
            *mode &= ~(int64_t)S_ISGID;
    }
    if ((uid >= 0 || gid >= 0) && v->type != SCP_VTYPE_DIR && *mode < 0 && (v->mode & (S_ISUID | S_ISGID))) {
        int64_t m = v->mode & 07777;
        m &= ~(int64_t)S_ISUID;
        if (m & S_IXGRP) m &= ~(int64_t)S_ISGID;
        if (m != (int64_t)(v->mode & 07777)) *mode = m;
    }
    return 0;
}

/* ---- keep the backing store reachable across a change of user ----------------------------- */

static void chown_dir(int dfd, uid_t uid, gid_t gid, int depth) {
    char buf[4096];
    long n;
    while ((n = sh_gate(SYS_getdents64, dfd, (long)buf, sizeof buf, 0, 0, 0)) > 0) {
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) continue;
            sh_gate(SYS_fchownat, dfd, (long)d->d_name, uid, gid, AT_SYMLINK_NOFOLLOW, 0);
            if (d->d_type == DT_DIR && depth == 0) {
                long sub = sh_gate(SYS_openat, dfd, (long)d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0, 0, 0);
                if (sub >= 0) {
                    chown_dir((int)sub, uid, gid, depth + 1);
                    sh_gate(SYS_close, sub, 0, 0, 0, 0, 0);
                }
            }
        }
    }
}

/* Called before a credential change that leaves the effective (and file system) uid `to`. */
static void keep_volumes(uid_t to) {
    if (!sh.active || to == (uid_t)-1 || to == 0 || geteuid() != 0) return;
    gid_t gid = getegid();
    for (int i = 0; i < sh.nvol; i++) {
        int vfd = sh.cfg.vol[i].dirfd;
        sh_gate(SYS_fchownat, vfd, (long)"", to, gid, AT_EMPTY_PATH, 0);
        long dfd = sh_gate(SYS_openat, vfd, (long)".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, 0, 0);
        if (dfd < 0) {
            sh_trace("cannot hand volume %d to uid %u: %s", i, (unsigned)to, strerror((int)-dfd));
            continue;
        }
        chown_dir((int)dfd, to, gid, 0);
        sh_gate(SYS_close, dfd, 0, 0, 0, 0, 0);
        sh_trace("volume %d's backing store handed to uid %u gid %u", i, (unsigned)to, (unsigned)gid);
    }
}

static void *real_sym(const char *name) { return dlsym(RTLD_NEXT, name); }

SH_EXPORT int setuid(uid_t u) {
    keep_volumes(u);
    int (*f)(uid_t) = (int (*)(uid_t))real_sym("setuid");
    int rc = f(u);
    cred_changed();
    return rc;
}
SH_EXPORT int seteuid(uid_t u) {
    keep_volumes(u);
    int (*f)(uid_t) = (int (*)(uid_t))real_sym("seteuid");
    int rc = f(u);
    cred_changed();
    return rc;
}
SH_EXPORT int setreuid(uid_t r, uid_t e) {
    keep_volumes(e);
    int (*f)(uid_t, uid_t) = (int (*)(uid_t, uid_t))real_sym("setreuid");
    int rc = f(r, e);
    cred_changed();
    return rc;
}
SH_EXPORT int setresuid(uid_t r, uid_t e, uid_t s) {
    keep_volumes(e);
    int (*f)(uid_t, uid_t, uid_t) = (int (*)(uid_t, uid_t, uid_t))real_sym("setresuid");
    int rc = f(r, e, s);
    cred_changed();
    return rc;
}
SH_EXPORT int setfsuid(uid_t u) {
    keep_volumes(u);
    int (*f)(uid_t) = (int (*)(uid_t))real_sym("setfsuid");
    int rc = f(u);
    cred_changed();
    return rc;
}
SH_EXPORT int setgid(gid_t g) {
    int (*f)(gid_t) = (int (*)(gid_t))real_sym("setgid");
    int rc = f(g);
    cred_changed();
    return rc;
}
SH_EXPORT int setegid(gid_t g) {
    int (*f)(gid_t) = (int (*)(gid_t))real_sym("setegid");
    int rc = f(g);
    cred_changed();
    return rc;
}
SH_EXPORT int setregid(gid_t r, gid_t e) {
    int (*f)(gid_t, gid_t) = (int (*)(gid_t, gid_t))real_sym("setregid");
    int rc = f(r, e);
    cred_changed();
    return rc;
}
SH_EXPORT int setresgid(gid_t r, gid_t e, gid_t s) {
    int (*f)(gid_t, gid_t, gid_t) = (int (*)(gid_t, gid_t, gid_t))real_sym("setresgid");
    int rc = f(r, e, s);
    cred_changed();
    return rc;
}
SH_EXPORT int setgroups(size_t n, const gid_t *list) {
    int (*f)(size_t, const gid_t *) = (int (*)(size_t, const gid_t *))real_sym("setgroups");
    int rc = f(n, list);
    cred_changed();
    return rc;
}
SH_EXPORT int initgroups(const char *user, gid_t g) {
    int (*f)(const char *, gid_t) = (int (*)(const char *, gid_t))real_sym("initgroups");
    int rc = f(user, g);
    cred_changed();
    return rc;
}

/* link(2) under fs.protected_hardlinks (Linux's default): the owner, root, or a caller that may
 * read and write a regular file that is neither setuid nor setgid-executable; else EPERM. */
long sh_cred_link(const scp_vstat *v) {
    cred_load();
    if (cr.euid == 0 || v->uid == cr.euid) return 0;
    if (v->type != SCP_VTYPE_FILE || (v->mode & S_ISUID) ||
        (v->mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
        return -EPERM;
    return access_as(v, 6, cr.euid, cr.egid) ? -EPERM : 0;
}

/* Write and search permission on the directory that holds `rel` (creating or removing a name). */
long sh_cred_parent(int vol, const char *rel, int want) {
    const char *slash = strrchr(rel, '/');
    if (!slash) return 0; /* the volume root: reported as the program's own (path_vstat) */
    char parent[4096];
    size_t n = (size_t)(slash - rel);
    if (n >= sizeof parent) return -ENAMETOOLONG;
    memcpy(parent, rel, n);
    parent[n] = '\0';
    scp_vstat v;
    scp_err e;
    /* a missing parent, or one that is not a directory: the call reports ENOENT or ENOTDIR,
     * which the kernel finds before permissions (its lookup fails first) */
    if (scp_volume_stat(sh.vol[vol].v, parent, &v, &e) || v.type != SCP_VTYPE_DIR) return 0;
    sh_cred_owner(&v);
    return sh_cred_access(&v, want);
}

/* Removing or replacing the name `rel` (unlink, rmdir, rename from or over it) in a sticky
 * directory (S_ISVTX, /tmp's 01777): only root, the directory's owner or the entry's owner
 * may (EPERM, the kernel's check_sticky). A missing entry or parent: the call reports it. */
uint32_t sh_cred_after_write(const scp_vstat *v) {
    cred_load();
    uint32_t m = v->mode & 07777;
    if (cr.euid == 0) return m; /* CAP_FSETID */
    m &= ~(uint32_t)S_ISUID;
    if ((m & S_ISGID) && ((m & S_IXGRP) || !in_group((gid_t)v->gid))) m &= ~(uint32_t)S_ISGID;
    return m;
}

long sh_cred_sticky(int vol, const char *rel) {
    cred_load();
    const char *slash = strrchr(rel, '/');
    if (cr.euid == 0 || !slash) return 0; /* the volume root is 0755, never sticky */
    char parent[4096];
    size_t n = (size_t)(slash - rel);
    if (n >= sizeof parent) return -ENAMETOOLONG;
    memcpy(parent, rel, n);
    parent[n] = '\0';
    scp_vstat d, v;
    scp_err e;
    if (scp_volume_stat(sh.vol[vol].v, parent, &d, &e) || d.type != SCP_VTYPE_DIR || !(d.mode & S_ISVTX))
        return 0;
    sh_cred_owner(&d);
    if (d.uid == cr.euid || scp_volume_stat(sh.vol[vol].v, rel, &v, &e)) return 0;
    sh_cred_owner(&v);
    return v.uid == cr.euid ? 0 : -EPERM;
}

/* New files get mode & ~umask: follow the program's umask changes, not only the one at start. */
SH_EXPORT mode_t umask(mode_t m) {
    mode_t (*f)(mode_t) = (mode_t (*)(mode_t))real_sym("umask");
    sh.umask = m & 0777;
    return f(m);
}
