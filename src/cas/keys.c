/* cas/keys.c - see keys.h. */
#include "cas/keys.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/util.h"
#include "crypto/crypto.h"

/* ---- sim keystore: a 0600 file ---------------------------------------------------------- */

static int sim_load_or_create(const char *dir, uint8_t key[32], int *created, scp_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/master.key", dir);
    *created = 0;
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno != ENOENT) return scp_fail_errno(err, "cannot stat '%s'", path);
        if (scp_random(key, 32, err) < 0) return -1;
        if (scp_write_file_atomic(path, key, 32, 0600, err) < 0) return -1;
        *created = 1;
        return 0;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0 || st.st_uid != geteuid())
        return scp_fail(err, SCP_E_KEY, EPERM,
                        "master key '%s' must be a regular file owned by this user with mode 0600", path);
    char *buf = NULL;
    size_t len = 0;
    if (scp_read_path(path, 64, &buf, &len, err) < 0) return -1;
    if (len != 32) {
        free(buf);
        return scp_fail(err, SCP_E_KEY, EINVAL, "master key '%s' is not 32 bytes", path);
    }
    memcpy(key, buf, 32);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return 0;
}

const cas_keystore cas_keystore_sim_file = {"sim-file", sim_load_or_create};

/* ---- certificates --------------------------------------------------------------------------- */

void cas_cert_fingerprint(X509 *cert, char out[65]) {
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    uint8_t h[32];
    scp_sha256_buf(der, n > 0 ? (size_t)n : 0, h);
    OPENSSL_free(der);
    scp_hex(h, 32, out);
}

int cas_pubkey_id(EVP_PKEY *key, char out[65]) {
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);
    if (n <= 0) return -1;
    uint8_t h[32];
    scp_sha256_buf(der, (size_t)n, h);
    OPENSSL_free(der);
    scp_hex(h, 32, out);
    return 0;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex) return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

/* The usages of a leaf: what cas_x509_issue gives every certificate, and what the root gives
 * CAS's server certificate alone. */
#define LEAF_EKU "serverAuth,clientAuth"
#define SERVER_EKU "serverAuth," CAS_SERVER_EKU_OID

static X509 *issue(EVP_PKEY *pub, const char *cn, const char *sans, int days, int is_ca, const char *eku,
                   EVP_PKEY *issuer_key, X509 *issuer_cert, scp_err *err) {
    X509 *c = X509_new();
    uint8_t serial[16];
    if (!c || scp_random(serial, sizeof serial, err) < 0) goto fail;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    if (!sn) goto fail;
    X509_set_serialNumber(c, sn);
    ASN1_INTEGER_free(sn);
    X509_set_version(c, 2);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), (long)days * 86400);
    X509_NAME *name = X509_get_subject_name(c);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0)) goto fail;
    X509_set_issuer_name(c, issuer_cert ? X509_get_subject_name(issuer_cert) : name);
    if (!X509_set_pubkey(c, pub)) goto fail;
    if (add_ext(c, issuer_cert, NID_basic_constraints, is_ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE") ||
        add_ext(c, issuer_cert, NID_key_usage,
                is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,keyEncipherment") ||
        add_ext(c, issuer_cert, NID_subject_key_identifier, "hash"))
        goto fail;
    if (!is_ca && add_ext(c, issuer_cert, NID_ext_key_usage, eku)) goto fail;
    if (sans && *sans && add_ext(c, issuer_cert, NID_subject_alt_name, sans)) {
        X509_free(c);
        scp_fail(err, SCP_E_INVAL, EINVAL, "invalid subject alternative names '%s'", sans);
        return NULL;
    }
    int id = EVP_PKEY_get_id(issuer_key);
    const EVP_MD *md = (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? NULL : EVP_sha256();
    if (!X509_sign(c, issuer_key, md)) goto fail;
    return c;
fail:
    X509_free(c);
    scp_fail(err, SCP_E_CRYPTO, EIO, "cannot issue a certificate for '%s'", cn);
    return NULL;
}

X509 *cas_x509_issue(EVP_PKEY *pub, const char *cn, const char *sans, int days, int is_ca, EVP_PKEY *issuer_key,
                     X509 *issuer_cert, scp_err *err) {
    return issue(pub, cn, sans, days, is_ca, LEAF_EKU, issuer_key, issuer_cert, err);
}

/* 1 if cert's extended key usage lists CAS's marker. */
static int has_cas_eku(X509 *cert) {
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
    ASN1_OBJECT *marker = OBJ_txt2obj(CAS_SERVER_EKU_OID, 1);
    int found = 0;
    for (int i = 0; eku && marker && i < sk_ASN1_OBJECT_num(eku); i++)
        if (OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), marker) == 0) found = 1;
    ASN1_OBJECT_free(marker);
    EXTENDED_KEY_USAGE_free(eku);
    return found;
}

