/* cli/volume_tree.c - copying between plain files and a volume: one file (put, cat) or a
 * whole tree with its attributes, links and special files (import, export). The rules are in
 * volume_tree.h. */
#include "cli/volume_tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/u64map.h"
#include "common/util.h"

#define IO_BLOCK (1u << 20)

/* ---- one file ------------------------------------------------------------------------------ */

/* vt_copy_in, and *read_failed = 1 when it failed reading fd (not writing the volume). */
static int copy_in(scp_volume *v, int fd, const char *path, uint32_t mode, progress *pg,
                   uint64_t *done, int *read_failed, scp_err *err) {
    *read_failed = 0;
    scp_vfile *f = scp_vfile_open(v, path, O_WRONLY | O_CREAT | O_TRUNC, mode, err);
    if (!f) return -1;
    uint8_t *buf = malloc(IO_BLOCK);
    int rc = buf ? 0 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    while (rc == 0) {
        ssize_t r = read(fd, buf, IO_BLOCK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = scp_fail_errno(err, "cannot read the input of '%s'", path);
            *read_failed = 1;
        }
        if (r <= 0) break;
        if (scp_vfile_write(f, buf, (size_t)r, err) != r) rc = -1;
        *done += (uint64_t)r;
        if (pg) progress_update(pg, *done);
    }
    free(buf);
    if (scp_vfile_close(f, rc == 0 ? err : NULL) < 0) rc = -1;
    return rc;
}

int vt_copy_in(scp_volume *v, int fd, const char *path, uint32_t mode, progress *pg,
               uint64_t *done, scp_err *err) {
    int read_failed;
    return copy_in(v, fd, path, mode, pg, done, &read_failed, err);
}

int vt_copy_out(scp_volume *v, const char *path, int fd, progress *pg, uint64_t *done,
                scp_err *err) {
    scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, err);
    if (!f) return -1;
    uint8_t *buf = malloc(IO_BLOCK);
    int rc = buf ? 0 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    while (rc == 0) {
        ssize_t r = scp_vfile_read(f, buf, IO_BLOCK, err);
        if (r < 0) rc = -1;
        if (r <= 0) break;
        if (scp_write_full(fd, buf, (size_t)r) < 0) rc = scp_fail_errno(err, "cannot write output");
        *done += (uint64_t)r;
        if (pg) progress_update(pg, *done);
    }
    free(buf);
    scp_vfile_close(f, NULL);
    return rc;
}

/* ---- shared by both directions ------------------------------------------------------------- */

int vt_join(char out[VT_PATH], const char *dir, const char *name, scp_err *err) {
    int n = snprintf(out, VT_PATH, "%s%s%s", dir, *dir ? "/" : "", name);
    if (n < 0 || n >= VT_PATH)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "path too long: '%s/%s'", dir, name);
    return 0;
}

/* Hard links: the first path seen for each file with more than one name, keyed by (a, b):
 * the source's (device, inode) on import, the volume's inode number on export. A look-up per
 * name through the project's u64map (a scan of every link seen made a tree of many hard-linked
 * files quadratic): the map takes a ^ b to the newest entry with that key, and entries with
 * the same key (other (a, b): rare) chain through next. */
struct link_seen {
    uint64_t a, b;
    size_t next; /* 1 + the index of the previous entry with the same key; 0: none */
    char *path;
};
struct links {
    u64map first; /* a ^ b -> 1 + the index of the newest entry with it */
    struct link_seen *e;
    size_t n, cap;
};

static const char *links_find(const struct links *l, uint64_t a, uint64_t b) {
    uint64_t at;
    if (!u64map_get(&l->first, a ^ b, &at)) return NULL;
    for (size_t i = (size_t)at; i; i = l->e[i - 1].next)
        if (l->e[i - 1].a == a && l->e[i - 1].b == b) return l->e[i - 1].path;
    return NULL;
}

