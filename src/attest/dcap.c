/* attest/dcap.c - Intel DCAP ECDSA quote verifier: TDX quote v4, SGX quote v3 (scp/attest_hw.h).
 *
 * Layout: Intel "SGX ECDSA Quote Library API" (quote v3) and "TDX DCAP Quoting Library API"
 * (quote v4, appendix A); integers little-endian, ECDSA values big-endian r || s and x || y.
 *   header (48) | body (SGX report 384, TD report 584) | u32 sig_len | sig_len bytes:
 *     signature (64) | attestation key (64) | v4: u16 type 6, u32 size, then the same as v3:
 *     QE report (384) | QE report signature (64) | u16 auth_len | auth data |
 *     u16 type 5 | u32 size | PCK certificate chain (PEM)
 * The attestation key signs header || body; the PCK key signs the QE report; the QE report's
 * report data binds the attestation key; the PCK certificate chains to Intel's SGX Root CA.
 */
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "attest/dcap_tcb.h"
#include "attest/hw_x509.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest_hw.h"

/* SHA-256 of the DER of "Intel SGX Root CA" (valid 2018-05-21 to 2049-12-31), as served by
 * https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem */
static const uint8_t intel_root_sha256[32] = {0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49,
                                              0xe9, 0x5b, 0x80, 0x7a, 0x35, 0x0e, 0x74, 0x24, 0x96, 0x43, 0x99,
                                              0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3};
static const uint8_t intel_qe_vendor[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                            0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

#define SGX_REPORT_LEN 384
#define TD_REPORT_LEN 584
#define QUOTE_HEADER_LEN 48

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int bad(scp_err *err, const char *why) {
    return scp_fail(err, SCP_E_FORMAT, EIO, "malformed DCAP quote: %s", why);
}

/* A bounds-checked reader. */
struct cur {
    const uint8_t *p;
    size_t left;
};
static const uint8_t *take(struct cur *c, size_t n) {
    if (c->left < n) return NULL;
    const uint8_t *r = c->p;
    c->p += n, c->left -= n;
    return r;
}

static void parse_sgx_body(const uint8_t *b, scp_dcap_quote *q) {
    memcpy(q->cpusvn, b, 16);
    memcpy(q->sgx_attributes, b + 48, 16);
    memcpy(q->mrenclave, b + 64, 32);
    memcpy(q->mrsigner, b + 128, 32);
    q->isvprodid = le16(b + 256);
    q->isvsvn = le16(b + 258);
    memcpy(q->report_data, b + 320, 64);
}

static void parse_td_body(const uint8_t *b, scp_dcap_quote *q) {
    memcpy(q->tee_tcb_svn, b, 16);
    memcpy(q->mrseam, b + 16, 48);
    memcpy(q->mrsignerseam, b + 64, 48);
    memcpy(q->seam_attributes, b + 112, 8);
    memcpy(q->td_attributes, b + 120, 8);
    memcpy(q->xfam, b + 128, 8);
    memcpy(q->mrtd, b + 136, 48);
    memcpy(q->mrconfigid, b + 184, 48);
    memcpy(q->mrowner, b + 232, 48);
    memcpy(q->mrownerconfig, b + 280, 48);
    for (int i = 0; i < 4; i++) memcpy(q->rtmr[i], b + 328 + (size_t)48 * (size_t)i, 48);
    memcpy(q->report_data, b + 520, 64);
}

/* QE report | signature | auth data | certification data (type 5: PCK chain), exactly c. */
static int parse_qe_part(struct cur *c, scp_dcap_quote *q, scp_err *err) {
    const uint8_t *p;
    if (!(q->qe_report = take(c, SGX_REPORT_LEN)) || !(q->qe_signature = take(c, 64)) || !(p = take(c, 2)))
        return bad(err, "truncated QE report");
    q->qe_auth_len = le16(p);
    if (!(q->qe_auth = take(c, q->qe_auth_len))) return bad(err, "truncated QE authentication data");
    if (!(p = take(c, 6))) return bad(err, "truncated certification data header");
    if (le16(p) != 5) return bad(err, "certification data is not a PCK certificate chain (type 5)");
    q->pck_chain_len = le32(p + 2);
    if (!(q->pck_chain = take(c, q->pck_chain_len)) || q->pck_chain_len == 0)
        return bad(err, "truncated PCK certificate chain");
    if (c->left != 0) return bad(err, "bytes after the certification data");
    return 0;
}

int scp_dcap_quote_parse(const uint8_t *buf, size_t len, scp_dcap_quote *q, scp_err *err) {
    memset(q, 0, sizeof *q);
    if (!buf || len < QUOTE_HEADER_LEN) return bad(err, "too short");
    if (len > (size_t)64 * 1024) return bad(err, "too long");
    q->version = le16(buf);
    q->att_key_type = le16(buf + 2);
    q->tee_type = le32(buf + 4);
    q->qe_svn = le16(buf + 8);
    q->pce_svn = le16(buf + 10);
    memcpy(q->qe_vendor_id, buf + 12, 16);
    if (q->version != 3 && q->version != 4) return bad(err, "unsupported version (3 and 4 are)");
    if (q->att_key_type != 2) return bad(err, "attestation key is not ECDSA P-256");
    size_t body_len;
    if (q->tee_type == SCP_DCAP_TEE_SGX)
        body_len = SGX_REPORT_LEN;
    else if (q->tee_type == SCP_DCAP_TEE_TDX && q->version == 4)
        body_len = TD_REPORT_LEN;
    else
        return bad(err, "unknown TEE type");
    struct cur c = {buf + QUOTE_HEADER_LEN, len - QUOTE_HEADER_LEN};
    const uint8_t *body = take(&c, body_len), *p;
    if (!body || !(p = take(&c, 4))) return bad(err, "truncated body");
    if (body_len == SGX_REPORT_LEN)
        parse_sgx_body(body, q);
    else
        parse_td_body(body, q);
    q->signed_part = buf;
    q->signed_len = QUOTE_HEADER_LEN + body_len;
    if (le32(p) != c.left) return bad(err, "signature data length does not match the quote's");
    if (!(q->signature = take(&c, 64)) || !(q->attest_key = take(&c, 64))) return bad(err, "truncated signature");
    if (q->version == 4) {
        if (!(p = take(&c, 6))) return bad(err, "truncated certification data");
        if (le16(p) != 6) return bad(err, "certification data is not a QE report (type 6)");
        if (le32(p + 2) != c.left) return bad(err, "QE report certification data length does not match");
    }
    return parse_qe_part(&c, q, err);
}

static EVP_PKEY *p256_from_raw(const uint8_t xy[64]) {
    uint8_t pt[65];
    pt[0] = 0x04;
    memcpy(pt + 1, xy, 64);
    EVP_PKEY *k = NULL;
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (b && ctx && OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt) == 1 &&
        (params = OSSL_PARAM_BLD_to_param(b)) != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1)
        k = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return k;
}

