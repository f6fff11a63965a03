/* tests/cas/cas_probe.c - protocol-level probes against a running CAS, for the integration
 * scripts: replayed/expired/forged nonces, tampered evidence, raw and slow HTTP. Each mode
 * exits 0 when CAS behaved as expected and prints what it saw otherwise. */
#include <errno.h>
#include <signal.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "cas/keys.h"
#include "cas/tls.h"
#include "common/base64.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"
#include "scp/cas.h"

/* Print "cas_probe: WHAT ARG" and return 1. */
static int die(const char *what, const char *a) {
    fprintf(stderr, "cas_probe: %s %s\n", what, a);
    return 1;
}

static int get_nonce(scp_cas_client *c, uint8_t nonce[32]) {
    char *r = NULL;
    scp_err e = {0};
    int st = scp_cas_request(c, "POST", "/v1/attest/nonce", NULL, "{}", 2, &r, NULL, &e);
    if (st != 200) return -1;
    json_t *j = json_loads(r, 0, NULL);
    free(r);
    int rc = scp_unhex(json_string_value(json_object_get(j, "nonce")), nonce, 32);
    json_decref(j);
    return rc;
}

/* POST /v1/attest with evidence; returns the status and the "error" code in code. */
static int post_attest(scp_cas_client *c, const char *session, const char *service, const uint8_t *ev, size_t n,
                       char code[64]) {
    char *b64 = scp_b64enc(ev, n);
    json_t *req = json_pack("{s:s, s:s, s:s}", "session", session, "service", service, "evidence", b64);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    free(b64);
    char *r = NULL;
    scp_err e = {0};
    int st = scp_cas_request(c, "POST", "/v1/attest", NULL, body, strlen(body), &r, NULL, &e);
    free(body);
    code[0] = 0;
    if (st < 0) {
        fprintf(stderr, "cas_probe: request failed: %s\n", e.msg);
        return -1;
    }
    json_t *j = json_loads(r, 0, NULL);
    const char *ec = json_string_value(json_object_get(j, "error"));
    snprintf(code, 64, "%s", ec ? ec : "");
    if (st >= 400 && !ec) fprintf(stderr, "cas_probe: error without a JSON error code: %s\n", r);
    json_decref(j);
    free(r);
    return st;
}

static int expect(int st, const char *code, int want_st, const char *want_code, const char *what) {
    if (st == want_st && (!want_code || strcmp(code, want_code) == 0)) return 0;
    fprintf(stderr, "cas_probe: %s: got %d '%s', want %d '%s'\n", what, st, code, want_st, want_code ? want_code : "");
    return 1;
}

/* Raw TLS connection for HTTP-level probes. */
static SSL *raw_connect(const char *addr, const char *pin, int *fd_out, SSL_CTX **ctx_out) {
    char host[256], port[16];
    const char *colon = strrchr(addr, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) return NULL;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
        freeaddrinfo(res);
        close(fd);
        return NULL;
    }
    freeaddrinfo(res);
    SSL_CTX *ctx = cas_tls_client_ctx(NULL, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    char seen[65];
    if (SSL_connect(ssl) != 1 || cas_tls_check_pin(ssl, pin, seen, NULL) < 0) {
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(fd);
        return NULL;
    }
    *fd_out = fd;
    *ctx_out = ctx;
    return ssl;
}

/* Read a whole response (until close or timeout_s); return the status code or -1. */
static int read_status(SSL *ssl, char *buf, size_t sz) {
    size_t got = 0;
    int r;
    while (got + 1 < sz && (r = SSL_read(ssl, buf + got, (int)(sz - 1 - got))) > 0) {
        got += (size_t)r;
        buf[got] = 0;
        /* stop at the end of the body (keep-alive answers do not close) */
        const char *end = strstr(buf, "\r\n\r\n"), *cl = strstr(buf, "Content-Length: ");
        if (end && cl && cl < end && got >= (size_t)(end + 4 - buf) + (size_t)atol(cl + 16)) break;
    }
    buf[got] = 0;
    if (got < 12 || strncmp(buf, "HTTP/1.1 ", 9) != 0) return -1;
    return atoi(buf + 9);
}

