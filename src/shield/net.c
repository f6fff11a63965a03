/* shield/net.c - the network shield: the connection table, its ready and stuck lists, moving
 * ciphertext, new connections (configuration in net_conf.c, reads and writes in net_tls.c).
 *
 * A shielded connection is a kernel TCP socket whose number the program holds (an ordinary
 * number, so event loops that index arrays by descriptor keep working) plus an nconn: an SSL
 * object whose read BIO holds ciphertext taken from the kernel (received straight into it) and
 * whose write BIO holds ciphertext not yet given to the kernel (a full record goes to the kernel
 * from OpenSSL's buffer without a stop there). The program's reads and writes on the number go
 * through tls_read/tls_write; poll, select and epoll_wait (net_wait.c) add what the kernel cannot
 * know (plaintext waiting in the SSL object).
 *
 * Invariants (checked with assert where they can be):
 *  I1 (no plaintext out) Every system call that can move bytes from the program into a socket
 *     (write, writev, pwritev2, send*, sendfile, splice, io_submit) reaches the kernel either
 *     through the shield's dispatch (the interposed symbol, or the SIGSYS handler for a raw or
 *     libc-internal call, which the network filter traps whenever it does not come from the
 *     gate) or not at all. The dispatch sends only ciphertext on a descriptor of the table.
 *  I2 (table complete) Every descriptor that refers to a shielded connection is in the table:
 *     the calls that create such descriptors (accept, accept4, connect, dup, dup2, dup3,
 *     fcntl F_DUPFD*, recvmsg with SCM_RIGHTS, pidfd_getfd) are trapped when they do not come
 *     through the shield, and a connection inherited across exec without its TLS state is
 *     replaced by an unconnected socket at start-up.
 *  I3 (readable is truthful) After every operation on a connection, it is in the ready list iff
 *     a read would return without the kernel's help: decrypted bytes or a complete record are
 *     buffered, or the connection ended (close_notify, EOF, TLS failure). poll/select/epoll
 *     report ready-listed connections as readable; a read that leaves the shield with only a
 *     partial record has drained the kernel socket first, so the kernel does not report it
 *     readable again until more bytes arrive (no spinning on a partial record).
 *  I4 (output never stranded) Ciphertext that the kernel did not take (a full send buffer) stays
 *     in the write BIO and the connection is in the stuck list; every later operation on it
 *     flushes first, a write returns EAGAIN while it cannot, and poll/select/epoll_wait wait for
 *     stuck connections to become writable and flush them, so the peer gets every byte the
 *     program was told was written even if the program never writes again.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <dirent.h>

#include <openssl/err.h>

#undef PF_FILE /* <sys/socket.h>'s; internal.h has its own */
#include "common/util.h"
#include "shield/internal.h"
#include "shield/net.h"
#include "shield/net_int.h"

int sh_net_on;
struct net_conf nc;
pthread_mutex_t net_mu = PTHREAD_MUTEX_INITIALIZER;
nconn **net_tbl;
int net_tbl_n;
int net_nconns;
nconn **net_ready, **net_stuck;
int net_nready, net_nstuck, net_cap_ready, net_cap_stuck;
/* The lean record layer for TLS 1.3 connections (SCP_NET_LEAN=0 keeps OpenSSL's throughout). */
int net_lean_on = 1;

/* ---- log ----------------------------------------------------------------------------------- */

void net_log(const char *fmt, ...) {
    char head[64];
    snprintf(head, sizeof head, "scp-shield[%ld]: network: ", (long)syscall(SYS_getpid));
    va_list ap;
    va_start(ap, fmt);
    sh_vlog_line(2, head, fmt, ap);
    va_end(ap);
}

static void fmt_addr(const struct sockaddr_storage *ss, char *out, size_t n) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
    }
    snprintf(out, n, "%s:%d", ip, port);
}

