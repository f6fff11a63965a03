/* attest/hw_x509.c - certificate and signature helpers of the hardware verifiers. */
#include "attest/hw_x509.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/util.h"

#define HW_CERT_FILE_MAX ((size_t)64 * 1024)

static int starts_pem(const uint8_t *buf, size_t len) {
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t')) i++;
    return len - i >= 10 && memcmp(buf + i, "-----BEGIN", 10) == 0;
}

void hw_certs_free(X509 **certs, int n) {
    for (int i = 0; i < n; i++) X509_free(certs[i]);
}

static int parse_pem(const uint8_t *buf, size_t len, X509 **certs, scp_err *err) {
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    if (!b) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading certificates");
    int n = 0;
    for (;;) {
        X509 *c = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!c) break;
        if (n == HW_CHAIN_MAX) {
            X509_free(c);
            hw_certs_free(certs, n);
            BIO_free(b);
            return scp_fail(err, SCP_E_FORMAT, EIO, "certificate chain: more than %d certificates", HW_CHAIN_MAX);
        }
        certs[n++] = c;
    }
    BIO_free(b);
    return n;
}

static int parse_der(const uint8_t *buf, size_t len, X509 **certs, scp_err *err) {
    const uint8_t *p = buf, *end = buf + len;
    int n = 0;
    while (p < end) {
        if (n == HW_CHAIN_MAX) {
            hw_certs_free(certs, n);
            return scp_fail(err, SCP_E_FORMAT, EIO, "certificate chain: more than %d certificates", HW_CHAIN_MAX);
        }
        const uint8_t *q = p;
        X509 *c = d2i_X509(NULL, &q, (long)(end - p));
        if (!c || q <= p) {
            X509_free(c);
            hw_certs_free(certs, n);
            return scp_fail(err, SCP_E_FORMAT, EIO, "certificate chain: certificate %d is not valid DER", n + 1);
        }
        certs[n++] = c;
        p = q;
    }
    return n;
}

int hw_certs_parse(const uint8_t *buf, size_t len, X509 **certs, scp_err *err) {
    if (!buf || len == 0) return scp_fail(err, SCP_E_FORMAT, EIO, "certificate chain: empty");
    if (len > HW_CERT_FILE_MAX) return scp_fail(err, SCP_E_FORMAT, EIO, "certificate chain: too long");
    int n = starts_pem(buf, len) ? parse_pem(buf, len, certs, err) : parse_der(buf, len, certs, err);
    ERR_clear_error();
    if (n == 0) return scp_fail(err, SCP_E_FORMAT, EIO, "certificate chain: no certificate found");
    return n;
}

X509 *hw_cert_load(const char *path, const char *what, scp_err *err) {
    uint8_t *buf = NULL;
    size_t len = 0;
    scp_err e;
    if (scp_read_file(AT_FDCWD, path, HW_CERT_FILE_MAX, &buf, &len, &e) < 0) {
        if (e.sys == ENOENT)
            scp_fail(err, SCP_E_NOENT, ENOENT, "missing attestation collateral: %s: %s", what, path);
        else
            scp_fail(err, e.code, e.sys, "attestation collateral: %s: %s", what, e.msg);
        return NULL;
    }
    X509 *certs[HW_CHAIN_MAX];
    int n = hw_certs_parse(buf, len, certs, err);
    free(buf);
    if (n < 0) {
        scp_err_prefix(err, "%s (%s)", what, path);
        return NULL;
    }
    if (n != 1) {
        hw_certs_free(certs, n);
        scp_fail(err, SCP_E_FORMAT, EIO, "%s (%s): expected one certificate, found %d", what, path, n);
        return NULL;
    }
    return certs[0];
}

int hw_cert_check_time(X509 *cert, int64_t now, const char *what, scp_err *err) {
    time_t t = now ? (time_t)now : time(NULL);
    if (X509_cmp_time(X509_get0_notBefore(cert), &t) != -1)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "%s: certificate not yet valid (or unreadable validity)", what);
    if (X509_cmp_time(X509_get0_notAfter(cert), &t) != 1)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "%s: certificate expired", what);
    return 0;
}

int hw_cert_check_link(X509 *cert, X509 *issuer, int64_t now, const char *what, scp_err *err) {
    if (hw_cert_check_time(cert, now, what, err) < 0) return -1;
    if (X509_check_issued(issuer, cert) != X509_V_OK) {
        ERR_clear_error();
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "%s: not issued by the expected issuer", what);
    }
    EVP_PKEY *ik = X509_get0_pubkey(issuer);
    int ok = ik && X509_verify(cert, ik) == 1;
    ERR_clear_error();
    if (!ok) return scp_fail(err, SCP_E_INTEGRITY, EIO, "%s: certificate signature does not verify", what);
    return 0;
}

int hw_cert_sha256(X509 *cert, uint8_t out[32], scp_err *err) {
    unsigned int n = 0;
    if (X509_digest(cert, EVP_sha256(), out, &n) != 1 || n != 32)
        return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot hash a certificate");
    return 0;
}

