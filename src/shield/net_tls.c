/* shield/net_tls.c - reading and writing a shielded connection.
 *
 * The handshake (OpenSSL's, on memory BIOs), then the records: for TLS 1.3 the lean record
 * layer (tls_record.c) seals and opens them with the traffic secrets OpenSSL derived, without
 * an SSL_write/SSL_read per call; otherwise OpenSSL's. Writes of vectors a record at a time,
 * close_notify at close and shutdown. SCP_NET_LEAN=0 keeps OpenSSL's record layer throughout. */
#include <assert.h>
#include <poll.h>
#include <sys/syscall.h>
#include <netdb.h>

#include <openssl/err.h>

#undef PF_FILE /* <sys/socket.h>'s; internal.h has its own */
#include "common/util.h"
#include "shield/internal.h"
#include "shield/net.h"
#include "shield/net_int.h"

/* ---- the lean TLS 1.3 record layer (tls_record.h) ------------------------------------------- */

/* The pieces of a vector as net_writev_tls takes them, a record at a time. */
struct wsrc {
    const struct iovec *iov;
    long cnt, i;  /* the piece being taken */
    size_t off;   /* bytes of it taken */
    char *g;      /* NET_REC bytes to gather a record that spans pieces */
};

/* One record of the layer's own (an alert, a KeyUpdate) into the write BIO, and to the kernel
 * without waiting: 0, or -1 (out of memory, or the sequence number would wrap). */
static int lean_send(nconn *c, int type, const void *p, size_t n) {
    struct obuf *o = c->wq;
    if (net_obuf_room(o, n + TLS_OVERHEAD)) return -1;
    size_t w = tls_seal(&c->lean->wr, type, p, n, (unsigned char *)o->p + o->len);
    if (!w) return -1;
    o->len += w;
    (void)net_flush(c, 0, 1);
    return 0;
}

/* The connection fails on the peer's record: a fatal alert to the peer (when the write side is
 * the layer's), the log line, the error to the program. */
static long lean_fail(nconn *c, int alert, const char *what) {
    if (c->lean->won && !c->wr_shut) {
        unsigned char a[2] = {2, (unsigned char)alert};
        (void)lean_send(c, TLS_CT_ALERT, a, 2);
    }
    ERR_clear_error(); /* the reason is the layer's: nothing of OpenSSL's belongs in the line */
    return net_conn_fail(c, what, ECONNRESET);
}

/* Give the connection back to OpenSSL for good (before the layer took a direction). */
static void lean_drop(nconn *c) {
    assert(!c->lean->won && !c->lean->ron);
    c->rq->counting = c->wq->counting = 0;
    net_lean_free(c);
}

/* The read side to the layer, when OpenSSL holds none of the peer's bytes: 1 taken, 0 not yet,
 * or the connection's failure. */
static long lean_take_read(nconn *c) {
    struct net_lean *l = c->lean;
    assert(l->won && !l->ron);
    if (c->wq->desync) return net_conn_fail(c, "TLS: OpenSSL answered a post-handshake message after the lean record layer took the write side (a KeyUpdate before the first response?)", EPROTO);
    if (SSL_has_pending(c->ssl) || SSL_pending(c->ssl) > 0) return 0;
    if (tls_dir_start(&l->rd, &l->suite, 0)) return net_conn_fail(c, "TLS: cannot set up the lean record layer's read side", ENOMEM);
    l->rd.seq = c->rq->nrec - l->rbase;
    l->ron = 1;
    c->rq->counting = c->wq->counting = 0;
    return 1;
}

/* At the end of the handshake: the write side to the layer if the connection is TLS 1.3 with a
 * suite it takes and OpenSSL gave both secrets; else the connection stays with OpenSSL. The
 * records OpenSSL wrote under the application key (a server's session tickets) are in the
 * write BIO already, counted: the layer's first record follows them. A server's read side
 * goes too (nothing from the client is due to OpenSSL); a client's after the first
 * application data (read_tls). 0, or the connection's failure. */