void net_conn_desc(const nconn *c, char *out, size_t n) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    char peer[80] = "?";
    if (sh_gate(SYS_getpeername, c->fd, (long)&ss, (long)&sl, 0, 0, 0) == 0) fmt_addr(&ss, peer, sizeof peer);
    if (c->server) snprintf(out, n, "TLS from %s on port %d", peer, c->port);
    else snprintf(out, n, "TLS to %s (peer name %s)", peer, c->peer ? c->peer->name : "?");
}

/* ---- session resumption (client side) -------------------------------------------------------- */

/* A client connection keeps the session a peer gives it (TLS 1.3 sends tickets after the
 * handshake), per peer rule and address, so the next connection to the same server resumes
 * (no certificate exchange or signature). Only a session from a handshake that verified this
 * rule's CA and name is kept, and only offered under the same rule, so resumption never skips
 * a check the rule asks for. */
static pthread_mutex_t sess_mu = PTHREAD_MUTEX_INITIALIZER;
int net_conn_idx = -1; /* SSL ex_data: the nconn */

int net_keep_session(SSL *ssl, SSL_SESSION *s) {
    nconn *c = SSL_get_ex_data(ssl, net_conn_idx);
    if (!c || !c->peer || !c->rfam || SSL_get_verify_result(ssl) != X509_V_OK) return 0;
    struct net_peer *p = c->peer;
    pthread_mutex_lock(&sess_mu);
    SSL_SESSION *old = p->sess;
    p->sess = s;
    p->sess_fam = c->rfam;
    memcpy(p->sess_addr, c->raddr, sizeof p->sess_addr);
    pthread_mutex_unlock(&sess_mu);
    SSL_SESSION_free(old);
    return 1; /* the reference is ours */
}

/* Offer the kept session of c's peer when c goes to the address it came from. */
static void offer_session(nconn *c) {
    struct net_peer *p = c->peer;
    pthread_mutex_lock(&sess_mu);
    SSL_SESSION *s = p->sess && p->sess_fam == c->rfam && !memcmp(p->sess_addr, c->raddr, sizeof p->sess_addr) &&
                             SSL_SESSION_is_resumable(p->sess)
                         ? p->sess
                         : NULL;
    if (s) SSL_SESSION_up_ref(s);
    pthread_mutex_unlock(&sess_mu);
    if (s) {
        SSL_set_session(c->ssl, s);
        SSL_SESSION_free(s);
    }
}

/* ---- the table, the ready and stuck lists -------------------------------------------------- */

static void list_set(nconn ***list, int *n, int *cap, nconn *c, int *idx, int on) {
    if (on && *idx < 0) {
        if (*n == *cap) {
            int nc2 = *cap ? *cap * 2 : 64;
            nconn **nl = realloc(*list, (size_t)nc2 * sizeof *nl);
            if (!nl) return; /* fails open for readiness only: the next operation retries */
            *list = nl;
            *cap = nc2;
        }
        *idx = *n;
        (*list)[(*n)++] = c;
    } else if (!on && *idx >= 0) {
        nconn *last = (*list)[--*n];
        (*list)[*idx] = last;
        if (last == c) {
            /* c was the last one */
        } else if (list == &net_ready) last->ready_idx = *idx;
        else last->stuck_idx = *idx;
        *idx = -1;
    }
}

/* Both BIOs' storage (the read side's and the write side's, below): ciphertext, public. */

/* A complete TLS record at the start of the read BIO (a read would make progress). */
int net_full_record_buffered(nconn *c) {
    const struct obuf *o = c->rq;
    size_t n = o->len - o->off;
    const unsigned char *p = (const unsigned char *)o->p + o->off;
    if (n < 5) return 0;
    size_t rl = ((size_t)p[3] << 8) | p[4];
    return n >= 5 + rl;
}

int net_buffered(nconn *c) {
    if (c->failed || c->eof) return 1;
    if (c->my && net_my_pending(c)) return 1;
    if (c->lean && c->lean->ron) return c->lean->ln > 0 || net_full_record_buffered(c);
    return SSL_pending(c->ssl) > 0 || (c->hs_done && net_full_record_buffered(c));
}

