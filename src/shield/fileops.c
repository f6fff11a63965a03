/* shield/fileops.c - the calls on a protected file: stat, open, directories, I/O, hard links.
 *
 * Each serves one system call on a protected descriptor or volume path against the volume
 * library, with the kernel's checks (permissions, flags) and its results and errors. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include "shield/internal.h"
#include "shield/net.h"
#include "shield/core.h"

/* ---- stat -------------------------------------------------------------------------------- */

static void fill_stat(int vol, const scp_vstat *v, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_dev = sh.vol[vol].dev;
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

void sh_statx_from_stat(const struct stat *st, struct statx *sx) {
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
    sx->stx_dev_major = major(st->st_dev);
    sx->stx_dev_minor = minor(st->st_dev);
}

static void fill_statx(int vol, const scp_vstat *v, struct statx *sx) {
    struct stat st;
    fill_stat(vol, v, &st);
    sh_statx_from_stat(&st, sx);
}
long sh_put_stat(int vol, const scp_vstat *v, void *dst) {
    struct stat st;
    fill_stat(vol, v, &st);
    return sh_copy_out(dst, &st, sizeof st);
}

long sh_put_statx(int vol, const scp_vstat *v, void *dst) {
    struct statx sx;
    fill_statx(vol, v, &sx);
    return sh_copy_out(dst, &sx, sizeof sx);
}

long sh_pf_vstat(pfile *pf, scp_vstat *v) {
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

long sh_path_vstat(int vol, const char *rel, scp_vstat *v) {
    scp_err e;
    /* (the root too: its own entry once its mode, owner or times were set, else 0755 and no
     * owner recorded, which sh_cred_owner shows as the caller's) */
    /* (inside the library: a stat can be the process's first volume call, whose fork repair
     * opens the lock file and objects: sh_in_lib keeps them out of the program's numbers) */
    sh_in_lib++;
    int r = scp_volume_stat(sh.vol[vol].v, rel, v, &e);
    sh_lib_leave();
    if (r) return neg(&e);
    sh_cred_owner(v);
    return 0;
}

/* ---- open -------------------------------------------------------------------------------- */

/* A node holds no data in the volume. A FIFO's open is the kernel FIFO's in the volume's
 * rendezvous directory (unixsock.c), so readers and writers meet and wait as on a file
 * system; a socket node opens with ENXIO (as the kernel's), and a device with EACCES, as on a
 * file system mounted nodev: a volume never opens a host device. */
static long open_node(int vol, const char *rel, const scp_vstat *v, int flags) {
    if (flags & O_CREAT && flags & O_EXCL) return -EEXIST;
    long r = sh_cred_open(v, flags);
    if (r) return r;
    if (flags & O_PATH) { /* fstat, fchmod, fchown and /proc/self/fd/N act on the name: as a
                           * directory's descriptor, whose listing says ENOTDIR */
        pfile *pf = sh_pf_new(PF_DIR, vol, flags, rel);
        if (!pf) return -ENOMEM;
        long fd = sh_slot_alloc(pf, 0, (flags & O_CLOEXEC) != 0);
        if (fd < 0) sh_pf_put(pf);
        return fd;
    }
    if (v->type == SCP_VTYPE_LINK) return -ELOOP; /* O_NOFOLLOW on a symbolic link */
    if (v->node_type == S_IFCHR || v->node_type == S_IFBLK) return -EACCES;
    if (v->node_type != S_IFIFO) return -ENXIO;
    return sh_fifo_open(vol, v->ino + 2, flags);
}

long sh_mknod_rel(int vol, const char *rel, mode_t mode, dev_t dev) {
    mode_t t = mode & S_IFMT;
    if (t == S_IFDIR) return -EPERM;
    if (t != 0 && t != S_IFREG && t != S_IFIFO && t != S_IFSOCK && t != S_IFCHR && t != S_IFBLK)
        return -EINVAL;
    scp_vstat v;
    long r = sh_path_vstat(vol, rel, &v);
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
    if (scp_volume_mknod(sh.vol[vol].v, rel, (uint32_t)t | perm, (uint64_t)dev, &e)) return neg(&e);
    /* a kernel FIFO left under this number belongs to a node that is gone (a rename over its
     * last name): the new node's first open makes its own */
    if (t == S_IFIFO && sh_path_vstat(vol, rel, &v) == 0) sh_rdv_gone(vol, v.ino + 2);
    return 0;
}

long sh_symlink_rel(int vol, const char *rel, const char *target_in) {
    char target[PATH_MAX];
    long r = sh_copy_path_in(target_in, target, sizeof target);
    if (r < 0) return r;
    if (!target[0]) return -ENOENT;
    scp_vstat v;
    if (!rel[0] || sh_path_vstat(vol, rel, &v) == 0) return -EEXIST;
    if ((r = sh_cred_parent(vol, rel, 3))) return r;
    scp_err e;
    return scp_volume_symlink(sh.vol[vol].v, target, rel, &e) ? neg(&e) : 0;
}

/* O_TMPFILE: a protected file with no name in directory rel, until linkat gives it one
 * (sh_link_fd); closed without one it leaves nothing in the volume (scp_vfile_open_nameless). */
static long open_nameless(int vol, const char *rel, int flags, mode_t mode) {
    int acc = flags & O_ACCMODE;
    /* the kernel's checks, in its order: the flags, then the directory (glibc's O_TMPFILE
     * holds O_DIRECTORY's bit) */
    if ((flags & (O_TMPFILE | O_CREAT)) != O_TMPFILE || (acc != O_WRONLY && acc != O_RDWR))
        return -EINVAL;
    scp_vstat v;
    long r = sh_path_vstat(vol, rel, &v);
    if (r) return r;
    if (v.type != SCP_VTYPE_DIR) return -ENOTDIR;
    if ((r = sh_cred_access(&v, 3))) return r;
    scp_err e;
    scp_vfile *vf = scp_vfile_open_nameless(sh.vol[vol].v, rel, acc | (flags & O_EXCL),
                                            (uint32_t)(mode & ~sh.umask & 07777), &e);
    if (!vf) return neg(&e);
    pfile *pf = sh_pf_new(PF_FILE, vol, flags & ~(O_TMPFILE | O_EXCL | O_CLOEXEC), rel);
    char *room = pf ? realloc(pf->path, PATH_MAX) : NULL;
    if (!room) {
        if (pf) sh_pf_put(pf);
        scp_vfile_close(vf, NULL);
        return -ENOMEM;
    }
    pf->path = room;
    pf->vf = vf;
    pf->nameless = 1;
    if (flags & O_APPEND) scp_vfile_set_append(vf, 1);
    long fd = sh_slot_alloc(pf, 0, (flags & O_CLOEXEC) != 0);
    if (fd < 0) sh_pf_put(pf);
    sh_trace("open(O_TMPFILE) in '%s' = %ld", rel, fd);
    return fd;
}

long sh_open_rel(int vol, const char *rel, int flags, mode_t mode) {
    /* O_DIRECT is accepted and ignored: the shield does its own buffered, encrypted I/O,
     * so the page cache is bypassed in spirit and no alignment is required */
    flags &= ~O_DIRECT;
    if ((flags & O_TMPFILE) == O_TMPFILE) return open_nameless(vol, rel, flags, mode);
    int cloexec = (flags & O_CLOEXEC) != 0;
    scp_vstat v;
    long r = sh_path_vstat(vol, rel, &v);
    if (r == 0 && v.type == SCP_VTYPE_DIR) {
        if ((flags & O_CREAT) && (flags & O_EXCL)) return -EEXIST;
        if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_CREAT)) return -EISDIR;
        if ((r = sh_cred_open(&v, flags))) return r;
        pfile *pf = sh_pf_new(PF_DIR, vol, flags, rel);
        if (!pf) return -ENOMEM;
        long fd = sh_slot_alloc(pf, 0, cloexec);
        if (fd < 0) sh_pf_put(pf);
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
    pfile *pf = sh_pf_new(PF_FILE, vol, (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC)), rel);
    if (!pf) {
        scp_vfile_close(vf, NULL);
        return -ENOMEM;
    }
    pf->vf = vf;
    long fd = sh_slot_alloc(pf, 0, cloexec);
    if (fd < 0) sh_pf_put(pf);
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

long sh_do_getdents(pfile *pf, char *buf, size_t len) {
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

long sh_io_read(pfile *pf, void *buf, size_t n, long long off) {
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
    long r = sh_pf_vstat(pf, &v);
    if (r) return r == -ENOENT ? 0 : r; /* no name left: nothing to clear */
    uint32_t m = v.mode & 07777, nm = sh_cred_after_write(&v);
    if (nm == m) return 0;
    return scp_volume_setattr(sh.vol[pf->vol].v, pf->path, nm, -1, -1, INT64_MIN, &e) ? neg(&e) : 0;
}

long sh_io_write(pfile *pf, const void *buf, size_t n, long long off) {
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

long sh_io_zero(pfile *pf, long long off, long long len, int keep_size) {
    long pr = !pf->privs_checked ? write_drops_privs(pf) : 0;
    if (pr) return pr;
    scp_err e;
    pf->wpid = sh.pid; /* (before: see sh_io_write) */
    if (scp_vfile_zero_range(pf->vf, (uint64_t)off, (uint64_t)len, keep_size, &e) < 0 ||
        ((pf->flags & O_DSYNC) && scp_vfile_fsync(pf->vf, &e) < 0)) {
        sh_trace("zeroing a range of '%s' failed: %s", pf->path, e.msg);
        return neg(&e);
    }
    return 0;
}

long sh_io_vec(pfile *pf, const struct iovec *iov, long cnt, long long off, int wr) {
    if (cnt < 0 || cnt > IOV_MAX) return -EINVAL;
    long total = 0;
    for (long i = 0; i < cnt; i++) {
        if (!iov[i].iov_len) continue;
        long r = wr ? sh_io_write(pf, iov[i].iov_base, iov[i].iov_len, off < 0 ? -1 : off + total)
                    : sh_io_read(pf, iov[i].iov_base, iov[i].iov_len, off < 0 ? -1 : off + total);
        if (r < 0) return total ? total : r;
        total += r;
        if ((size_t)r < iov[i].iov_len) break;
    }
    return total;
}

long sh_do_lseek(pfile *pf, long long off, int whence) {
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

long sh_cur_offset(pfile *pf) {
    struct sh_ofd *o = sh_ofd_enter(pf);
    long r = sh_do_lseek(pf, 0, SEEK_CUR);
    sh_ofd_leave(pf, o);
    return r;
}

/* Copy between two descriptors, at least one of them protected (sendfile, splice,
 * copy_file_range). Offsets: NULL means the descriptor's cursor. */
#define COPY_BUF (128u << 10)
#define COPY_IOV 128 /* cached chunks per writev (512 KiB with 4 KiB chunks) */
static __thread char *copy_buf; /* per thread, mapped on first use (no malloc: may run in the trap) */

/* sh_ofd_enter for the two descriptions of a copy (either may be NULL, never the same one): the
 * process's guards by address, then the shared slots by slot, one order in every process, so
 * two copies between the same two files in opposite directions cannot wait for each other. */
static void ofd_enter_pair(pfile *a, struct sh_ofd **oa, pfile *b, struct sh_ofd **ob) {
    assert(!a || a != b);
    pfile *g1 = a, *g2 = b;
    if (a && b && (uintptr_t)b < (uintptr_t)a) g1 = b, g2 = a;
    if (g1) pthread_mutex_lock(&g1->mu);
    if (g2) pthread_mutex_lock(&g2->mu);
    if (a && b && (uintptr_t)b->ofd < (uintptr_t)a->ofd) *ob = sh_ofd_lock(b);
    if (a) *oa = sh_ofd_lock(a);
    if (b && !*ob) *ob = sh_ofd_lock(b);
}

long sh_do_copy(long in, long long *inoff, long out, long long *outoff, size_t count) {
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
    pfile *pin = sh_is_prot(in) ? sh_pf_get(in, &e) : NULL;
    if (e) return e;
    pfile *pout = sh_is_prot(out) ? sh_pf_get(out, &e) : NULL;
    if (e) {
        sh_pf_put(pin);
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
        if (pin) r = sh_io_read(pin, buf, want, inoff ? *inoff : -1);
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
            if (pout) w = sh_io_write(pout, buf + done, got - done, outoff ? *outoff : -1);
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
    if (co) sh_ofd_leave(co, oo);
    if (ci) sh_ofd_leave(ci, oi); /* the guards in any order */
    sh_pf_put(pin);
    sh_pf_put(pout);
    return total;
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

long sh_link_rel(int vol, const char *from, const char *to, long flags) {
    scp_vstat v;
    scp_err e;
    long r;
    if (flags & ~(long)(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH)) return -EINVAL;
    if ((r = sh_cred_search(vol, from)) || (r = sh_path_vstat(vol, from, &v))) return r;
    if ((r = link_check(vol, to, &v))) return r;
    sh_in_lib++;
    r = scp_volume_link(sh.vol[vol].v, from, to, &e) ? neg(&e) : 0;
    sh_lib_leave();
    sh_trace("link('%s', '%s' in volume %d) = %ld", from, to, vol, r);
    return r;
}

int sh_link_fd(int fd, const long a[6], long *ret) {
    char rel2[PATH_MAX];
    int vol2 = -1;
    long ee = 0;
    int c2 = sh_classify((int)a[2], (const char *)a[3], &vol2, rel2, sizeof rel2);
    if (c2 < 0) { *ret = c2; return 1; }
    pfile *pf = sh_pf_get(fd, &ee);
    if (!pf) { *ret = ee; return 1; }
    long r = 0;
    if (c2 == 0 || vol2 != pf->vol) r = -EXDEV;
    else if (pf->kind != PF_FILE) r = -EPERM; /* a directory (or the console's) */
    else if ((a[4] & ~(long)(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH))) r = -EINVAL;
    if (!r) {
        char la[PATH_MAX];
        int f2 = sh_follow_links(&vol2, rel2, sizeof rel2, 0, la, sizeof la);
        r = f2 < 0 ? f2 : f2 == 2 || vol2 != pf->vol ? -EXDEV : 0;
    }
    scp_vstat v;
    if (!r) r = sh_pf_vstat(pf, &v);
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
    sh_pf_put(pf);
    *ret = r;
    return 1;
}
