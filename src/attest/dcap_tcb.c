/* attest/dcap_tcb.c - Intel TCB info and QE identity evaluation for DCAP quotes.
 *
 * Collateral (Intel PCS v4 responses, bodies as served, in the collateral directory):
 *   sgx/tcbinfo-{tdx,sgx}-<fmspc hex>.json   /{tdx,sgx}/certification/v4/tcb?fmspc=...
 *   sgx/qeidentity-{tdx,sgx}.json            /{tdx,sgx}/certification/v4/qe/identity
 *   sgx/tcb-signing-chain.pem                their TCB-Info-Issuer-Chain header (Intel SGX TCB
 *                                            Signing, Intel SGX Root CA)
 * Each body is {"<name>":<object>,"signature":"<r||s hex>"} where the ECDSA P-256 signature by
 * the TCB Signing key covers the object's exact bytes. The PCK certificate's SGX extension
 * (OID 1.2.840.113741.1.13.1) gives the FMSPC, PCE id, the 16 SGX TCB components and PCESVN.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "attest/dcap_tcb.h"
#include "attest/hw_x509.h"
#include "common/util.h"

/* ---- a minimal DER reader for the PCK's SGX extension ----------------------------------- */

struct der {
    const uint8_t *p;
    size_t n;
};

/* Next TLV of d: tag and value; advances d. */
static int der_next(struct der *d, uint8_t *tag, struct der *val) {
    if (d->n < 2) return -1;
    *tag = d->p[0];
    size_t len = d->p[1], hl = 2;
    if (len & 0x80) {
        size_t nb = len & 0x7f;
        if (nb == 0 || nb > 3 || d->n < 2 + nb) return -1;
        len = 0;
        for (size_t i = 0; i < nb; i++) len = len << 8 | d->p[2 + i];
        hl += nb;
    }
    if (d->n - hl < len) return -1;
    val->p = d->p + hl;
    val->n = len;
    d->p += hl + len;
    d->n -= hl + len;
    return 0;
}

static int der_uint(const struct der *v, unsigned max, unsigned *out) {
    if (v->n == 0 || v->n > 3 || (v->p[0] & 0x80)) return -1;
    unsigned x = 0;
    for (size_t i = 0; i < v->n; i++) x = x << 8 | v->p[i];
    if (x > max) return -1;
    *out = x;
    return 0;
}

/* 1.2.840.113741.1.13.1 */
static const uint8_t sgx_oid[] = {0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01};

/* The OID is sgx_oid followed by the arcs given (each < 128). */
static int oid_is(const struct der *o, const uint8_t *arcs, size_t n) {
    return o->n == sizeof sgx_oid + n && memcmp(o->p, sgx_oid, sizeof sgx_oid) == 0 &&
           memcmp(o->p + sizeof sgx_oid, arcs, n) == 0;
}

static int bad_pck(scp_err *err, const char *why) {
    return scp_fail(err, SCP_E_FORMAT, EIO, "PCK certificate's SGX extension: %s", why);
}

