/* shield/net.c - the network shield: configuration, TLS on memory BIOs, the connection table.
 *
 * A shielded connection is a kernel TCP socket whose number the program holds (an ordinary
 * number, so event loops that index arrays by descriptor keep working) plus an nconn: an SSL
 * object whose read BIO holds ciphertext taken from the kernel (received straight into it) and
 * whose write BIO holds ciphertext not yet given to the kernel (a full record goes to the kernel
 * from OpenSSL's buffer without a stop there). The program's reads and writes on the number go
 * through tls_read/tls_write; poll, select and epoll_wait (net_io.c) add what the kernel cannot
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
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <dirent.h>
#include <netdb.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

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
static int lean_on = 1;

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

static void conn_desc(const nconn *c, char *out, size_t n) {
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
static int conn_idx = -1; /* SSL ex_data: the nconn */

static int keep_session(SSL *ssl, SSL_SESSION *s) {
    nconn *c = SSL_get_ex_data(ssl, conn_idx);
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

/* ---- configuration ------------------------------------------------------------------------- */

/* The URI SAN of cert that starts with scheme (gen_x509 in CAS puts exactly one scp:// URI in
 * a session's certificate, and one of each SCP_SHIELD_*_URI in an instance's): 1 and the URI in
 * out, 0 if there is none, -1 if there are several or it is too long. */
static int cert_uri(X509 *cert, const char *scheme, char *out, size_t n) {
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    size_t sl = strlen(scheme);
    for (int i = 0; i < sk_GENERAL_NAME_num(gens) && found >= 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI) continue;
        const char *u = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        size_t ul = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (ul < sl || strncmp(u, scheme, sl) != 0) continue;
        if (found++ || ul >= n || memchr(u, 0, ul)) found = -1;
        else memcpy(out, u, ul), out[ul] = 0;
    }
    GENERAL_NAMES_free(gens);
    return found;
}

/* A rule's identity: the whole URI, or a prefix ending in '/' that any secret of the session
 * completes. */
static int identity_matches(const char *want, const char *got) {
    size_t wl = strlen(want);
    if (wl && want[wl - 1] == '/') return strncmp(got, want, wl) == 0 && got[wl] && !strchr(got + wl, '/');
    return strcmp(got, want) == 0;
}

/* A per-instance certificate's service or measurement URI is the one the rule wants (want ""
 * checks nothing). Logs the refusal. */
static int want_matches(const nconn *c, X509 *cert, const char *scheme, const char *what, const char *want) {
    if (!want[0]) return 1;
    char got[256] = "", d[400];
    int r = cert_uri(cert, scheme, got, sizeof got);
    if (r == 1 && strcmp(got + strlen(scheme), want) == 0) return 1;
    char has[300];
    if (r == 1) snprintf(has, sizeof has, "%s", got);
    else snprintf(has, sizeof has, r == 0 ? "no %s (not a per-instance certificate)" : "several %ss", what);
    conn_desc(c, d, sizeof d);
    net_log("%s: the peer's certificate carries %s, not the %s the policy names (%s%s): connection refused", d, has,
            what, scheme, want);
    return 0;
}

/* After the chain and the name checks, the peer's certificate must carry the identity its rule
 * names (the peer rule for a client, the listen rule for a server): CAS fills it in, so only a
 * holder of that session's key has it (docs/shield.md, "What the two ends' attestations bind").
 * A rule that wants a service or a measurement also needs a per-instance certificate that
 * carries them: CAS issues one only to an instance that attested with that measurement. */
