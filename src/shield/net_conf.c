/* shield/net_conf.c - the network shield's configuration, its TLS contexts and its rules.
 *
 * What the policy's `network` section says (listen ports, peers, identities, protocols), read
 * once at start-up and after an exec; the SSL_CTXs made from it, with the check of a peer's
 * certificate against the rule (the session or instance it must name); and the matching of a
 * socket's addresses against the rules: which connections are shielded, and how. */
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <netdb.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#undef PF_FILE /* <sys/socket.h>'s; internal.h has its own */
#include "common/util.h"
#include "shield/internal.h"
#include "shield/net.h"
#include "shield/net_int.h"

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
    net_conn_desc(c, d, sizeof d);
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
    const nconn *c = ssl ? SSL_get_ex_data(ssl, net_conn_idx) : NULL;
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
    net_conn_desc(c, d, sizeof d);
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
    nconn *c = SSL_get_ex_data(ssl, net_conn_idx);
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
    if (net_lean_on) SSL_CTX_set_keylog_callback(ctx, keylog);
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
        SSL_CTX_sess_set_new_cb(ctx, net_keep_session);
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
    net_lean_on = !(lv && !strcmp(lv, "0"));
    OPENSSL_init_ssl(0, NULL);
    net_conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
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
    net_quarantine_inherited();
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
