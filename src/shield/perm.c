/* shield/perm.c - the kernel's permission rules inside a volume (perm.h): the manifest keeps
 * each entry's owner, group and mode, and calls are checked against the caller's effective
 * ids and groups as the kernel checks them (root bypasses the read and write bits, not a
 * missing execute bit). Pure functions of the credentials they are given: the shield passes
 * the program's (creds.c), the static-image supervisor those of the thread it serves. */
#include "shield/perm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

static int in_group_as(const struct scp_cred *c, gid_t g, gid_t primary) {
    if (g == primary) return 1;
    for (int i = 0; i < c->ngroups; i++)
        if (c->groups[i] == g) return 1;
    return 0;
}
static int in_group(const struct scp_cred *c, gid_t g) { return in_group_as(c, g, c->egid); }

/* The mode bits against (uid, gid): the effective ids, or the real ones for access(2). */
static long access_as(const struct scp_cred *c, const scp_vstat *v, int want, uid_t uid, gid_t gid) {
    uint32_t mode = v->mode & 0777;
    if (uid == 0) {
        /* root: read and write always; execute needs one x bit on a file (the kernel's rule) */
        if ((want & 1) && v->type != SCP_VTYPE_DIR && !(mode & 0111)) return -EACCES;
        return 0;
    }
    unsigned bits;
    if (v->uid == uid) bits = (mode >> 6) & 7;
    else if (in_group_as(c, (gid_t)v->gid, gid)) bits = (mode >> 3) & 7;
    else bits = mode & 7;
    return ((unsigned)want & ~bits) ? -EACCES : 0;
}

long scp_perm_access(const struct scp_cred *c, const scp_vstat *v, int want) {
    return access_as(c, v, want, c->euid, c->egid);
}

/* access/faccessat check the real ids, faccessat2 with AT_EACCESS the effective ones. */
long scp_perm_access_real(const struct scp_cred *c, const scp_vstat *v, int want) {
    return access_as(c, v, want, c->ruid, c->rgid);
}

/* Entries that record no owner (the volume root; directories made before owners were kept for
 * directories, which hold 0/0) are reported as the caller's (real ids). */
void scp_perm_owner(const struct scp_cred *c, scp_vstat *v) {
    if (!v->owner_unset) return;
    v->uid = c->ruid;
    v->gid = c->rgid;
}

/* Search permission on one directory of the volume: 0, -EACCES, or 1 when dir is missing or
 * not a directory (left to the call itself: ENOENT, ENOTDIR). */
static long search_dir(const struct scp_cred *c, scp_volume *vol, const char *dir) {
    scp_vstat v;
    scp_err e;
    if (scp_volume_attrs(vol, dir, &v, &e) || v.type != SCP_VTYPE_DIR) return 1; /* (the call's) */
    scp_perm_owner(c, &v);
    return access_as(c, &v, 1, c->euid, c->egid);
}

/* The kernel checks search permission on every directory a path walks through (root passes
 * by CAP_DAC_OVERRIDE): the volume root and each directory above `rel` in the volume. A
 * missing or non-directory component is left to the call itself (ENOENT, ENOTDIR). */
long scp_perm_search(const struct scp_cred *c, scp_volume *vol, const char *rel) {
    if (c->euid == 0) return 0;
    char p[PATH_MAX];
    size_t n = strlen(rel);
    if (n >= sizeof p) return -ENAMETOOLONG;
    memcpy(p, rel, n + 1);
    /* (the root first: a chmod of the root is kept, docs/shield.md) */
    long r = rel[0] ? search_dir(c, vol, "") : 0;
    for (char *s = p; r == 0 && (s = strchr(s, '/')); *s++ = '/') {
        *s = '\0';
        r = search_dir(c, vol, p);
    }
    return r > 0 ? 0 : r;
}

/* utimensat: explicit times only by the owner (EPERM); "now" also with write permission
 * (EACCES otherwise). Root may do both. */
long scp_perm_utimes(const struct scp_cred *c, const scp_vstat *v, int explicit_times) {
    if (c->euid == 0 || v->uid == c->euid) return 0;
    if (explicit_times) return -EPERM;
    return access_as(c, v, 2, c->euid, c->egid);
}

long scp_perm_open(const struct scp_cred *c, const scp_vstat *v, int flags) {
    if (flags & O_PATH) return 0;
    int acc = flags & O_ACCMODE, want = 0;
    if (acc == O_RDONLY || acc == O_RDWR) want |= 4;
    if (acc == O_WRONLY || acc == O_RDWR || (flags & O_TRUNC)) want |= 2;
    return scp_perm_access(c, v, want);
}