/* Called with c->mu held after every operation: I3 and I4. */
void net_update(nconn *c) {
    assert(scp_mutex_held(&c->mu));
    int rd = net_buffered(c), st = net_wpending(c) && !c->failed;
    if (rd == (c->ready_idx >= 0) && st == (c->stuck_idx >= 0)) return;
    pthread_mutex_lock(&net_mu);
    int became_ready = rd && c->ready_idx < 0;
    if (became_ready) c->ready_seq++;
    list_set(&net_ready, &net_nready, &net_cap_ready, c, &c->ready_idx, rd);
    list_set(&net_stuck, &net_nstuck, &net_cap_stuck, c, &c->stuck_idx, st);
    pthread_mutex_unlock(&net_mu);
    /* another thread may be asleep in the kernel with only ciphertext in view (net_wait.c); one
     * asleep on other connections only is left alone (a threaded server's readers each wait on
     * their own connection: waking them all for every partial read cost them a round of system
     * calls and two context switches each) */
    if (became_ready) net_wake_for(c);
}

/* Lock-free for descriptors the shield does not hold (every write of the process comes here,
 * also from a signal handler that interrupted the shield holding net_mu: a self-pipe). */
nconn *net_get(int fd) {
    if (fd < 0 || fd >= net_tbl_n || !__atomic_load_n(&net_tbl[fd], __ATOMIC_ACQUIRE)) return NULL;
    pthread_mutex_lock(&net_mu);
    nconn *c = net_tbl[fd];
    if (c) c->users++;
    pthread_mutex_unlock(&net_mu);
    return c;
}

void net_lean_free(nconn *c) {
    if (!c->lean) return;
    tls_dir_free(&c->lean->wr);
    tls_dir_free(&c->lean->rd);
    scp_wipe(c->lean, sizeof *c->lean);
    free(c->lean);
    c->lean = NULL;
}