static void unescape(const char *in, char *out, size_t *n) {
    size_t o = 0;
    for (size_t i = 0; in[i]; i++) {
        if (in[i] == '\\' && in[i + 1] == 'r') out[o++] = '\r', i++;
        else if (in[i] == '\\' && in[i + 1] == 'n') out[o++] = '\n', i++;
        else out[o++] = in[i];
    }
    *n = o;
}

/* legacy-cert DATA_DIR CERT KEY: what a CAS from before the service CA issued to a session
 * asking for CAS's name: a leaf signed by the root itself (without CAS's marker). */
static int legacy_cert(const char *dir, const char *cert_out, const char *key_out) {
    scp_err e = {0};
    uint8_t master[32];
    int created = 0;
    cas_identity id;
    if (cas_keystore_sim_file.load_or_create(dir, master, &created, &e) < 0 ||
        cas_identity_load_or_create(dir, master, &id, &created, &e) < 0)
        return die("cannot load the CAS identity:", e.msg);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *c = k ? cas_x509_issue(k, "scp-cas", "DNS:localhost,DNS:scp-cas,IP:127.0.0.1", 30, 0, id.ca_key, id.ca_cert, &e)
                : NULL;
    char *cp = c ? cas_cert_pem(c) : NULL, *kp = c ? cas_key_pem(k) : NULL;
    int rc = cp && kp && scp_write_file_atomic(cert_out, cp, strlen(cp), 0644, &e) == 0 &&
                     scp_write_file_atomic(key_out, kp, strlen(kp), 0600, &e) == 0
                 ? 0
                 : die("cannot issue the legacy certificate:", e.msg);
    free(cp);
    if (kp) OPENSSL_clear_free(kp, strlen(kp));
    OPENSSL_cleanse(master, sizeof master);
    X509_free(c);
    EVP_PKEY_free(k);
    cas_identity_free(&id);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 4) return die("usage: cas_probe MODE ADDR PIN ARGS...", "(see the source)");
    const char *mode = argv[1], *addr = argv[2], *pin = argv[3];
    scp_err e = {0};
    if (strcmp(mode, "legacy-cert") == 0)
        return argc == 5 ? legacy_cert(argv[2], argv[3], argv[4]) : die("usage:", "legacy-cert DATA_DIR CERT KEY");
    if (strcmp(mode, "inflight") == 0) {
        /* inflight ADDR PIN CAS_PID: a request that is half sent when CAS gets SIGTERM must
         * still be answered */
        if (argc < 5) return die("inflight needs", "CAS_PID");
        int fd;
        SSL_CTX *ctx;
        SSL *ssl = raw_connect(addr, pin, &fd, &ctx);
        if (!ssl) return die("cannot connect to", addr);
        char resp[8192];
        const char *part1 = "GET /v1/status HTTP/1.1\r\nHo", *part2 = "st: x\r\n\r\n";
        SSL_write(ssl, part1, (int)strlen(part1));
        struct timespec ts = {0, 200000000};
        nanosleep(&ts, NULL);
        kill((pid_t)atol(argv[4]), SIGTERM);
        nanosleep(&ts, NULL);
        SSL_write(ssl, part2, (int)strlen(part2));
        int st = read_status(ssl, resp, sizeof resp);
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(fd);
        if (st != 200) {
            fprintf(stderr, "cas_probe inflight: got %d:\n%s\n", st, resp);
            return 1;
        }
        return 0;
    }
    if (strcmp(mode, "raw") == 0 || strcmp(mode, "slow") == 0) {
        /* raw ADDR PIN 'REQUEST with \r\n' WANT_STATUS  |  slow ADDR PIN WANT_STATUS MAX_SECONDS */
        int fd;
        SSL_CTX *ctx;
        SSL *ssl = raw_connect(addr, pin, &fd, &ctx);
        if (!ssl) return die("cannot connect to", addr);
        char req[65536], resp[8192];
        size_t n = 0;
        int want;
        time_t t0 = time(NULL);
        if (strcmp(mode, "raw") == 0) {
            if (argc < 6) return die("raw needs", "REQUEST WANT");
            unescape(argv[4], req, &n);
            SSL_write(ssl, req, (int)n);
            want = atoi(argv[5]);
        } else {
            if (argc < 6) return die("slow needs", "WANT MAX_SECONDS");
            const char *part = "POST /v1/sessions HTTP/1.1\r\nContent-Le";
            SSL_write(ssl, part, (int)strlen(part)); /* and then nothing */
            want = atoi(argv[4]);
        }
        int st = read_status(ssl, resp, sizeof resp);
        long took = (long)(time(NULL) - t0);
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(fd);
        if (st != want || !strstr(resp, "\"error\"")) {
            fprintf(stderr, "cas_probe %s: got status %d (want %d):\n%s\n", mode, st, want, resp);
            return 1;
        }
        if (strcmp(mode, "slow") == 0 && took > atol(argv[5])) {
            fprintf(stderr, "cas_probe slow: answered after %ld s\n", took);
            return 1;
        }
        return 0;
    }
    /* attestation probes: MODE ADDR PIN KEY SESSION SERVICE MEASUREMENT [SLEEP_MS] */
    if (argc < 8) return die("attestation probes need", "KEY SESSION SERVICE MEASUREMENT");
    const char *key = argv[4], *session = argv[5], *service = argv[6];
    uint8_t m[32], nonce[32], epk[32] = {9};
    if (scp_unhex(argv[7], m, 32) < 0) return die("bad measurement", argv[7]);
    scp_cas_client *c = scp_cas_client_new(addr, pin, NULL, &e);
    if (!c) return die("client:", e.msg);
    uint8_t *ev = NULL;
    size_t n = 0;
    char code[64];
    int rc = 1;
    if (strcmp(mode, "forged-nonce") == 0) {
        scp_random(nonce, 32, NULL);
    } else if (get_nonce(c, nonce) < 0) {
        fprintf(stderr, "cas_probe: no nonce\n");
        goto out;
    }
    {
        /* a real X25519 public key for the channel */
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
        size_t pl = 32;
        EVP_PKEY_get_raw_public_key(k, epk, &pl);
        EVP_PKEY_free(k);
    }
    if (scp_sim_evidence(key, nonce, epk, m, &ev, &n, &e) < 0) {
        fprintf(stderr, "cas_probe: %s\n", e.msg);
        goto out;
    }
    if (strcmp(mode, "replay") == 0) {
        int st = post_attest(c, session, service, ev, n, code);
        rc = expect(st, code, 200, NULL, "first use of the nonce");
        st = post_attest(c, session, service, ev, n, code);
        rc |= expect(st, code, 403, "bad_nonce", "replayed evidence");
    } else if (strcmp(mode, "expired") == 0) {
        long ms = argc > 8 ? atol(argv[8]) : 1500;
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        rc = expect(post_attest(c, session, service, ev, n, code), code, 403, "bad_nonce", "expired nonce");
    } else if (strcmp(mode, "forged-nonce") == 0) {
        rc = expect(post_attest(c, session, service, ev, n, code), code, 403, "bad_nonce", "nonce CAS never issued");
    } else if (strcmp(mode, "tamper") == 0) {
        /* change the measurement after signing (offset: header 12 + 2 fields of 36 + 4) */
        ev[12 + 36 + 36 + 4] ^= 1;
        rc = expect(post_attest(c, session, service, ev, n, code), code, 403, "bad_evidence", "tampered evidence");
    } else if (strcmp(mode, "garbage") == 0) {
        uint8_t junk[100];
        memcpy(junk, ev, sizeof junk);
        rc = expect(post_attest(c, session, service, junk, sizeof junk, code), code, 400, "bad_evidence",
                    "truncated evidence");
    } else if (strcmp(mode, "ok") == 0) {
        rc = expect(post_attest(c, session, service, ev, n, code), code, 200, NULL, "valid evidence");
    } else {
        fprintf(stderr, "cas_probe: unknown mode %s\n", mode);
    }
out:
    free(ev);
    scp_cas_client_free(c);
    return rc;
}