static int links_add(struct links *l, uint64_t a, uint64_t b, const char *path, scp_err *err) {
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        struct link_seen *ne = realloc(l->e, ncap * sizeof *ne);
        if (!ne) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        l->e = ne;
        l->cap = ncap;
    }
    uint64_t prev = 0;
    (void)u64map_get(&l->first, a ^ b, &prev);
    struct link_seen *e = &l->e[l->n];
    if (!(e->path = strdup(path)) || u64map_put(&l->first, a ^ b, l->n + 1) < 0) {
        free(e->path);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    e->a = a;
    e->b = b;
    e->next = (size_t)prev;
    l->n++;
    return 0;
}

static void links_free(struct links *l) {
    for (size_t i = 0; i < l->n; i++) free(l->e[i].path);
    free(l->e);
    u64map_free(&l->first);
}

uint64_t vt_tree_size(const char *dir) {
    uint64_t sum = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[VT_PATH];
        struct stat st;
        if (vt_join(p, dir, de->d_name, NULL) < 0 || lstat(p, &st) < 0) continue;
        if (S_ISDIR(st.st_mode)) sum += vt_tree_size(p);
        else if (S_ISREG(st.st_mode)) sum += (uint64_t)st.st_size;
    }
    closedir(d);
    return sum;
}

/* ---- import -------------------------------------------------------------------------------- */

struct import_ctx {
    scp_volume *v;
    progress *pg;
    uint64_t *done;
    long *nfiles;
    long nskip; /* entries left out, each named on stderr (import_skip) */
    struct links links;
    scp_err *err;
};

/* An entry that cannot be imported for a reason of its own (its source unreadable, a name of
 * another kind in its way), as cp -a treats it: named on stderr, left out, and the walk goes
 * on; the import then fails at its end (vt_import). Returns 1, import_one's "left out". A
 * failure of the volume itself ends the walk instead (-1). */
static int import_skip(struct import_ctx *x) {
    if (x->pg) progress_end(x->pg); /* (clears the bar's line; the next update draws it again) */
    fprintf(stderr, "scpctl: %s (left out)\n", x->err->msg);
    x->nskip++;
    return 1;
}

static int64_t ts_ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

/* The source entry's permission bits (not for a symbolic link, whose bits mean nothing),
 * numeric owner and times onto the volume path. */
static int import_attrs(struct import_ctx *x, const char *vp, const struct stat *st) {
    return scp_volume_setattr_times(x->v, vp, S_ISLNK(st->st_mode) ? -1 : (int64_t)(st->st_mode & 07777),
                                    st->st_uid, st->st_gid, ts_ns(st->st_atim),
                                    ts_ns(st->st_mtim), x->err);
}

/* Make room for a non-directory at vp, as cp does: a name of another kind is removed first
 * (a regular file over a regular file is truncated in place); never a directory. */
static int import_clear(struct import_ctx *x, const char *vp, int regular) {
    scp_vstat vs;
    scp_err e;
    if (scp_volume_stat(x->v, vp, &vs, &e) < 0) return 0; /* (missing: the common case) */
    if (vs.type == SCP_VTYPE_DIR)
        return scp_fail(x->err, SCP_E_ISDIR, EISDIR, "cannot replace the directory '%s' in the "
                                                     "volume with a non-directory", vp);
    if (regular && vs.type == SCP_VTYPE_FILE && vs.nlink <= 1) return 0;
    return scp_volume_unlink(x->v, vp, x->err);
}

static int import_dir(struct import_ctx *x, const char *src, const char *vpath);

