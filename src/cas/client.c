/* cas/client.c - HTTP/1.1 client over TLS 1.3 with CA pinning (scp/cas.h). */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cas/http.h"
#include "cas/tls.h"
#include "scp/cas.h"

#define CLIENT_MAX_RESPONSE (8u << 20)

struct scp_cas_client {
    char host[256], port[16];
    char pin[65];
    char seen_fp[65];
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
};

static int split_addr(const char *addr, char *host, size_t hsz, char *port, size_t psz) {
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1]) return -1;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hsz || strlen(colon + 1) >= psz) return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    strcpy(port, colon + 1);
    return 0;
}

scp_cas_client *scp_cas_client_new(const char *addr, const char *pin_hex, const char *identity, scp_err *err) {
    scp_cas_client *c = calloc(1, sizeof *c);
    if (!c) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    c->fd = -1;
    if (!addr || split_addr(addr, c->host, sizeof c->host, c->port, sizeof c->port) < 0) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "bad CAS address '%s' (want HOST:PORT)", addr ? addr : "");
        goto fail;
    }
    if (!pin_hex || strlen(pin_hex) != 64 || strspn(pin_hex, "0123456789abcdefABCDEF") != 64) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "the CA pin must be 64 hex digits (printed by 'scpctl cas serve')");
        goto fail;
    }
    strcpy(c->pin, pin_hex);
    c->ctx = cas_tls_client_ctx(identity, err);
    if (!c->ctx) goto fail;
    return c;
fail:
    free(c);
    return NULL;
}

static void disconnect(scp_cas_client *c) {
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

void scp_cas_client_free(scp_cas_client *c) {
    if (!c) return;
    disconnect(c);
    SSL_CTX_free(c->ctx);
    free(c);
}

const char *scp_cas_client_seen_fp(const scp_cas_client *c) { return c->seen_fp; }

static int do_connect(scp_cas_client *c, scp_err *err) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(c->host, c->port, &hints, &res);
    if (g != 0) return scp_fail(err, SCP_E_SYS, EHOSTUNREACH, "cannot resolve '%s': %s", c->host, gai_strerror(g));
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return scp_fail_errno(err, "cannot connect to CAS at %s:%s", c->host, c->port);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    c->fd = fd;
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        disconnect(c);
        return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot set up TLS");
    }
    SSL_set_tlsext_host_name(c->ssl, c->host);
    if (SSL_connect(c->ssl) != 1) {
        unsigned long e = ERR_get_error();
        char buf[160];
        ERR_error_string_n(e, buf, sizeof buf);
        ERR_clear_error();
        disconnect(c);
        return scp_fail(err, SCP_E_SYS, ECONNREFUSED, "TLS handshake with CAS at %s:%s failed: %s", c->host, c->port,
                        e ? buf : "connection closed");
    }
    if (cas_tls_check_pin(c->ssl, c->pin, c->seen_fp, err) < 0) {
        disconnect(c);
        return -1;
    }
    return 0;
}

static int write_all(SSL *ssl, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        int w = SSL_write(ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Parse "HTTP/1.1 NNN ..." and Content-Length / Connection from a response head. */
static int parse_response_head(const char *buf, size_t head_len, int *status, size_t *clen, int *keep) {
    if (head_len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') return -1;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return -1;
        st = st * 10 + (buf[i] - '0');
    }
    *status = st;
    *clen = 0;
    *keep = 1;
    int have = 0;
    const char *p = strstr(buf, "\r\n");
    const char *end = buf + head_len;
    while (p && p + 2 < end) {
        p += 2;
        const char *le = strstr(p, "\r\n");
        if (!le || le == p) break;
        if (strncasecmp(p, "Content-Length:", 15) == 0) {
            char *e;
            unsigned long long v = strtoull(p + 15, &e, 10);
            if (v > CLIENT_MAX_RESPONSE) return -1;
            *clen = (size_t)v;
            have = 1;
        } else if (strncasecmp(p, "Connection:", 11) == 0) {
            const char *v = p + 11;
            while (*v == ' ') v++;
            if (strncasecmp(v, "close", 5) == 0) *keep = 0;
        }
        p = le;
    }
    return have ? 0 : -1;
}

static int request_once(scp_cas_client *c, const char *head, size_t hlen, const void *body, size_t blen, char **resp,
                        size_t *resp_len, int *sent_nothing_back, scp_err *err) {
    *sent_nothing_back = 0;
    /* head and a small body in one TLS record */
    char small[8192];
    int wr;
    if (hlen + blen <= sizeof small) {
        memcpy(small, head, hlen);
        if (blen) memcpy(small + hlen, body, blen);
        wr = write_all(c->ssl, small, hlen + blen);
    } else {
        wr = write_all(c->ssl, head, hlen) < 0 || (blen && write_all(c->ssl, body, blen) < 0) ? -1 : 0;
    }
    if (wr < 0) {
        *sent_nothing_back = 1;
        disconnect(c);
        return scp_fail(err, SCP_E_SYS, EIO, "lost the connection to CAS while sending");
    }
    char buf[HTTP_MAX_HEAD + 1];
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        if (got >= HTTP_MAX_HEAD) {
            disconnect(c);
            return scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent an oversized response head");
        }
        int r = SSL_read(c->ssl, buf + got, (int)(HTTP_MAX_HEAD - got));
        if (r <= 0) {
            if (got == 0) *sent_nothing_back = 1;
            disconnect(c);
            return scp_fail(err, SCP_E_SYS, EIO, "lost the connection to CAS while waiting for the answer");
        }
        got += (size_t)r;
        buf[got] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - buf) + 4;
    int status, keep;
    size_t clen;
    if (parse_response_head(buf, head_len, &status, &clen, &keep) < 0) {
        disconnect(c);
        return scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a malformed response");
    }
    char *out = malloc(clen + 1);
    if (!out) {
        disconnect(c);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    size_t have = got - head_len;
    if (have > clen) have = clen;
    memcpy(out, buf + head_len, have);
    while (have < clen) {
        int r = SSL_read(c->ssl, out + have, (int)(clen - have > (1u << 30) ? (1u << 30) : clen - have));
        if (r <= 0) {
            free(out);
            disconnect(c);
            return scp_fail(err, SCP_E_SYS, EIO, "lost the connection to CAS while reading the answer");
        }
        have += (size_t)r;
    }
    out[clen] = 0;
    if (!keep) disconnect(c);
    *resp = out;
    if (resp_len) *resp_len = clen;
    return status;
}

int scp_cas_request(scp_cas_client *c, const char *method, const char *path, const char *ctype, const void *body,
                    size_t body_len, char **resp, size_t *resp_len, scp_err *err) {
    char head[2048];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", method, path,
                     c->host, ctype ? ctype : "application/json", body_len);
    if (n < 0 || (size_t)n >= sizeof head) return scp_fail(err, SCP_E_INVAL, EINVAL, "request path too long");
    for (int attempt = 0; attempt < 2; attempt++) {
        int reused = c->ssl != NULL;
        if (!c->ssl && do_connect(c, err) < 0) return -1;
        int nothing;
        int st = request_once(c, head, (size_t)n, body, body_len, resp, resp_len, &nothing, err);
        if (st >= 0) return st;
        if (!(reused && nothing)) return -1; /* retry only if a kept-alive connection was closed idle */
    }
    return -1;
}