int dcap_pck_tcb(X509 *pck, dcap_pck_info *t, scp_err *err) {
    memset(t, 0, sizeof *t);
    size_t n = 0;
    char oid[64];
    snprintf(oid, sizeof oid, "1.2.840.113741.1.13.1");
    const uint8_t *v = hw_cert_ext(pck, oid, &n);
    if (!v) return bad_pck(err, "missing");
    struct der top = {v, n}, seq, item, o, val;
    uint8_t tag;
    if (der_next(&top, &tag, &seq) < 0 || tag != 0x30 || top.n != 0) return bad_pck(err, "not a sequence");
    unsigned have = 0;
    while (seq.n) {
        if (der_next(&seq, &tag, &item) < 0 || tag != 0x30 || der_next(&item, &tag, &o) < 0 || tag != 0x06 ||
            der_next(&item, &tag, &val) < 0)
            return bad_pck(err, "malformed entry");
        const uint8_t a_ppid[] = {1}, a_tcb[] = {2}, a_pceid[] = {3}, a_fmspc[] = {4};
        if (oid_is(&o, a_ppid, 1)) {
            if (tag != 0x04 || val.n != 16) return bad_pck(err, "bad PPID");
            memcpy(t->ppid, val.p, 16);
            t->has_ppid = 1;
        } else if (oid_is(&o, a_fmspc, 1)) {
            if (tag != 0x04 || val.n != 6) return bad_pck(err, "bad FMSPC");
            memcpy(t->fmspc, val.p, 6);
            have |= 1;
        } else if (oid_is(&o, a_pceid, 1)) {
            if (tag != 0x04 || val.n != 2) return bad_pck(err, "bad PCE id");
            memcpy(t->pceid, val.p, 2);
            have |= 2;
        } else if (oid_is(&o, a_tcb, 1)) {
            if (tag != 0x30) return bad_pck(err, "bad TCB");
            unsigned comps = 0;
            while (val.n) {
                struct der e, eo, ev;
                uint8_t et;
                if (der_next(&val, &et, &e) < 0 || et != 0x30 || der_next(&e, &et, &eo) < 0 || et != 0x06 ||
                    der_next(&e, &et, &ev) < 0)
                    return bad_pck(err, "malformed TCB entry");
                if (eo.n != sizeof sgx_oid + 2 || memcmp(eo.p, sgx_oid, sizeof sgx_oid) != 0 || eo.p[sizeof sgx_oid] != 2)
                    continue;
                unsigned arc = eo.p[sizeof sgx_oid + 1], x;
                if (arc >= 1 && arc <= 16) {
                    if (et != 0x02 || der_uint(&ev, 255, &x) < 0) return bad_pck(err, "bad TCB component");
                    t->comp[arc - 1] = (uint8_t)x;
                    comps |= 1u << (arc - 1);
                } else if (arc == 17) {
                    if (et != 0x02 || der_uint(&ev, 65535, &x) < 0) return bad_pck(err, "bad PCESVN");
                    t->pcesvn = (uint16_t)x;
                    comps |= 1u << 16;
                }
            }
            if (comps != 0x1ffff) return bad_pck(err, "TCB components missing");
            have |= 4;
        }
    }
    if (have != 7) return bad_pck(err, "FMSPC, PCE id or TCB missing");
    return 0;
}

/* ---- signed JSON collateral --------------------------------------------------------------- */

static const char *const status_names[] = {"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
                                           "ConfigurationAndSWHardeningNeeded", "OutOfDate",
                                           "OutOfDateConfigurationNeeded", "Revoked"};

const char *dcap_tcb_status_name(int s) {
    return s >= 0 && s < (int)(sizeof status_names / sizeof status_names[0]) ? status_names[s] : "unknown";
}

static int status_of(const char *s) {
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if (s && strcmp(s, status_names[i]) == 0) return (int)i;
    return -1;
}

static int parse_time(const char *s, time_t *out) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (!end || *end) return -1;
    *out = timegm(&tm);
    return 0;
}

static int x509_up_ref(void *v) { return X509_up_ref(v); }
static void x509_release(void *v) { X509_free(v); }
static const hw_cache_ops x509_ops = {x509_up_ref, x509_release};
static int json_up_ref(void *v) { return json_incref(v) != NULL; }
static void json_release(void *v) { json_decref(v); }
static const hw_cache_ops json_ops = {json_up_ref, json_release};

static X509 *tcb_signer_load(const char *path, const uint8_t root_pin[32], int64_t now, scp_err *err);

/* The TCB signing certificate, checked to the pinned root (cached while the file is unchanged;
 * its validity is checked on every use). */
static X509 *tcb_signer(const char *dir, const uint8_t root_pin[32], int64_t now, scp_err *err) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/sgx/tcb-signing-chain.pem", dir) >= (int)sizeof path) {
        scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "collateral directory path too long");
        return NULL;
    }
    hw_file_id id;
    int have_id = hw_file_id_of(path, &id) == 0;
    X509 *signer = have_id ? hw_cache_get(path, &id, root_pin, &x509_ops) : NULL;
    if (!signer) {
        signer = tcb_signer_load(path, root_pin, now, err);
        if (signer && have_id) hw_cache_put(path, &id, root_pin, signer, &x509_ops);
    }
    if (signer && hw_cert_check_time(signer, now, "Intel SGX TCB Signing", err) < 0) {
        X509_free(signer);
        signer = NULL;
    }
    return signer;
}