/* One source entry sp onto the volume path vp: 0, 1 left out (import_skip), -1 failed. */
static int import_one(struct import_ctx *x, const char *sp, const char *vp) {
    struct stat st;
    if (lstat(sp, &st) < 0) {
        scp_fail_errno(x->err, "cannot stat '%s'", sp);
        return import_skip(x);
    }
    if (S_ISDIR(st.st_mode)) {
        scp_vstat vs;
        scp_err e;
        if (scp_volume_stat(x->v, vp, &vs, &e) == 0 && vs.type != SCP_VTYPE_DIR) {
            scp_fail(x->err, SCP_E_NOTDIR, ENOTDIR, "cannot replace '%s' in the volume, not a "
                                                   "directory, with a directory", vp);
            return import_skip(x);
        }
        if (scp_volume_mkdir(x->v, vp, st.st_mode & 07777, x->err) < 0 && x->err->code != SCP_E_EXIST)
            return -1;
        if (import_dir(x, sp, vp) < 0) return -1;
        return import_attrs(x, vp, &st); /* (after the contents, which move a directory's times) */
    }
    const char *first = st.st_nlink > 1 ? links_find(&x->links, st.st_dev, st.st_ino) : NULL;
    int rc = import_clear(x, vp, S_ISREG(st.st_mode) && !first);
    if (rc < 0) return x->err->code == SCP_E_ISDIR ? import_skip(x) : -1;
    if (first) return scp_volume_link(x->v, first, vp, x->err); /* (shares the attributes) */
    if (S_ISREG(st.st_mode)) {
        int fd = open(sp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            scp_fail_errno(x->err, "cannot open '%s'", sp);
            return import_skip(x);
        }
        int read_failed;
        rc = copy_in(x->v, fd, vp, st.st_mode & 07777, x->pg, x->done, &read_failed, x->err);
        close(fd);
        if (rc < 0 && read_failed) {
            /* (no file that only looks complete: its part is removed) */
            scp_err e;
            if (scp_volume_unlink(x->v, vp, &e) < 0 && e.code != SCP_E_NOENT) {
                *x->err = e;
                return -1;
            }
            return import_skip(x);
        }
        (*x->nfiles)++;
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX + 1];
        ssize_t n = readlink(sp, target, sizeof target);
        if (n < 0 || (size_t)n >= sizeof target) {
            if (n < 0) scp_fail_errno(x->err, "cannot read the link '%s'", sp);
            else scp_fail(x->err, SCP_E_INVAL, ENAMETOOLONG, "the link '%s' is too long", sp);
            return import_skip(x);
        }
        target[n] = '\0';
        rc = scp_volume_symlink(x->v, target, vp, x->err);
    } else {
        /* (FIFOs, sockets and device nodes: the volume keeps the name, mode and device
         * number, never data through them) */
        rc = scp_volume_mknod(x->v, vp, st.st_mode & (S_IFMT | 07777), st.st_rdev, x->err);
    }
    if (rc == 0) rc = import_attrs(x, vp, &st);
    if (rc == 0 && st.st_nlink > 1) rc = links_add(&x->links, st.st_dev, st.st_ino, vp, x->err);
    return rc;
}

/* (scandir's order and filter for import_dir: by strcmp, the manifest's order, without . and ..) */
static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_dots(const struct dirent *de) {
    return strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
}

/* The entries of the source directory src into the volume directory vpath: 0, or -1 when the
 * volume failed. A subdirectory that cannot be read is left out (import_skip) with what it
 * holds; the top one (vpath "") fails the import. The names go in sorted, the manifest's own
 * order: each then lands at the end of its directory's entries, where readdir's order made
 * every create move about half of the manifest's entries in memory (twice: its state and the
 * log's), 13% of an import of 10,000 files and growing with the count. */
static int import_dir(struct import_ctx *x, const char *src, const char *vpath) {
    struct dirent **names;
    int n = scandir(src, &names, not_dots, by_name);
    if (n < 0) {
        scp_fail_errno(x->err, "cannot read directory '%s'", src);
        if (!*vpath) return -1;
        import_skip(x);
        return 0;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char sp[VT_PATH], vp[VT_PATH];
        const char *name = names[i]->d_name;
        if (rc >= 0 && (vt_join(sp, src, name, x->err) < 0 || vt_join(vp, vpath, name, x->err) < 0))
            rc = import_skip(x); /* (a name too long for the walk: ENAMETOOLONG) */
        else if (rc >= 0) rc = import_one(x, sp, vp);
        free(names[i]);
    }
    free(names);
    return rc < 0 ? -1 : 0;
}