static long lean_start(nconn *c) {
    struct net_lean *l = c->lean;
    const SSL_CIPHER *ci;
    if (l->bad || !l->wlen || !l->rlen || SSL_version(c->ssl) != TLS1_3_VERSION ||
        !(ci = SSL_get_current_cipher(c->ssl)) || tls_suite_for(SSL_CIPHER_get_protocol_id(ci), &l->suite) ||
        l->wlen != l->suite.hashlen || l->rlen != l->suite.hashlen || tls_dir_start(&l->wr, &l->suite, 1)) {
        lean_drop(c);
        return 0;
    }
    l->wr.seq = c->wq->nrec - l->wbase;
    l->won = 1;
    c->wq->locked = 1;
    if (c->server) {
        long r = lean_take_read(c);
        if (r < 0) return r;
    }
    return 0;
}

/* Post-handshake messages in a record's plaintext (RFC 8446 4.6): a KeyUpdate changes the read
 * key and, when the peer asks, this end's write key after telling it; a client ignores session
 * tickets that come after OpenSSL's part (no resumption with them, nothing else lost). Anything
 * else (post-handshake authentication, which the shield never offers, a message split across
 * records) ends the connection: the layer fails closed rather than guess. 1 or the failure. */
static long lean_handshake(nconn *c, const unsigned char *p, size_t n) {
    struct net_lean *l = c->lean;
    int ku;
    const char *why;
    long r = tls_post_handshake(p, n, c->server, &ku, &why);
    if (r < 0) {
        char what[200];
        snprintf(what, sizeof what, "TLS: %s (type %d)", why, n ? p[0] : -1);
        return lean_fail(c, (int)-r, what);
    }
    if (ku < 0) return 1;
    if (tls_dir_next(&l->rd, &l->suite)) return net_conn_fail(c, "TLS: cannot derive the next read key", ENOMEM);
    if (ku == 1 && !c->wr_shut) { /* update_requested: answer under the old key, then change it */
        static const unsigned char answer[5] = {TLS_HS_KEY_UPDATE, 0, 0, 1, 0};
        if (lean_send(c, TLS_CT_HANDSHAKE, answer, sizeof answer) || tls_dir_next(&l->wr, &l->suite))
            return net_conn_fail(c, "TLS: cannot answer the peer's KeyUpdate", ENOMEM);
    }
    return 1;
}

/* Open the next whole record in the read BIO: 1 progress (plaintext in l->ln, or a message
 * acted on), 0 a whole record is not there yet, -2 the peer's close_notify (c->eof set), or the
 * connection's failure. The plaintext stays where the ciphertext was (opened in place); the
 * read BIO's offset moves past it, and net_fill keeps it there: it is called only once the
 * plaintext is gone (l->ln == 0). */
static long lean_next(nconn *c) {
    struct net_lean *l = c->lean;
    struct obuf *o = c->rq;
    assert(!l->ln);
    size_t avail = o->len - o->off;
    if (avail < 5) return 0;
    unsigned char *rec = (unsigned char *)o->p + o->off;
    long bl = tls_hdr(rec);
    if (bl < 0)
        return lean_fail(c, (int)-bl, bl == -TLS_AL_RECORD_OVERFLOW ? "TLS: a record longer than 2^14 + 256 bytes"
                                                                     : "TLS: a record that is not protected application data");
    if (avail < 5 + (size_t)bl) return 0;
    int type = 0;
    long pl = tls_open(&l->rd, rec, 5 + (size_t)bl, &type);
    o->off += 5 + (size_t)bl;
    if (pl < 0)
        return lean_fail(c, (int)-pl, pl == -TLS_AL_BAD_RECORD_MAC ? "TLS: a record failed to open (bad record MAC: forged, corrupted or out of order)"
                                      : pl == -TLS_AL_RECORD_OVERFLOW ? "TLS: a record's plaintext longer than 2^14 bytes"
                                                                      : "TLS: a record without a content type");
    switch (type) {
    case TLS_CT_APPDATA:
        l->lp = (size_t)(rec + 5 - (unsigned char *)o->p);
        l->ln = (size_t)pl;
        return 1;
    case TLS_CT_ALERT:
        if (pl != 2) return lean_fail(c, TLS_AL_DECODE_ERROR, "TLS: a malformed alert");
        if (rec[6] == TLS_AL_CLOSE_NOTIFY) {
            c->eof = 1;
            return -2;
        }
        if (rec[6] == TLS_AL_USER_CANCELED) return 1; /* a warning; close_notify follows */
        char what[80];
        snprintf(what, sizeof what, "TLS: the peer sent alert %d", rec[6]);
        return net_conn_fail(c, what, ECONNRESET);
    case TLS_CT_HANDSHAKE:
        return lean_handshake(c, rec + 5, (size_t)pl);
    default:
        return lean_fail(c, TLS_AL_UNEXPECTED_MESSAGE, "TLS: a record of an unexpected content type");
    }
}

