/* shield/unixsock.c - UNIX sockets and FIFOs named by a path in a protected volume
 * (docs/shield.md, "UNIX sockets", "FIFOs").
 *
 * A socket's name is a file system node, and the kernel finds the listening socket through
 * that node's inode. A volume cannot hold a kernel inode, so the two halves are split:
 *  - the NAME is a socket node in the volume (S_IFSOCK, as mknod makes: owner, mode from
 *    0777 & ~umask, times), so stat, chmod, chown, rename, link and unlink act on it as on
 *    any other node;
 *  - the kernel SOCKET is bound in a rendezvous directory that only the shield uses, sock/ in
 *    the volume's backing directory (0700, reached through the launcher's descriptor for it:
 *    /proc/self/fd/N/sock/), under a name made from the node's stable file number. A rename
 *    or link of the node keeps the number, so it keeps reaching the same socket; an unlinked
 *    node can no longer be found, and unlink of its last name removes the host socket (a
 *    listener stays open and unreachable, as on Linux).
 * connect, sendto and sendmsg to a path in a volume resolve the node as the kernel would
 * (search permission, write permission on the node, ECONNREFUSED for a node that is not a
 * socket or that no one listens on) and go to the rendezvous socket. getsockname,
 * getpeername and accept report the program's path again (the names this process bound or
 * connected to; see the docs for what differs). Nothing that goes over such a socket touches
 * the volume.
 * A FIFO is split the same way: the node in the volume (mkfifo, mknod), and a kernel FIFO in
 * the rendezvous directory under the node's number, made at the first open, which every open
 * of the node opens with the program's flags (so a blocking open waits for the other side,
 * and the bytes flow through the kernel's pipe, never through the volume).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#undef PF_FILE /* <sys/socket.h>'s; internal.h has its own */
#include "shield/internal.h"

#define RDV_DIR "sock"

/* The path an AF_UNIX address names, as the kernel reads it (up to the first NUL): 0 with path
 * filled, 1 when it names no file (another family, an abstract name, a length the kernel
 * refuses: the kernel answers), -EFAULT. */
static long addr_path(const struct sockaddr *sa, socklen_t len, char path[sizeof((struct sockaddr_un *)0)->sun_path + 1]) {
    struct sockaddr_un un;
    if (!sa || len <= offsetof(struct sockaddr_un, sun_path) || len > sizeof un) return 1;
    if (sh_copy_in(&un, sa, len)) return -EFAULT;
    if (un.sun_family != AF_UNIX || !un.sun_path[0]) return 1;
    size_t plen = len - offsetof(struct sockaddr_un, sun_path);
    memcpy(path, un.sun_path, plen);
    path[plen] = 0;
    return 0;
}

/* Where volume vol's socket for file number ino lives on the host. */
static socklen_t rdv_addr(int vol, uint64_t ino, struct sockaddr_un *un) {
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    int n = snprintf(un->sun_path, sizeof un->sun_path, "/proc/self/fd/%d/" RDV_DIR "/%" PRIx64,
                     sh.cfg.vol[vol].dirfd, ino);
    assert(n > 0 && (size_t)n < sizeof un->sun_path); /* a descriptor number and 16 digits */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
}

/* The kernel object's name for file number ino, relative to the volume's directory
 * ("sock/<hex ino>", as rdv_addr names it from the root). */
static void rdv_name(uint64_t ino, char name[32]) {
    snprintf(name, 32, RDV_DIR "/%" PRIx64, ino);
}

/* The rendezvous directory of volume vol, made at its first use (0700: the shield's alone). */
static void rdv_dir_make(int vol) {
    sh_gate(SYS_mkdirat, sh.cfg.vol[vol].dirfd, (long)RDV_DIR, 0700, 0, 0, 0);
}

/* The node at path, as stat(2) (follow: 1) or lstat (0) would see it through the shield:
 * 1 when path is not in a volume, 0 with *st, or -errno. */
static long node_stat(const char *path, int follow, struct stat *st) {
    long a[6] = {AT_FDCWD, (long)path, (long)st, follow ? 0 : AT_SYMLINK_NOFOLLOW, 0, 0};
    long r;
    if (!sh_path_call(SYS_newfstatat, a, &r)) return 1;
    return r;
}

static int st_vol(const struct stat *st) {
    for (int i = 0; i < sh.nvol; i++)
        if (sh.vol[i].dev == st->st_dev) return i;
    return -1;
}

/* ---- the names this process bound or connected to, for getsockname and friends ------------ */

