/* cas/server.c - the CAS daemon: TLS listener, a fixed pool of worker threads, keep-alive,
 * bounded reads with deadlines, graceful stop on SIGTERM/SIGINT (scp/cas.h). */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cas/api.h"
#include "cas/http.h"
#include "cas/keys.h"
#include "cas/tls.h"
#include "common/log.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/cas.h"

#define QUEUE_CAP 1024
#define SLICE_MS 250
#define IDLE_MS 15000

typedef struct server {
    SSL_CTX *tls;
    cas_api *api;
    int read_timeout_ms;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int queue[QUEUE_CAP];
    size_t qhead, qlen;
} server;

/* While connections wait for a worker, a request (or handshake) may take at most this long:
 * slow clients cannot hold every worker for the full read timeout. */
#define CONTENDED_MS 2000

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t pending(server *s) {
    pthread_mutex_lock(&s->mu);
    size_t n = s->qlen;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Has a request (or handshake) that began at start_ms run out of time? */
static int too_slow(server *s, int64_t start_ms) {
    int64_t took = now_ms() - start_ms;
    return took > s->read_timeout_ms || (took > CONTENDED_MS && pending(s) > 0);
}

/* Read more bytes into buf. Returns bytes read, 0 on a timeout slice, -1 on EOF/error. */
static int read_some(SSL *ssl, char *buf, size_t room) {
    ERR_clear_error();
    int r = SSL_read(ssl, buf, room > (1u << 20) ? (1 << 20) : (int)room);
    if (r > 0) return r;
    int e = SSL_get_error(ssl, r);
    if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ||
        (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
        return 0;
    return -1;
}

static int write_all(SSL *ssl, const char *p, size_t n) {
    while (n > 0) {
        ERR_clear_error();
        int w = SSL_write(ssl, p, (int)(n > (1u << 30) ? (1u << 30) : n));
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_response(SSL *ssl, cas_response *r, int keep) {
    char head[512];
    int hl = http_format_head(head, sizeof head, r->status, r->ctype ? r->ctype : "application/json", r->len, keep);
    int rc = -1;
    if (hl > 0) {
        /* one TLS record for small answers */
        if (r->len < 16384) {
            char *all = malloc((size_t)hl + r->len);
            if (all) {
                memcpy(all, head, (size_t)hl);
                if (r->len) memcpy(all + hl, r->body, r->len);
                rc = write_all(ssl, all, (size_t)hl + r->len);
                free(all);
            }
        } else {
            rc = write_all(ssl, head, (size_t)hl);
            if (rc == 0) rc = write_all(ssl, r->body, r->len);
        }
    }
    free(r->body);
    r->body = NULL;
    return rc;
}

static void serve_conn(server *s, int fd) {
    struct timeval tv = {0, (suseconds_t)SLICE_MS * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct timeval stv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof stv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(s->tls);
    char *buf = NULL;
    if (!ssl || SSL_set_fd(ssl, fd) != 1) goto out;
    int64_t hs_start = now_ms();
    for (;;) {
        ERR_clear_error();
        int r = SSL_accept(ssl);
        if (r == 1) break;
        int e = SSL_get_error(ssl, r);
        int retry = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
                    (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EINTR));
        if (!retry || too_slow(s, hs_start) || atomic_load(&s->stopping)) goto out_nossl_shutdown;
    }
    char client_id[65];
    const char *cid = cas_tls_peer_id(ssl, client_id) == 0 ? client_id : NULL;

    size_t cap = HTTP_MAX_HEAD + HTTP_MAX_BODY + 1, have = 0;
    buf = malloc(cap);
    if (!buf) goto out;
    for (;;) {
        /* wait for the head, within the idle time (first byte) and the read deadline */
        http_request req;
        int status = 0, hl = 0;
        int64_t start = now_ms(), first_byte = have ? start : 0;
        for (;;) {
            if (have) {
                hl = http_parse_head(buf, have, &req, &status);
                if (hl != 0) break;
            }
            int64_t t = now_ms();
            if (!have) {
                if (atomic_load(&s->stopping) || t - start > IDLE_MS || (t - start > 50 && pending(s) > 0))
                    goto out;
            } else if (too_slow(s, first_byte)) {
                hl = -1;
                status = 408;
                break;
            }
            int n = read_some(ssl, buf + have, HTTP_MAX_HEAD - have);
            if (n < 0) goto out;
            if (n > 0 && !have) first_byte = now_ms();
            have += (size_t)n;
        }
        cas_response resp = {0};
        if (hl < 0) {
            cas_api_error(&resp, status, status == 408 ? "timeout" : "bad_request",
                          status == 408   ? "the request did not arrive in time"
                          : status == 413 ? "the request body is too large"
                          : status == 431 ? "the request head is too large"
                          : status == 411 ? "a Content-Length is required"
                          : status == 501 ? "not implemented (chunked encoding or unknown method)"
                                          : "malformed HTTP request");
            cas_api_audit_transport(s->api, cid, status, resp.body ? "malformed or slow request" : "");
            send_response(ssl, &resp, 0);
            goto out;
        }
        size_t total = (size_t)hl + req.content_length;
        while (have < total) {
            if (too_slow(s, first_byte)) {
                cas_api_error(&resp, 408, "timeout", "the request body did not arrive in time");
                cas_api_audit_transport(s->api, cid, 408, "slow request body");
                send_response(ssl, &resp, 0);
                goto out;
            }
            int n = read_some(ssl, buf + have, total - have);
            if (n < 0) goto out;
            have += (size_t)n;
        }
        char saved = buf[total];
        buf[total] = 0; /* bodies are NUL-terminated for the handlers */
        req.body = buf + hl;
        req.body_len = req.content_length;
        cas_api_handle(s->api, &req, cid, &resp);
        buf[total] = saved;
        int keep = req.keep_alive && !atomic_load(&s->stopping);
        if (send_response(ssl, &resp, keep) < 0 || !keep) goto out;
        memmove(buf, buf + total, have - total);
        have -= total;
    }
out:
    if (ssl) SSL_shutdown(ssl);
out_nossl_shutdown:
    free(buf);
    SSL_free(ssl);
    close(fd);
}

static void *worker(void *arg) {
    server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->qlen == 0 && !atomic_load(&s->stopping)) pthread_cond_wait(&s->cv, &s->mu);
        if (s->qlen == 0) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        int fd = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % QUEUE_CAP;
        s->qlen--;
        pthread_mutex_unlock(&s->mu);
        serve_conn(s, fd);
    }
}

static int open_listener(const char *listen_addr, int *port_out, scp_err *err) {
    const char *colon = strrchr(listen_addr, ':');
    if (!colon) return scp_fail(err, SCP_E_INVAL, EINVAL, "bad listen address '%s' (want ADDR:PORT)", listen_addr);
    char host[256];
    size_t hl = (size_t)(colon - listen_addr);
    if (hl >= sizeof host) return scp_fail(err, SCP_E_INVAL, EINVAL, "listen address too long");
    memcpy(host, listen_addr, hl);
    host[hl] = 0;
    char *h = host;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (g != 0) return scp_fail(err, SCP_E_INVAL, EINVAL, "bad listen address '%s': %s", listen_addr, gai_strerror(g));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 512) < 0) {
        scp_fail_errno(err, "cannot listen on %s", listen_addr);
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        scp_fail_errno(err, "getsockname");
        close(fd);
        return -1;
    }
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* The hardware verifiers' collateral and the test roots, said loudly: a test root makes CAS
 * accept evidence that no AMD or Intel machine produced. */
static int set_hw(cas_api *api, const scp_cas_server_opts *o, scp_err *err) {
    uint8_t ark[32], root[32];
    if (o->test_snp_ark && scp_unhex(o->test_snp_ark, ark, 32) < 0)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "--test-snp-ark wants 64 hex digits");
    if (o->test_sgx_root && scp_unhex(o->test_sgx_root, root, 32) < 0)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "--test-sgx-root wants 64 hex digits");
    if (o->test_snp_ark || o->test_sgx_root)
        scp_log(SCP_LOG_WARN, "scp-cas", "WARNING: TEST ROOTS TRUSTED for hardware evidence (%s%s): evidence signed by keys "
                        "no AMD or Intel machine holds is accepted. Never use this outside tests.",
                o->test_snp_ark ? "--test-snp-ark" : "", o->test_sgx_root ? " --test-sgx-root" : "");
    return cas_api_set_hw(api, o->data_dir, o->collateral_dir, o->test_snp_ark ? ark : NULL,
                          o->test_sgx_root ? root : NULL, err);
}

