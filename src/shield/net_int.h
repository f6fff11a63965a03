/* shield/net_int.h - state shared by net.c, net_conf.c, net_tls.c, net_io.c and net_wait.c (the network shield's own files). */
#ifndef SCP_SHIELD_NET_INT_H
#define SCP_SHIELD_NET_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/select.h> /* fd_set, sigset_t, struct timespec */
#include <sys/uio.h>

#include <openssl/ssl.h>

#include "scp/err.h"
#include "shield/tls_record.h"

#define NET_MAX_RULES 64
#define NET_MAX_CA 130
#define NET_PENDING_MAX (256 * 1024) /* plaintext written before the handshake ended */

/* What a per-instance certificate must carry (`want` lines; "": not checked). */
struct net_want {
    char service[72], measurement[72], platform[72];
};

/* How a rule's connections start (`proto` line; docs/shield.md "PostgreSQL's SSLRequest"). */
enum { NET_PROTO_TLS = 0, NET_PROTO_POSTGRES = 1, NET_PROTO_MYSQL = 2 };
/* Where a connection is in its protocol's plaintext start (nconn.pre; net_start.c). */
enum { NET_PRE_NONE = 0, NET_PRE_PG_SERVER, NET_PRE_PG_CLIENT_SEND, NET_PRE_PG_CLIENT_WAIT, NET_PRE_MY_SERVER, NET_PRE_MY_CLIENT };
struct net_my;

struct net_listen {
    int port, ca;
    int proto; /* NET_PROTO_* */
    char id[256]; /* the identity the client's certificate must carry ("": not checked) */
    struct net_want want;
    SSL_CTX *ctx;
};

struct net_peer {
    char host[256], name[256];
    char id[256]; /* the identity the server's certificate must carry ("": not checked) */
    struct net_want want;
    int port, ca;
    int proto;       /* NET_PROTO_* */
    int fam, prefix; /* fam 0: a DNS name */
    unsigned char addr[16];
    int resolved, nres, res_fam[8];
    unsigned char res[8][16];
    SSL_CTX *ctx;
    /* the latest session (TLS 1.3 ticket) from this peer and the address it came from: the
     * next connection to that address offers it (net.c, sess_mu) */
    SSL_SESSION *sess;
    int sess_fam;
    unsigned char sess_addr[16];
};

struct net_conf {
    int refuse, min_tls, filtered;
    char *raw; /* the configuration as received (passed on at exec) */
    size_t rawlen, rawcap;
    char *cert, *key, *ca[NET_MAX_CA];
    size_t certlen, keylen, calen[NET_MAX_CA];
    int nca, nlis, npeer;
    struct net_listen lis[NET_MAX_RULES];
    struct net_peer peer[NET_MAX_RULES];
    X509 *x509;
    EVP_PKEY *pkey;
    const struct scp_shield_net_renew *renew; /* per-instance identity: the supervisor's page */
};

/* A BIO's buffer of ciphertext (net.c): the read side filled from the kernel, the write side
 * an append-only queue of what the kernel has not taken. */
struct obuf {
    char *p;
    size_t off, len, cap;
    int fd;     /* write side: the socket, for direct */
    int direct; /* write side: net_write's full records go to the kernel at once (obuf_write) */
    /* Until the lean record layer has taken both directions: the records OpenSSL has written
     * into (read from) this buffer so far, counted from their headers (rec_count in net.c).
     * The sequence number of a direction's first record under its application key is the
     * count since the key came (net_lean). */
    int counting;
    uint64_t nrec;
    size_t rskip; /* body bytes of the current record still to come */
    unsigned rhn, rlen; /* header bytes seen of the next record, and its length so far */
    int locked, desync; /* write side: the layer writes now; OpenSSL wrote a record after that */
};

/* The lean TLS 1.3 record layer of a connection (tls_record.h; net_tls.c "lean"): the traffic
 * secrets that OpenSSL's keylog callback gave, then the two directions once taken. The write
 * side is taken when the handshake ends; the read side too, unless OpenSSL still holds bytes
 * (SSL_has_pending) or the connection is a client's: a server sends its session tickets after
 * the handshake, and OpenSSL must see them to keep the session, so a client's read side stays
 * with OpenSSL until the first application data came through it. */
struct net_lean {
    struct tls_suite suite;
    struct tls_dir wr, rd;
    size_t wlen, rlen;     /* the secrets' lengths, 0: not given (yet) */
    uint64_t wbase, rbase; /* the BIOs' record counts when OpenSSL took the application keys */
    int won, ron;          /* the direction is the layer's */
    int bad;               /* a secret did not parse: the connection stays with OpenSSL */
    size_t lp, ln;         /* plaintext of the record opened last, at rq->p + lp */
};

