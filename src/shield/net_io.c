/* shield/net_io.c - the network shield's entry points: the socket functions that libc exports,
 * the hooks interpose.c calls for read/write/dup/close, the SIGSYS dispatch of the calls the
 * network filter traps, readiness (poll, select, epoll) and the filter itself.
 *
 * Readiness (net.c, invariants I3 and I4): while no connection has plaintext waiting (the ready
 * list) and none has ciphertext the kernel did not take (the stuck list), poll, select and
 * epoll_wait go straight to the kernel, whose answer is then the truth. Otherwise they report
 * ready-listed connections as readable without waiting (with the kernel's other events, asked
 * with a zero timeout), and wait for stuck connections' sockets to become writable alongside
 * the program's own descriptors, flushing them, until the program has an event or its timeout
 * ends.
 */
#define _GNU_SOURCE 1
#include <assert.h>
#include <dlfcn.h>
#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <stddef.h>
#include <sys/prctl.h>

#undef PF_FILE /* <sys/socket.h>'s; internal.h has its own */
#include "shield/internal.h"
#include "shield/net.h"
#include "shield/net_int.h"

uint32_t *net_epgen;

static long ret(long r) {
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

static void *next_sym(const char *name) {
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) abort();
    return p;
}
#define REAL(type, name)                                                \
    static void *real_p_##name;                                         \
    if (!real_p_##name) real_p_##name = next_sym(#name);                \
    __typeof__(type) real_##name = (__typeof__(type))real_p_##name

#define ON (sh_net_on && !sh_in_lib)
/* an address argument that may name a socket in a protected volume (unixsock.c) */
#define UNIX_ADDR(p) ((p) && sh.nvol && sh.active && !sh_in_lib)
/* What the kernel answers for a datagram to a path in a volume (it sees the empty mount
 * point): only then does sendto/sendmsg look at the address, so the data path pays nothing */
#define UNIX_MISSED(e) ((e) == ENOENT || (e) == ECONNREFUSED || (e) == ENOTDIR || (e) == EACCES)

/* ---- one connection operation ---------------------------------------------------------------- */

static __thread char *gbuf; /* gathered plaintext of writev/sendmsg (GBUF bytes per thread) */
#define GBUF (256 * 1024)
static char *gather_buf(void) {
    if (!gbuf) {
        void *p = (void *)sh_gate(SYS_mmap, 0, GBUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if ((unsigned long)p >= (unsigned long)-4095L) return NULL;
        gbuf = p;
    }
    return gbuf;
}

static long c_read(nconn *c, void *buf, size_t n, int flags) {
    pthread_mutex_lock(&c->mu);
    long r = net_read(c, buf, n, flags);
    net_update(c);
    pthread_mutex_unlock(&c->mu);
    return r;
}

static long c_write(nconn *c, const void *buf, size_t n, int flags) {
    pthread_mutex_lock(&c->mu);
    long r = net_write(c, buf, n, flags);
    net_update(c);
    pthread_mutex_unlock(&c->mu);
    return r;
}

#define GATHER_MAX (64 * 1024)
/* A protocol's connection (proto mysql rewrites what it writes): large pieces (16 KiB and
 * more) of a vector over GATHER_MAX are written where they are, the pieces between them
 * gathered. Stops at a short write, as the kernel's writev. */
static long c_writev_big(nconn *c, const struct iovec *iov, long cnt, int flags, char *g) {
    long total = 0;
    size_t glen = 0;
    for (long i = 0; i <= cnt; i++) {
        size_t len = i < cnt ? iov[i].iov_len : 0;
        int big = i == cnt || len >= 16384 || glen + len > GBUF;
        if (big && glen) { /* the gathered small pieces first */
            long r = c_write(c, g, glen, flags);
            if (r < 0) return total ? total : r;
            total += r;
            if ((size_t)r < glen) return total;
            glen = 0;
        }
        if (i == cnt || !len) continue;
        if (len >= 16384) {
            long r = c_write(c, iov[i].iov_base, len, flags);
            if (r < 0) return total ? total : r;
            total += r;
            if ((size_t)r < len) return total;
        } else {
            memcpy(g + glen, iov[i].iov_base, len);
            glen += len;
        }
    }
    return total;
}

/* A vector's bytes make records as one buffer's would, not one record per piece: TLS
 * connections cut them from the vector, a record at a time (net_writev_tls); a protocol's
 * connection gets them gathered (up to GATHER_MAX; beyond, c_writev_big). */
static long c_writev(nconn *c, const struct iovec *iov, long cnt, int flags) {
    if (cnt < 0 || cnt > 1024) return -EINVAL;
    if (cnt == 1) return c_write(c, iov[0].iov_base, iov[0].iov_len, flags);
    char *g = gather_buf();
    if (!g) return -ENOMEM;
    size_t len = 0;
    for (long i = 0; i < cnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - len) return -EINVAL; /* as the kernel */
        len += iov[i].iov_len;
    }
    pthread_mutex_lock(&c->mu);
    if (!c->my) {
        long r = net_writev_tls(c, iov, cnt, len, flags, g);
        net_update(c);
        pthread_mutex_unlock(&c->mu);
        return r;
    }
    pthread_mutex_unlock(&c->mu);
    if (len > GATHER_MAX) return c_writev_big(c, iov, cnt, flags, g);
    len = 0;
    for (long i = 0; i < cnt; i++) {
        memcpy(g + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    return c_write(c, g, len, flags);
}

static long c_readv(nconn *c, const struct iovec *iov, long cnt, int flags) {
    if (cnt < 0 || cnt > 1024) return -EINVAL;
    long total = 0;
    for (long i = 0; i < cnt; i++) {
        if (!iov[i].iov_len) continue;
        long r = c_read(c, iov[i].iov_base, iov[i].iov_len, total ? flags | MSG_DONTWAIT : flags);
        if (r < 0) return total ? total : r;
        total += r;
        if ((size_t)r < iov[i].iov_len) break;
    }
    return total;
}

/* ---- hooks for interpose.c and fileops.c -------------------------------------------------------- */

long sh_net_read(int fd, void *buf, size_t n) {
    nconn *c = net_get(fd);
    if (!c) return sh_gate(SYS_read, fd, (long)buf, (long)n, 0, 0, 0);
    long r = c_read(c, buf, n, 0);
    net_put(c);
    return r;
}

long sh_net_write(int fd, const void *buf, size_t n) {
    nconn *c = net_get(fd);
    if (!c) return sh_gate(SYS_write, fd, (long)buf, (long)n, 0, 0, 0);
    long r = c_write(c, buf, n, 0);
    net_put(c);
    return r;
}

long sh_net_writev(int fd, const struct iovec *iov, int cnt) {
    nconn *c = net_get(fd);
    if (!c) return sh_gate(SYS_writev, fd, (long)iov, cnt, 0, 0, 0);
    long r = c_writev(c, iov, cnt, 0);
    net_put(c);
    return r;
}

long sh_net_readv(int fd, const struct iovec *iov, int cnt) {
    nconn *c = net_get(fd);
    if (!c) return sh_gate(SYS_readv, fd, (long)iov, cnt, 0, 0, 0);
    long r = c_readv(c, iov, cnt, 0);
    net_put(c);
    return r;
}

int sh_net_vec(long nr, int fd, const struct iovec *iov, int cnt, long *r) {
    if (nr == SYS_writev) *r = sh_net_writev(fd, iov, cnt);
    else if (sh_net_is(fd)) *r = sh_net_readv(fd, iov, cnt);
    else return 0;
    return 1;
}

long sh_net_dup(long nr, const long a[6]) {
    long r = sh_gate(nr, a[0], a[1], a[2], 0, 0, 0);
    if (r < 0) return r;
    if (nr == SYS_fcntl && a[1] != F_DUPFD && a[1] != F_DUPFD_CLOEXEC) return r;
    if ((nr == SYS_dup2 || nr == SYS_dup3) && a[0] == a[1]) return r;
    if (r >= net_tbl_n) { /* a copy of a shielded connection the table cannot hold: none */
        if (!sh_net_is((int)a[0])) return r;
        sh_gate(SYS_close, r, 0, 0, 0, 0, 0);
        return -EMFILE;
    }
    nconn *c = net_get((int)a[0]);
    if (c || net_tbl[r]) net_tbl_set((int)r, c);
    if (c) net_put(c);
    return r;
}

/* sendfile/splice into a shielded socket: through the shield. With an offset, up to GBUF
 * bytes at a time (the lean layer seals them in one batch, one sendto): the offset moves by
 * what the connection took, so what the socket did not take is read again next time. Without
 * one the file's own position moves at the read, so at most one record at a time, which the
 * connection takes whole or not at all, so that nothing taken from the input is lost when the
 * socket is full. (It was one record at a time either way: a short count where the kernel would
 * have sent everything, and nginx takes a short count for a full socket and waits for the
 * socket's next write event before it goes on.) */
static long copy_in_to(nconn *c, int in, long long *off, size_t n) {
    char *g = gather_buf();
    if (!g) return -ENOMEM;
    size_t cap = off ? GBUF : 16384;
    if (n > cap) n = cap;
    pthread_mutex_lock(&c->mu);
    long r = 0;
    if (net_wpending(c) && net_flush(c, 0, 0) == -EAGAIN) r = -EAGAIN;
    pthread_mutex_unlock(&c->mu);
    if (r) return r;
    r = off ? sh_gate(SYS_pread64, in, (long)g, (long)n, (long)*off, 0, 0) : sh_gate(SYS_read, in, (long)g, (long)n, 0, 0, 0);
    if (r <= 0) return r;
    long w = c_write(c, g, (size_t)r, 0);
    if (w > 0 && off) *off += w;
    return w;
}

long sh_net_sendfile(int out, int in, long long *off, size_t n) {
    nconn *c = net_get(out), *ci = net_get(in);
    long r;
    if (ci) r = -EINVAL; /* as the kernel: sendfile's input must be a file */
    else if (!c) r = sh_gate(SYS_sendfile, out, in, (long)off, (long)n, 0, 0);
    else r = copy_in_to(c, in, off, n);
    if (c) net_put(c);
    if (ci) net_put(ci);
    return r;
}

/* One step of splice_out under the connection's lock: the plaintext buffered in the shield
 * (one record at most, peeked) goes into the empty private pipe p, a non-blocking splice moves
 * what the program's pipe takes, and exactly that much is consumed from the connection. The
 * rest is drained from p. Returns the bytes moved, 0 at the end, or -errno (-EAGAIN: nothing
 * buffered, or the pipe is full). */
static long splice_step(nconn *c, const int p[2], int out, size_t n, unsigned fl, char *g) {
    pthread_mutex_lock(&c->mu);
    long k = net_read(c, g, n, MSG_PEEK | MSG_DONTWAIT), m = k;
    if (k > 0) {
        long w = sh_gate(SYS_write, p[1], (long)g, k, 0, 0, 0); /* 64 KiB of room: takes it whole */
        m = w == k ? sh_gate(SYS_splice, p[0], 0, out, 0, k, SPLICE_F_NONBLOCK | (fl & SPLICE_F_MORE)) : w < 0 ? w : -EIO;
        if (m > 0) {
            long t = net_read(c, g, (size_t)m, MSG_DONTWAIT); /* the same bytes: they were buffered */
            assert(t == m);
            (void)t;
        }
        long left = w > 0 ? w - (m > 0 ? m : 0) : 0;
        while (left > 0) {
            long d = sh_gate(SYS_read, p[0], (long)g, left, 0, 0, 0);
            if (d <= 0) break;
            left -= d;
        }
    }
    net_update(c);
    pthread_mutex_unlock(&c->mu);
    return m;
}

/* splice out of a shielded socket into a pipe: the plaintext goes through a private pipe of
 * the shield (splice_step), so no decrypted byte is lost when the program's pipe is full and no
 * other reader of the connection gets a byte twice. It waits as the kernel's splice does,
 * outside the lock: never with SPLICE_F_NONBLOCK; otherwise for plaintext as a read would (the
 * socket's O_NONBLOCK), and for room in the pipe whatever the pipe's O_NONBLOCK. */
static long splice_out(nconn *c, int out, size_t n, unsigned fl) {
    struct stat st;
    long r = sh_gate(SYS_fstat, out, (long)&st, 0, 0, 0, 0);
    if (r < 0) return r;
    if (!S_ISFIFO(st.st_mode)) return -EINVAL; /* as the kernel: one end must be a pipe */
    if (n == 0) return 0;
    char *g = gather_buf();
    if (!g) return -ENOMEM;
    if (n > 16384) n = 16384; /* a record */
    int p[2], nb = (fl & SPLICE_F_NONBLOCK) != 0;
    r = sh_gate(SYS_pipe2, (long)p, O_CLOEXEC, 0, 0, 0, 0);
    if (r < 0) return r;
    for (;;) {
        r = c_read(c, g, n, MSG_PEEK | (nb ? MSG_DONTWAIT : 0)); /* waits for plaintext, if it may */
        if (r <= 0) break;
        r = splice_step(c, p, out, n, fl, g);
        if (r != -EAGAIN || nb) break;
        struct pollfd pf = {out, POLLOUT, 0}; /* the pipe is full: wait for room */
        r = sh_gate(SYS_poll, (long)&pf, 1, -1, 0, 0, 0);
        if (r < 0) break;
    }
    sh_gate(SYS_close, p[0], 0, 0, 0, 0, 0);
    sh_gate(SYS_close, p[1], 0, 0, 0, 0, 0);
    return r;
}

long sh_net_splice(int in, long long *oin, int out, long long *oout, size_t n, unsigned fl) {
    nconn *c = net_get(out), *ci = net_get(in);
    long r;
    if (ci) r = oin || oout ? -ESPIPE : splice_out(ci, out, n, fl); /* sockets and pipes have no offset */
    else if (!c) r = sh_gate(SYS_splice, in, (long)oin, out, (long)oout, (long)n, fl);
    else r = oout ? -ESPIPE : copy_in_to(c, in, oin, n);
    if (c) net_put(c);
    if (ci) net_put(ci);
    return r;
}

/* ---- send/recv family ------------------------------------------------------------------------ */

/* A datagram or fast-open destination on a socket the shield does not hold: UDP to a port the
 * policy names for TLS is refused; TCP fast open to a peer or under default refuse too. */
static long check_dest(int fd, const void *sa, size_t len, int flags) {
    int fam, port;
    unsigned char addr[16];
    if (!sa || !net_sa_parse(sa, len, &fam, addr, &port)) return 0;
    int named = net_listen_rule(port) >= 0 || net_peer_for(fam, addr, port);
    if (!named && !((flags & MSG_FASTOPEN) && nc.refuse)) return 0;
    int t = net_sock_type(fd);
    if (t == SOCK_DGRAM && named) {
        net_log("UDP to port %d refused (a port the policy names for TLS)", port);
        return -EACCES;
    }
    if (t == SOCK_STREAM && (flags & MSG_FASTOPEN)) return nc.refuse && !named ? -ECONNREFUSED : -EOPNOTSUPP;
    return 0;
}

/* SCM_RIGHTS carrying a shielded descriptor would let another process write to the connection
 * without the shield's TLS state: refused. */
static long check_rights_out(const struct msghdr *m) {
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR((struct msghdr *)m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            if (sh_net_is(fd)) {
                net_log("passing TLS connection %d to another process refused", fd);
                return -EPERM;
            }
        }
    }
    return 0;
}

static void check_rights_in(const struct msghdr *m) {
    if (!m->msg_control || m->msg_controllen < sizeof(struct cmsghdr)) return;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR((struct msghdr *)m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            if (fd >= 0 && fd < net_tbl_n && net_tbl[fd]) net_tbl_set(fd, NULL);
            if (fd >= 0) net_quarantine(fd);
        }
    }
}

static long n_sendto(int fd, const void *buf, size_t n, int flags, const void *sa, socklen_t sl) {
    nconn *c = net_get(fd);
    if (!c) {
        long k = check_dest(fd, sa, sl, flags);
        return k ? k : sh_gate(SYS_sendto, fd, (long)buf, (long)n, flags, (long)sa, sl);
    }
    long r = c_write(c, buf, n, flags);
    net_put(c);
    return r;
}

static long peer_name(int fd, void *sa, socklen_t *sl) {
    if (!sa || !sl) return 0;
    return sh_gate(SYS_getpeername, fd, (long)sa, (long)sl, 0, 0, 0);
}

static long n_recvfrom(int fd, void *buf, size_t n, int flags, void *sa, socklen_t *sl) {
    nconn *c = net_get(fd);
    if (!c) return sh_gate(SYS_recvfrom, fd, (long)buf, (long)n, flags, (long)sa, (long)sl);
    long r = c_read(c, buf, n, flags);
    net_put(c);
    if (r >= 0) peer_name(fd, sa, sl);
    return r;
}

static long n_sendmsg(int fd, const struct msghdr *m, int flags) {
    nconn *c = net_get(fd);
    if (!c) {
        long k = check_dest(fd, m->msg_name, m->msg_namelen, flags);
        if (!k && m->msg_control) k = check_rights_out(m);
        return k ? k : sh_gate(SYS_sendmsg, fd, (long)m, flags, 0, 0, 0);
    }
    long r = c_writev(c, m->msg_iov, (long)m->msg_iovlen, flags);
    net_put(c);
    return r;
}

static long n_recvmsg(int fd, struct msghdr *m, int flags) {
    nconn *c = net_get(fd);
    if (!c) {
        long r = sh_gate(SYS_recvmsg, fd, (long)m, flags, 0, 0, 0);
        if (r >= 0) check_rights_in(m);
        return r;
    }
    long r = c_readv(c, m->msg_iov, (long)m->msg_iovlen, flags);
    net_put(c);
    if (r >= 0) {
        if (m->msg_name) {
            socklen_t sl = m->msg_namelen;
            if (peer_name(fd, m->msg_name, &sl) == 0) m->msg_namelen = sl;
        }
        m->msg_controllen = 0;
        m->msg_flags = 0;
    }
    return r;
}

static long n_sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags) {
    if (!sh_net_is(fd)) {
        for (unsigned i = 0; i < n; i++) {
            long k = check_dest(fd, v[i].msg_hdr.msg_name, v[i].msg_hdr.msg_namelen, flags);
            if (!k && v[i].msg_hdr.msg_control) k = check_rights_out(&v[i].msg_hdr);
            if (k) return k;
        }
        return sh_gate(SYS_sendmmsg, fd, (long)v, n, flags, 0, 0);
    }
    unsigned i;
    for (i = 0; i < n; i++) {
        long r = n_sendmsg(fd, &v[i].msg_hdr, flags);
        if (r < 0) return i ? (long)i : r;
        v[i].msg_len = (unsigned)r;
    }
    return (long)i;
}