static void conn_free(nconn *c) {
    net_lean_free(c);
    SSL_free(c->ssl); /* frees both BIOs */
    free(c->pbuf);
    free(c->ep);
    free(c->my);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void net_put(nconn *c) {
    pthread_mutex_lock(&net_mu);
    int last = --c->users == 0 && c->refs == 0;
    if (last) {
        list_set(&net_ready, &net_nready, &net_cap_ready, c, &c->ready_idx, 0);
        list_set(&net_stuck, &net_nstuck, &net_cap_stuck, c, &c->stuck_idx, 0);
    }
    pthread_mutex_unlock(&net_mu);
    if (last) conn_free(c);
}

int sh_net_is(int fd) { return fd >= 0 && fd < net_tbl_n && __atomic_load_n(&net_tbl[fd], __ATOMIC_ACQUIRE) != NULL; }

/* The write side: a memory BIO of the shield's own, an append-only buffer that is never
 * cleared byte by byte (BIO_s_mem zeroes its buffer at every reset and every growth: 7% of a
 * shielded redis's time with 16 KiB replies). The ciphertext in it is public. */

/* Room for n more bytes at o->p + o->len: 0, or -1 (out of memory). */
int net_obuf_room(struct obuf *o, size_t n) {
    if (o->off == o->len) o->off = o->len = 0;
    char *np = scp_grow(o->p, &o->cap, o->len + n, 32768);
    if (!np) return -1;
    o->p = np;
    return 0;
}

/* Count the records whose bytes pass through a BIO (struct obuf's counting): a record starts
 * where the previous one's body ended, and its header's last two bytes give its body's length.
 * OpenSSL writes and reads whole headers and bodies in order, so the count is exact. */
static void rec_count(struct obuf *o, const unsigned char *p, size_t n) {
    while (n) {
        if (o->rskip) {
            size_t k = n < o->rskip ? n : o->rskip;
            o->rskip -= k, p += k, n -= k;
            continue;
        }
        if (o->rhn == 0) o->nrec++;
        if (o->rhn >= 3) o->rlen = o->rlen << 8 | *p;
        o->rhn++, p++, n--;
        if (o->rhn == 5) o->rskip = o->rlen & 0xffff, o->rhn = 0, o->rlen = 0;
    }
}

int net_obuf_append(struct obuf *o, const char *data, size_t n) {
    if (net_obuf_room(o, n)) return -1;
    memcpy(o->p + o->len, data, n);
    o->len += n;
    return 0;
}

/* In direct mode a record goes to the kernel from OpenSSL's own buffer, with what waits here
 * ahead of it, in one sendmsg (sendto when nothing waits): no copy of the record, no second system call. What the kernel
 * does not take (a full socket, an error) is kept and net_flush meets it as before. */
int net_obuf_write(BIO *b, const char *data, int n) {
    struct obuf *o = BIO_get_data(b);
    if (n <= 0) return 0;
    size_t k = (size_t)n;
    if (o->locked) { /* the lean layer writes now: a record of OpenSSL's would repeat a sequence number */
        o->desync = 1;
        return n;
    }
    if (o->counting) rec_count(o, (const unsigned char *)data, k);
    if (o->direct) {
        struct iovec iov[2];
        int cnt = 0;
        size_t pend = o->len - o->off;
        if (pend) iov[cnt++] = (struct iovec){o->p + o->off, pend};
        iov[cnt++] = (struct iovec){(void *)data, k};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        long w;
        /* the usual case, nothing waiting: sendto, which spares the kernel the copy of the
         * message header and the import of the vector (a small reply's one write) */
        do w = pend ? sh_gate(SYS_sendmsg, o->fd, (long)&m, MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0, 0)
                    : sh_gate(SYS_sendto, o->fd, (long)data, (long)k, MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
        while (w == -EINTR);
        if (w > 0) {
            size_t from_pend = (size_t)w < pend ? (size_t)w : pend;
            o->off += from_pend;
            if (o->off == o->len) o->off = o->len = 0;
            size_t sent = (size_t)w - from_pend;
            data += sent;
            k -= sent;
        }
        if (!k) return n;
    }
    return net_obuf_append(o, data, k) ? -1 : n;
}

static long obuf_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)num;
    (void)ptr;
    struct obuf *o = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING: return (long)(o->len - o->off);
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
    }
}

static int obuf_create(BIO *b) {
    struct obuf *o = calloc(1, sizeof *o);
    if (!o) return 0;
    BIO_set_data(b, o);
    BIO_set_init(b, 1);
    return 1;
}

static int obuf_destroy(BIO *b) {
    struct obuf *o = BIO_get_data(b);
    if (o) free(o->p);
    free(o);
    BIO_set_data(b, NULL);
    return 1;
}

/* The read side: ciphertext goes from the kernel straight into this buffer (fill: one recv),
 * and OpenSSL reads its records out of it. A BIO_s_mem took it through a second buffer (the
 * per-thread scratch, then a copy into the BIO, which also moved and zeroed its own storage).
 * Empty: "retry", never EOF (EOF is the kernel's to say, through fill). */
#define IBUF_CAP (32 * 1024) /* a whole record (16 KiB + 256 + 5) fits, so a read can progress */

static int ibuf_read(BIO *b, char *out, int n) {
    struct obuf *o = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0) return 0;
    if (o->off == o->len) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t k = o->len - o->off < (size_t)n ? o->len - o->off : (size_t)n;
    memcpy(out, o->p + o->off, k);
    if (o->counting) rec_count(o, (const unsigned char *)out, k);
    o->off += k;
    if (o->off == o->len) o->off = o->len = 0;
    return (int)k;
}