static X509 *tcb_signer_load(const char *path, const uint8_t root_pin[32], int64_t now, scp_err *err) {
    uint8_t *buf = NULL;
    size_t len = 0;
    scp_err e;
    if (scp_read_file(AT_FDCWD, path, 65536, &buf, &len, &e) < 0) {
        scp_fail(err, e.sys == ENOENT ? SCP_E_NOENT : e.code, e.sys,
                 "missing attestation collateral: Intel TCB signing chain (TCB-Info-Issuer-Chain): %s", path);
        return NULL;
    }
    X509 *c[HW_CHAIN_MAX];
    int n = hw_certs_parse(buf, len, c, err);
    free(buf);
    if (n < 0) return NULL;
    uint8_t fp[32];
    X509 *signer = NULL;
    if (n != 2) {
        scp_fail(err, SCP_E_FORMAT, EIO, "%s: expected 2 certificates, found %d", path, n);
    } else if (hw_cert_sha256(c[1], fp, err) == 0) {
        if (memcmp(fp, root_pin, 32) != 0)
            scp_fail(err, SCP_E_INTEGRITY, EIO, "%s does not end at Intel's SGX Root CA", path);
        else if (hw_cert_check_link(c[1], c[1], now, "Intel SGX Root CA", err) == 0 &&
                 hw_cert_check_link(c[0], c[1], now, "Intel SGX TCB Signing", err) == 0 && X509_up_ref(c[0]) == 1)
            signer = c[0];
    }
    hw_certs_free(c, n);
    return signer;
}

static json_t *load_signed_file(const char *path, const char *key, X509 *signer, const char *what, scp_err *err);

/* Read DIR/sgx/name, check the signature over the object named key, parse it (or take it from
 * the verified-collateral cache), and check that it is current. */
static json_t *load_signed(const char *dir, const char *name, const char *key, X509 *signer, int64_t now,
                           const char *what, scp_err *err) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/sgx/%s", dir, name) >= (int)sizeof path) {
        scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "collateral directory path too long");
        return NULL;
    }
    uint8_t ctx[32];
    hw_file_id id;
    if (hw_cert_sha256(signer, ctx, err) < 0) return NULL;
    int have_id = hw_file_id_of(path, &id) == 0;
    json_t *obj = have_id ? hw_cache_get(path, &id, ctx, &json_ops) : NULL;
    if (!obj) {
        obj = load_signed_file(path, key, signer, what, err);
        if (!obj) return NULL;
        if (have_id) hw_cache_put(path, &id, ctx, obj, &json_ops);
    }
    time_t next, t = now ? (time_t)now : time(NULL);
    if (parse_time(json_string_value(json_object_get(obj, "nextUpdate")), &next) < 0 || next <= t) {
        json_decref(obj);
        scp_fail(err, SCP_E_INTEGRITY, EIO, "%s: expired (nextUpdate passed; fetch a current one)", path);
        return NULL;
    }
    return obj;
}

static json_t *load_signed_file(const char *path, const char *key, X509 *signer, const char *what, scp_err *err) {
    uint8_t *buf = NULL;
    size_t len = 0;
    scp_err e;
    if (scp_read_file(AT_FDCWD, path, 1 << 20, &buf, &len, &e) < 0) {
        scp_fail(err, e.sys == ENOENT ? SCP_E_NOENT : e.code, e.sys, "missing attestation collateral: %s: %s", what,
                 path);
        return NULL;
    }
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ')) len--;
    char prefix[64];
    int pl = snprintf(prefix, sizeof prefix, "{\"%s\":", key);
    static const char sig_key[] = ",\"signature\":\"";
    size_t sk = sizeof sig_key - 1, tail = sk + 128 + 2; /* ,"signature":" 128 hex "} */
    json_t *obj = NULL;
    uint8_t sig[64];
    if (len < (size_t)pl + tail || memcmp(buf, prefix, (size_t)pl) != 0 ||
        memcmp(buf + len - tail, sig_key, sk) != 0 || memcmp(buf + len - 2, "\"}", 2) != 0) {
        scp_fail(err, SCP_E_FORMAT, EIO, "%s: not a signed Intel PCS %s response", path, key);
        goto out;
    }
    char hex[129];
    memcpy(hex, buf + len - tail + sk, 128);
    hex[128] = 0;
    const uint8_t *body = buf + pl;
    size_t body_len = len - tail - (size_t)pl;
    if (scp_unhex(hex, sig, 64) < 0) {
        scp_fail(err, SCP_E_FORMAT, EIO, "%s: signature is not hex", path);
        goto out;
    }
    if (hw_ecdsa_verify_rs(X509_get0_pubkey(signer), EVP_sha256(), body, body_len, sig, sig + 32, 32, 0, err) < 0) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "%s: signature by Intel's TCB signing key does not verify", path);
        goto out;
    }
    json_error_t je;
    obj = json_loadb((const char *)body, body_len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(obj)) {
        json_decref(obj);
        obj = NULL;
        scp_fail(err, SCP_E_FORMAT, EIO, "%s: not a JSON object", path);
    }