static long n_recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *ts) {
    if (!sh_net_is(fd)) {
        long r = sh_gate(SYS_recvmmsg, fd, (long)v, n, flags, (long)ts, 0);
        for (long i = 0; i < r; i++) check_rights_in(&v[i].msg_hdr);
        return r;
    }
    unsigned i;
    for (i = 0; i < n; i++) {
        long r = n_recvmsg(fd, &v[i].msg_hdr, i ? flags | MSG_DONTWAIT : flags);
        if (r < 0) return i ? (long)i : r;
        v[i].msg_len = (unsigned)r;
        if (r == 0) { i++; break; }
    }
    return (long)i;
}

/* ---- the trapped calls ------------------------------------------------------------------------- */

static long n_io_submit(const long a[6]) {
    struct iocb **v = (struct iocb **)a[2];
    for (long i = 0; i < a[1]; i++)
        if (v && v[i] && sh_net_is((int)v[i]->aio_fildes)) return -EINVAL;
    return sh_gate(SYS_io_submit, a[0], a[1], a[2], 0, 0, 0);
}

int sh_net_trap(long nr, const long a[6], long *r) {
    if (!sh_net_on) return 0;
    switch (nr) {
    case SYS_write: *r = sh_net_write((int)a[0], (const void *)a[1], (size_t)a[2]); return 1;
    case SYS_writev: *r = sh_net_writev((int)a[0], (const struct iovec *)a[1], (int)a[2]); return 1;
    case SYS_pwritev2:
        if (!sh_net_is((int)a[0])) *r = sh_gate(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        else *r = a[3] == -1 ? sh_net_writev((int)a[0], (const struct iovec *)a[1], (int)a[2]) : -ESPIPE;
        return 1;
    case SYS_sendto: *r = n_sendto((int)a[0], (const void *)a[1], (size_t)a[2], (int)a[3], (const void *)a[4], (socklen_t)a[5]); return 1;
    case SYS_sendmsg: *r = n_sendmsg((int)a[0], (const struct msghdr *)a[1], (int)a[2]); return 1;
    case SYS_sendmmsg: *r = n_sendmmsg((int)a[0], (struct mmsghdr *)a[1], (unsigned)a[2], (int)a[3]); return 1;
    case SYS_recvmsg: *r = n_recvmsg((int)a[0], (struct msghdr *)a[1], (int)a[2]); return 1;
    case SYS_recvmmsg: *r = n_recvmmsg((int)a[0], (struct mmsghdr *)a[1], (unsigned)a[2], (int)a[3], (struct timespec *)a[4]); return 1;
    case SYS_sendfile: *r = sh_net_sendfile((int)a[0], (int)a[1], (long long *)a[2], (size_t)a[3]); return 1;
    case SYS_splice: *r = sh_net_splice((int)a[0], (long long *)a[1], (int)a[2], (long long *)a[3], (size_t)a[4], (unsigned)a[5]); return 1;
    case SYS_connect: *r = net_connect((int)a[0], (const void *)a[1], (size_t)a[2]); return 1;
    case SYS_accept:
    case SYS_accept4: *r = net_accept(nr, a); return 1;
    case SYS_listen: *r = net_listen((int)a[0], (int)a[1]); return 1;
    case SYS_dup:
    case SYS_dup2:
    case SYS_dup3:
    case SYS_fcntl: *r = sh_net_dup(nr, a); return 1;
    case SYS_pidfd_getfd:
        *r = sh_gate(nr, a[0], a[1], a[2], 0, 0, 0);
        if (*r >= 0) net_quarantine((int)*r);
        return 1;
    case SYS_io_submit: *r = n_io_submit(a); return 1;
    default: return 0;
    }
}

/* ---- the filter ------------------------------------------------------------------------------ */

/* What the shield's filter traps for the network shield unless it comes from the gate (gate.c
 * builds it into the image's one filter): every call that could put a shielded connection's
 * bytes on the wire or make another descriptor for it; fcntl for F_DUPFD(_CLOEXEC) only. */
static const int net_nrs[] = {SYS_write,    SYS_writev,  SYS_pwritev2, SYS_sendto,  SYS_sendmsg,  SYS_sendmmsg,
                              SYS_sendfile, SYS_splice,  SYS_connect,  SYS_accept,  SYS_accept4,  SYS_listen,
                              SYS_dup,      SYS_dup2,    SYS_dup3,     SYS_recvmsg, SYS_recvmmsg, SYS_pidfd_getfd,
                              SYS_io_submit, SYS_fcntl};

int sh_net_filter_nrs(const int **nrs, int *n, scp_err *err) {
    *nrs = net_nrs;
    *n = 0;
    if (nc.filtered) return 0;
    /* the gate's `syscall` instruction, which the filter lets through, ends 25 bytes into the
     * gate page (gate.c, GATE_RET_OFF): checked here so that a change there fails closed */
    const unsigned char *g = (const unsigned char *)SCP_SHIELD_GATE_ADDR;
    if (g[23] != 0x0f || g[24] != 0x05)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "internal error: the gate layout changed");
    *n = (int)(sizeof net_nrs / sizeof net_nrs[0]);
    nc.filtered = 1; /* the caller installs the filter or the image dies */
    return 0;
}

