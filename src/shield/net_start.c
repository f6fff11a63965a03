/* shield/net_start.c - protocols that start in plaintext and ask for TLS inside their own
 * framing: PostgreSQL (the client's SSLRequest, answered 'S') and MySQL/MariaDB (the server's
 * greeting offers TLS, the client's SSLRequest packet accepts it). A listen or peer rule with
 * `proto postgres` or `proto mysql` (scp/shield.h) speaks that part for the program, so that a
 * program configured without TLS is reached by clients that insist on it (libpq
 * sslmode=verify-full, mariadb --ssl-verify-server-cert). Nothing but the protocol's own start
 * ever passes in plaintext: anything else ends the connection (docs/shield.md).
 *
 * Called with c->mu held, from net_tls.c's handshake (net_start), and around net_tls.c's plaintext
 * read and write for MySQL's greeting and authentication phase (net_my_pre_read, net_my_read,
 * net_my_write). */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shield/net_int.h"

#define PG_SSL_REQUEST 80877103u
#define PG_GSSENC_REQUEST 80877104u
#define MY_CLIENT_SSL 0x0800u
#define MY_CLIENT_PROTOCOL_41 0x0200u
#define MY_GREETING_MAX 1024 /* a server's greeting: version string, scramble, plugin name */

/* MySQL's packet framing, walked byte by byte through a stream: 3-byte length, sequence
 * number, payload. During the authentication phase the shield's TLS start makes the two ends
 * count differently: the client counted its SSLRequest (sequence 1), the program never saw it.
 * So until the server's OK or ERR, client packets reach the program one lower and the server's
 * reach the client one higher; and the client's HandshakeResponse, which says CLIENT_SSL, says
 * it no more (a server without TLS of its own would refuse it). */
struct my_flow {
    unsigned char len[3];
    int hpos;      /* header bytes seen of the current packet (0-4) */
    uint32_t left; /* payload bytes of it not yet seen */
    uint32_t off;  /* payload bytes of it seen */
    unsigned npkt; /* packets completed */
    int type;      /* the current packet's first payload byte (-1: none yet) */
    int done;      /* the authentication phase is over: bytes pass unchanged */
};

struct net_my {
    int client;                           /* the program is the client (a peer rule) */
    int greeted;                          /* server: the program's greeting went out; client:
                                           * the server's greeting was handed to the program */
    size_t glen;                          /* bytes of the greeting gathered */
    size_t gout;                          /* client: bytes of it the program has read */
    int asked;                            /* client: the SSLRequest went out */
    unsigned char greet[MY_GREETING_MAX]; /* gathered until whole */
    struct my_flow in, out;               /* from the peer to the program, and back */
};

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le24(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16; }

/* Queue plaintext protocol bytes (a request or an answer) ahead of the TLS records. */
static int pre_send(nconn *c, const void *b, size_t n) {
    if (net_obuf_append(BIO_get_data(c->wbio), b, n)) return -ENOMEM;
    long f = net_flush(c, 0, 1);
    return f == -EAGAIN ? 0 : (int)f;
}

/* Wait for more plaintext from the peer: 0 (try again), -EAGAIN, or the failure. */
static long pre_more(nconn *c, int block) {
    long g = net_fill(c, NULL);
    if (g > 0) return 0;
    if (g == 0) return net_conn_fail(c, "the peer closed the connection before TLS began", ECONNRESET);
    if (g != -EAGAIN) {
        c->failed = (int)-g;
        return g;
    }
    if (!block) return -EAGAIN;
    long w = net_wait_fd(c, POLLIN);
    return w < 0 ? w : 0;
}

/* ---- PostgreSQL ------------------------------------------------------------------------------
 * libpq sends an 8-byte SSLRequest (length 8, code 80877103); the server answers the single
 * byte 'S' and the client's ClientHello follows. A GSSENCRequest (code 80877104) is answered
 * 'N' (no GSSAPI encryption), after which libpq asks for SSL. */

static long pg_server(nconn *c, int block) {
    for (;;) {
        struct obuf *o = BIO_get_data(c->rbio);
        size_t have = o->p ? o->len - o->off : 0;
        if (have >= 8) {
            const unsigned char *p = (const unsigned char *)o->p + o->off;
            uint32_t len = be32(p), code = be32(p + 4);
            if (len != 8 || (code != PG_SSL_REQUEST && code != PG_GSSENC_REQUEST))
                return net_conn_fail(c, "the client did not ask for TLS (PostgreSQL SSLRequest: a client needs sslmode=require or verify-full)",
                                     ECONNRESET);
            o->off += 8;
            long e = pre_send(c, code == PG_SSL_REQUEST ? "S" : "N", 1);
            if (e < 0) return net_conn_fail(c, "cannot answer PostgreSQL's SSLRequest", (int)-e);
            if (code == PG_SSL_REQUEST) {
                c->pre = NET_PRE_NONE;
                return 1;
            }
            continue; /* GSSENCRequest refused: libpq asks for SSL next */
        }
        long m = pre_more(c, block);
        if (m < 0) return m;
    }
}