static BIO_METHOD *obuf_method, *ibuf_method;
static pthread_once_t obuf_once = PTHREAD_ONCE_INIT;
static void obuf_init(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "scp-shield out");
    if (m && BIO_meth_set_write(m, net_obuf_write) && BIO_meth_set_ctrl(m, obuf_ctrl) && BIO_meth_set_create(m, obuf_create) &&
        BIO_meth_set_destroy(m, obuf_destroy))
        obuf_method = m;
    m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "scp-shield in");
    if (m && BIO_meth_set_read(m, ibuf_read) && BIO_meth_set_ctrl(m, obuf_ctrl) && BIO_meth_set_create(m, obuf_create) &&
        BIO_meth_set_destroy(m, obuf_destroy))
        ibuf_method = m;
}

static nconn *conn_new(int fd, SSL_CTX *ctx, int server) {
    nconn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ssl = SSL_new(ctx);
    if (c->ssl && nc.renew) net_renew_apply(c->ssl);
    pthread_once(&obuf_once, obuf_init);
    BIO *r = ibuf_method ? BIO_new(ibuf_method) : NULL, *w = obuf_method ? BIO_new(obuf_method) : NULL;
    if (!c->ssl || !r || !w) {
        SSL_free(c->ssl);
        BIO_free(r);
        BIO_free(w);
        free(c);
        return NULL;
    }
    SSL_set_bio(c->ssl, r, w);
    c->rbio = r;
    c->wbio = w;
    c->rq = BIO_get_data(r);
    c->wq = BIO_get_data(w);
    c->fd = fd;
    c->wq->fd = fd;
    c->server = server;
    c->ready_idx = c->stuck_idx = -1;
    c->pid = (int)syscall(SYS_getpid);
    pthread_mutex_init(&c->mu, NULL);
    SSL_set_ex_data(c->ssl, net_conn_idx, c);
    if (net_lean_on && (c->lean = calloc(1, sizeof *c->lean)) != NULL) c->rq->counting = c->wq->counting = 1;
    if (server) SSL_set_accept_state(c->ssl);
    else SSL_set_connect_state(c->ssl);
    return c;
}

void net_tbl_set(int fd, nconn *c) {
    pthread_mutex_lock(&net_mu);
    if (c) c->refs++;
    nconn *old = net_tbl[fd];
    __atomic_store_n(&net_tbl[fd], c, __ATOMIC_RELEASE);
    __atomic_store_n(&net_nconns, net_nconns + (c != NULL) - (old != NULL), __ATOMIC_RELEASE);
    int dead = 0;
    if (old) {
        old->refs--;
        dead = old->refs == 0 && old->users == 0;
        if (dead) {
            list_set(&net_ready, &net_nready, &net_cap_ready, old, &old->ready_idx, 0);
            list_set(&net_stuck, &net_nstuck, &net_cap_stuck, old, &old->stuck_idx, 0);
        }
    }
    pthread_mutex_unlock(&net_mu);
    if (dead) conn_free(old);
}

/* ---- moving ciphertext ----------------------------------------------------------------------- */

int net_sock_nonblock(int fd) {
    long fl = sh_gate(SYS_fcntl, fd, F_GETFL, 0, 0, 0, 0);
    return fl >= 0 && (fl & O_NONBLOCK);
}

/* Wait until c's socket is ready for ev, honouring SO_RCVTIMEO/SO_SNDTIMEO: 0, -EAGAIN on
 * timeout, or the connection's failure. Called with c->mu held; the lock is released while the
 * thread sleeps in the kernel, so that a blocking read does not hold the connection against
 * another thread's write. Another thread may then leave plaintext buffered on c (it drained the
 * kernel socket): it wakes this one through the thread's wake descriptor (net_wait.c), and the
 * caller's loop looks at the connection again. */