/* A read that found no record to open: more ciphertext from the kernel, waiting for it when the
 * socket blocks and the read has nothing yet (or MSG_WAITALL). 1: bytes came, read on; 0: the
 * read ends with *res (total, or when that is 0 the end (0) or -errno). A TCP end without
 * close_notify is the end the program sees, as without TLS. *nb: as write_flush's. */
static int read_more(nconn *c, int flags, int *nb, int *drained, size_t total, long *res) {
    long g = net_fill(c, drained);
    if (g > 0) return 1;
    *res = (long)total;
    if (g == 0) {
        c->eof = 1;
        return 0;
    }
    if (g != -EAGAIN || (total && !(flags & MSG_WAITALL))) {
        if (!total) *res = g;
        return 0;
    }
    if (*nb < 0) *nb = (flags & MSG_DONTWAIT) || net_sock_nonblock(c->fd);
    long w = *nb ? -EAGAIN : net_wait_fd(c, POLLIN);
    if (w >= 0) return 1;
    if (!total) *res = w;
    return 0;
}

static long lean_read(nconn *c, void *buf, size_t n, int flags, size_t total) {
    struct net_lean *l = c->lean;
    int nb = -1;
#define NONBLOCK() (nb < 0 ? (nb = (flags & MSG_DONTWAIT) || net_sock_nonblock(c->fd)) : nb)
    int drained = 0;
    for (;;) {
        if (l->ln) {
            size_t k = l->ln < n - total ? l->ln : n - total;
            memcpy((char *)buf + total, c->rq->p + l->lp, k);
            if (!(flags & MSG_PEEK)) l->lp += k, l->ln -= k;
            total += k;
            if (total == n || (flags & MSG_PEEK)) return (long)total;
            continue;
        }
        long r = lean_next(c);
        if (r > 0) continue;
        if (r == -2) return (long)total;
        if (r < 0) return total ? (long)total : r;
        /* as read_tls: a short read means a drained socket */
        if (total && !(flags & MSG_WAITALL) && drained) return (long)total;
        long res;
        if (!read_more(c, flags, &nb, &drained, total, &res)) return res;
    }
#undef NONBLOCK
}

static long write_pending_plain(nconn *c);

/* Drive the handshake: 1 done, -EAGAIN, or -errno (connection failed). */
long net_handshake(nconn *c, int block) {
    if (c->pre) {
        long p = net_start(c, block);
        if (p != 1) return p;
    }
    for (;;) {
        if (c->hs_done) return 1; /* another thread ended it while this one waited */
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        long f = net_flush(c, block, 1);
        if (f < 0 && f != -EAGAIN) {
            c->failed = (int)-f;
            return f;
        }
        if (r == 1) {
            c->hs_done = 1;
            if (c->lean) {
                long l = lean_start(c);
                if (l < 0) return l;
            }
            net_wake_sleepers(); /* another thread may wait for the handshake in the kernel */
            return c->plen ? write_pending_plain(c) : 1;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ) return net_conn_fail(c, "TLS handshake failed", ECONNRESET);
        long g = net_fill(c, NULL);
        if (g > 0) continue;
        if (g == 0) return net_conn_fail(c, "the peer closed the connection during the TLS handshake", ECONNRESET);
        if (g != -EAGAIN) {
            c->failed = (int)-g;
            return g;
        }
        if (!block) return -EAGAIN;
        long w = net_wait_fd(c, POLLIN);
        if (w < 0) return w;
    }
}

/* Plaintext that a non-blocking write handed over before the handshake ended (a client that
 * writes first, a server that speaks first): sent as soon as the handshake is done. */
static long lean_write(nconn *c, struct wsrc *s, size_t n, int flags);