int cas_is_server_cert(X509 *cert) {
    return has_cas_eku(cert) && (X509_get_extended_key_usage(cert) & XKU_SSL_SERVER) && X509_check_ca(cert) == 0;
}

int cas_x509_name_reserved(const char *name) {
    static const char own[] = CAS_SERVER_NAME;
    const size_t own_len = sizeof own - 1;
    while (*name == ' ') name++;
    size_t len = strlen(name);
    while (len > 0 && (name[len - 1] == '.' || name[len - 1] == ' ')) len--;
    /* the name itself, or a name under it (including wildcards like *.scp-cas) */
    if (len >= own_len && strncasecmp(name + len - own_len, own, own_len) == 0 &&
        (len == own_len || name[len - own_len - 1] == '.'))
        return 1;
    /* a one-label wildcard pattern that covers it (generic TLS clients match DNS wildcards) */
    char label[64];
    if (len >= sizeof label || memchr(name, '.', len) || !memchr(name, '*', len)) return 0;
    for (size_t i = 0; i < len; i++) label[i] = (char)tolower((unsigned char)name[i]);
    label[len] = 0;
    return fnmatch(label, own, 0) == 0;
}

X509 *cas_service_cert_issue(const cas_identity *id, EVP_PKEY *pub, const char *cn, const char *sans, int days,
                             scp_err *err) {
    if (cas_x509_name_reserved(cn)) {
        scp_fail(err, SCP_E_INVAL, EPERM, "common name '%s' is CAS's own", cn);
        return NULL;
    }
    char buf[4096], *save = NULL;
    if ((size_t)snprintf(buf, sizeof buf, "%s", sans ? sans : "") >= sizeof buf) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "too many subject alternative names");
        return NULL;
    }
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (strncmp(t, "DNS:", 4) == 0 && cas_x509_name_reserved(t + 4)) {
            scp_fail(err, SCP_E_INVAL, EPERM, "DNS name '%s' is CAS's own", t + 4);
            return NULL;
        }
    X509 *c = issue(pub, cn, sans, days, 0, LEAF_EKU, id->service_ca_key, id->service_ca_cert, err);
    assert(!c || !has_cas_eku(c)); /* CAS's marker comes only from the root, on server.crt */
    return c;
}

/* CAS's server certificate for key, issued by the root with CAS's marker. */
static X509 *issue_server_cert(const cas_identity *id, EVP_PKEY *key, scp_err *err) {
    X509 *c = issue(key, CAS_SERVER_NAME, "DNS:localhost,DNS:" CAS_SERVER_NAME ",IP:127.0.0.1,IP:::1", 3650, 0,
                    SERVER_EKU, id->ca_key, id->ca_cert, err);
    assert(!c || cas_is_server_cert(c));
    return c;
}

/* The contents of a memory BIO as a malloc'd NUL-terminated string (NULL on failure); frees
 * the BIO. */
static char *bio_take_string(BIO *b, int written) {
    char *out = NULL;
    if (b && written) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        out = malloc((size_t)n + 1);
        if (out) {
            memcpy(out, p, (size_t)n);
            out[n] = 0;
        }
    }
    BIO_free(b);
    return out;
}

char *cas_cert_pem(X509 *cert) {
    BIO *b = BIO_new(BIO_s_mem());
    return bio_take_string(b, b && PEM_write_bio_X509(b, cert));
}

char *cas_key_pem(EVP_PKEY *key) {
    BIO *b = BIO_new(BIO_s_secmem()); /* the key passes through secure memory */
    return bio_take_string(b, b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL));
}

/* ---- identity files --------------------------------------------------------------------- */

/* Key files are sealed under a key derived from the master key for this one purpose, so that
 * the master key is only ever a derivation input. Files of the first version were sealed under
 * the master key itself: load_key still opens them and rewrites them under the derived key. */