static int crl_up_ref(void *v) { return X509_CRL_up_ref(v); }
static void crl_release(void *v) { X509_CRL_free(v); }
static const hw_cache_ops crl_ops = {crl_up_ref, crl_release};

/* The CRL at path, signed by issuer (from the verified-collateral cache when unchanged). */
static X509_CRL *load_crl(const char *path, X509 *issuer, const char *what, scp_err *err) {
    uint8_t ctx[32];
    hw_file_id id;
    if (hw_cert_sha256(issuer, ctx, err) < 0) return NULL;
    int have_id = hw_file_id_of(path, &id) == 0;
    X509_CRL *crl = have_id ? hw_cache_get(path, &id, ctx, &crl_ops) : NULL;
    if (crl) return crl;
    uint8_t *buf = NULL;
    size_t len = 0;
    scp_err e;
    if (scp_read_file(AT_FDCWD, path, 1 << 20, &buf, &len, &e) < 0) {
        if (e.sys == ENOENT)
            scp_fail(err, SCP_E_NOENT, ENOENT, "missing attestation collateral: Intel CRL for the %s: %s", what, path);
        else
            scp_fail(err, e.code, e.sys, "attestation collateral: %s", e.msg);
        return NULL;
    }
    const uint8_t *p = buf;
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    EVP_PKEY *ik = X509_get0_pubkey(issuer);
    int ok = 0;
    if (!crl || p != buf + len)
        scp_fail(err, SCP_E_FORMAT, EIO, "%s: not a DER CRL", path);
    else if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0 || !ik ||
             X509_CRL_verify(crl, ik) != 1)
        scp_fail(err, SCP_E_INTEGRITY, EIO, "%s: CRL not signed by the %s's issuer", path, what);
    else
        ok = 1;
    free(buf);
    ERR_clear_error();
    if (!ok) {
        X509_CRL_free(crl);
        return NULL;
    }
    if (have_id) hw_cache_put(path, &id, ctx, crl, &crl_ops);
    return crl;
}