static long write_pending_plain(nconn *c) {
    size_t w;
    if (c->lean && c->lean->won) {
        struct iovec v = {c->pbuf, c->plen};
        struct wsrc s = {&v, 1, 0, 0, NULL};
        long r = lean_write(c, &s, c->plen, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r != (long)c->plen) return r < 0 ? r : net_conn_fail(c, "cannot encrypt", EIO);
    } else if (SSL_write_ex(c->ssl, c->pbuf, c->plen, &w) != 1 || w != c->plen)
        return net_conn_fail(c, "cannot encrypt", EIO);
    scp_wipe(c->pbuf, c->plen);
    free(c->pbuf);
    c->pbuf = NULL;
    c->plen = 0;
    long f = net_flush(c, 0, 1);
    return f == -EAGAIN || f == 0 ? 1 : f;
}

static long read_tls(nconn *c, void *buf, size_t n, int flags);

/* An empty error queue before an SSL call whose failure SSL_get_error reads (an error left by
 * the program's own use of OpenSSL would read as this connection's). Looking costs less than
 * ERR_clear_error's reset of every slot, and the queue is nearly always empty. */
static void clear_errors(void) {
    if (ERR_peek_error()) ERR_clear_error();
}

/* Read plaintext. flags: MSG_DONTWAIT, MSG_PEEK, MSG_WAITALL. */
long net_read(nconn *c, void *buf, size_t n, int flags) {
    if (c->my && net_my_pre_reading(c)) {
        long r = net_my_pre_read(c, buf, n, flags, 0);
        if (r == -EAGAIN && !(flags & MSG_DONTWAIT) && !net_sock_nonblock(c->fd)) r = net_my_pre_read(c, buf, n, flags, 1);
        return r;
    }
    long r = read_tls(c, buf, n, flags);
    if (c->my && r > 0) net_my_read(c, buf, (size_t)r, (flags & MSG_PEEK) != 0);
    return r;
}

static long read_tls(nconn *c, void *buf, size_t n, int flags) {
    if (c->failed) return -c->failed;
    int nb = -1; /* asked lazily: only when the shield would wait */
#define NONBLOCK() (nb < 0 ? (nb = (flags & MSG_DONTWAIT) || net_sock_nonblock(c->fd)) : nb)
    if (net_wpending(c)) (void)net_flush(c, 0, 1);
    if (!c->hs_done) {
        long h = net_handshake(c, 0);
        if (h == -EAGAIN && !NONBLOCK()) h = net_handshake(c, 1);
        if (h < 0) return h;
    }
    if (c->eof) return 0;
    if (n == 0) return 0;
    if (c->lean && c->lean->ron) return lean_read(c, buf, n, flags, 0);
    size_t total = 0;
    int drained = 0; /* a fill of this call left the kernel's receive queue empty */
    for (;;) {
        /* another thread's read gave the read side to the lean layer while this one waited */
        if (c->lean && c->lean->ron) return lean_read(c, buf, n, flags, total);
        /* With no ciphertext in the read BIO and nothing in OpenSSL's own buffers, a read could
         * only fail for want of bytes: ask the kernel first. (The failed SSL_read_ex cost an
         * error-queue reset, a pass through the record layer and SSL_get_error: on every read
         * that finds the socket empty, the most common read of a request/response protocol.) */
        if (net_rbuffered(c) || SSL_has_pending(c->ssl)) {
            size_t got = 0;
            clear_errors();
            int ok = (flags & MSG_PEEK) ? SSL_peek_ex(c->ssl, (char *)buf + total, n - total, &got)
                                        : SSL_read_ex(c->ssl, (char *)buf + total, n - total, &got);
            if (net_wpending(c)) (void)net_flush(c, 0, 1); /* tickets, key updates */
            if (ok && c->lean && c->lean->won && !(flags & MSG_PEEK)) { /* a client's first response came: the read side to the layer */
                long t = lean_take_read(c);
                if (t < 0) return total ? (long)total : t;
                if (t > 0) {
                    total += got;
                    if (total == n) return (long)total;
                    return lean_read(c, buf, n, flags, total);
                }
            }
            if (ok) {
                total += got;
                if (total == n || (flags & MSG_PEEK)) return (long)total;
                /* A short read means a drained socket, as from the kernel: event loops on
                 * edge-triggered epoll (nginx) then wait for the next edge, which never comes for
                 * records already in the read BIO or ciphertext the kernel held when it was last
                 * asked. So go on while a record is buffered, and unless a fill of this call found
                 * the kernel emptied (then any later byte makes a new edge), ask it once more. */
                if (!(flags & MSG_WAITALL) && drained && SSL_pending(c->ssl) == 0 && !net_full_record_buffered(c))
                    return (long)total;
                continue;
            }
            int e = SSL_get_error(c->ssl, 0);
            if (e == SSL_ERROR_ZERO_RETURN) {
                c->eof = 1;
                return (long)total;
            }
            if (e != SSL_ERROR_WANT_READ) {
                long r = net_conn_fail(c, "TLS read failed", ECONNRESET);
                return total ? (long)total : r;
            }
        }
        long res;
        if (!read_more(c, flags, &nb, &drained, total, &res)) return res;
    }
#undef NONBLOCK
}

