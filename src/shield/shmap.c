/* shield/shmap.c - mmap of protected files, and the shared objects of writable shared mappings.
 *
 * A mapping of a protected file is anonymous memory filled with the file's plaintext; a
 * writable shared one maps the file's shared object in tmpfs (one per file, so that every
 * process sees the others' stores: sqlite's -shm), written back to the volume at msync,
 * munmap and exit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>

#include "crypto/crypto.h"
#include "shield/internal.h"
#include "shield/core.h"

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

void sh_shm_release_all(void) {
    if (!sh.active || sh_in_vfork_child()) return;
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

long sh_do_mmap(pfile *pf, void *addr, size_t len, int prot, int flags, long long off) {
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
        long g = sh_map_guard(pf);
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
        sh_pf_put(drop[i]);
    }
    return hit;
}

/* Write back every writable shared mapping this process made (exit, exec: sh_commit_all). */
void sh_maps_writeback_own(void) {
    for (int i = 0; i < MAXMAP; i++)
        if (maps[i].addr && maps[i].pid == sh.pid) map_writeback(&maps[i]);
}