/* One line of what the daemon says once it listens, to the caller's announce (else scp_log). */
static void announce(const scp_cas_server_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void announce(const scp_cas_server_opts *o, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (o->announce) o->announce(o->announce_ctx, line);
    else scp_log(SCP_LOG_INFO, "scp-cas", "%s", line);
}

int scp_cas_serve(const scp_cas_server_opts *o, scp_err *err) {
    if (!o->data_dir || !o->listen) return scp_fail(err, SCP_E_INVAL, EINVAL, "data directory and listen address needed");
    /* block the stop signals before any thread exists, so that all inherit the mask and the
     * signalfd below receives them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (mkdir(o->data_dir, 0700) < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create '%s'", o->data_dir);
    struct stat dst;
    if (stat(o->data_dir, &dst) < 0 || !S_ISDIR(dst.st_mode))
        return scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", o->data_dir);
    if (dst.st_mode & 077)
        scp_log(SCP_LOG_WARN, "scp-cas", "warning: data directory '%s' is accessible by others (mode %03o); 0700 is advised",
                o->data_dir, (unsigned)(dst.st_mode & 0777));
    scp_log(SCP_LOG_WARN, "scp-cas",
            "WARNING: running with the 'sim' TEE backend: memory is NOT protected and the master "
            "key is a plain 0600 file; root on this machine can read every secret.");
    uint8_t master[32];
    int created_master = 0, created_id = 0;
    if (cas_keystore_sim_file.load_or_create(o->data_dir, master, &created_master, err) < 0) return -1;
    cas_identity id;
    if (cas_identity_load_or_create(o->data_dir, master, &id, &created_id, err) < 0) {
        OPENSSL_cleanse(master, sizeof master);
        return -1;
    }
    server s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    s.read_timeout_ms = o->read_timeout_ms > 0 ? o->read_timeout_ms : 10000;
    int rc = -1, lfd = -1, sfd = -1, nworkers = o->workers > 0 ? o->workers : 64;
    pthread_t *threads = NULL;
    int started = 0;
    unsigned audit_flags = (created_master ? CAS_AUDIT_NEW_KEYSTORE : 0u) |
                           (o->accept_audit_reset ? CAS_AUDIT_ACCEPT_RESET : 0u);
    s.api = cas_api_new(o->data_dir, o->store, master, &id, o->admins, o->n_admins, o->nonce_ttl_ms, audit_flags, err);
    OPENSSL_cleanse(master, sizeof master);
    if (!s.api && created_master) {
        cas_first_start_undo(o->data_dir, created_id);
        scp_log(SCP_LOG_WARN, "scp-cas", "the first start failed: the keys it made in '%s' are removed again",
                o->data_dir);
    }
    if (!s.api || set_hw(s.api, o, err) < 0) goto done;
    s.tls = cas_tls_server_ctx(&id, err);
    if (!s.tls) goto done;
    int port = 0;
    lfd = open_listener(o->listen, &port, err);
    if (lfd < 0) goto done;

    sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        scp_fail_errno(err, "signalfd");
        goto done;
    }
    threads = calloc((size_t)nworkers, sizeof *threads);
    if (!threads) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto done;
    }
    for (; started < nworkers; started++)
        if (pthread_create(&threads[started], NULL, worker, &s) != 0) {
            scp_fail(err, SCP_E_SYS, EAGAIN, "cannot start worker threads");
            goto done;
        }

    announce(o, "%s CA; fingerprint (pin this): %s", created_id ? "created a new" : "loaded the", id.ca_fp);
    announce(o, "session certificates come from the service CA %s (service-ca.crt; do not pin it)",
             id.service_ca_fp);
    if (id.migrated & CAS_MIGRATED_SERVICE_CA)
        announce(o, "migrated the data directory: created the service CA; certificates issued to sessions "
                    "before were signed by the root, and clients older than this CAS would take them for CAS: "
                    "upgrade every client");
    if (id.migrated & CAS_MIGRATED_SERVER_CERT)
        announce(o, "migrated the data directory: reissued server.crt (same key, same root) with CAS's "
                    "identity marker; the pin is unchanged");
    announce(o, "listening on %s (port %d) with %d workers", o->listen, port, nworkers);
    if (o->port_file) {
        char pb[16];
        int n = snprintf(pb, sizeof pb, "%d\n", port);
        if (scp_write_file_atomic(o->port_file, pb, (size_t)n, 0644, err) < 0) goto done;
    }
    for (;;) {
        struct pollfd p[2] = {{lfd, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            scp_fail_errno(err, "poll");
            goto done;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) > 0)
                scp_log(SCP_LOG_INFO, "scp-cas", "signal %u: finishing in-flight requests and stopping", si.ssi_signo);
            break;
        }
        if (p[0].revents & POLLIN) {
            int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (cfd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                    poll(NULL, 0, 20); /* out of descriptors: do not spin */
                continue;
            }
            pthread_mutex_lock(&s.mu);
            if (s.qlen == QUEUE_CAP) {
                pthread_mutex_unlock(&s.mu);
                close(cfd); /* overloaded */
                continue;
            }
            s.queue[(s.qhead + s.qlen) % QUEUE_CAP] = cfd;
            s.qlen++;
            pthread_cond_signal(&s.cv);
            pthread_mutex_unlock(&s.mu);
        }
    }
    rc = 0;
done:
    if (lfd >= 0) close(lfd);
    atomic_store(&s.stopping, 1);
    pthread_mutex_lock(&s.mu);
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    while (s.qlen) { /* connections accepted but never served */
        close(s.queue[s.qhead]);
        s.qhead = (s.qhead + 1) % QUEUE_CAP;
        s.qlen--;
    }
    free(threads);
    if (sfd >= 0) close(sfd);
    SSL_CTX_free(s.tls);
    cas_api_free(s.api);
    cas_identity_free(&id);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    if (rc == 0) scp_log(SCP_LOG_INFO, "scp-cas", "stopped");
    return rc;
}
