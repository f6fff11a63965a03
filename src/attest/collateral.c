/* attest/collateral.c - put a fetched collateral file where the verifiers look for it
 * (scp_hw_collateral_import, `scpctl cas collateral import`).
 *
 * What a file is follows from its content, never from its name: AMD's ASK/ARK chain or a
 * VCEK, Intel's TCB signing chain, CRLs by their issuer, TCB info and QE identity by their JSON
 * shape. Certificates and CRLs are checked where the importer can (the ARK against its pin, a
 * CRL's signature needs its issuer and is checked at verification); signed JSON is checked for
 * shape here and for its signature on every verification, so an import can never make the
 * verifiers trust something they would not trust anyway. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attest/hw_x509.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest_hw.h"

static int mkdirs(const char *dir, const char *sub, char *out, size_t outsz, scp_err *err) {
    if (snprintf(out, outsz, "%s/%s", dir, sub) >= (int)outsz)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "collateral directory path too long");
    for (char *p = out + 1;; p++) { /* like mkdir -p, from the first component */
        char c = *p;
        if (c == '/' || c == '\0') {
            *p = '\0';
            if (mkdir(out, 0755) < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create '%s'", out);
            *p = c;
        }
        if (c == '\0') break;
    }
    return 0;
}

static int put(const char *dir, const char *sub, const char *name, const void *data, size_t len, char *dest,
               size_t dest_sz, scp_err *err) {
    char d[PATH_MAX];
    if (mkdirs(dir, sub, d, sizeof d, err) < 0) return -1;
    if (snprintf(dest, dest_sz, "%s/%s", d, name) >= (int)dest_sz)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "collateral path too long");
    return scp_write_file_atomic(dest, data, len, 0644, err);
}

static void cn_of(X509_NAME *n, char *out, size_t sz) {
    out[0] = '\0';
    X509_NAME_get_text_by_NID(n, NID_commonName, out, (int)sz);
}

static int put_pem(const char *dir, const char *sub, const char *name, X509 **certs, int n, char *dest, size_t dsz,
                   scp_err *err) {
    BIO *b = BIO_new(BIO_s_mem());
    int ok = b != NULL;
    for (int i = 0; i < n && ok; i++) ok = PEM_write_bio_X509(b, certs[i]) == 1;
    char *p = NULL;
    long len = ok ? BIO_get_mem_data(b, &p) : 0;
    int rc = ok && len > 0 ? put(dir, sub, name, p, (size_t)len, dest, dsz, err)
                           : scp_fail(err, SCP_E_CRYPTO, EIO, "cannot encode certificates");
    BIO_free(b);
    return rc;
}

static int import_certs(const char *dir, X509 **c, int n, char *dest, size_t dsz, scp_err *err) {
    char cn0[128], cn1[128] = "";
    cn_of(X509_get_subject_name(c[0]), cn0, sizeof cn0);
    if (n > 1) cn_of(X509_get_subject_name(c[1]), cn1, sizeof cn1);
    if (n == 2 && strcmp(cn0, "Intel SGX TCB Signing") == 0 && strcmp(cn1, "Intel SGX Root CA") == 0)
        return put_pem(dir, "sgx", "tcb-signing-chain.pem", c, 2, dest, dsz, err);
    if (n == 2 && strncmp(cn0, "SEV-", 4) == 0 && strncmp(cn1, "ARK-", 4) == 0 && strcmp(cn0 + 4, cn1 + 4) == 0 &&
        (strcmp(cn0 + 4, "Milan") == 0 || strcmp(cn0 + 4, "Genoa") == 0)) {
        /* AMD KDS cert_chain: ASK then ARK, checked as a chain here; the verifier also requires
         * the ARK to be the one pinned for the product. */
        char sub[160];
        snprintf(sub, sizeof sub, "snp/%s", cn0 + 4);
        if (hw_cert_check_link(c[1], c[1], 0, "ARK", err) < 0 || hw_cert_check_link(c[0], c[1], 0, "ASK", err) < 0)
            return -1;
        if (put_pem(dir, sub, "ask.pem", c, 1, dest, dsz, err) < 0) return -1;
        return put_pem(dir, sub, "ark.pem", c + 1, 1, dest, dsz, err);
    }
    if (n == 1 && strcmp(cn0, "SEV-VCEK") == 0) {
        size_t hl = 0, l;
        const uint8_t *hw = hw_cert_ext(c[0], "1.3.6.1.4.1.3704.1.4", &hl), *v;
        static const char *const oids[4] = {"1.3.6.1.4.1.3704.1.3.1", "1.3.6.1.4.1.3704.1.3.2", "1.3.6.1.4.1.3704.1.3.3",
                                            "1.3.6.1.4.1.3704.1.3.8"};
        static const int shift[4] = {0, 8, 48, 56};
        uint64_t tcb = 0;
        if (!hw || hl != 64) return scp_fail(err, SCP_E_FORMAT, EIO, "VCEK without a 64-byte hwID extension");
        for (int i = 0; i < 4; i++) {
            v = hw_cert_ext(c[0], oids[i], &l);
            if (!v || l != 3 || v[0] != 0x02 || v[1] != 1)
                return scp_fail(err, SCP_E_FORMAT, EIO, "VCEK without readable TCB extensions");
            tcb |= (uint64_t)v[2] << shift[i];
        }
        char name[160], hex[129];
        scp_hex(hw, 64, hex);
        snprintf(name, sizeof name, "%s-%016llx.der", hex, (unsigned long long)tcb);
        uint8_t *der = NULL;
        int dl = i2d_X509(c[0], &der);
        if (dl <= 0) return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot encode the VCEK");
        int rc = put(dir, "snp/vcek", name, der, (size_t)dl, dest, dsz, err);
        OPENSSL_free(der);
        return rc;
    }
    return scp_fail(err, SCP_E_FORMAT, EIO,
                    "unrecognised certificates (first '%s'): expected AMD's cert_chain (ASK, ARK), a VCEK, or "
                    "Intel's TCB-Info-Issuer-Chain",
                    cn0);
}