int vt_import(scp_volume *v, const char *src, progress *pg, uint64_t *done, long *nfiles,
              scp_err *err) {
    struct import_ctx x = {.v = v, .pg = pg, .done = done, .nfiles = nfiles, .err = err};
    struct stat st;
    /* Each file's close commits without a flush; the caller's scp_volume_close makes the
     * whole import durable at once (one flush per object instead of a durable commit per
     * file). A power cut before it may lose files, never half of one: the import is run
     * again, as a cp cut short would be. */
    scp_volume_set_lazy_close(v, 1);
    int rc = import_dir(&x, src, "");
    /* (the top directory's attributes become the root's: docs/volume-format.md "Manifest";
     * SRCDIR given as a link to a directory is followed, as the walk above did) */
    if (rc == 0 && stat(src, &st) < 0) rc = scp_fail_errno(err, "cannot stat '%s'", src);
    if (rc == 0) rc = import_attrs(&x, "", &st);
    links_free(&x.links);
    if (rc == 0 && x.nskip)
        rc = scp_fail(err, SCP_E_SYS, EIO, "%ld %s could not be imported (named above); the rest "
                      "is in the volume", x.nskip, x.nskip == 1 ? "entry" : "entries");
    return rc;
}

/* ---- export -------------------------------------------------------------------------------- */

struct export_ctx {
    scp_volume *v;
    const char *out;   /* output directory for this level */
    const char *vpath; /* volume path of this level */
    progress *pg;
    uint64_t *done;
    struct links *links;
    int as_root; /* owners are set, device nodes made */
    scp_err *err;
};

/* A stored time, or "leave it" for 0: the root's times before anything set them. */
static struct timespec ns_ts(int64_t ns) {
    struct timespec t = {.tv_sec = 0, .tv_nsec = UTIME_OMIT};
    if (ns != 0) {
        t.tv_sec = (time_t)(ns / 1000000000);
        t.tv_nsec = (long)(ns % 1000000000);
        if (t.tv_nsec < 0) {
            t.tv_sec--;
            t.tv_nsec += 1000000000;
        }
    }
    return t;
}

/* Owner (as root), permission bits (not a link's) and times onto the plain path op: chown
 * first, since it clears set-user-ID bits. fd >= 0: the open regular file itself. */
static int export_attrs(struct export_ctx *x, const char *op, int fd, const scp_vstat *st) {
    int is_link = st->type == SCP_VTYPE_LINK;
    struct timespec ts[2] = {ns_ts(st->atime_ns), ns_ts(st->mtime_ns)};
    if (x->as_root && !st->owner_unset &&
        (fd >= 0 ? fchown(fd, st->uid, st->gid) : lchown(op, st->uid, st->gid)) < 0)
        return scp_fail_errno(x->err, "cannot set the owner of '%s'", op);
    if (!is_link && (fd >= 0 ? fchmod(fd, st->mode & 07777) : chmod(op, st->mode & 07777)) < 0)
        return scp_fail_errno(x->err, "cannot set the mode of '%s'", op);
    if ((fd >= 0 ? futimens(fd, ts) : utimensat(AT_FDCWD, op, ts, AT_SYMLINK_NOFOLLOW)) < 0)
        return scp_fail_errno(x->err, "cannot set the times of '%s'", op);
    return 0;
}

/* Make room for a non-directory at op: a name there that is no directory is removed (as tar
 * does), so that nothing is written through a link an earlier run left. */
static int export_clear(struct export_ctx *x, const char *op) {
    struct stat st;
    if (lstat(op, &st) < 0) return 0;
    if (S_ISDIR(st.st_mode))
        return scp_fail(x->err, SCP_E_ISDIR, EISDIR, "cannot replace the directory '%s' with a "
                                                     "non-directory", op);
    if (unlink(op) < 0) return scp_fail_errno(x->err, "cannot replace '%s'", op);
    return 0;
}

static int export_entry(void *c, const char *name, const scp_vstat *st);

/* top: op is OUTDIR itself, which may be given as a link to a directory (followed, as cp
 * follows its destination); below it a link is never followed. */