static struct {
    pthread_mutex_t mu;
    struct name_ent {
        int vol;
        uint64_t ino;
        char path[sizeof((struct sockaddr_un *)0)->sun_path + 1];
    } e[64];
    unsigned next;
} names = {.mu = PTHREAD_MUTEX_INITIALIZER};
int sh_unix_named; /* a name was noted: only then can a kernel address need mapping back */

static void name_note(int vol, uint64_t ino, const char *path) {
    pthread_mutex_lock(&names.mu);
    struct name_ent *slot = NULL;
    for (size_t i = 0; i < sizeof names.e / sizeof names.e[0] && !slot; i++)
        if (names.e[i].path[0] && names.e[i].vol == vol && names.e[i].ino == ino) slot = &names.e[i];
    if (!slot) slot = &names.e[names.next++ % (sizeof names.e / sizeof names.e[0])];
    slot->vol = vol;
    slot->ino = ino;
    snprintf(slot->path, sizeof slot->path, "%s", path);
    __atomic_store_n(&sh_unix_named, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&names.mu);
}

/* "/proc/self/fd/<dfd>/sock/<hex ino>", as rdv_addr writes it: 1, else 0. */
static int rdv_parse(const char *host, int *dfd, uint64_t *ino) {
    static const char pre[] = "/proc/self/fd/", mid[] = "/" RDV_DIR "/";
    if (strncmp(host, pre, sizeof pre - 1) != 0) return 0;
    const char *p = host + sizeof pre - 1;
    char *end;
    if (*p < '0' || *p > '9') return 0;
    long n = strtol(p, &end, 10);
    if (n > INT_MAX || strncmp(end, mid, sizeof mid - 1) != 0) return 0;
    p = end + sizeof mid - 1;
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 16);
    if (*end || errno) return 0;
    *dfd = (int)n;
    *ino = (uint64_t)v;
    return 1;
}

/* A kernel address that is a rendezvous name of this process's volumes becomes the program's
 * path (when this process bound or connected to it); anything else is left as it is. */
static int name_unmap(struct sockaddr_un *un, socklen_t *len) {
    if (*len <= offsetof(struct sockaddr_un, sun_path) || un->sun_family != AF_UNIX) return 0;
    char host[sizeof un->sun_path + 1];
    size_t plen = *len - offsetof(struct sockaddr_un, sun_path);
    if (plen > sizeof un->sun_path) plen = sizeof un->sun_path;
    memcpy(host, un->sun_path, plen);
    host[plen] = 0;
    int dfd;
    uint64_t ino;
    if (!rdv_parse(host, &dfd, &ino)) return 0;
    int vol = -1;
    for (int i = 0; i < sh.nvol; i++)
        if (sh.cfg.vol[i].dirfd == dfd) vol = i;
    if (vol < 0) return 0;
    int found = 0;
    pthread_mutex_lock(&names.mu);
    for (size_t i = 0; i < sizeof names.e / sizeof names.e[0]; i++)
        if (names.e[i].path[0] && names.e[i].vol == vol && names.e[i].ino == ino) {
            size_t n = strlen(names.e[i].path);
            memset(un->sun_path, 0, sizeof un->sun_path);
            memcpy(un->sun_path, names.e[i].path, n);
            *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (n < sizeof un->sun_path));
            found = 1;
            break;
        }
    pthread_mutex_unlock(&names.mu);
    return found;
}

/* ---- bind ---------------------------------------------------------------------------------- */

/* Is fd an AF_UNIX socket not bound yet? 0, or the kernel's errno for the bind (EBADF,
 * ENOTSOCK, EINVAL when already bound); 1: another family, the kernel answers. */
static long bind_ready(int fd) {
    int dom = 0;
    socklen_t dl = sizeof dom;
    long r = sh_gate(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, (long)&dom, (long)&dl, 0);
    if (r) return r;
    if (dom != AF_UNIX) return 1;
    struct sockaddr_un cur;
    socklen_t cl = sizeof cur;
    r = sh_gate(SYS_getsockname, fd, (long)&cur, (long)&cl, 0, 0, 0);
    if (r) return r;
    return cl > offsetof(struct sockaddr_un, sun_path) ? -EINVAL : 0;
}