static long pg_client(nconn *c, int block) {
    if (c->pre == NET_PRE_PG_CLIENT_SEND) {
        static const unsigned char req[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}; /* 80877103 */
        long e = pre_send(c, req, sizeof req);
        if (e < 0) return net_conn_fail(c, "cannot send PostgreSQL's SSLRequest", (int)-e);
        c->pre = NET_PRE_PG_CLIENT_WAIT;
    }
    for (;;) {
        struct obuf *o = BIO_get_data(c->rbio);
        size_t have = o->p ? o->len - o->off : 0;
        if (have >= 1) {
            unsigned char a = (unsigned char)o->p[o->off];
            if (a != 'S')
                return net_conn_fail(c, a == 'N' ? "the PostgreSQL server refused TLS (it answered 'N' to SSLRequest)"
                                                 : "the PostgreSQL server did not answer SSLRequest with 'S'",
                                     ECONNREFUSED);
            /* bytes behind the 'S' came before the handshake, unauthenticated: a man in the
             * middle's injection (CVE-2021-23222), never the server's */
            if (have > 1) return net_conn_fail(c, "the PostgreSQL server sent plaintext after 'S'", ECONNRESET);
            o->off++;
            c->pre = NET_PRE_NONE;
            return 1;
        }
        long m = pre_more(c, block);
        if (m < 0) return m;
    }
}

/* ---- MySQL and MariaDB ------------------------------------------------------------------------
 * The server speaks first: a greeting (sequence 0) whose capability flags say CLIENT_SSL when
 * it offers TLS. A client that wants TLS answers with a 32-byte SSLRequest (sequence 1: its
 * capability flags with CLIENT_SSL, its maximum packet size and character set), then the
 * ClientHello; its HandshakeResponse (sequence 2) then travels inside TLS. */

/* Walk b[0, n) through f: shift each packet's sequence number by d; in the client's first
 * packet (the HandshakeResponse) clear CLIENT_SSL (ssl 0: towards a program that serves
 * without TLS) or set it (ssl 1: towards a server that saw the SSLRequest); in the server's
 * direction (client 0) end the phase after an OK or ERR packet. b is changed in place. */
static void my_walk(struct my_flow *f, unsigned char *b, size_t n, int d, int client, int ssl) {
    for (size_t i = 0; i < n && !f->done; i++) {
        if (f->hpos < 3) {
            f->len[f->hpos++] = b[i];
            continue;
        }
        if (f->hpos == 3) {
            b[i] = (unsigned char)(b[i] + d);
            f->hpos = 4;
            f->left = le24(f->len);
            f->off = 0;
            f->type = -1;
            if (f->left) continue;
        } else {
            if (f->off == 0) f->type = b[i];
            /* capability flags, little-endian: CLIENT_SSL is bit 3 of the second byte */
            if (client && f->npkt == 0 && f->off == 1)
                b[i] = ssl ? (unsigned char)(b[i] | MY_CLIENT_SSL >> 8) : (unsigned char)(b[i] & ~(MY_CLIENT_SSL >> 8));
            f->off++;
            f->left--;
            if (f->left) continue;
        }
        /* the packet is complete (a 16 MiB - 1 one continues in the next: not an end) */
        f->npkt++;
        f->hpos = 0;
        if (!client && (f->type == 0x00 || f->type == 0xff) && le24(f->len) < 0xffffff) f->done = 1;
    }
}

/* The client's SSLRequest, read raw before the handshake. */
static long my_server(nconn *c, int block) {
    if (!c->my->greeted) /* the program has not spoken: nothing to wait for on the wire yet */
        return block ? net_conn_fail(c, "the MySQL server read before it sent its greeting", EPROTO) : -EAGAIN;
    for (;;) {
        struct obuf *o = BIO_get_data(c->rbio);
        size_t have = o->p ? o->len - o->off : 0;
        if (have >= 4) {
            const unsigned char *p = (const unsigned char *)o->p + o->off;
            uint32_t len = le24(p);
            if (len != 32 || p[3] != 1)
                return net_conn_fail(c, "the client did not ask for TLS (MySQL SSLRequest: a client needs --ssl, ssl-mode=REQUIRED or VERIFY_IDENTITY)",
                                     ECONNRESET);
            if (have >= 36) {
                uint32_t caps = (uint32_t)p[4] | (uint32_t)p[5] << 8;
                if (!(caps & MY_CLIENT_SSL) || !(caps & MY_CLIENT_PROTOCOL_41))
                    return net_conn_fail(c, "the client's MySQL SSLRequest does not ask for TLS", ECONNRESET);
                o->off += 36;
                c->pre = NET_PRE_NONE;
                return 1;
            }
        }
        long m = pre_more(c, block);
        if (m < 0) return m;
    }
}