#define KEYFILE_LABEL "scp-cas identity key file v2"
static int keyfile_key(const uint8_t master[32], uint8_t out[32], scp_err *err) {
    return scp_hkdf(master, 32, NULL, 0, KEYFILE_LABEL, strlen(KEYFILE_LABEL), out, 32, err);
}

static int save_key(const char *path, EVP_PKEY *key, const uint8_t master[32], const char *label, scp_err *err) {
    unsigned char *der = NULL;
    int n = i2d_PrivateKey(key, &der);
    if (n <= 0) return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot encode the %s key", label);
    uint8_t *ct = NULL, k[32];
    size_t ctlen = 0;
    int r = keyfile_key(master, k, err);
    if (r == 0) r = scp_envelope_seal(k, label, strlen(label), der, (size_t)n, &ct, &ctlen, err);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_clear_free(der, (size_t)n);
    if (r < 0) return -1;
    r = scp_write_file_atomic(path, ct, ctlen, 0600, err);
    free(ct);
    return r;
}

static EVP_PKEY *load_key(const char *path, const uint8_t master[32], const char *label, scp_err *err) {
    char *ct = NULL;
    size_t ctlen = 0;
    if (scp_read_path(path, 65536, &ct, &ctlen, err) < 0) return NULL;
    uint8_t *der = NULL, k[32];
    size_t n = 0;
    scp_err first;
    int legacy = 0, r = keyfile_key(master, k, err);
    if (r == 0 && scp_envelope_open(k, label, strlen(label), (uint8_t *)ct, ctlen, &der, &n, &first) < 0) {
        legacy = 1; /* a version 1 file? */
        r = scp_envelope_open(master, label, strlen(label), (uint8_t *)ct, ctlen, &der, &n, err);
    }
    OPENSSL_cleanse(k, sizeof k);
    free(ct);
    if (r < 0) {
        scp_err_prefix(err, "'%s' (wrong master key?)", path);
        return NULL;
    }
    const unsigned char *p = der;
    EVP_PKEY *key = d2i_AutoPrivateKey(NULL, &p, (long)n);
    OPENSSL_clear_free(der, n);
    if (!key) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "'%s' holds no valid key", path);
        return NULL;
    }
    scp_err ignored; /* if the rewrite fails, the old file stays and opens next time too */
    if (legacy) (void)save_key(path, key, master, label, &ignored);
    return key;
}

static X509 *load_cert(const char *path, scp_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) {
        scp_fail_errno(err, "cannot open '%s'", path);
        return NULL;
    }
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!c) scp_fail(err, SCP_E_FORMAT, EINVAL, "'%s' holds no valid certificate", path);
    return c;
}

static int save_cert(const char *path, X509 *cert, scp_err *err) {
    char *pem = cas_cert_pem(cert);
    if (!pem) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int r = scp_write_file_atomic(path, pem, strlen(pem), 0644, err);
    free(pem);
    return r;
}

static EVP_PKEY *new_ed25519(scp_err *err) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k) scp_fail(err, SCP_E_CRYPTO, EIO, "cannot generate an Ed25519 key");
    return k;
}

/* A data-directory file name. */
static void data_path(char out[4096], const char *dir, const char *name) { snprintf(out, 4096, "%s/%s", dir, name); }

/* Create the service CA and store it (key first: the certificate's presence means both are there). */
static int create_service_ca(const char *dir, const uint8_t master[32], cas_identity *id, scp_err *err) {
    char crt[4096], key[4096];
    data_path(crt, dir, "service-ca.crt");
    data_path(key, dir, "service-ca.key.enc");
    id->service_ca_key = new_ed25519(err);
    if (!id->service_ca_key) return -1;
    id->service_ca_cert = cas_x509_issue(id->service_ca_key, "SCP CAS service CA", NULL, 3650, 1, id->service_ca_key,
                                         NULL, err);
    if (!id->service_ca_cert) return -1;
    return save_key(key, id->service_ca_key, master, "scp-cas service ca key", err) || save_cert(crt, id->service_ca_cert, err)
               ? -1
               : 0;
}