long net_wait_fd(nconn *c, short ev) {
    assert(scp_mutex_held(&c->mu));
    struct timeval tv = {0, 0};
    socklen_t l = sizeof tv;
    sh_gate(SYS_getsockopt, c->fd, SOL_SOCKET, ev == POLLIN ? SO_RCVTIMEO : SO_SNDTIMEO, (long)&tv, (long)&l, 0);
    long ms = tv.tv_sec || tv.tv_usec ? tv.tv_sec * 1000 + tv.tv_usec / 1000 : -1;
    struct pollfd p[2] = {{c->fd, ev, 0}, {net_thread_wake_fd(), POLLIN, 0}};
    int np = ev == POLLIN && p[1].fd >= 0 ? 2 : 1;
    net_sleep_on(c, 1); /* before the lock goes: a change after it wakes this thread */
    pthread_mutex_unlock(&c->mu);
    long r = sh_gate(SYS_poll, (long)p, np, ms, 0, 0, 0);
    pthread_mutex_lock(&c->mu);
    net_sleep_on(c, 0);
    if (np == 2 && r > 0 && p[1].revents) net_thread_wake_reset();
    if (c->failed) return -c->failed;
    if (r == 0) return -EAGAIN;
    return r < 0 ? r : 0;
}

/* Give the kernel the ciphertext in the write BIO. block: wait for room (blocking socket). */
long net_flush(nconn *c, int block, int nosig) {
    for (;;) {
        struct obuf *o = c->wq;
        long n = (long)(o->len - o->off);
        if (n <= 0) return 0;
        long w = sh_gate(SYS_sendto, c->fd, (long)(o->p + o->off), n, MSG_DONTWAIT | (nosig ? MSG_NOSIGNAL : 0), 0, 0);
        if (w > 0) {
            o->off += (size_t)w;
            if (o->off == o->len) o->off = o->len = 0;
            continue;
        }
        if (w == -EINTR) continue;
        if (w != -EAGAIN) return w;
        if (!block) return -EAGAIN;
        long r = net_wait_fd(c, POLLOUT);
        if (r < 0) return r;
    }
}

/* Ciphertext from the kernel into the read BIO: bytes moved, 0 at EOF, or -errno. */
/* Receive what the kernel holds into the read BIO. *drained (if not NULL) is set when the
 * kernel gave less than there was room for: its receive queue is empty now. */
long net_fill(nconn *c, int *drained) {
    struct obuf *o = c->rq;
    if (!o->p) {
        o->p = malloc(IBUF_CAP);
        if (!o->p) return -ENOMEM;
        o->cap = IBUF_CAP;
    }
    if (o->off) { /* called when OpenSSL found too little: keep the start of the record */
        memmove(o->p, o->p + o->off, o->len - o->off);
        o->len -= o->off;
        o->off = 0;
    }
    assert(!c->lean || !c->lean->ln); /* the opened record's plaintext lies before o->off */
    if (o->len == o->cap) return -ENOBUFS; /* cannot happen: OpenSSL reads a record as soon as it is whole */
    size_t room = o->cap - o->len;
    long r;
    do r = sh_gate(SYS_recvfrom, c->fd, (long)(o->p + o->len), (long)room, MSG_DONTWAIT, 0, 0);
    while (r == -EINTR);
    if (r > 0) o->len += (size_t)r;
    if (drained) *drained = r >= 0 && (size_t)r < room;
    return r;
}

long net_conn_fail(nconn *c, const char *what, int e) {
    char d[400];
    net_conn_desc(c, d, sizeof d);
    unsigned long ec = ERR_peek_last_error();
    char reason[256] = "";
    if (ec) ERR_error_string_n(ec, reason, sizeof reason);
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        net_log("%s: %s: certificate verify failed: %s", d, what, X509_verify_cert_error_string(vr));
    else
        net_log("%s: %s%s%s", d, what, reason[0] ? ": " : "", reason);
    ERR_clear_error();
    c->failed = e;
    (void)net_flush(c, 0, 1); /* the alert, if any: ciphertext */
    return -e;
}

/* ---- new connections ------------------------------------------------------------------------- */