/* ---- exported functions (the fast path) ------------------------------------------------------ */

SH_EXPORT ssize_t send(int fd, const void *b, size_t n, int fl) {
    if (!ON) {
        REAL(ssize_t (*)(int, const void *, size_t, int), send);
        return real_send(fd, b, n, fl);
    }
    return ret(n_sendto(fd, b, n, fl, NULL, 0));
}
static ssize_t sendto_kernel(int fd, const void *b, size_t n, int fl, const struct sockaddr *sa, socklen_t sl) {
    if (!ON) {
        REAL(ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t), sendto);
        return real_sendto(fd, b, n, fl, sa, sl);
    }
    return ret(n_sendto(fd, b, n, fl, sa, sl));
}
SH_EXPORT ssize_t sendto(int fd, const void *b, size_t n, int fl, const struct sockaddr *sa, socklen_t sl) {
    ssize_t r = sendto_kernel(fd, b, n, fl, sa, sl);
    if (r < 0 && UNIX_ADDR(sa) && UNIX_MISSED(errno)) {
        int h, e = errno;
        long u = sh_unix_sendto(fd, b, n, fl, sa, sl, &h);
        if (h) return ret(u);
        errno = e;
    }
    return r;
}
static ssize_t sendmsg_kernel(int fd, const struct msghdr *m, int fl) {
    if (!ON) {
        REAL(ssize_t (*)(int, const struct msghdr *, int), sendmsg);
        return real_sendmsg(fd, m, fl);
    }
    return ret(n_sendmsg(fd, m, fl));
}
SH_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int fl) {
    ssize_t r = sendmsg_kernel(fd, m, fl);
    if (r < 0 && UNIX_ADDR(m) && UNIX_MISSED(errno)) {
        int h, e = errno;
        long u = sh_unix_sendmsg(fd, m, fl, &h);
        if (h) return ret(u);
        errno = e;
    }
    return r;
}
SH_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int fl) {
    if (!ON) {
        REAL(int (*)(int, struct mmsghdr *, unsigned, int), sendmmsg);
        return real_sendmmsg(fd, v, n, fl);
    }
    return (int)ret(n_sendmmsg(fd, v, n, fl));
}
SH_EXPORT ssize_t recv(int fd, void *b, size_t n, int fl) {
    if (!ON || !sh_net_is(fd)) {
        REAL(ssize_t (*)(int, void *, size_t, int), recv);
        return real_recv(fd, b, n, fl);
    }
    return ret(n_recvfrom(fd, b, n, fl, NULL, NULL));
}
SH_EXPORT ssize_t __recv_chk(int fd, void *b, size_t n, size_t bl, int fl);
SH_EXPORT ssize_t __recv_chk(int fd, void *b, size_t n, size_t bl, int fl) {
    if (n > bl) abort();
    return recv(fd, b, n, fl);
}
SH_EXPORT ssize_t recvfrom(int fd, void *b, size_t n, int fl, struct sockaddr *sa, socklen_t *sl) {
    if (!ON || !sh_net_is(fd)) {
        REAL(ssize_t (*)(int, void *, size_t, int, struct sockaddr *, socklen_t *), recvfrom);
        return real_recvfrom(fd, b, n, fl, sa, sl);
    }
    return ret(n_recvfrom(fd, b, n, fl, sa, sl));
}
SH_EXPORT ssize_t __recvfrom_chk(int fd, void *b, size_t n, size_t bl, int fl, struct sockaddr *sa, socklen_t *sl);
SH_EXPORT ssize_t __recvfrom_chk(int fd, void *b, size_t n, size_t bl, int fl, struct sockaddr *sa, socklen_t *sl) {
    if (n > bl) abort();
    return recvfrom(fd, b, n, fl, sa, sl);
}
SH_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int fl) {
    if (!ON) {
        REAL(ssize_t (*)(int, struct msghdr *, int), recvmsg);
        return real_recvmsg(fd, m, fl);
    }
    return ret(n_recvmsg(fd, m, fl));
}
SH_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int fl, struct timespec *ts) {
    if (!ON) {
        REAL(int (*)(int, struct mmsghdr *, unsigned, int, struct timespec *), recvmmsg);
        return real_recvmmsg(fd, v, n, fl, ts);
    }
    return (int)ret(n_recvmmsg(fd, v, n, fl, ts));
}
SH_EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *sl) {
    return accept4(fd, sa, sl, 0);
}
SH_EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *sl, int fl) {
    socklen_t cap = 0; /* the room for the address: the peer may be a name in a volume */
    if (UNIX_ADDR(sa) && sl && __atomic_load_n(&sh_unix_named, __ATOMIC_ACQUIRE) && sh_copy_in(&cap, sl, sizeof cap))
        cap = 0;
    int r;
    if (!ON) {
        REAL(int (*)(int, struct sockaddr *, socklen_t *, int), accept4);
        r = real_accept4(fd, sa, sl, fl);
    } else {
        long a[6] = {fd, (long)sa, (long)sl, fl, 0, 0};
        r = (int)ret(net_accept(SYS_accept4, a));
    }
    if (r >= 0 && cap) sh_unix_addr_out(sa, sl, cap);
    return r;
}
SH_EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t sl) {
    if (UNIX_ADDR(sa)) {
        int h;
        long u = sh_unix_connect(fd, sa, sl, &h);
        if (h) return (int)ret(u);
    }
    if (!ON) {
        REAL(int (*)(int, const struct sockaddr *, socklen_t), connect);
        return real_connect(fd, sa, sl);
    }
    return (int)ret(net_connect(fd, sa, sl));
}
SH_EXPORT int listen(int fd, int backlog) {
    if (!ON) {
        REAL(int (*)(int, int), listen);
        return real_listen(fd, backlog);
    }
    return (int)ret(net_listen(fd, backlog));
}
SH_EXPORT int shutdown(int fd, int how) {
    nconn *c = ON ? net_get(fd) : NULL;
    if (!c) {
        REAL(int (*)(int, int), shutdown);
        return real_shutdown(fd, how);
    }
    pthread_mutex_lock(&c->mu);
    long r = net_shutdown(c, how);
    net_update(c);
    pthread_mutex_unlock(&c->mu);
    net_put(c);
    return (int)ret(r);
}