static int load_service_ca(const char *dir, const uint8_t master[32], cas_identity *id, scp_err *err) {
    char crt[4096], key[4096];
    data_path(crt, dir, "service-ca.crt");
    data_path(key, dir, "service-ca.key.enc");
    if (access(crt, F_OK) != 0) {
        if (errno != ENOENT) return scp_fail_errno(err, "cannot access '%s'", crt);
        id->migrated |= CAS_MIGRATED_SERVICE_CA;
        return create_service_ca(dir, master, id, err);
    }
    if (!(id->service_ca_cert = load_cert(crt, err)) ||
        !(id->service_ca_key = load_key(key, master, "scp-cas service ca key", err)))
        return -1;
    if (X509_check_private_key(id->service_ca_cert, id->service_ca_key) != 1)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "the service CA files in '%s' do not match each other", dir);
    return 0;
}

void cas_first_start_undo(const char *dir, int identity_too) {
    static const char *const made[] = {"ca.crt", "ca.key.enc", "server.crt", "server.key.enc", "service-ca.crt",
                                       "service-ca.key.enc"};
    char path[4096];
    if (identity_too)
        for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
            data_path(path, dir, made[i]);
            unlink(path);
        }
    data_path(path, dir, "master.key"); /* last: while it is there, the start was not undone */
    unlink(path);
}

int cas_identity_load_or_create(const char *dir, const uint8_t master[32], cas_identity *id, int *created,
                                scp_err *err) {
    char ca_crt[4096], ca_key[4096], srv_crt[4096], srv_key[4096];
    data_path(ca_crt, dir, "ca.crt");
    data_path(ca_key, dir, "ca.key.enc");
    data_path(srv_crt, dir, "server.crt");
    data_path(srv_key, dir, "server.key.enc");
    memset(id, 0, sizeof *id);
    *created = 0;
    if (access(ca_crt, F_OK) != 0) {
        id->ca_key = new_ed25519(err);
        if (!id->ca_key) goto fail;
        id->ca_cert = cas_x509_issue(id->ca_key, "SCP CAS CA", NULL, 3650, 1, id->ca_key, NULL, err);
        if (!id->ca_cert) goto fail;
        id->server_key = new_ed25519(err);
        if (!id->server_key) goto fail;
        id->server_cert = issue_server_cert(id, id->server_key, err);
        if (!id->server_cert) goto fail;
        if (create_service_ca(dir, master, id, err) || save_key(ca_key, id->ca_key, master, "scp-cas ca key", err) ||
            save_key(srv_key, id->server_key, master, "scp-cas server key", err) ||
            save_cert(srv_crt, id->server_cert, err) || save_cert(ca_crt, id->ca_cert, err))
            goto fail;
        *created = 1;
    } else {
        if (!(id->ca_cert = load_cert(ca_crt, err)) || !(id->ca_key = load_key(ca_key, master, "scp-cas ca key", err)) ||
            !(id->server_cert = load_cert(srv_crt, err)) ||
            !(id->server_key = load_key(srv_key, master, "scp-cas server key", err)))
            goto fail;
        if (X509_check_private_key(id->ca_cert, id->ca_key) != 1 ||
            X509_verify(id->server_cert, id->ca_key) != 1 ||
            X509_check_private_key(id->server_cert, id->server_key) != 1) {
            scp_fail(err, SCP_E_INTEGRITY, EIO, "the CA files in '%s' do not match each other", dir);
            goto fail;
        }
        if (load_service_ca(dir, master, id, err) < 0) goto fail;
        if (!cas_is_server_cert(id->server_cert)) { /* from before the marker: same key, same root, marked */
            X509 *c = issue_server_cert(id, id->server_key, err);
            if (!c) goto fail;
            X509_free(id->server_cert);
            id->server_cert = c;
            if (save_cert(srv_crt, c, err) < 0) goto fail;
            id->migrated |= CAS_MIGRATED_SERVER_CERT;
        }
    }
    cas_cert_fingerprint(id->ca_cert, id->ca_fp);
    cas_cert_fingerprint(id->service_ca_cert, id->service_ca_fp);
    return 0;
fail:
    cas_identity_free(id);
    return -1;
}

void cas_identity_free(cas_identity *id) {
    X509_free(id->ca_cert);
    X509_free(id->server_cert);
    EVP_PKEY_free(id->ca_key);
    EVP_PKEY_free(id->server_key);
    X509_free(id->service_ca_cert);
    EVP_PKEY_free(id->service_ca_key);
    memset(id, 0, sizeof *id);
}