/* An accepted socket: shielded when its local port is a listen rule. */
void net_on_accept(int fd) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fam, port;
    unsigned char addr[16];
    if (fd < 0) return;
    if (sh_gate(SYS_getsockname, fd, (long)&ss, (long)&sl, 0, 0, 0) < 0 || !net_sa_parse(&ss, sl, &fam, addr, &port))
        return;
    int i = net_listen_rule(port);
    if (i < 0) return;
    if (fd >= net_tbl_n) { /* fail closed: a number the table cannot hold is never a plain connection */
        sh_gate(SYS_shutdown, fd, SHUT_RDWR, 0, 0, 0, 0);
        net_log("connection on port %d at descriptor %d, above the network shield's %d: closed", port, fd, net_tbl_n);
        return;
    }
    nconn *c = conn_new(fd, nc.lis[i].ctx, 1);
    if (!c) { /* fail closed: the program never gets an unshielded connection on a named port */
        sh_gate(SYS_shutdown, fd, SHUT_RDWR, 0, 0, 0, 0);
        net_log("out of memory for a connection on port %d: closed", port);
        return;
    }
    c->port = port;
    if (net_start_init(c, nc.lis[i].proto, 1)) {
        conn_free(c);
        sh_gate(SYS_shutdown, fd, SHUT_RDWR, 0, 0, 0, 0);
        net_log("out of memory for a connection on port %d: closed", port);
        return;
    }
    net_tbl_set(fd, c);
}

long net_accept(long nr, const long a[6]) {
    long r = nr == SYS_accept ? sh_gate(SYS_accept4, a[0], a[1], a[2], 0, 0, 0)
                              : sh_gate(SYS_accept4, a[0], a[1], a[2], a[3], 0, 0);
    if (r >= 0) {
        if (r < net_tbl_n && net_tbl[r]) net_tbl_set((int)r, NULL); /* a stale entry of a number closed raw */
        net_on_accept((int)r);
    }
    return r;
}

long net_connect(int fd, const void *sa, size_t len) {
    int fam, port;
    unsigned char addr[16];
    if (!net_sa_parse(sa, len, &fam, addr, &port)) return sh_gate(SYS_connect, fd, (long)sa, (long)len, 0, 0, 0);
    int type = net_sock_type(fd);
    if (type != SOCK_STREAM) {
        if (type == SOCK_DGRAM && (net_listen_rule(port) >= 0 || net_peer_for(fam, addr, port))) {
            net_log("UDP to port %d refused (a port the policy names for TLS)", port);
            return -EACCES;
        }
        return sh_gate(SYS_connect, fd, (long)sa, (long)len, 0, 0, 0);
    }
    struct net_peer *p = net_peer_for(fam, addr, port);
    if (!p) {
        if (nc.refuse) {
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof ss);
            memcpy(&ss, sa, len < sizeof ss ? len : sizeof ss);
            char d[80];
            fmt_addr(&ss, d, sizeof d);
            net_log("connection to %s refused: not a peer of the policy (default: refuse)", d);
            return -ECONNREFUSED;
        }
        return sh_gate(SYS_connect, fd, (long)sa, (long)len, 0, 0, 0);
    }
    if (sh_net_is(fd)) return -EISCONN;
    if (fd >= net_tbl_n) return -EMFILE; /* a number the table cannot hold: no plain connection */
    nconn *c = conn_new(fd, p->ctx, 0);
    if (!c) return -ENOMEM;
    c->peer = p;
    c->port = port;
    if (net_start_init(c, p->proto, 0)) {
        conn_free(c);
        return -ENOMEM;
    }
    c->rfam = fam;
    memcpy(c->raddr, addr, fam == AF_INET ? 4 : 16);
    offer_session(c);
    if (p->fam || inet_pton(AF_INET, p->name, addr) == 1 || inet_pton(AF_INET6, p->name, addr) == 1) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        if (!X509_VERIFY_PARAM_set1_ip_asc(vp, p->name)) SSL_set1_host(c->ssl, p->name);
    } else {
        SSL_set1_host(c->ssl, p->name);
        SSL_set_tlsext_host_name(c->ssl, p->name);
    }
    long r = sh_gate(SYS_connect, fd, (long)sa, (long)len, 0, 0, 0);
    if (r == 0 || r == -EINPROGRESS || r == -EINTR) {
        net_tbl_set(fd, c);
        /* The ClientHello now: a program may wait for the server to speak first. Also while a
         * non-blocking connect is in progress (EINPROGRESS): the kernel does not take the bytes
         * yet (EAGAIN), so they wait in the write BIO and the connection is "stuck" (I4): the
         * next poll, select or epoll_wait flushes them once the socket is writable. Without
         * this, a client that connects without blocking and then waits for the server to
         * speak (Python's create_connection with a timeout, then recv) waited forever. */
        pthread_mutex_lock(&c->mu);
        (void)net_handshake(c, 0);
        net_update(c);
        pthread_mutex_unlock(&c->mu);
    } else {
        conn_free(c);
    }
    return r;
}