/* cert is not on the CRL at path, which its issuer signed and which is current. */
static int check_crl(const char *dir, const char *name, X509 *issuer, X509 *cert, int64_t now, const char *what,
                     scp_err *err) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/sgx/%s", dir, name) >= (int)sizeof path)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "collateral directory path too long");
    X509_CRL *crl = load_crl(path, issuer, what, err);
    if (!crl) return -1;
    int rc = -1;
    time_t t = now ? (time_t)now : time(NULL);
    X509_REVOKED *rev = NULL;
    if (X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &t) != -1 || !X509_CRL_get0_nextUpdate(crl) ||
        X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &t) != 1)
        scp_fail(err, SCP_E_INTEGRITY, EIO, "%s: CRL expired or not yet valid (fetch a current one)", path);
    else if (X509_CRL_get0_by_cert(crl, &rev, cert) == 1)
        scp_fail(err, SCP_E_INTEGRITY, EIO, "%s certificate revoked (%s)", what, path);
    else
        rc = 0;
    X509_CRL_free(crl);
    ERR_clear_error();
    return rc;
}

/* PCK -> intermediate CA -> Intel SGX Root CA (pinned), with CRLs. On success *pck is the PCK. */
static int check_pck_chain(const scp_dcap_quote *q, const char *dir, const scp_dcap_policy *pol, X509 **pck_out,
                           scp_err *err) {
    X509 *c[HW_CHAIN_MAX];
    int n = hw_certs_parse(q->pck_chain, q->pck_chain_len, c, err);
    if (n < 0) {
        scp_err_prefix(err, "DCAP quote's PCK chain");
        return -1;
    }
    int rc = -1;
    uint8_t fp[32];
    char cn[128] = "";
    if (n != 3) {
        scp_fail(err, SCP_E_FORMAT, EIO, "DCAP quote's PCK chain has %d certificates, not 3", n);
        goto out;
    }
    if (hw_cert_sha256(c[2], fp, err) < 0) goto out;
    if (memcmp(fp, pol->root_sha256 ? pol->root_sha256 : intel_root_sha256, 32) != 0) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "DCAP quote's PCK chain does not end at Intel's SGX Root CA");
        goto out;
    }
    if (hw_cert_check_link(c[2], c[2], pol->now, "Intel SGX Root CA", err) < 0 ||
        hw_cert_check_link(c[1], c[2], pol->now, "PCK issuing CA", err) < 0 ||
        hw_cert_check_link(c[0], c[1], pol->now, "PCK", err) < 0)
        goto out;
    X509_NAME_get_text_by_NID(X509_get_subject_name(c[1]), NID_commonName, cn, sizeof cn);
    const char *crl = strstr(cn, "Processor") ? "pckcrl-processor.der" : "pckcrl-platform.der";
    if (check_crl(dir, "rootcrl.der", c[2], c[1], pol->now, "PCK issuing CA", err) < 0 ||
        check_crl(dir, crl, c[1], c[0], pol->now, "PCK", err) < 0)
        goto out;
    if (X509_up_ref(c[0]) != 1) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    *pck_out = c[0];
    rc = 0;
out:
    hw_certs_free(c, n);
    return rc;
}

static int check_signatures(const scp_dcap_quote *q, X509 *pck, scp_err *err) {
    EVP_PKEY *pk = X509_get0_pubkey(pck);
    if (!pk || hw_ecdsa_verify_rs(pk, EVP_sha256(), q->qe_report, SGX_REPORT_LEN, q->qe_signature,
                                  q->qe_signature + 32, 32, 0, err) < 0) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "DCAP quote: the QE report's signature by the PCK key does not verify");
        return -1;
    }
    uint8_t h[32];
    struct scp_buf parts[2] = {{q->attest_key, 64}, {q->qe_auth, q->qe_auth_len}};
    scp_sha256(parts, 2, h);
    static const uint8_t zero[32];
    if (memcmp(q->qe_report + 320, h, 32) != 0 || memcmp(q->qe_report + 352, zero, 32) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "DCAP quote: the QE report does not certify this attestation key");
    EVP_PKEY *ak = p256_from_raw(q->attest_key);
    if (!ak) return scp_fail(err, SCP_E_INTEGRITY, EIO, "DCAP quote: attestation key is not a P-256 point");
    int rc = hw_ecdsa_verify_rs(ak, EVP_sha256(), q->signed_part, q->signed_len, q->signature, q->signature + 32, 32,
                                0, err);
    EVP_PKEY_free(ak);
    if (rc < 0) return scp_fail(err, SCP_E_INTEGRITY, EIO, "DCAP quote: signature by the attestation key does not verify");
    return 0;
}