static int verify_identity(int ok, X509_STORE_CTX *xs) {
    if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0) return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    const nconn *c = ssl ? SSL_get_ex_data(ssl, conn_idx) : NULL;
    int li = c && c->server ? net_listen_rule(c->port) : -1;
    const char *want = !c ? NULL : c->server ? (li >= 0 ? nc.lis[li].id : NULL) : c->peer ? c->peer->id : NULL;
    if (!c || !want) { /* no rule: cannot tell what to expect, so refuse */
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    const struct net_want *w = c->server ? &nc.lis[li].want : &c->peer->want;
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    if (!want_matches(c, cert, SCP_SHIELD_SERVICE_URI, "service", w->service) ||
        !want_matches(c, cert, SCP_SHIELD_MEASUREMENT_URI, "measurement", w->measurement) ||
        !want_matches(c, cert, SCP_SHIELD_PLATFORM_URI, "platform", w->platform)) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    if (!want[0]) return 1; /* the rule names no session: chain and name (and the wants) only */
    char got[256] = "", d[400];
    int r = cert_uri(cert, SCP_SHIELD_ID_SCHEME, got, sizeof got);
    if (r == 1 && identity_matches(want, got)) return 1;
    conn_desc(c, d, sizeof d);
    net_log("%s: the peer's certificate %s%s, not the CAS session the policy names (%s%s): connection refused", d,
            r == 1 ? "belongs to " : r == 0 ? "names no CAS session" : "names several CAS sessions", r == 1 ? got : "",
            want, want[strlen(want) - 1] == '/' ? "*" : "");
    X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* A hex digit's value, or -1. */
static int hexval(char ch) {
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* OpenSSL's keylog callback (NSS key log lines), the one way OpenSSL 3.0 tells the traffic
 * secrets: it calls it when a direction takes its application key. The two first application
 * traffic secrets go into the connection's lean layer (nothing is logged or kept elsewhere;
 * OpenSSL clears the line after the call) together with the count of records the direction's
 * BIO has carried at that moment: the next record is the first under the new key (sequence
 * number 0, RFC 8446 5.3). Every other line (handshake and exporter secrets) is ignored. */
static void keylog(const SSL *ssl, const char *line) {
    nconn *c = SSL_get_ex_data(ssl, conn_idx);
    if (!c || !c->lean) return;
    int cl = !strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24), sv = !strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24);
    if (!cl && !sv) return;
    struct net_lean *l = c->lean;
    int mine = cl != c->server; /* the secret of this end's writes */
    struct tls_dir *d = mine ? &l->wr : &l->rd;
    const char *h = strchr(line + 24, ' '); /* past the client random */
    size_t n = 0;
    if (h) {
        for (h++; n < sizeof d->secret && hexval(h[0]) >= 0 && hexval(h[1]) >= 0; h += 2)
            d->secret[n++] = (unsigned char)(hexval(h[0]) << 4 | hexval(h[1]));
    }
    if (!h || *h || (n != 32 && n != 48)) {
        l->bad = 1;
        return;
    }
    if (mine) l->wlen = n, l->wbase = c->wq->nrec;
    else l->rlen = n, l->rbase = c->rq->nrec;
}

static SSL_CTX *ctx_new(int server, int ca) {
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, nc.min_tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
    if (lean_on) SSL_CTX_set_keylog_callback(ctx, keylog);
    if (nc.cert) {
        if (SSL_CTX_use_certificate(ctx, nc.x509) != 1 || SSL_CTX_use_PrivateKey(ctx, nc.pkey) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
            goto bad;
    } else if (server) {
        goto bad;
    }
    if (ca >= 0) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        BIO *b = BIO_new_mem_buf(nc.ca[ca], (int)nc.calen[ca]);
        int n = 0;
        X509 *x;
        while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            if (X509_STORE_add_cert(st, x) == 1) n++;
            X509_free(x);
        }
        BIO_free(b);
        ERR_clear_error();
        if (!n) goto bad;
        SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                           verify_identity);
    }
    if (server) {
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"scp-shield", 10);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, keep_session);
    }
    return ctx;
bad:
    SSL_CTX_free(ctx);
    return NULL;
}

static int parse_peer_host(struct net_peer *p) {
    char h[256];
    snprintf(h, sizeof h, "%s", p->host);
    char *slash = strchr(h, '/');
    p->prefix = -1;
    if (slash) {
        *slash = 0;
        char *e;
        long v = strtol(slash + 1, &e, 10);
        if (*e || v < 0 || v > 128) return -1;
        p->prefix = (int)v;
    }
    if (inet_pton(AF_INET, h, p->addr) == 1) p->fam = AF_INET;
    else if (inet_pton(AF_INET6, h, p->addr) == 1) p->fam = AF_INET6;
    else if (slash) return -1;
    else p->fam = 0; /* a DNS name: resolved at the first connect to its port */
    if (p->fam == AF_INET && p->prefix > 32) return -1;
    if (p->fam && p->prefix < 0) p->prefix = p->fam == AF_INET ? 32 : 128;
    return 0;
}