long net_listen(int fd, int backlog) {
    if (nc.refuse) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fam, port;
        unsigned char addr[16];
        if (sh_gate(SYS_getsockname, fd, (long)&ss, (long)&sl, 0, 0, 0) == 0 && net_sa_parse(&ss, sl, &fam, addr, &port) &&
            net_listen_rule(port) < 0) {
            net_log("listen on port %d refused: not a port of the policy (default: refuse)", port);
            return -EACCES;
        }
    }
    return sh_gate(SYS_listen, fd, backlog, 0, 0, 0, 0);
}

/* A connected inet stream socket that the policy names, reached without its TLS state (exec,
 * SCM_RIGHTS, pidfd_getfd): its number gets an unconnected socket, so nothing can be written
 * to the connection in plaintext. Returns 1 if replaced. */
int net_quarantine(int fd) {
    struct sockaddr_storage ss, ps;
    socklen_t sl = sizeof ss, pl = sizeof ps;
    int fam, port, pfam, pport;
    unsigned char addr[16], paddr[16];
    if (net_sock_type(fd) != SOCK_STREAM) return 0;
    if (sh_gate(SYS_getsockname, fd, (long)&ss, (long)&sl, 0, 0, 0) < 0 || !net_sa_parse(&ss, sl, &fam, addr, &port)) return 0;
    if (sh_gate(SYS_getpeername, fd, (long)&ps, (long)&pl, 0, 0, 0) < 0 || !net_sa_parse(&ps, pl, &pfam, paddr, &pport))
        return 0;
    if (net_listen_rule(port) < 0 && !net_peer_for(pfam, paddr, pport)) return 0;
    long s = sh_gate(SYS_socket, AF_INET, SOCK_STREAM, 0, 0, 0, 0);
    long cl = sh_gate(SYS_fcntl, fd, F_GETFD, 0, 0, 0, 0);
    if (s < 0 || sh_gate(SYS_dup3, s, fd, cl > 0 && (cl & FD_CLOEXEC) ? O_CLOEXEC : 0, 0, 0, 0) < 0) {
        sh_gate(SYS_shutdown, fd, SHUT_RDWR, 0, 0, 0, 0);
    }
    if (s >= 0) sh_gate(SYS_close, s, 0, 0, 0, 0, 0);
    net_log("descriptor %d: a TLS connection without its TLS state (inherited or received) was replaced by an "
            "unconnected socket", fd);
    return 1;
}

void net_quarantine_inherited(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    struct dirent *e;
    int fds[256], n = 0;
    while ((e = readdir(d)) != NULL && n < 256) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || fd < 0 || (fd >= sh.lo && fd < sh.hi) || fd == dirfd(d)) continue; /* not the range */
        fds[n++] = (int)fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (sh_gate(SYS_fstat, fds[i], (long)&st, 0, 0, 0, 0) == 0 && S_ISSOCK(st.st_mode)) net_quarantine(fds[i]);
    }
}