/* Write plaintext: encrypted in records of up to 16 KiB, each full record handed to the kernel
 * (with a short leading record, if any) before the next is made. Non-blocking: returns what was
 * encrypted when the kernel stops taking bytes (at most one record's ciphertext and a short one
 * then wait in the write BIO, I4). */
long net_write(nconn *c, const void *buf, size_t n, int flags) {
    return c->my ? net_my_write(c, buf, n, flags) : net_write_tls(c, buf, n, flags);
}

long net_write_tls(nconn *c, const void *buf, size_t n, int flags) {
    struct iovec v = {(void *)buf, n};
    return net_writev_tls(c, &v, 1, n, flags, NULL);
}

/* The next len bytes: where they lie when one piece holds them all, else copied into s->g.
 * The caller asks for no more than the vector holds. */
static const char *wsrc_take(struct wsrc *s, size_t len) {
    while (s->i < s->cnt && s->off == s->iov[s->i].iov_len) s->i++, s->off = 0;
    assert(s->i < s->cnt && len <= NET_REC);
    const struct iovec *v = &s->iov[s->i];
    if (v->iov_len - s->off >= len) {
        const char *p = (const char *)v->iov_base + s->off;
        s->off += len;
        return p;
    }
    for (size_t got = 0; got < len;) {
        assert(s->i < s->cnt);
        v = &s->iov[s->i];
        size_t k = v->iov_len - s->off < len - got ? v->iov_len - s->off : len - got;
        memcpy(s->g + got, (const char *)v->iov_base + s->off, k);
        got += k;
        s->off += k;
        if (s->off == v->iov_len) s->i++, s->off = 0;
    }
    return s->g;
}

/* The next len bytes as the pieces that hold them (into v, at most max), taken, when a record
 * may be sealed from where they lie (tls_sealv): up to max pieces of 1 KiB or more on average
 * (a sendfile's 4 KiB cache chunks). Else 0 and nothing taken: many small pieces cost more in
 * cipher calls than their gather (wsrc_take). */
static int wsrc_pieces(struct wsrc *s, size_t len, struct iovec *v, int max) {
    long i = s->i;
    size_t off = s->off, got = 0;
    int k = 0;
    while (got < len) {
        while (i < s->cnt && off == s->iov[i].iov_len) i++, off = 0;
        assert(i < s->cnt);
        if (k == max) return 0;
        size_t m = s->iov[i].iov_len - off < len - got ? s->iov[i].iov_len - off : len - got;
        v[k].iov_base = (char *)s->iov[i].iov_base + off;
        v[k++].iov_len = m;
        got += m;
        off += m;
    }
    if (k > 1 && len / (size_t)k < 1024) return 0;
    s->i = i;
    s->off = off;
    return k;
}

/* After records went into the write BIO: hand them to the kernel, waiting when the socket
 * blocks. 0 when all went, -EAGAIN when a non-blocking socket took no more (the rest waits in
 * the BIO), else -errno, SIGPIPE raised for EPIPE unless nosig. *nb: whether the socket is
 * non-blocking, -1 until asked (the question costs a system call). */