static int import_crl(const char *dir, X509_CRL *crl, char *dest, size_t dsz, scp_err *err) {
    char cn[128];
    cn_of(X509_CRL_get_issuer(crl), cn, sizeof cn);
    const char *name = strcmp(cn, "Intel SGX Root CA") == 0            ? "rootcrl.der"
                       : strcmp(cn, "Intel SGX PCK Platform CA") == 0  ? "pckcrl-platform.der"
                       : strcmp(cn, "Intel SGX PCK Processor CA") == 0 ? "pckcrl-processor.der"
                                                                       : NULL;
    if (!name) return scp_fail(err, SCP_E_FORMAT, EIO, "CRL from an unknown issuer '%s'", cn);
    uint8_t *der = NULL;
    int dl = i2d_X509_CRL(crl, &der);
    if (dl <= 0) return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot encode the CRL");
    int rc = put(dir, "sgx", name, der, (size_t)dl, dest, dsz, err);
    OPENSSL_free(der);
    return rc;
}

static int import_json(const char *dir, const uint8_t *buf, size_t len, char *dest, size_t dsz, scp_err *err) {
    json_error_t je;
    json_t *j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
    json_t *ti = json_object_get(j, "tcbInfo"), *qi = json_object_get(j, "enclaveIdentity");
    const char *sig = json_string_value(json_object_get(j, "signature"));
    int rc;
    char name[64];
    if (!json_is_object(j) || !sig || strlen(sig) != 128 || json_object_size(j) != 2 || (!ti == !qi)) {
        rc = scp_fail(err, SCP_E_FORMAT, EIO, "not an Intel PCS tcbInfo or enclaveIdentity response");
    } else if (ti) {
        const char *id = json_string_value(json_object_get(ti, "id"));
        const char *fm = json_string_value(json_object_get(ti, "fmspc"));
        uint8_t f[6];
        if (!id || (strcmp(id, "TDX") != 0 && strcmp(id, "SGX") != 0) || !fm || strlen(fm) != 12 || scp_unhex(fm, f, 6) < 0) {
            rc = scp_fail(err, SCP_E_FORMAT, EIO, "TCB info without a TDX/SGX id and an FMSPC");
        } else {
            char fh[13];
            scp_hex(f, 6, fh);
            snprintf(name, sizeof name, "tcbinfo-%s-%s.json", strcmp(id, "TDX") == 0 ? "tdx" : "sgx", fh);
            rc = put(dir, "sgx", name, buf, len, dest, dsz, err);
        }
    } else {
        const char *id = json_string_value(json_object_get(qi, "id"));
        if (!id || (strcmp(id, "TD_QE") != 0 && strcmp(id, "QE") != 0)) {
            rc = scp_fail(err, SCP_E_FORMAT, EIO, "enclave identity is not TD_QE or QE");
        } else {
            snprintf(name, sizeof name, "qeidentity-%s.json", strcmp(id, "TD_QE") == 0 ? "tdx" : "sgx");
            rc = put(dir, "sgx", name, buf, len, dest, dsz, err);
        }
    }
    json_decref(j);
    return rc;
}

int scp_hw_collateral_import(const char *dir, const uint8_t *buf, size_t len, char *dest, size_t dest_sz,
                             scp_err *err) {
    if (!dir || !buf || len == 0 || len > (1 << 20))
        return scp_fail(err, SCP_E_INVAL, EINVAL, "collateral import needs a directory and a file of at most 1 MiB");
    dest[0] = '\0';
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t')) i++;
    if (i < len && buf[i] == '{') return import_json(dir, buf, len, dest, dest_sz, err);
    /* A CRL (DER or PEM)? */
    const uint8_t *p = buf;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
    if (crl && p != buf + len) X509_CRL_free(crl), crl = NULL;
    if (!crl && len - i > 10 && memcmp(buf + i, "-----BEGIN X509 CRL", 19 < len - i ? 19 : len - i) == 0) {
        BIO *b = BIO_new_mem_buf(buf, (int)len);
        crl = b ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    }
    ERR_clear_error();
    if (crl) {
        int rc = import_crl(dir, crl, dest, dest_sz, err);
        X509_CRL_free(crl);
        return rc;
    }
    X509 *certs[HW_CHAIN_MAX];
    int n = hw_certs_parse(buf, len, certs, err);
    if (n < 0) {
        scp_err_prefix(err, "not a CRL, signed JSON or certificates");
        return -1;
    }
    int rc = import_certs(dir, certs, n, dest, dest_sz, err);
    hw_certs_free(certs, n);
    return rc;
}
