/* cas/tls.c - see tls.h. */
#include "cas/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/cas.h"

static int accept_any(int ok, X509_STORE_CTX *ctx) {
    (void)ok;
    (void)ctx;
    return 1; /* client certificates are self-signed; only their key matters */
}

SSL_CTX *cas_tls_server_ctx(const cas_identity *id, scp_err *err) {
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c || !SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) || SSL_CTX_use_certificate(c, id->server_cert) != 1 ||
        SSL_CTX_use_PrivateKey(c, id->server_key) != 1 || SSL_CTX_add1_chain_cert(c, id->ca_cert) != 1) {
        SSL_CTX_free(c);
        scp_fail(err, SCP_E_CRYPTO, EIO, "cannot set up the TLS server context");
        return NULL;
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, accept_any);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(c, (const unsigned char *)"scp-cas", 7);
    SSL_CTX_set_mode(c, SSL_MODE_AUTO_RETRY);
    SSL_CTX_set_read_ahead(c, 1); /* one read(2) per burst instead of two per record */
    return c;
}

SSL_CTX *cas_tls_client_ctx(const char *identity, scp_err *err) {
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c || !SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION)) {
        SSL_CTX_free(c);
        scp_fail(err, SCP_E_CRYPTO, EIO, "cannot set up the TLS client context");
        return NULL;
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL); /* checked by cas_tls_check_pin */
    SSL_CTX_set_mode(c, SSL_MODE_AUTO_RETRY);
    SSL_CTX_set_read_ahead(c, 1);
    if (identity) {
        struct stat st;
        if (stat(identity, &st) < 0) {
            SSL_CTX_free(c);
            scp_fail_errno(err, "cannot use identity '%s'", identity);
            return NULL;
        }
        if (SSL_CTX_use_certificate_file(c, identity, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_use_PrivateKey_file(c, identity, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(c) != 1) {
            SSL_CTX_free(c);
            scp_fail(err, SCP_E_KEY, EINVAL, "identity '%s' does not hold a matching key and certificate", identity);
            return NULL;
        }
    }
    return c;
}

int cas_tls_check_pin(SSL *ssl, const char *pin_hex, char seen_fp[65], scp_err *err) {
    seen_fp[0] = 0;
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    if (!leaf || !chain) return scp_fail(err, SCP_E_INTEGRITY, EIO, "the server presented no certificate");
    X509 *ca = NULL;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        char fp[65];
        cas_cert_fingerprint(c, fp);
        if (i == sk_X509_num(chain) - 1 || !seen_fp[0]) memcpy(seen_fp, fp, 65);
        if (pin_hex && strcasecmp(fp, pin_hex) == 0) ca = c;
    }
    if (sk_X509_num(chain) > 1) cas_cert_fingerprint(sk_X509_value(chain, sk_X509_num(chain) - 1), seen_fp);
    if (!ca)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "the server's CA fingerprint %s does not match the pinned %s: refusing to talk to it",
                        seen_fp, pin_hex ? pin_hex : "(none)");
    /* The root certifies CAS's server certificate and nothing else, and only that certificate
     * carries CAS's marker: a certificate of the service CA (which any session can obtain) is
     * refused twice over. */
    EVP_PKEY *capub = X509_get0_pubkey(ca);
    if (ca == leaf || !capub || X509_verify(leaf, capub) != 1)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "the server's certificate was not issued by the pinned CA: it is not CAS, refusing to talk to it");
    if (!cas_is_server_cert(leaf))
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "the server's certificate is not CAS's server certificate (no CAS identity marker): refusing "
                        "to talk to it");
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0 || X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "the server's certificate is not valid now");
    return 0;
}

int cas_tls_peer_id(SSL *ssl, char out[65]) {
    X509 *c = SSL_get0_peer_certificate(ssl);
    if (!c) return -1;
    EVP_PKEY *k = X509_get0_pubkey(c);
    if (!k) return -1;
    return cas_pubkey_id(k, out);
}

/* ---- client identity files -------------------------------------------------------------- */

int scp_cas_identity_create(const char *path, char id_hex[65], scp_err *err) {
    struct stat st;
    if (lstat(path, &st) == 0) return scp_fail(err, SCP_E_EXIST, EEXIST, "'%s' exists; refusing to overwrite it", path);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k) return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot generate an Ed25519 key");
    X509 *c = cas_x509_issue(k, "scp client", NULL, 3650, 0, k, NULL, err);
    char *kp = c ? cas_key_pem(k) : NULL, *cp = c ? cas_cert_pem(c) : NULL;
    int r = -1;
    if (kp && cp) {
        size_t kl = strlen(kp), cl = strlen(cp);
        char *all = malloc(kl + cl + 1);
        if (all) {
            memcpy(all, kp, kl);
            memcpy(all + kl, cp, cl + 1);
            r = scp_write_file_atomic(path, all, kl + cl, 0600, err);
            OPENSSL_cleanse(all, kl + cl);
            free(all);
        }
        if (r == 0) r = cas_pubkey_id(k, id_hex);
    } else if (c) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    if (kp) OPENSSL_cleanse(kp, strlen(kp));
    free(kp);
    free(cp);
    X509_free(c);
    EVP_PKEY_free(k);
    return r;
}

int scp_cas_identity_id(const char *path, char id_hex[65], scp_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return scp_fail_errno(err, "cannot open identity '%s'", path);
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!c) return scp_fail(err, SCP_E_KEY, EINVAL, "'%s' holds no certificate", path);
    int r = cas_pubkey_id(X509_get0_pubkey(c), id_hex);
    X509_free(c);
    if (r < 0) return scp_fail(err, SCP_E_KEY, EINVAL, "'%s' holds no usable key", path);
    return 0;
}