/* A wait that watches a connection for reading goes through the shield even when nothing is
 * buffered: another thread may buffer plaintext while this one sleeps. */
static int polls_conn(struct pollfd *fds, nfds_t n) { /* (not const: glibc declares poll's array write-only) */
    if (!__atomic_load_n(&net_nconns, __ATOMIC_ACQUIRE)) return 0;
    for (nfds_t i = 0; i < n; i++)
        if ((fds[i].events & (POLLIN | POLLRDNORM)) && sh_net_is(fds[i].fd)) return 1;
    return 0;
}
static int selects_conn(int nfds, const fd_set *r) {
    if (!r || !__atomic_load_n(&net_nconns, __ATOMIC_ACQUIRE)) return 0;
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
        if (FD_ISSET(fd, r) && sh_net_is(fd)) return 1;
    return 0;
}

SH_EXPORT int poll(struct pollfd *fds, nfds_t n, int ms) {
    if (!ON || (net_quiet() && !polls_conn(fds, n))) {
        REAL(int (*)(struct pollfd *, nfds_t, int), poll);
        return real_poll(fds, n, ms);
    }
    return (int)ret(net_poll_core(fds, n, net_deadline_ms(ms), NULL));
}
SH_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int ms, size_t fl);
SH_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int ms, size_t fl) {
    if (fl / sizeof *fds < n) abort();
    return poll(fds, n, ms);
}
static int ppoll_(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask) {
    if (!ON || (net_quiet() && !polls_conn(fds, n))) {
        REAL(int (*)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *), ppoll);
        return real_ppoll(fds, n, ts, mask);
    }
    return (int)ret(net_poll_core(fds, n, net_deadline_ts(ts), mask));
}
/* the program's handlers that run in it start from its mask (nofault.c) */
SH_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask) {
    int nf = sh_nf_mask_enter(mask);
    int k = ppoll_(fds, n, ts, mask);
    sh_nf_mask_leave(nf);
    return k;
}
SH_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv) {
    if (!ON || (net_quiet() && !selects_conn(nfds, r))) {
        REAL(int (*)(int, fd_set *, fd_set *, fd_set *, struct timeval *), select);
        return real_select(nfds, r, w, x, tv);
    }
    long long dl = tv ? net_now_ns() + (long long)tv->tv_sec * 1000000000LL + (long long)tv->tv_usec * 1000 : -1;
    long k = net_select(nfds, r, w, x, dl, NULL);
    if (tv) { /* Linux reports the time left */
        long long left = dl - net_now_ns();
        if (left < 0) left = 0;
        tv->tv_sec = left / 1000000000LL;
        tv->tv_usec = (left % 1000000000LL) / 1000;
    }
    return (int)ret(k);
}
static int pselect_(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *ts, const sigset_t *mask) {
    if (!ON || (net_quiet() && !selects_conn(nfds, r))) {
        REAL(int (*)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *), pselect);
        return real_pselect(nfds, r, w, x, ts, mask);
    }
    return (int)ret(net_select(nfds, r, w, x, net_deadline_ts(ts), mask));
}
/* the program's handlers that run in it start from its mask (nofault.c) */
SH_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *ts, const sigset_t *mask) {
    int nf = sh_nf_mask_enter(mask);
    int k = pselect_(nfds, r, w, x, ts, mask);
    sh_nf_mask_leave(nf);
    return k;
}
SH_EXPORT int epoll_create(int size) {
    REAL(int (*)(int), epoll_create);
    int r = real_epoll_create(size);
    if (ON && r >= 0 && r < net_tbl_n) __atomic_add_fetch(&net_epgen[r], 1, __ATOMIC_RELAXED);
    return r;
}
SH_EXPORT int epoll_create1(int fl) {
    REAL(int (*)(int), epoll_create1);
    int r = real_epoll_create1(fl);
    if (ON && r >= 0 && r < net_tbl_n) __atomic_add_fetch(&net_epgen[r], 1, __ATOMIC_RELAXED);
    return r;
}
SH_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *e) {
    if (!ON || !sh_net_is(fd)) {
        REAL(int (*)(int, int, int, struct epoll_event *), epoll_ctl);
        return real_epoll_ctl(epfd, op, fd, e);
    }
    return (int)ret(net_epoll_ctl(epfd, op, fd, e));
}
/* The kernel's answer when nothing is buffered (the wake eventfd in the set, counted as a
 * sleeper before the look); 1 and *r set when that answer stands. */