/* Where a protocol-10 greeting's capability flags (their low two bytes) begin in its payload
 * p[0, plen): behind the protocol byte, version\0, connection id[4], scramble[8] and a filler.
 * 0 when the payload ends before them (0 is the protocol byte, never the flags). */
static size_t greet_caps_at(const unsigned char *p, size_t plen) {
    assert(plen && p[0] == 0x0a);
    const unsigned char *z = memchr(p + 1, 0, plen - 1);
    if (!z) return 0;
    size_t at = (size_t)(z - p) + 1 + 4 + 8 + 1;
    return at + 2 <= plen ? at : 0;
}

/* The program's greeting: gathered until whole, sent in plaintext with CLIENT_SSL added.
 * Returns n (taken) or the failure. */
static long my_greet(nconn *c, const unsigned char *b, size_t n) {
    struct net_my *m = c->my;
    if (m->glen + n > sizeof m->greet)
        return net_conn_fail(c, "the MySQL server's greeting is too long", EPROTO);
    memcpy(m->greet + m->glen, b, n);
    m->glen += n;
    if (m->glen < 4 || m->glen < 4 + (size_t)le24(m->greet)) return (long)n;
    size_t plen = le24(m->greet);
    if (m->glen != 4 + plen || m->greet[3] != 0)
        return net_conn_fail(c, "the MySQL server sent more than its greeting before TLS", EPROTO);
    unsigned char *p = m->greet + 4;
    if (plen && p[0] == 0x0a) {
        size_t at = greet_caps_at(p, plen);
        if (!at) return net_conn_fail(c, "the MySQL server's greeting is malformed", EPROTO);
        p[at + 1] |= MY_CLIENT_SSL >> 8;
    }
    /* an ERR greeting (too many connections, host blocked) goes out as it is; the server
     * closes the connection after it */
    long e = pre_send(c, m->greet, m->glen);
    if (e < 0) return net_conn_fail(c, "cannot send the MySQL server's greeting", (int)-e);
    m->greeted = 1;
    return (long)n;
}

static long my_ask(nconn *c, const void *buf, size_t n);

long net_my_write(nconn *c, const void *buf, size_t n, int flags) {
    struct net_my *m = c->my;
    if (c->failed) return -c->failed;
    if (m->client && !m->asked) {
        long a = my_ask(c, buf, n);
        if (a < 0) return a;
    } else if (!m->greeted)
        return my_greet(c, buf, n);
    if (m->out.done) return net_write_tls(c, buf, n, flags);
    /* authentication: a copy with the sequence numbers shifted; the flow advances by what
     * the write took (a short write leaves the rest to be walked again) */
    unsigned char small[512], *t = n <= sizeof small ? small : malloc(n);
    if (!t) return -ENOMEM;
    memcpy(t, buf, n);
    struct my_flow f = m->out;
    my_walk(&f, t, n, +1, m->client, 1);
    long r = net_write_tls(c, t, n, flags);
    if (r > 0) {
        assert((size_t)r <= n);
        if ((size_t)r == n) /* the walk reads the bytes before it changes them: f is the flow past all n */
            m->out = f;
        else {
            memcpy(t, buf, (size_t)r);
            my_walk(&m->out, t, (size_t)r, +1, m->client, 1);
        }
        if (m->out.done) m->in.done = 1; /* the client speaks again only after the OK */
        if (m->in.done) m->out.done = 1;
    }
    if (t != small) free(t);
    return r;
}

void net_my_read(nconn *c, void *buf, size_t n, int peek) {
    struct net_my *m = c->my;
    if (m->in.done || !n) return;
    struct my_flow f = m->in;
    my_walk(peek ? &f : &m->in, buf, n, -1, !m->client, 0);
    if (m->in.done && m->client) m->out.done = 1; /* the server's OK: the phase is over */
}

/* ---- MySQL: the program is the client -------------------------------------------------------
 * The server's greeting is read raw and handed to the program with CLIENT_SSL cleared (the
 * program, configured without TLS, must not try its own); its HandshakeResponse then goes
 * out as an SSLRequest made from its first 32 bytes (the same layout: capabilities with
 * CLIENT_SSL, maximum packet, character set), the ClientHello, and the response itself inside
 * TLS, one sequence number higher and saying CLIENT_SSL. */