static long write_flush(nconn *c, int flags, int *nb, int nosig) {
    long f = net_flush(c, 0, nosig);
    if (f == -EAGAIN) {
        if (*nb < 0) *nb = (flags & MSG_DONTWAIT) || net_sock_nonblock(c->fd);
        if (*nb) return -EAGAIN;
        f = net_flush(c, 1, nosig);
    }
    if (f == -EPIPE && !nosig) sh_gate(SYS_tgkill, (long)syscall(SYS_getpid), (long)syscall(SYS_gettid), SIGPIPE, 0, 0, 0);
    return f < 0 ? f : 0;
}
/* net_write_tls over a vector of n bytes in all (cnt pieces): the records are cut from the
 * whole, not from each piece, and a record is gathered (into g, NET_REC bytes) only when it
 * spans pieces; g may be NULL when one piece holds everything. So a sendfile from the volume's
 * plaintext cache (4 KiB chunks) costs OpenSSL's record layer one copy of each record into g,
 * just before OpenSSL takes it (while it is in the CPU's cache); the lean layer seals such a
 * record from the chunks themselves (wsrc_pieces), no copy. */
long net_writev_tls(nconn *c, const struct iovec *iov, long cnt, size_t n, int flags, char *g) {
    if (c->failed) return -c->failed;
    if (c->wr_shut) return -EPIPE;
    assert(g || cnt == 1 || n == 0);
    int nosig = (flags & MSG_NOSIGNAL) != 0;
    int nb = -1;
#define NONBLOCK() (nb < 0 ? (nb = (flags & MSG_DONTWAIT) || net_sock_nonblock(c->fd)) : nb)
    if (net_wpending(c)) {
        long f = net_flush(c, 0, nosig);
        if (f == -EAGAIN) f = NONBLOCK() ? -EAGAIN : net_flush(c, 1, nosig);
        if (f < 0) return f;
    }
    if (!c->hs_done) {
        long h = net_handshake(c, 0);
        if (h == -EAGAIN && NONBLOCK()) {
            /* kept until the handshake ends, up to NET_PENDING_MAX: a short write beyond */
            if (c->plen >= NET_PENDING_MAX) return -EAGAIN;
            if (n > NET_PENDING_MAX - c->plen) n = NET_PENDING_MAX - c->plen;
            char *nb2 = realloc(c->pbuf, c->plen + n);
            if (!nb2) return -ENOMEM;
            c->pbuf = nb2;
            struct wsrc s = {iov, cnt, 0, 0, NULL};
            for (size_t k = 0; k < n;) {
                while (s.off == iov[s.i].iov_len) s.i++, s.off = 0;
                size_t m = iov[s.i].iov_len - s.off < n - k ? iov[s.i].iov_len - s.off : n - k;
                memcpy(nb2 + c->plen, (const char *)iov[s.i].iov_base + s.off, m);
                c->plen += m;
                s.off += m;
                k += m;
            }
            return (long)n;
        }
        if (h == -EAGAIN) h = net_handshake(c, 1);
        if (h < 0) return h;
    }
    struct wsrc s = {iov, cnt, 0, 0, g};
    if (c->lean && c->lean->won) return lean_write(c, &s, n, flags);
    struct obuf *o = c->wq;
    size_t done = 0;
    while (done < n) {
        /* Records of 16 KiB, except a short one first (n not a multiple): it waits in the write
         * BIO and leaves with the next record's sendmsg (obuf_write), which then is whole and
         * sent from OpenSSL's buffer. 16 KiB + 8 bytes: two records, one system call. */
        size_t left = n - done, chunk = left <= NET_REC ? left : left % NET_REC ? left % NET_REC : NET_REC, w = 0;
        int lead = chunk < left;
        const char *p = wsrc_take(&s, chunk);
        o->direct = !lead;
        int ok = SSL_write_ex(c->ssl, p, chunk, &w);
        o->direct = 0;
        if (ok != 1) {
            long r = net_conn_fail(c, "TLS write failed", EIO);
            return done ? (long)done : r;
        }
        assert(w == chunk); /* no partial writes (SSL_MODE_ENABLE_PARTIAL_WRITE is off) */
        done += w;
        if (lead) continue;
        long f = write_flush(c, flags, &nb, nosig);
        if (f == -EAGAIN) break;
        if (f < 0) return done ? (long)done : f;
    }
    return (long)done;
#undef NONBLOCK
}

/* Plaintext handed to the kernel by the lean layer in one system call: a batch of records. */
#define WSRC_PIECES 8 /* pieces a record is sealed from without a gather (wsrc_pieces) */
#define LEAN_BATCH ((size_t)16 * TLS_PT_MAX)