long sh_unix_bind(int fd, const struct sockaddr *sa, socklen_t len, int *handled) {
    char path[sizeof((struct sockaddr_un *)0)->sun_path + 1];
    *handled = 0;
    long r = addr_path(sa, len, path);
    if (r) {
        *handled = r < 0;
        return r;
    }
    struct stat st;
    r = node_stat(path, 0, &st);
    if (r == 1) return 0; /* not in a volume */
    *handled = 1;
    if (r == 0) return -EADDRINUSE;
    if (r != -ENOENT) return r;
    if ((r = bind_ready(fd)) != 0) {
        if (r == 1) *handled = 0;
        return r;
    }
    /* the node first (the kernel's order: ENOENT, ENOTDIR, EACCES, EROFS... from the volume),
     * then the kernel socket under its number */
    long mk[6] = {AT_FDCWD, (long)path, S_IFSOCK | 0777, 0, 0, 0};
    sh_path_call(SYS_mknodat, mk, &r);
    if (r) return r == -EEXIST ? -EADDRINUSE : r;
    int vol = (r = node_stat(path, 0, &st)) == 0 ? st_vol(&st) : -1;
    if (vol < 0) return r < 0 ? r : -EIO;
    rdv_dir_make(vol);
    /* a socket left under this number belongs to a node that is gone (a rename over its last
     * name, or an unlink by a process without the shield): unreachable since */
    sh_rdv_gone(vol, (uint64_t)st.st_ino);
    struct sockaddr_un host;
    socklen_t hl = rdv_addr(vol, (uint64_t)st.st_ino, &host);
    r = sh_gate(SYS_bind, fd, (long)&host, hl, 0, 0, 0);
    if (r) {
        long un[6] = {AT_FDCWD, (long)path, 0, 0, 0, 0};
        long ur;
        sh_path_call(SYS_unlinkat, un, &ur);
        sh_trace("bind of '%s' at the rendezvous '%s' failed: %ld", path, host.sun_path, r);
        return r;
    }
    name_note(vol, (uint64_t)st.st_ino, path);
    sh_trace("bind '%s': node %" PRIx64 " in volume %d", path, (uint64_t)st.st_ino, vol);
    return 0;
}

/* Only a socket's or FIFO's last name matters: another name still reaches the kernel's
 * object. The number is st_ino's (fileops.c's fill_stat), as bind and sh_fifo_open name it. */
uint64_t sh_rdv_last_name(int vol, const char *rel) {
    scp_vstat v;
    scp_err e;
    if (!rel[0] || scp_volume_stat(sh.vol[vol].v, rel, &v, &e)) return 0;
    if (v.type != SCP_VTYPE_NODE || (v.node_type != S_IFSOCK && v.node_type != S_IFIFO) ||
        v.nlink > 1)
        return 0;
    return v.ino + 2;
}

void sh_rdv_gone(int vol, uint64_t ino) {
    char name[32];
    rdv_name(ino, name);
    sh_gate(SYS_unlinkat, sh.cfg.vol[vol].dirfd, (long)name, 0, 0, 0, 0);
}

/* ---- FIFOs ---------------------------------------------------------------------------------- */

long sh_fifo_open(int vol, uint64_t ino, int flags) {
    char name[32];
    rdv_name(ino, name);
    int dfd = sh.cfg.vol[vol].dirfd;
    rdv_dir_make(vol);
    /* (0600: the directory is the launcher's user's alone; the node's own mode was checked) */
    long r = sh_gate(SYS_mknodat, dfd, (long)name, S_IFIFO | 0600, 0, 0, 0);
    if (r && r != -EEXIST) {
        sh_trace("FIFO rendezvous '%s' not made: %ld", name, r);
        return r;
    }
    int of = (flags & (O_ACCMODE | O_NONBLOCK | O_CLOEXEC)) | O_NOFOLLOW | O_NOCTTY;
    /* A blocking open waits in the kernel until the other side opens (O_RDWR and O_NONBLOCK
     * never wait). It waits outside the shield's library section, so that the program's
     * signal handlers run meanwhile and the open can end with EINTR as natively: the
     * outermost section only (path.c's call), whose caller holds nothing across it. */
    int wait = (flags & O_ACCMODE) != O_RDWR && !(flags & O_NONBLOCK) && sh_in_lib == 1;
    if (wait) sh_lib_leave();
    r = sh_gate(SYS_openat, dfd, (long)name, of, 0, 0, 0);
    if (wait) sh_in_lib++;
    if (r == -ENOENT || r == -ELOOP) /* (the host removed or replaced it meanwhile) */
        r = -ENXIO;
    return r;
}

/* ---- connect, sendto, sendmsg -------------------------------------------------------------- */