static int ep_fast(int epfd, struct epoll_event *ev, int max, int ms, const sigset_t *mask, int pw, long *r) {
    net_ep_wake_reg(epfd);
    net_sleep(1);
    if (!net_quiet()) {
        net_sleep(0);
        return 0;
    }
    int k;
    if (pw) {
        REAL(int (*)(int, struct epoll_event *, int, int, const sigset_t *), epoll_pwait);
        k = real_epoll_pwait(epfd, ev, max, ms, mask);
    } else {
        REAL(int (*)(int, struct epoll_event *, int, int), epoll_wait);
        k = real_epoll_wait(epfd, ev, max, ms);
    }
    net_sleep(0);
    int woke = 0;
    if (k > 0) k = (int)net_strip_wake(ev, k, &woke);
    *r = k;
    return k != 0 || !woke; /* only the wake: the shield's view, for the time that is left */
}
SH_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int ms) {
    if (!ON) {
        REAL(int (*)(int, struct epoll_event *, int, int), epoll_wait);
        return real_epoll_wait(epfd, ev, max, ms);
    }
    long long dl = net_deadline_ms(ms);
    long r;
    if (ep_fast(epfd, ev, max, ms, NULL, 0, &r)) return (int)r;
    return (int)ret(net_epoll_wait(epfd, ev, max, dl, NULL));
}
static int epoll_pwait_(int epfd, struct epoll_event *ev, int max, int ms, const sigset_t *mask) {
    if (!ON) {
        REAL(int (*)(int, struct epoll_event *, int, int, const sigset_t *), epoll_pwait);
        return real_epoll_pwait(epfd, ev, max, ms, mask);
    }
    long long dl = net_deadline_ms(ms);
    long r;
    if (ep_fast(epfd, ev, max, ms, mask, 1, &r)) return (int)r;
    return (int)ret(net_epoll_wait(epfd, ev, max, dl, mask));
}
/* the program's handlers that run in it start from its mask (nofault.c) */
SH_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int ms, const sigset_t *mask) {
    int nf = sh_nf_mask_enter(mask);
    int k = epoll_pwait_(epfd, ev, max, ms, mask);
    sh_nf_mask_leave(nf);
    return k;
}