static int export_dir(struct export_ctx *x, const char *op, const char *vp, const scp_vstat *st,
                      int top) {
    struct stat ps;
    if (mkdir(op, 0700) < 0 && errno != EEXIST) return scp_fail_errno(x->err, "cannot create '%s'", op);
    if ((top ? stat(op, &ps) : lstat(op, &ps)) < 0 || !S_ISDIR(ps.st_mode))
        return scp_fail(x->err, SCP_E_NOTDIR, ENOTDIR, "'%s' exists and is not a directory", op);
    struct export_ctx sub = *x;
    sub.out = op;
    sub.vpath = vp;
    if (scp_volume_readdir(x->v, vp, export_entry, &sub, x->err) < 0) return -1;
    return export_attrs(x, op, -1, st); /* (after the contents, which move a directory's times) */
}

static int export_entry(void *c, const char *name, const scp_vstat *st) {
    struct export_ctx *x = c;
    char op[VT_PATH], vp[VT_PATH];
    if (vt_join(op, x->out, name, x->err) < 0 || vt_join(vp, x->vpath, name, x->err) < 0) return -1;
    if (st->type == SCP_VTYPE_DIR) return export_dir(x, op, vp, st, 0);
    if (export_clear(x, op) < 0) return -1;
    const char *first = st->nlink > 1 ? links_find(x->links, st->ino, 0) : NULL;
    if (first) {
        if (link(first, op) < 0) return scp_fail_errno(x->err, "cannot link '%s' to '%s'", op, first);
        return 0;
    }
    int rc = 0, fd = -1;
    if (st->type == SCP_VTYPE_FILE) {
        fd = open(op, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return scp_fail_errno(x->err, "cannot create '%s'", op);
        rc = vt_copy_out(x->v, vp, fd, x->pg, x->done, x->err);
    } else if (st->type == SCP_VTYPE_LINK) {
        char target[PATH_MAX + 1]; /* (a volume's link target: 1..4096 bytes, volume.h) */
        long n = scp_volume_readlink(x->v, vp, target, sizeof target - 1, x->err);
        if (n < 0) return -1;
        if (n >= (long)sizeof target)
            return scp_fail(x->err, SCP_E_INVAL, ENAMETOOLONG, "the link '%s' is too long", vp);
        target[n] = '\0';
        if (symlink(target, op) < 0) return scp_fail_errno(x->err, "cannot create the link '%s'", op);
    } else if (st->node_type == S_IFSOCK || (!x->as_root && st->node_type != S_IFIFO)) {
        fprintf(stderr, "scpctl: skipping '%s': %s\n", vp,
                st->node_type == S_IFSOCK ? "a socket is not exported" : "device nodes are made only by root");
        return 0;
    } else if (mknod(op, st->node_type | 0600, (dev_t)st->rdev) < 0) {
        return scp_fail_errno(x->err, "cannot make the node '%s'", op);
    }
    if (rc == 0) rc = export_attrs(x, op, fd, st);
    if (fd >= 0 && close(fd) < 0 && rc == 0) rc = scp_fail_errno(x->err, "cannot write '%s'", op);
    if (rc == 0 && st->nlink > 1) rc = links_add(x->links, st->ino, 0, op, x->err);
    return rc;
}

int vt_export(scp_volume *v, const char *out, progress *pg, uint64_t *done, scp_err *err) {
    struct links links = {.n = 0};
    struct export_ctx x = {v, out, "", pg, done, &links, geteuid() == 0, err};
    scp_vstat root;
    int rc = scp_volume_stat(v, "", &root, err);
    /* (a root without its own entry says nothing about mode, owner or times: the output
     * directory keeps its own; docs/volume-format.md "Manifest") */
    if (rc == 0 && root.owner_unset && root.ctime_ns == 0) {
        if (mkdir(out, 0700) < 0 && errno != EEXIST) rc = scp_fail_errno(err, "cannot create '%s'", out);
        if (rc == 0) rc = scp_volume_readdir(v, "", export_entry, &x, err);
    } else if (rc == 0) {
        rc = export_dir(&x, out, "", &root, 1);
    }
    links_free(&links);
    return rc;
}