/* Gather the server's greeting: 1 when whole, -EAGAIN, or the failure. */
static long my_gather(nconn *c, int block) {
    struct net_my *m = c->my;
    for (;;) {
        struct obuf *o = BIO_get_data(c->rbio);
        size_t have = o->p ? o->len - o->off : 0;
        if (have >= 4) {
            const unsigned char *p = (const unsigned char *)o->p + o->off;
            size_t plen = le24(p);
            if (p[3] != 0 || plen + 4 > sizeof m->greet)
                return net_conn_fail(c, "the MySQL server's greeting is malformed", EPROTO);
            if (have > plen + 4) /* the server waits for the client: bytes behind it were injected */
                return net_conn_fail(c, "the MySQL server sent more than its greeting before TLS", EPROTO);
            if (have == plen + 4) {
                memcpy(m->greet, p, have);
                m->glen = have;
                o->off = o->len = 0;
                unsigned char *g = m->greet + 4;
                if (plen && g[0] == 0x0a) {
                    size_t at = greet_caps_at(g, plen);
                    if (!at) return net_conn_fail(c, "the MySQL server's greeting is malformed", EPROTO);
                    if (!(g[at + 1] & MY_CLIENT_SSL >> 8))
                        return net_conn_fail(c, "the MySQL server offers no TLS (its greeting lacks CLIENT_SSL)", ECONNREFUSED);
                    g[at + 1] &= (unsigned char)~(MY_CLIENT_SSL >> 8);
                } else if (!plen || g[0] != 0xff)
                    return net_conn_fail(c, "the MySQL server's greeting is not protocol 10", EPROTO);
                /* an ERR greeting goes to the program as it is: the server closes after it */
                m->greeted = 1;
                return 1;
            }
        }
        long r = pre_more(c, block);
        if (r < 0) return r;
    }
}

long net_my_pre_read(nconn *c, void *buf, size_t n, int flags, int block) {
    struct net_my *m = c->my;
    if (c->failed) return -c->failed;
    if (!m->greeted) {
        long g = my_gather(c, 0);
        if (g == -EAGAIN && block) g = my_gather(c, 1);
        if (g < 0) return g;
    }
    size_t k = m->glen - m->gout < n ? m->glen - m->gout : n;
    memcpy(buf, m->greet + m->gout, k);
    if (!(flags & MSG_PEEK)) m->gout += k;
    return (long)k;
}

int net_my_pre_reading(const nconn *c) { return c->my && c->my->client && c->my->gout < c->my->glen + !c->my->greeted; }

int net_my_pending(const nconn *c) { return c->my && c->my->client && c->my->greeted && c->my->gout < c->my->glen; }

/* The program's first write, its HandshakeResponse: the SSLRequest goes out first. */
static long my_ask(nconn *c, const void *buf, size_t n) {
    struct net_my *m = c->my;
    const unsigned char *b = buf;
    if (!m->greeted || m->gout < m->glen)
        return net_conn_fail(c, "the MySQL client wrote before it read the server's greeting", EPROTO);
    if (n < 36 || b[3] != 1 || le24(b) < 32)
        return net_conn_fail(c, "the MySQL client's first write is not a whole HandshakeResponse", EPROTO);
    unsigned char req[36];
    req[0] = 32, req[1] = req[2] = 0, req[3] = 1;
    memcpy(req + 4, b + 4, 32);
    req[5] |= MY_CLIENT_SSL >> 8;
    long e = pre_send(c, req, sizeof req);
    if (e < 0) return net_conn_fail(c, "cannot send the MySQL SSLRequest", (int)-e);
    m->asked = 1;
    c->pre = NET_PRE_NONE; /* the handshake follows, in the write of the response */
    return 0;
}

/* ---- entry points ------------------------------------------------------------------------- */

int net_start_init(nconn *c, int proto, int server) {
    if (proto == NET_PROTO_POSTGRES) c->pre = server ? NET_PRE_PG_SERVER : NET_PRE_PG_CLIENT_SEND;
    else if (proto == NET_PROTO_MYSQL) {
        c->my = calloc(1, sizeof *c->my);
        if (!c->my) return -ENOMEM;
        c->my->client = !server;
        c->pre = server ? NET_PRE_MY_SERVER : NET_PRE_MY_CLIENT;
    }
    return 0;
}

long net_start(nconn *c, int block) {
    switch (c->pre) {
    case NET_PRE_PG_SERVER: return pg_server(c, block);
    case NET_PRE_PG_CLIENT_SEND:
    case NET_PRE_PG_CLIENT_WAIT: return pg_client(c, block);
    case NET_PRE_MY_SERVER: return my_server(c, block);
    case NET_PRE_MY_CLIENT: /* the greeting and the SSLRequest move in net_my_pre_read and net_my_write */
        return block ? net_conn_fail(c, "the MySQL client waited for TLS before its HandshakeResponse", EPROTO) : -EAGAIN;
    default: return 1;
    }
}