/* An identity of a rule: SCP_SHIELD_ID_SCHEME OWNER/SESSION/[SECRET]. */
static int id_ok(const char *id) {
    size_t n = strlen(SCP_SHIELD_ID_SCHEME);
    if (strncmp(id, SCP_SHIELD_ID_SCHEME, n) != 0) return 0;
    const char *s1 = strchr(id + n, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    return s1 && s1 > id + n && s2 && s2 > s1 + 1 && !strchr(s2 + 1, '/');
}

/* Parse the SCPN1 text (scp/shield.h). Blobs point into the buffer, which stays (locked). */
static int conf_parse(char *buf, size_t len, scp_err *err) {
    if (len < 6 || memcmp(buf, "SCPN1\n", 6) != 0) goto bad;
    nc.min_tls = 13;
    size_t off = 6;
    struct net_want *last = NULL; /* the rule that `want` lines refine */
    int *last_proto = NULL;        /* the rule that a `proto` line refines */
    while (off < len) {
        char *nl = memchr(buf + off, '\n', len - off);
        if (!nl) goto bad;
        *nl = 0;
        char *ln = buf + off;
        off = (size_t)(nl - buf) + 1;
        char w[16], a[256], b[256];
        long n1 = 0, n2 = 0;
        if (sscanf(ln, "%15s", w) != 1) continue;
        if (!strcmp(w, "default")) {
            if (sscanf(ln, "default %15s", a) != 1) goto bad;
            nc.refuse = !strcmp(a, "refuse");
        } else if (!strcmp(w, "min_tls")) {
            if (sscanf(ln, "min_tls %ld", &n1) != 1) goto bad;
            nc.min_tls = n1 == 12 ? 12 : 13;
        } else if (!strcmp(w, "filtered")) {
            nc.filtered = 1;
        } else if (!strcmp(w, "cert") || !strcmp(w, "key") || !strcmp(w, "ca")) {
            if (sscanf(ln, "%*s %ld", &n1) != 1 || n1 < 0 || (size_t)n1 + 1 > len - off) goto bad;
            char *blob = buf + off;
            off += (size_t)n1 + 1;
            blob[n1] = 0;
            if (w[0] == 'c' && w[1] == 'e') nc.cert = blob, nc.certlen = (size_t)n1;
            else if (w[0] == 'k') nc.key = blob, nc.keylen = (size_t)n1;
            else {
                if (nc.nca >= NET_MAX_CA) goto bad;
                nc.ca[nc.nca] = blob;
                nc.calen[nc.nca++] = (size_t)n1;
            }
        } else if (!strcmp(w, "listen")) {
            a[0] = 0;
            if (nc.nlis >= NET_MAX_RULES || sscanf(ln, "listen %ld %ld %255s", &n1, &n2, a) < 2 || n1 < 1 || n1 > 65535 ||
                n2 < -1 || n2 >= nc.nca || (a[0] && (n2 < 0 || !id_ok(a))))
                goto bad;
            snprintf(nc.lis[nc.nlis].id, sizeof nc.lis[nc.nlis].id, "%s", a);
            last = n2 >= 0 ? &nc.lis[nc.nlis].want : NULL; /* only a verified client certificate can be checked */
            last_proto = &nc.lis[nc.nlis].proto;
            nc.lis[nc.nlis].port = (int)n1;
            nc.lis[nc.nlis++].ca = (int)n2;
        } else if (!strcmp(w, "peer")) {
            struct net_peer *p = &nc.peer[nc.npeer];
            char id[256] = "";
            if (nc.npeer >= NET_MAX_RULES || sscanf(ln, "peer %255s %ld %255s %ld %255s", a, &n1, b, &n2, id) < 4 ||
                n1 < 1 || n1 > 65535 || n2 < 0 || n2 >= nc.nca || (id[0] && !id_ok(id)))
                goto bad;
            snprintf(p->id, sizeof p->id, "%s", id);
            snprintf(p->host, sizeof p->host, "%s", a);
            snprintf(p->name, sizeof p->name, "%s", b);
            p->port = (int)n1;
            p->ca = (int)n2;
            if (parse_peer_host(p)) goto bad;
            last = &p->want;
            last_proto = &p->proto;
            nc.npeer++;
        } else if (!strcmp(w, "proto")) {
            if (!last_proto || sscanf(ln, "proto %255s", a) != 1) goto bad;
            if (!strcmp(a, "postgres")) *last_proto = NET_PROTO_POSTGRES;
            else if (!strcmp(a, "mysql")) *last_proto = NET_PROTO_MYSQL;
            else goto bad;
        } else if (!strcmp(w, "want")) {
            if (!last || sscanf(ln, "want %15s %255s", b, a) != 2) goto bad;
            char *dst = !strcmp(b, "service") ? last->service
                        : !strcmp(b, "measurement") ? last->measurement
                        : !strcmp(b, "platform") ? last->platform
                        : NULL;
            if (!dst) goto bad;
            if (strlen(a) >= sizeof last->service) goto bad;
            memcpy(dst, a, strlen(a) + 1);
        } else
            goto bad;
    }
    return 0;
bad:
    return scp_fail(err, SCP_E_FORMAT, EINVAL, "the network configuration is malformed");
}

static int fd_from_env(const char *var, long *fd) {
    const char *v = getenv(var);
    if (!v) return 0;
    char *end;
    *fd = strtol(v, &end, 10);
    return *end || *fd < 0 || *fd > 1000000 ? -1 : 1;
}

static void quarantine_inherited(void);

int sh_net_load(scp_err *err) {
    long fd;
    int h = fd_from_env(SCP_SHIELD_ENV_NET_FD, &fd);
    if (h == 0) return 0;
    if (h < 0) return scp_fail(err, SCP_E_INVAL, EINVAL, "bad " SCP_SHIELD_ENV_NET_FD);
    struct stat st;
    if (sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) < 0 || st.st_size < 6 || (uint64_t)st.st_size > SCP_SHIELD_NET_MAX)
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "bad network configuration descriptor");
    size_t len = (size_t)st.st_size, got = 0;
    /* with the private key: its own mapping, locked, out of core dumps */
    nc.rawcap = len + 1;
    nc.raw = mmap(NULL, nc.rawcap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (nc.raw == MAP_FAILED) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    madvise(nc.raw, nc.rawcap, MADV_DONTDUMP);
    (void)mlock(nc.raw, nc.rawcap);
    while (got < len) {
        long r = sh_gate(SYS_pread64, fd, (long)(nc.raw + got), (long)(len - got), (long)got, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    unsetenv(SCP_SHIELD_ENV_NET_FD);
    if (got != len) return scp_fail(err, SCP_E_FORMAT, EINVAL, "the network configuration is truncated");
    nc.rawlen = len;
    /* conf_parse writes NULs into its copy; keep the original for exec */
    char *work = mmap(NULL, nc.rawcap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (work == MAP_FAILED) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    madvise(work, nc.rawcap, MADV_DONTDUMP);
    (void)mlock(work, nc.rawcap);
    memcpy(work, nc.raw, len);
    if (conf_parse(work, len, err)) return -1;
    const char *lv = getenv("SCP_NET_LEAN");
    lean_on = !(lv && !strcmp(lv, "0"));
    OPENSSL_init_ssl(0, NULL);
    conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (nc.cert) {
        BIO *b = BIO_new_mem_buf(nc.cert, (int)nc.certlen);
        nc.x509 = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        b = nc.key ? BIO_new_mem_buf(nc.key, (int)nc.keylen) : NULL;
        nc.pkey = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (nc.key) OPENSSL_cleanse(nc.key, nc.keylen); /* the EVP_PKEY holds it now */
        if (!nc.x509 || !nc.pkey) return scp_fail(err, SCP_E_FORMAT, EINVAL, "the service certificate or key is unreadable");
        if (net_renew_load(err) < 0) return -1;
    }
    for (int i = 0; i < nc.nlis; i++)
        if (!(nc.lis[i].ctx = ctx_new(1, nc.lis[i].ca)))
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "cannot set up TLS for port %d", nc.lis[i].port);
    for (int i = 0; i < nc.npeer; i++)
        if (!(nc.peer[i].ctx = ctx_new(0, nc.peer[i].ca)))
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "cannot set up TLS for peer %s", nc.peer[i].host);
    ERR_clear_error();
    /* The program's numbers: below the reserved range and above it, up to the hard limit
     * (the range is low: docs/shield.md "Reserved descriptors"), at most NET_TBL_MAX; a
     * shielded connection on a number above that fails closed (net_on_accept, net_connect,
     * sh_net_dup). */
    struct rlimit rl;
    rlim_t top = getrlimit(RLIMIT_NOFILE, &rl) ? (rlim_t)sh.hi : rl.rlim_max;
    net_tbl_n = top > NET_TBL_MAX ? NET_TBL_MAX : top < (rlim_t)sh.lo ? sh.lo : (int)top;
    net_tbl = calloc((size_t)net_tbl_n, sizeof *net_tbl);
    net_epgen = calloc((size_t)net_tbl_n, sizeof *net_epgen);
    if (!net_tbl || !net_epgen) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    quarantine_inherited();
    sh_net_on = 1;
    return 0;
}

int sh_net_to_memfd(void) {
    if (!sh_net_on) return -1;
    static const char extra[] = "filtered\n";
    size_t n = nc.rawlen + sizeof extra - 1;
    char *b = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) return -2;
    memcpy(b, nc.raw, nc.rawlen);
    memcpy(b + nc.rawlen, extra, sizeof extra - 1);
    int fd = scp_shield_sealed_memfd("scp-net", b, n, NULL);
    scp_wipe(b, n);
    munmap(b, n);
    return fd < 0 ? -2 : fd;
}