/* An epoll registration of a shielded connection (net_io.c). */
struct net_epreg {
    int epfd;
    uint32_t gen, events;
    uint64_t data;
    uint32_t reported; /* EPOLLET: ready_seq last reported */
    int disarmed;      /* EPOLLONESHOT fired */
    int fd;            /* the number it was registered with (moved by a relay, net_relay.c) */
};

typedef struct nconn {
    pthread_mutex_t mu; /* the SSL object, BIOs and flags */
    SSL *ssl;
    BIO *rbio, *wbio;
    struct obuf *rq, *wq; /* the BIOs' buffers (their data), read without a call into libcrypto */
    int fd;          /* a number of the kernel socket (any of the table's numbers would do) */
    int refs;        /* table entries (net_mu) */
    int users;       /* operations in progress (net_mu) */
    int server, port, pid;
    struct net_peer *peer;
    int hs_done, eof, failed, wr_shut;
    /* before the TLS handshake, a protocol's own plaintext start (NET_PRE_*; net_start.c) */
    int pre;
    struct net_my *my; /* proto mysql: the greeting and the authentication phase (net_start.c) */
    char *pbuf;      /* plaintext written during the handshake */
    size_t plen;
    int ready_idx, stuck_idx; /* positions in net_ready / net_stuck, -1: absent (net_mu) */
    uint32_t ready_seq;
    int waiters; /* threads asleep in a wait that names this connection (atomic; net_sleep_on) */
    struct net_epreg *ep; /* (net_mu) */
    int nep, capep;
    struct net_lean *lean; /* NULL: OpenSSL's record layer throughout (SCP_NET_LEAN=0, TLS 1.2, ...) */
    int rfam;                 /* a client: the address connected to (its session is kept for it) */
    unsigned char raddr[16];
} nconn;

/* Ciphertext waits in the write BIO (for the kernel), in the read BIO (for OpenSSL). */
static inline int net_wpending(const nconn *c) { return c->wq->len > c->wq->off; }
static inline int net_rbuffered(const nconn *c) { return c->rq->len > c->rq->off; }

extern struct net_conf nc;
extern pthread_mutex_t net_mu;
extern nconn **net_tbl, **net_ready, **net_stuck;
/* net_tbl covers the numbers [0, net_tbl_n): at most NET_TBL_MAX (net_conf.c, sh_net_load) */
#define NET_TBL_MAX 65536
extern int net_tbl_n, net_nready, net_nstuck;
extern int net_nconns; /* table entries in use (net_mu; read without it to skip an empty table) */
extern uint32_t *net_epgen; /* per number: bumped when an epoll instance is created on it */

/* Threads asleep in the kernel (net_wait.c): a waiter calls net_sleep(1) (an epoll set: any
 * connection may concern it) or net_sleep_on(c, 1) for each connection it waits for (poll,
 * select, a blocking read or write) before it looks at the connections, and the same with 0
 * when it wakes. net_wake_for(c) (c became ready) wakes the waiters if an epoll waiter or a
 * waiter on c sleeps; net_wake_sleepers wakes them whoever sleeps. A wake goes through the wake
 * eventfd, which the epoll sets the program waits on hold (edge-triggered) and, for poll,
 * select and blocking reads and writes, each thread's own epoll instance does
 * (net_thread_wake_fd; net_thread_wake_reset once it fired). */
void net_sleep(int on);
void net_sleep_on(nconn *c, int on);
void net_wake_sleepers(void);
void net_wake_for(nconn *c);
int net_thread_wake_fd(void);
void net_thread_wake_reset(void);
void net_wake_after_fork(void);
struct pollfd;
struct epoll_event;
/* Readiness (net_wait.c), for net_io.c's trapped calls and exported functions: deadlines in
 * CLOCK_MONOTONIC ns (-1: none); results are -errno. net_quiet: no connection has plaintext
 * waiting or ciphertext stuck (the kernel's answer is then the truth). */
long long net_now_ns(void);
long long net_deadline_ms(long ms);
long long net_deadline_ts(const struct timespec *ts);
int net_quiet(void);
long net_poll_core(struct pollfd *fds, unsigned long n, long long deadline, const sigset_t *mask);
long net_select(int nfds, fd_set *r, fd_set *w, fd_set *x, long long deadline, const sigset_t *mask);
long net_epoll_wait(int epfd, struct epoll_event *ev, int max, long long deadline, const sigset_t *mask);
long net_epoll_ctl(int epfd, int op, int fd, struct epoll_event *e);
/* An epoll set the program waits on holds the wake eventfd (once per set and generation); the
 * wake's events taken out of what the program sees (*woke: one was there). */