out:
    free(buf);
    return obj;
}

static int svn_array(json_t *arr, uint8_t out[16]) {
    if (!json_is_array(arr) || json_array_size(arr) != 16) return -1;
    for (size_t i = 0; i < 16; i++) {
        json_int_t v = json_integer_value(json_object_get(json_array_get(arr, i), "svn"));
        if (!json_is_integer(json_object_get(json_array_get(arr, i), "svn")) || v < 0 || v > 255) return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

static int hex_field(json_t *o, const char *k, uint8_t *out, size_t n) {
    const char *s = json_string_value(json_object_get(o, k));
    return s && strlen(s) == 2 * n && scp_unhex(s, out, n) == 0 ? 0 : -1;
}

/* Platform TCB status from TCB info. */
static int eval_tcb_info(json_t *ti, const scp_dcap_quote *q, const dcap_pck_info *pk, int *status, scp_err *err) {
    int tdx = q->tee_type == SCP_DCAP_TEE_TDX;
    const char *id = json_string_value(json_object_get(ti, "id"));
    uint8_t fmspc[6], pceid[2];
    if (!id || strcmp(id, tdx ? "TDX" : "SGX") != 0 || hex_field(ti, "fmspc", fmspc, 6) < 0 ||
        hex_field(ti, "pceId", pceid, 2) < 0)
        return scp_fail(err, SCP_E_FORMAT, EIO, "TCB info: wrong id, or unreadable fmspc/pceId");
    if (memcmp(fmspc, pk->fmspc, 6) != 0 || memcmp(pceid, pk->pceid, 2) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "TCB info is for another platform (FMSPC or PCE id differs)");
    if (tdx) {
        json_t *mod = json_object_get(ti, "tdxModule");
        uint8_t mrs[48], attr[8], mask[8];
        if (hex_field(mod, "mrsigner", mrs, 48) < 0 || hex_field(mod, "attributes", attr, 8) < 0 ||
            hex_field(mod, "attributesMask", mask, 8) < 0)
            return scp_fail(err, SCP_E_FORMAT, EIO, "TCB info: unreadable tdxModule");
        if (memcmp(mrs, q->mrsignerseam, 48) != 0)
            return scp_fail(err, SCP_E_POLICY, EACCES, "TDX module signer (MRSIGNERSEAM) is not Intel's per TCB info");
        for (int i = 0; i < 8; i++)
            if ((q->seam_attributes[i] & mask[i]) != attr[i])
                return scp_fail(err, SCP_E_POLICY, EACCES, "TDX module attributes do not match TCB info");
    }
    json_t *levels = json_object_get(ti, "tcbLevels");
    if (!json_is_array(levels)) return scp_fail(err, SCP_E_FORMAT, EIO, "TCB info: no tcbLevels");
    for (size_t i = 0; i < json_array_size(levels); i++) {
        json_t *lv = json_array_get(levels, i), *tcb = json_object_get(lv, "tcb");
        uint8_t sgx[16], tdxc[16];
        json_t *pce = json_object_get(tcb, "pcesvn");
        if (svn_array(json_object_get(tcb, "sgxtcbcomponents"), sgx) < 0 || !json_is_integer(pce) ||
            (tdx && svn_array(json_object_get(tcb, "tdxtcbcomponents"), tdxc) < 0))
            return scp_fail(err, SCP_E_FORMAT, EIO, "TCB info: unreadable TCB level %zu", i);
        int ok = pk->pcesvn >= json_integer_value(pce);
        for (int k = 0; k < 16 && ok; k++) ok = pk->comp[k] >= sgx[k] && (!tdx || q->tee_tcb_svn[k] >= tdxc[k]);
        if (!ok) continue;
        if (tdx && tdxc[1] != q->tee_tcb_svn[1])
            return scp_fail(err, SCP_E_POLICY, EACCES,
                            "TDX module version (TEE_TCB_SVN[1] = %u) is not the one TCB info describes (%u)",
                            q->tee_tcb_svn[1], tdxc[1]);
        *status = status_of(json_string_value(json_object_get(lv, "tcbStatus")));
        if (*status < 0) return scp_fail(err, SCP_E_FORMAT, EIO, "TCB info: unknown tcbStatus in level %zu", i);
        return 0;
    }
    return scp_fail(err, SCP_E_POLICY, EACCES, "platform TCB is below every level in Intel's TCB info (unsupported)");
}

/* The quoting enclave is Intel's, at a known TCB. */
static int eval_qe_identity(json_t *qi, const scp_dcap_quote *q, int *status, scp_err *err) {
    int tdx = q->tee_type == SCP_DCAP_TEE_TDX;
    const char *id = json_string_value(json_object_get(qi, "id"));
    const uint8_t *r = q->qe_report;
    uint8_t mrs[32], misc[4], miscm[4], attr[16], attrm[16];
    json_t *prod = json_object_get(qi, "isvprodid");
    if (!id || strcmp(id, tdx ? "TD_QE" : "QE") != 0 || hex_field(qi, "mrsigner", mrs, 32) < 0 ||
        hex_field(qi, "miscselect", misc, 4) < 0 || hex_field(qi, "miscselectMask", miscm, 4) < 0 ||
        hex_field(qi, "attributes", attr, 16) < 0 || hex_field(qi, "attributesMask", attrm, 16) < 0 ||
        !json_is_integer(prod))
        return scp_fail(err, SCP_E_FORMAT, EIO, "QE identity: wrong id or unreadable fields");
    uint32_t qmisc = (uint32_t)r[16] | (uint32_t)r[17] << 8 | (uint32_t)r[18] << 16 | (uint32_t)r[19] << 24;
    uint32_t emisc = (uint32_t)misc[0] << 24 | (uint32_t)misc[1] << 16 | (uint32_t)misc[2] << 8 | misc[3];
    uint32_t mmisc = (uint32_t)miscm[0] << 24 | (uint32_t)miscm[1] << 16 | (uint32_t)miscm[2] << 8 | miscm[3];
    int ok = memcmp(r + 128, mrs, 32) == 0 && (r[256] | r[257] << 8) == json_integer_value(prod) &&
             (qmisc & mmisc) == emisc;
    for (int i = 0; i < 16 && ok; i++) ok = (r[48 + i] & attrm[i]) == attr[i];
    if (!ok) return scp_fail(err, SCP_E_INTEGRITY, EIO, "the quoting enclave is not the one Intel's QE identity names");
    unsigned isvsvn = (unsigned)(r[258] | r[259] << 8);
    json_t *levels = json_object_get(qi, "tcbLevels");
    for (size_t i = 0; i < json_array_size(levels); i++) {
        json_t *lv = json_array_get(levels, i), *svn = json_object_get(json_object_get(lv, "tcb"), "isvsvn");
        if (!json_is_integer(svn)) return scp_fail(err, SCP_E_FORMAT, EIO, "QE identity: unreadable TCB level");
        if (isvsvn < json_integer_value(svn)) continue;
        *status = status_of(json_string_value(json_object_get(lv, "tcbStatus")));
        if (*status < 0) return scp_fail(err, SCP_E_FORMAT, EIO, "QE identity: unknown tcbStatus");
        return 0;
    }
    return scp_fail(err, SCP_E_POLICY, EACCES, "quoting enclave ISVSVN %u is below every level of Intel's QE identity",
                    isvsvn);
}

int dcap_tcb_evaluate(const scp_dcap_quote *q, X509 *pck, const char *dir, const uint8_t root_pin[32], int64_t now,
                      int *status, scp_err *err) {
    dcap_pck_info pk;
    if (dcap_pck_tcb(pck, &pk, err) < 0) return -1;
    X509 *signer = tcb_signer(dir, root_pin, now, err);
    if (!signer) return -1;
    int tdx = q->tee_type == SCP_DCAP_TEE_TDX, rc = -1, ts = -1, qs = -1;
    char fm[13], name[64];
    scp_hex(pk.fmspc, 6, fm);
    snprintf(name, sizeof name, "tcbinfo-%s-%s.json", tdx ? "tdx" : "sgx", fm);
    json_t *ti = load_signed(dir, name, "tcbInfo", signer, now, "Intel TCB info for this FMSPC", err), *qi = NULL;
    if (!ti) goto out;
    snprintf(name, sizeof name, "qeidentity-%s.json", tdx ? "tdx" : "sgx");
    qi = load_signed(dir, name, "enclaveIdentity", signer, now, "Intel QE identity", err);
    if (!qi || eval_qe_identity(qi, q, &qs, err) < 0 || eval_tcb_info(ti, q, &pk, &ts, err) < 0) goto out;
    *status = ts > qs ? ts : qs; /* the worse of the two (statuses are ordered by severity) */
    rc = 0;
out:
    json_decref(ti);
    json_decref(qi);
    X509_free(signer);
    return rc;
}