/* ---- matching ------------------------------------------------------------------------------ */

int net_listen_rule(int port) {
    for (int i = 0; i < nc.nlis; i++)
        if (nc.lis[i].port == port) return i;
    return -1;
}

static int prefix_eq(const unsigned char *a, const unsigned char *b, int bits) {
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes)) return 0;
    if (!rest) return 1;
    unsigned char m = (unsigned char)(0xff << (8 - rest));
    return (a[bytes] & m) == (b[bytes] & m);
}

/* addr: 4 or 16 bytes in network order (IPv4-mapped IPv6 already unmapped) */
static int peer_matches(struct net_peer *p, int fam, const unsigned char *addr) {
    if (p->fam) return p->fam == fam && prefix_eq(p->addr, addr, p->prefix);
    if (!p->resolved) { /* a DNS name: resolve once (at most 8 addresses) */
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        p->resolved = 1;
        if (getaddrinfo(p->host, NULL, &hints, &res) == 0) {
            for (struct addrinfo *ai = res; ai && p->nres < 8; ai = ai->ai_next) {
                if (ai->ai_family == AF_INET) {
                    p->res_fam[p->nres] = AF_INET;
                    memcpy(p->res[p->nres++], &((struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
                } else if (ai->ai_family == AF_INET6) {
                    p->res_fam[p->nres] = AF_INET6;
                    memcpy(p->res[p->nres++], &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
                }
            }
            freeaddrinfo(res);
        } else {
            net_log("peer %s: cannot resolve the name; connections to port %d are not matched to it", p->host, p->port);
        }
    }
    for (int i = 0; i < p->nres; i++)
        if (p->res_fam[i] == fam && !memcmp(p->res[i], addr, fam == AF_INET ? 4 : 16)) return 1;
    return 0;
}

/* Family, address bytes and port of a sockaddr; IPv4-mapped IPv6 becomes IPv4. 0 if not inet. */
int net_sa_parse(const void *sa, size_t len, int *fam, unsigned char *addr, int *port) {
    if (!sa || len < sizeof(sa_family_t)) return 0;
    sa_family_t f;
    memcpy(&f, sa, sizeof f);
    if (f == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in s;
        memcpy(&s, sa, sizeof s);
        *fam = AF_INET;
        memcpy(addr, &s.sin_addr, 4);
        *port = ntohs(s.sin_port);
        return 1;
    }
    if (f == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 s;
        memcpy(&s, sa, sizeof s);
        *port = ntohs(s.sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&s.sin6_addr)) {
            *fam = AF_INET;
            memcpy(addr, (const unsigned char *)&s.sin6_addr + 12, 4);
        } else {
            *fam = AF_INET6;
            memcpy(addr, &s.sin6_addr, 16);
        }
        return 1;
    }
    return 0;
}

struct net_peer *net_peer_for(int fam, const unsigned char *addr, int port) {
    for (int i = 0; i < nc.npeer; i++)
        if (nc.peer[i].port == port && peer_matches(&nc.peer[i], fam, addr)) return &nc.peer[i];
    return NULL;
}

int net_sock_type(int fd) {
    int t = 0;
    socklen_t l = sizeof t;
    if (sh_gate(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, (long)&t, (long)&l, 0) < 0) return -1;
    return t;
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
static int full_record_buffered(nconn *c) {
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
    if (c->lean && c->lean->ron) return c->lean->ln > 0 || full_record_buffered(c);
    return SSL_pending(c->ssl) > 0 || (c->hs_done && full_record_buffered(c));
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
    /* another thread may be asleep in the kernel with only ciphertext in view (net_io.c); one
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

static void lean_free(nconn *c) {
    if (!c->lean) return;
    tls_dir_free(&c->lean->wr);
    tls_dir_free(&c->lean->rd);
    scp_wipe(c->lean, sizeof *c->lean);
    free(c->lean);
    c->lean = NULL;
}

static void conn_free(nconn *c) {
    lean_free(c);
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
static int obuf_room(struct obuf *o, size_t n) {
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
    if (obuf_room(o, n)) return -1;
    memcpy(o->p + o->len, data, n);
    o->len += n;
    return 0;
}

/* In direct mode a record goes to the kernel from OpenSSL's own buffer, with what waits here
 * ahead of it, in one sendmsg (sendto when nothing waits): no copy of the record, no second system call. What the kernel
 * does not take (a full socket, an error) is kept and net_flush meets it as before. */
static int obuf_write(BIO *b, const char *data, int n) {
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
    if (m && BIO_meth_set_write(m, obuf_write) && BIO_meth_set_ctrl(m, obuf_ctrl) && BIO_meth_set_create(m, obuf_create) &&
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
    SSL_set_ex_data(c->ssl, conn_idx, c);
    if (lean_on && (c->lean = calloc(1, sizeof *c->lean)) != NULL) c->rq->counting = c->wq->counting = 1;
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

static int sock_nonblock(int fd) {
    long fl = sh_gate(SYS_fcntl, fd, F_GETFL, 0, 0, 0, 0);
    return fl >= 0 && (fl & O_NONBLOCK);
}

/* Wait until c's socket is ready for ev, honouring SO_RCVTIMEO/SO_SNDTIMEO: 0, -EAGAIN on
 * timeout, or the connection's failure. Called with c->mu held; the lock is released while the
 * thread sleeps in the kernel, so that a blocking read does not hold the connection against
 * another thread's write. Another thread may then leave plaintext buffered on c (it drained the
 * kernel socket): it wakes this one through the thread's wake descriptor (net_io.c), and the
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
    conn_desc(c, d, sizeof d);
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
    if (obuf_room(o, n + TLS_OVERHEAD)) return -1;
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
    lean_free(c);
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
    if (*nb < 0) *nb = (flags & MSG_DONTWAIT) || sock_nonblock(c->fd);
    long w = *nb ? -EAGAIN : net_wait_fd(c, POLLIN);
    if (w >= 0) return 1;
    if (!total) *res = w;
    return 0;
}

static long lean_read(nconn *c, void *buf, size_t n, int flags, size_t total) {
    struct net_lean *l = c->lean;
    int nb = -1;
#define NONBLOCK() (nb < 0 ? (nb = (flags & MSG_DONTWAIT) || sock_nonblock(c->fd)) : nb)
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
static long handshake(nconn *c, int block) {
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
        if (r == -EAGAIN && !(flags & MSG_DONTWAIT) && !sock_nonblock(c->fd)) r = net_my_pre_read(c, buf, n, flags, 1);
        return r;
    }
    long r = read_tls(c, buf, n, flags);
    if (c->my && r > 0) net_my_read(c, buf, (size_t)r, (flags & MSG_PEEK) != 0);
    return r;
}

static long read_tls(nconn *c, void *buf, size_t n, int flags) {
    if (c->failed) return -c->failed;
    int nb = -1; /* asked lazily: only when the shield would wait */
#define NONBLOCK() (nb < 0 ? (nb = (flags & MSG_DONTWAIT) || sock_nonblock(c->fd)) : nb)
    if (net_wpending(c)) (void)net_flush(c, 0, 1);
    if (!c->hs_done) {
        long h = handshake(c, 0);
        if (h == -EAGAIN && !NONBLOCK()) h = handshake(c, 1);
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
                if (!(flags & MSG_WAITALL) && drained && SSL_pending(c->ssl) == 0 && !full_record_buffered(c))
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
        if (*nb < 0) *nb = (flags & MSG_DONTWAIT) || sock_nonblock(c->fd);
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
#define NONBLOCK() (nb < 0 ? (nb = (flags & MSG_DONTWAIT) || sock_nonblock(c->fd)) : nb)
    if (net_wpending(c)) {
        long f = net_flush(c, 0, nosig);
        if (f == -EAGAIN) f = NONBLOCK() ? -EAGAIN : net_flush(c, 1, nosig);
        if (f < 0) return f;
    }
    if (!c->hs_done) {
        long h = handshake(c, 0);
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
        if (h == -EAGAIN) h = handshake(c, 1);
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
        if (obuf_room(o, batch + (recs + 1) * TLS_OVERHEAD + 1)) return done ? (long)done : -ENOMEM;
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
        (void)handshake(c, 0);
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

static void quarantine_inherited(void) {
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