/* net_writev_tls once the layer has the write side: records of up to 2^14 bytes sealed straight
 * into the write BIO, a batch of them (up to LEAN_BATCH bytes of plaintext) given to the
 * kernel with one sendto; as OpenSSL's path, non-blocking stops when the kernel stops taking
 * bytes (one batch's ciphertext then waits in the write BIO, I4). A direction that has sealed
 * TLS_KEY_RECORDS records under one key sends a KeyUpdate and changes it (RFC 8446 5.5). */
static long lean_write(nconn *c, struct wsrc *s, size_t n, int flags) {
    struct net_lean *l = c->lean;
    struct obuf *o = c->wq;
    int nosig = (flags & MSG_NOSIGNAL) != 0;
    int nb = -1;
    size_t done = 0;
    while (done < n) {
        size_t batch = n - done < LEAN_BATCH ? n - done : LEAN_BATCH;
        size_t recs = (batch + TLS_PT_MAX - 1) / TLS_PT_MAX;
        /* room for the batch and a KeyUpdate */
        if (net_obuf_room(o, batch + (recs + 1) * TLS_OVERHEAD + 1)) return done ? (long)done : -ENOMEM;
        for (size_t k = 0; k < batch;) {
            if (l->wr.seq >= TLS_KEY_RECORDS) {
                static const unsigned char ku[5] = {TLS_HS_KEY_UPDATE, 0, 0, 1, 0};
                size_t w = tls_seal(&l->wr, TLS_CT_HANDSHAKE, ku, sizeof ku, (unsigned char *)o->p + o->len);
                if (!w || tls_dir_next(&l->wr, &l->suite)) {
                    long r = net_conn_fail(c, "TLS: cannot change the write key", EIO);
                    return done ? (long)done : r;
                }
                o->len += w;
            }
            size_t m = batch - k < TLS_PT_MAX ? batch - k : TLS_PT_MAX;
            struct iovec pv[WSRC_PIECES];
            int np = wsrc_pieces(s, m, pv, WSRC_PIECES);
            unsigned char *out = (unsigned char *)o->p + o->len;
            size_t w = np ? tls_sealv(&l->wr, TLS_CT_APPDATA, pv, np, m, out)
                          : tls_seal(&l->wr, TLS_CT_APPDATA, wsrc_take(s, m), m, out);
            if (!w) {
                long r = net_conn_fail(c, "TLS write failed", EIO);
                return done ? (long)done : r;
            }
            assert(o->len + w <= o->cap);
            o->len += w;
            k += m;
        }
        done += batch;
        long f = write_flush(c, flags, &nb, nosig);
        if (f == -EAGAIN) break;
        if (f < 0) return done ? (long)done : f;
    }
    return (long)done;
}

/* The last descriptor of c in this process goes: say goodbye (close_notify) if this process
 * made the connection (a forked child closing its copy must not end the parent's session). */
static void conn_goodbye(nconn *c) {
    if (c->pid != (int)syscall(SYS_getpid) || c->failed || !c->hs_done || c->wr_shut) return;
    if (c->lean && c->lean->won) {
        static const unsigned char cn[2] = {1, TLS_AL_CLOSE_NOTIFY};
        (void)lean_send(c, TLS_CT_ALERT, cn, sizeof cn);
        /* OpenSSL's state says so too: SSL_free marks the session of a connection that did
         * not send close_notify unresumable (the client keeps it for the next connection) */
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | (c->eof ? SSL_RECEIVED_SHUTDOWN : 0));
        return;
    }
    ERR_clear_error();
    if (SSL_shutdown(c->ssl) >= 0) (void)net_flush(c, 0, 1);
    ERR_clear_error();
}

void sh_net_close(int fd) {
    if (!sh_net_on || fd < 0 || fd >= net_tbl_n || !net_tbl[fd]) return;
    nconn *c = net_get(fd);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    if (c->refs == 1) conn_goodbye(c);
    pthread_mutex_unlock(&c->mu);
    net_tbl_set(fd, NULL);
    net_put(c);
}

long net_shutdown(nconn *c, int how) {
    if ((how == SHUT_WR || how == SHUT_RDWR) && !c->wr_shut) {
        conn_goodbye(c);
        c->wr_shut = 1;
    }
    return sh_gate(SYS_shutdown, c->fd, how, 0, 0, 0, 0);
}