const uint8_t *hw_cert_ext(X509 *cert, const char *oid, size_t *len) {
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    if (!obj) return NULL;
    int idx = X509_get_ext_by_OBJ(cert, obj, -1);
    ASN1_OBJECT_free(obj);
    if (idx < 0) return NULL;
    ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    if (!v) return NULL;
    *len = (size_t)ASN1_STRING_length(v);
    return ASN1_STRING_get0_data(v);
}

int hw_ecdsa_verify_der(EVP_PKEY *key, const EVP_MD *md, const uint8_t *msg, size_t msg_len, const uint8_t *sig_der,
                        size_t sig_len, scp_err *err) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, key) == 1 &&
             EVP_DigestVerify(ctx, sig_der, sig_len, msg, msg_len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok ? 0 : scp_fail(err, SCP_E_INTEGRITY, EIO, "ECDSA signature does not verify");
}

int hw_ecdsa_verify_rs(EVP_PKEY *key, const EVP_MD *md, const uint8_t *msg, size_t msg_len, const uint8_t *r,
                       const uint8_t *s, size_t rs_len, int little_endian, scp_err *err) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *br = little_endian ? BN_lebin2bn(r, (int)rs_len, NULL) : BN_bin2bn(r, (int)rs_len, NULL);
    BIGNUM *bs = little_endian ? BN_lebin2bn(s, (int)rs_len, NULL) : BN_bin2bn(s, (int)rs_len, NULL);
    uint8_t *der = NULL;
    int der_len = -1;
    if (sig && br && bs && ECDSA_SIG_set0(sig, br, bs) == 1) {
        br = bs = NULL; /* owned by sig now */
        der_len = i2d_ECDSA_SIG(sig, &der);
    }
    BN_free(br);
    BN_free(bs);
    ECDSA_SIG_free(sig);
    if (der_len <= 0) {
        ERR_clear_error();
        return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot encode an ECDSA signature");
    }
    int rc = hw_ecdsa_verify_der(key, md, msg, msg_len, der, (size_t)der_len, err);
    OPENSSL_free(der);
    return rc;
}

/* ---- verified-collateral cache ---------------------------------------------------------- */

#define HW_CACHE_SLOTS 16

static struct hw_cache_ent {
    char path[PATH_MAX];
    hw_file_id id;
    uint8_t ctx[32];
    void *v;
    const hw_cache_ops *ops;
} hw_cache[HW_CACHE_SLOTS];
static unsigned hw_cache_next;
static pthread_mutex_t hw_cache_lock = PTHREAD_MUTEX_INITIALIZER;

int hw_file_id_of(const char *path, hw_file_id *id) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if (scp_read_file(AT_FDCWD, path, 1 << 20, &buf, &len, NULL) < 0) return -1;
    unsigned int n = 0;
    int ok = EVP_Digest(buf, len, id->sha256, &n, EVP_sha256(), NULL) == 1 && n == 32;
    free(buf);
    return ok ? 0 : -1;
}

static int hw_cache_match(const struct hw_cache_ent *c, const char *path, const hw_file_id *id, const uint8_t ctx[32],
                          const hw_cache_ops *ops) {
    return c->v && c->ops == ops && strcmp(c->path, path) == 0 && memcmp(&c->id, id, sizeof *id) == 0 &&
           memcmp(c->ctx, ctx, 32) == 0;
}

void *hw_cache_get(const char *path, const hw_file_id *id, const uint8_t ctx[32], const hw_cache_ops *ops) {
    void *v = NULL;
    pthread_mutex_lock(&hw_cache_lock);
    for (size_t i = 0; i < HW_CACHE_SLOTS && !v; i++)
        if (hw_cache_match(&hw_cache[i], path, id, ctx, ops) && ops->up_ref(hw_cache[i].v) == 1) v = hw_cache[i].v;
    pthread_mutex_unlock(&hw_cache_lock);
    return v;
}

void hw_cache_put(const char *path, const hw_file_id *id, const uint8_t ctx[32], void *v, const hw_cache_ops *ops) {
    if (strlen(path) >= PATH_MAX || ops->up_ref(v) != 1) return;
    pthread_mutex_lock(&hw_cache_lock);
    struct hw_cache_ent *slot = NULL;
    for (size_t i = 0; i < HW_CACHE_SLOTS && !slot; i++)
        if (hw_cache[i].v && strcmp(hw_cache[i].path, path) == 0) slot = &hw_cache[i];
    if (!slot) slot = &hw_cache[hw_cache_next++ % HW_CACHE_SLOTS];
    if (slot->v) slot->ops->release(slot->v);
    snprintf(slot->path, sizeof slot->path, "%s", path);
    slot->id = *id;
    memcpy(slot->ctx, ctx, 32);
    slot->v = v;
    slot->ops = ops;
    pthread_mutex_unlock(&hw_cache_lock);
}