/* The rendezvous address for a peer named by a path in a volume: 0 with *host, 1 when the
 * address is not such a path (the kernel's), -errno as the kernel's connect would fail. */
static long peer_addr(const struct sockaddr *sa, socklen_t len, struct sockaddr_un *host, socklen_t *hl) {
    char path[sizeof((struct sockaddr_un *)0)->sun_path + 1];
    long r = addr_path(sa, len, path);
    if (r) return r;
    struct stat st;
    if ((r = node_stat(path, 1, &st))) return r; /* 1: not in a volume; ENOENT, ENOTDIR, ELOOP */
    /* the kernel's order (unix_find_bsd): write permission on the node, then its type */
    long acc[6] = {AT_FDCWD, (long)path, W_OK, AT_EACCESS, 0, 0};
    sh_path_call(SYS_faccessat2, acc, &r);
    if (r) return r;
    int vol = st_vol(&st);
    if (!S_ISSOCK(st.st_mode) || vol < 0) return -ECONNREFUSED;
    *hl = rdv_addr(vol, (uint64_t)st.st_ino, host);
    name_note(vol, (uint64_t)st.st_ino, path);
    return 0;
}

/* No socket under the node's number: no one has bound it (or its listener has gone). */
static long refused(long r) { return r == -ENOENT ? -ECONNREFUSED : r; }

long sh_unix_connect(int fd, const struct sockaddr *sa, socklen_t len, int *handled) {
    struct sockaddr_un host;
    socklen_t hl;
    long r = peer_addr(sa, len, &host, &hl);
    *handled = r <= 0;
    if (r) return r;
    return refused(sh_gate(SYS_connect, fd, (long)&host, hl, 0, 0, 0));
}

long sh_unix_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa, socklen_t len,
                    int *handled) {
    struct sockaddr_un host;
    socklen_t hl;
    long r = peer_addr(sa, len, &host, &hl);
    *handled = r <= 0;
    if (r) return r;
    return refused(sh_gate(SYS_sendto, fd, (long)buf, (long)n, flags, (long)&host, hl));
}

long sh_unix_sendmsg(int fd, const struct msghdr *m, int flags, int *handled) {
    struct msghdr copy;
    *handled = 0;
    if (!m) return 0;
    if (sh_copy_in(&copy, m, sizeof copy)) {
        *handled = 1;
        return -EFAULT;
    }
    struct sockaddr_un host;
    socklen_t hl;
    long r = peer_addr(copy.msg_name, copy.msg_namelen, &host, &hl);
    *handled = r <= 0;
    if (r) return r;
    copy.msg_name = &host;
    copy.msg_namelen = hl;
    return refused(sh_gate(SYS_sendmsg, fd, (long)&copy, flags, 0, 0, 0));
}

/* ---- the addresses the kernel reports ------------------------------------------------------ */

/* An address the kernel wrote at sa (*len its full length) that may be a rendezvous name:
 * rewritten in place to the program's path, truncated to the caller's room (cap bytes) and
 * *len the full length, as the kernel does. The kernel has just written both, so they are
 * mapped and writable (read directly: no probe on accept's path). */
void sh_unix_addr_out(struct sockaddr *sa, socklen_t *len, socklen_t cap) {
    if (!sa || !len || cap <= offsetof(struct sockaddr_un, sun_path) || sa->sa_family != AF_UNIX) return;
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    socklen_t full = *len;
    if (full > cap || full > sizeof un) return; /* truncated: left as the kernel wrote it */
    memcpy(&un, sa, full);
    if (!name_unmap(&un, &full)) return;
    memcpy(sa, &un, full < cap ? full : cap);
    *len = full;
}

static int name_call(long nr, int fd, struct sockaddr *sa, socklen_t *len) {
    socklen_t cap;
    if (!__atomic_load_n(&sh_unix_named, __ATOMIC_ACQUIRE)) return (int)syscall(nr, fd, sa, len);
    if (!len || sh_copy_in(&cap, len, sizeof cap)) {
        errno = EFAULT;
        return -1;
    }
    long r = syscall(nr, fd, sa, len);
    if (r == 0) sh_unix_addr_out(sa, len, cap);
    return (int)r;
}

SH_EXPORT int getsockname(int fd, struct sockaddr *sa, socklen_t *len) {
    return name_call(SYS_getsockname, fd, sa, len);
}
SH_EXPORT int getpeername(int fd, struct sockaddr *sa, socklen_t *len) {
    return name_call(SYS_getpeername, fd, sa, len);
}