/* chmod/chown by the kernel's rules. *mode (-1: unchanged) may come back adjusted: chmod by
 * a non-root caller outside the file's group drops S_ISGID; a chown of a regular file drops
 * S_ISUID, and S_ISGID where group execute is set (for root too, as Linux does). */
long scp_perm_setattr(const struct scp_cred *c, const scp_vstat *v, int64_t *mode, int64_t uid, int64_t gid) {
    uid_t me = c->euid;
    if (me != 0) {
        if (*mode >= 0 && v->uid != me && !v->owner_unset) return -EPERM;
        /* chown: only root gives a file away; the owner may change its group to one of its own */
        if (uid >= 0 && (uid != (int64_t)v->uid || v->uid != me)) return -EPERM;
        if (gid >= 0 && gid != (int64_t)v->gid && (v->uid != me || !in_group(c, (gid_t)gid))) return -EPERM;
        if (gid >= 0 && v->uid != me) return -EPERM;
        if (*mode >= 0 && v->type != SCP_VTYPE_DIR && (*mode & S_ISGID) && !in_group(c, (gid_t)v->gid))
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

/* link(2) under fs.protected_hardlinks (Linux's default): the owner, root, or a caller that may
 * read and write a regular file that is neither setuid nor setgid-executable; else EPERM. */
long scp_perm_link(const struct scp_cred *c, const scp_vstat *v) {
    if (c->euid == 0 || v->uid == c->euid) return 0;
    if (v->type != SCP_VTYPE_FILE || (v->mode & S_ISUID) ||
        (v->mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
        return -EPERM;
    return access_as(c, v, 6, c->euid, c->egid) ? -EPERM : 0;
}

/* Write and search permission on the directory that holds `rel` (creating or removing a name). */
long scp_perm_parent(const struct scp_cred *c, scp_volume *vol, const char *rel, int want) {
    const char *slash = strrchr(rel, '/');
    if (!slash) return 0; /* the volume root: reported as the program's own */
    char parent[4096];
    size_t n = (size_t)(slash - rel);
    if (n >= sizeof parent) return -ENAMETOOLONG;
    memcpy(parent, rel, n);
    parent[n] = '\0';
    scp_vstat v;
    scp_err e;
    /* a missing parent, or one that is not a directory: the call reports ENOENT or ENOTDIR,
     * which the kernel finds before permissions (its lookup fails first) */
    if (scp_volume_attrs(vol, parent, &v, &e) || v.type != SCP_VTYPE_DIR) return 0;
    scp_perm_owner(c, &v);
    return scp_perm_access(c, &v, want);
}

/* Removing or replacing the name `rel` (unlink, rmdir, rename from or over it) in a sticky
 * directory (S_ISVTX, /tmp's 01777): only root, the directory's owner or the entry's owner
 * may (EPERM, the kernel's check_sticky). A missing entry or parent: the call reports it. */
long scp_perm_sticky(const struct scp_cred *c, scp_volume *vol, const char *rel) {
    const char *slash = strrchr(rel, '/');
    if (c->euid == 0 || !slash) return 0; /* the volume root is 0755, never sticky */
    char parent[4096];
    size_t n = (size_t)(slash - rel);
    if (n >= sizeof parent) return -ENAMETOOLONG;
    memcpy(parent, rel, n);
    parent[n] = '\0';
    scp_vstat d, v;
    scp_err e;
    if (scp_volume_attrs(vol, parent, &d, &e) || d.type != SCP_VTYPE_DIR || !(d.mode & S_ISVTX))
        return 0;
    scp_perm_owner(c, &d);
    if (d.uid == c->euid || scp_volume_attrs(vol, rel, &v, &e)) return 0;
    scp_perm_owner(c, &v);
    return v.uid == c->euid ? 0 : -EPERM;
}

uint32_t scp_perm_after_write(const struct scp_cred *c, const scp_vstat *v) {
    uint32_t m = v->mode & 07777;
    if (c->euid == 0) return m; /* CAP_FSETID */
    m &= ~(uint32_t)S_ISUID;
    if ((m & S_ISGID) && ((m & S_IXGRP) || !in_group(c, (gid_t)v->gid))) m &= ~(uint32_t)S_ISGID;
    return m;
}