static int check_policy(const scp_dcap_quote *q, const scp_dcap_policy *pol, scp_err *err) {
    if (q->tee_type == SCP_DCAP_TEE_TDX) {
        if (q->td_attributes[0] & 1)
            return scp_fail(err, SCP_E_POLICY, EACCES, "TDX quote from a debug TD (TUD.DEBUG): its memory is not private");
        if (pol->mrtd && memcmp(pol->mrtd, q->mrtd, 48) != 0) {
            char hex[97];
            scp_hex(q->mrtd, 48, hex);
            return scp_fail(err, SCP_E_POLICY, EACCES, "TDX MRTD %s is not the policy's", hex);
        }
    } else {
        if (q->sgx_attributes[0] & 2)
            return scp_fail(err, SCP_E_POLICY, EACCES, "SGX quote from a debug enclave: its memory is not private");
        if (pol->mrenclave && memcmp(pol->mrenclave, q->mrenclave, 32) != 0)
            return scp_fail(err, SCP_E_POLICY, EACCES, "SGX MRENCLAVE is not the policy's");
        if (pol->mrsigner && memcmp(pol->mrsigner, q->mrsigner, 32) != 0)
            return scp_fail(err, SCP_E_POLICY, EACCES, "SGX MRSIGNER is not the policy's");
        if (q->isvsvn < pol->min_isvsvn)
            return scp_fail(err, SCP_E_POLICY, EACCES, "SGX ISVSVN %u below the policy's minimum %u", q->isvsvn,
                            pol->min_isvsvn);
    }
    if (memcmp(pol->report_data, q->report_data, 64) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "DCAP quote's report data does not bind this CAS nonce and runtime key (replayed or foreign quote)");
    return 0;
}

static int check_tcb(scp_dcap_quote *q, X509 *pck, const char *dir, const scp_dcap_policy *pol, scp_err *err) {
    q->tcb_status = SCP_DCAP_TCB_UNEVALUATED;
    if (pol->allow_unevaluated_tcb) return 0;
    int st;
    if (dcap_tcb_evaluate(q, pck, dir, pol->root_sha256 ? pol->root_sha256 : intel_root_sha256, pol->now, &st, err) < 0)
        return -1;
    q->tcb_status = st;
    unsigned accept = pol->accept_tcb ? pol->accept_tcb : 1u << SCP_DCAP_TCB_UP_TO_DATE;
    if (st == SCP_DCAP_TCB_REVOKED || !(accept & (1u << st)))
        return scp_fail(err, SCP_E_POLICY, EACCES, "DCAP TCB status %s is not accepted by the policy",
                        dcap_tcb_status_name(st));
    return 0;
}

const char *scp_dcap_tcb_status_name(int status) {
    return status == SCP_DCAP_TCB_UNEVALUATED ? "unevaluated" : dcap_tcb_status_name(status);
}

int scp_dcap_verify(const uint8_t *quote, size_t len, const char *dir, const scp_dcap_policy *pol,
                    scp_dcap_quote *out, scp_err *err) {
    if (!pol || !pol->report_data || !dir)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "DCAP verification needs a policy with report data and a collateral directory");
    scp_dcap_quote q;
    if (scp_dcap_quote_parse(quote, len, &q, err) < 0) return -1;
    if (memcmp(q.qe_vendor_id, intel_qe_vendor, 16) != 0)
        return scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "DCAP quote from a quoting enclave not by Intel");
    X509 *pck = NULL;
    if (check_pck_chain(&q, dir, pol, &pck, err) < 0) return -1;
    int rc = check_signatures(&q, pck, err);
    if (rc == 0) rc = check_policy(&q, pol, err);
    if (rc == 0) rc = check_tcb(&q, pck, dir, pol, err);
    dcap_pck_info pk;
    scp_err ignored;
    if (rc == 0 && dcap_pck_tcb(pck, &pk, &ignored) == 0 && pk.has_ppid) { /* the platform's identity */
        memcpy(q.ppid, pk.ppid, 16);
        q.has_ppid = 1;
    }
    X509_free(pck);
    if (rc < 0) return -1;
    if (out) *out = q;
    return 0;
}