void net_ep_wake_reg(int epfd);
long net_strip_wake(struct epoll_event *ev, long n, int *woke);
void net_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
nconn *net_get(int fd);
void net_tbl_set(int fd, nconn *c);
void net_put(nconn *c);
void net_update(nconn *c);
int net_buffered(nconn *c);
long net_flush(nconn *c, int block, int nosig);
long net_read(nconn *c, void *buf, size_t n, int flags);
long net_write(nconn *c, const void *buf, size_t n, int flags);
long net_write_tls(nconn *c, const void *buf, size_t n, int flags); /* net_write without a protocol's rewriting */
#define NET_REC 16384 /* the plaintext of a full TLS record */
long net_writev_tls(nconn *c, const struct iovec *iov, long cnt, size_t n, int flags, char *g);
/* For net_start.c (c->mu held): receive into the read BIO (bytes, 0 at EOF, -errno); wait for
 * the socket (0, -EAGAIN on timeout, or the failure); fail the connection with a log line;
 * append to a BIO's buffer (0 or -1). */
long net_fill(nconn *c, int *drained);
long net_wait_fd(nconn *c, short ev);
long net_conn_fail(nconn *c, const char *what, int e);
int net_obuf_append(struct obuf *o, const char *data, size_t n);

/* Protocols that start in plaintext (net_start.c; c->mu held). net_start_init sets up a new
 * connection of a rule's proto (0, or -ENOMEM);
 * net_start runs the plaintext start before the handshake: 1 (TLS may begin), -EAGAIN, or the
 * connection's failure. With proto mysql, net_write goes through net_my_write and net_read's
 * bytes through net_my_read (peek: without moving on) until the authentication ends. */
int net_start_init(nconn *c, int proto, int server);
long net_start(nconn *c, int block);
long net_my_write(nconn *c, const void *buf, size_t n, int flags);
void net_my_read(nconn *c, void *buf, size_t n, int peek);
/* A MySQL client program (peer rule): while net_my_pre_reading, net_read hands it the server's
 * greeting through net_my_pre_read (block: wait for it); net_my_pending says a part of it waits
 * (readable for poll, select and epoll). */
int net_my_pre_reading(const nconn *c);
long net_my_pre_read(nconn *c, void *buf, size_t n, int flags, int block);
int net_my_pending(const nconn *c);
long net_shutdown(nconn *c, int how);
long net_accept(long nr, const long a[6]);
void net_on_accept(int fd);
long net_connect(int fd, const void *sa, size_t len);
long net_listen(int fd, int backlog);
int net_quarantine(int fd);
int net_listen_rule(int port);
int net_sa_parse(const void *sa, size_t len, int *fam, unsigned char *addr, int *port);
struct net_peer *net_peer_for(int fam, const unsigned char *addr, int port);
int net_sock_type(int fd);

/* Per-instance certificate renewal (net_renew.c; scp/shield.h SCP_SHIELD_ENV_NET_RENEW_FD).
 * net_renew_load maps the supervisor's page if the launcher passed one (0 when none);
 * net_renew_apply gives a new connection's SSL object the newest certificate the supervisor
 * published, if it is for the instance's own key (else the connection keeps the first). */
int net_renew_load(scp_err *err);
void net_renew_apply(SSL *ssl);

/* ---- what net.c, net_conf.c and net_tls.c give each other ------------------------------------ */

/* net.c */
/* The lean record layer for TLS 1.3 connections (SCP_NET_LEAN=0 keeps OpenSSL's throughout). */
extern int net_lean_on;
void net_conn_desc(const nconn *c, char *out, size_t n);
extern int net_conn_idx; /* SSL ex_data: the nconn */
int net_keep_session(SSL *ssl, SSL_SESSION *s);
/* A complete TLS record at the start of the read BIO (a read would make progress). */
int net_full_record_buffered(nconn *c);
void net_lean_free(nconn *c);
/* Room for n more bytes at o->p + o->len: 0, or -1 (out of memory). */
int net_obuf_room(struct obuf *o, size_t n);
/* In direct mode a record goes to the kernel from OpenSSL's own buffer, with what waits here
 * ahead of it, in one sendmsg (sendto when nothing waits): no copy of the record, no second system call. What the kernel
 * does not take (a full socket, an error) is kept and net_flush meets it as before. */
int net_obuf_write(BIO *b, const char *data, int n);
int net_sock_nonblock(int fd);
void net_quarantine_inherited(void);

/* net_tls.c */
/* Drive the handshake: 1 done, -EAGAIN, or -errno (connection failed). */
long net_handshake(nconn *c, int block);

#endif
