/* attest/snp.c - AMD SEV-SNP attestation report verifier (scp/attest_hw.h).
 *
 * Layout: AMD "SEV Secure Nested Paging Firmware ABI Specification" (pub. 56860), table
 * ATTESTATION_REPORT; integers little-endian. Versions 2, 3 (adds the CPUID family, model and
 * stepping at 0x188) and 5 (adds mitigation vectors at 0x1f8, which SCP does not read) share
 * every offset read here. The VCEK certifies one chip (hwID = CHIP_ID) at one TCB (its
 * blSPL/teeSPL/snpSPL/ucodeSPL extensions = REPORTED_TCB); the ASK certifies VCEKs of one
 * product and AMD's root key (ARK) the ASK, both signed with RSA-PSS (SHA-384).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "attest/dcap_tcb.h"
#include "attest/hw_x509.h"
#include "common/util.h"
#include "scp/attest.h"
#include "scp/attest_hw.h"

/* SHA-256 of AMD's ARK certificates (DER), as published at https://kdsintf.amd.com/vcek/v1/
 * <Product>/cert_chain (copies: tests/attest/data/amd/). */
static const struct snp_product {
    const char *name;
    uint8_t ark_sha256[32];
} snp_products[] = {
    {"Milan", {0x69, 0xd0, 0x63, 0xb4, 0x53, 0x44, 0xd2, 0x6a, 0x2e, 0x94, 0xe1, 0xf4, 0x21, 0x0d, 0xe4, 0x9e,
               0xf5, 0x55, 0x30, 0x82, 0x87, 0xd4, 0xc1, 0x74, 0x44, 0x5c, 0x95, 0x63, 0x9a, 0x54, 0x0b, 0xcd}},
    {"Genoa", {0x4c, 0x65, 0x98, 0xd1, 0x9c, 0x18, 0x71, 0x9c, 0x5d, 0xfd, 0x4a, 0x7d, 0x33, 0x5f, 0x67, 0x4e,
               0x5b, 0xfe, 0x1d, 0x8f, 0x80, 0x0c, 0xea, 0x2c, 0xf2, 0x70, 0xc1, 0x0d, 0x10, 0x3d, 0xb2, 0xf1}},
};

#define OID_AMD_PRODUCT "1.3.6.1.4.1.3704.1.2"
#define OID_AMD_BL_SPL "1.3.6.1.4.1.3704.1.3.1"
#define OID_AMD_TEE_SPL "1.3.6.1.4.1.3704.1.3.2"
#define OID_AMD_SNP_SPL "1.3.6.1.4.1.3704.1.3.3"
#define OID_AMD_UCODE_SPL "1.3.6.1.4.1.3704.1.3.8"
#define OID_AMD_HWID "1.3.6.1.4.1.3704.1.4"

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static scp_snp_tcb tcb_split(uint64_t raw) {
    /* Milan/Genoa TCB_VERSION: byte 0 boot loader, 1 TEE, 6 SNP, 7 microcode. */
    scp_snp_tcb t = {(uint8_t)raw, (uint8_t)(raw >> 8), (uint8_t)(raw >> 48), (uint8_t)(raw >> 56)};
    return t;
}

static int bad(scp_err *err, const char *why) {
    return scp_fail(err, SCP_E_FORMAT, EIO, "malformed SEV-SNP report: %s", why);
}

int scp_snp_report_parse(const uint8_t *b, size_t len, scp_snp_report *r, scp_err *err) {
    memset(r, 0, sizeof *r);
    if (!b || len != SCP_SNP_REPORT_LEN) return bad(err, "not 1184 bytes long");
    r->version = le32(b + 0x00);
    if (r->version != 2 && r->version != 3 && r->version != 5) return bad(err, "unsupported version");
    r->guest_svn = le32(b + 0x04);
    r->policy = le64(b + 0x08);
    memcpy(r->family_id, b + 0x10, 16);
    memcpy(r->image_id, b + 0x20, 16);
    r->vmpl = le32(b + 0x30);
    r->sig_algo = le32(b + 0x34);
    if (r->sig_algo != 1) return bad(err, "signature algorithm is not ECDSA P-384 with SHA-384");
    r->current_tcb_raw = le64(b + 0x38);
    r->flags = le32(b + 0x48);
    unsigned signing_key = (r->flags >> 2) & 7;
    if (signing_key != 0 && signing_key != 1 && signing_key != 7) return bad(err, "reserved signing key");
    memcpy(r->report_data, b + 0x50, 64);
    memcpy(r->measurement, b + 0x90, 48);
    memcpy(r->host_data, b + 0xc0, 32);
    memcpy(r->id_key_digest, b + 0xe0, 48);
    memcpy(r->author_key_digest, b + 0x110, 48);
    memcpy(r->report_id, b + 0x140, 32);
    r->reported_tcb_raw = le64(b + 0x180);
    r->reported_tcb = tcb_split(r->reported_tcb_raw);
    if (r->version >= 3) {
        r->cpuid_fam = b[0x188];
        r->cpuid_mod = b[0x189];
        r->cpuid_step = b[0x18a];
    }
    memcpy(r->chip_id, b + 0x1a0, 64);
    r->committed_tcb_raw = le64(b + 0x1e0);
    r->launch_tcb_raw = le64(b + 0x1f0);
    memcpy(r->sig_r, b + 0x2a0, 72);
    memcpy(r->sig_s, b + 0x2a0 + 72, 72);
    /* The tail is not signed: zero is its only spelling, so that no unsigned byte rides along. */
    for (size_t i = 0x2a0 + 144; i < SCP_SNP_REPORT_LEN; i++)
        if (b[i] != 0) return bad(err, "reserved bytes after the signature are not zero");
    return 0;
}

/* An SPL extension: DER INTEGER 0..255. */
static int vcek_spl(X509 *vcek, const char *oid, const char *name, uint8_t *out, scp_err *err) {
    size_t n = 0;
    const uint8_t *v = hw_cert_ext(vcek, oid, &n);
    if (!v) return scp_fail(err, SCP_E_FORMAT, EIO, "VCEK certificate lacks its %s extension", name);
    const uint8_t *p = v;
    ASN1_INTEGER *ai = d2i_ASN1_INTEGER(NULL, &p, (long)n);
    long val = -1;
    if (ai && p == v + n) val = ASN1_INTEGER_get(ai);
    ASN1_INTEGER_free(ai);
    if (val < 0 || val > 255) return scp_fail(err, SCP_E_FORMAT, EIO, "VCEK certificate: bad %s extension", name);
    *out = (uint8_t)val;
    return 0;
}

/* The product ("Milan" from "Milan-B0"): an IA5String extension. */
static const struct snp_product *vcek_product(X509 *vcek, scp_err *err) {
    size_t n = 0;
    const uint8_t *v = hw_cert_ext(vcek, OID_AMD_PRODUCT, &n);
    if (!v || n < 2 || v[0] != 0x16 || v[1] != n - 2 || n - 2 > 32) {
        scp_fail(err, SCP_E_FORMAT, EIO, "VCEK certificate lacks a readable product name");
        return NULL;
    }
    size_t plen = 0;
    while (plen < n - 2 && v[2 + plen] != '-') plen++;
    for (size_t i = 0; i < sizeof snp_products / sizeof snp_products[0]; i++)
        if (strlen(snp_products[i].name) == plen && memcmp(snp_products[i].name, v + 2, plen) == 0)
            return &snp_products[i];
    scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "SEV-SNP product '%.*s' is not supported (Milan, Genoa)", (int)(n - 2),
             (const char *)v + 2);
    return NULL;
}

/* The VCEK must be for this chip at exactly the TCB the report says it was signed under. */
static int vcek_matches(X509 *vcek, const scp_snp_report *r, scp_err *err) {
    scp_snp_tcb t = {0, 0, 0, 0};
    if (vcek_spl(vcek, OID_AMD_BL_SPL, "blSPL", &t.bootloader, err) < 0 ||
        vcek_spl(vcek, OID_AMD_TEE_SPL, "teeSPL", &t.tee, err) < 0 ||
        vcek_spl(vcek, OID_AMD_SNP_SPL, "snpSPL", &t.snp, err) < 0 ||
        vcek_spl(vcek, OID_AMD_UCODE_SPL, "ucodeSPL", &t.microcode, err) < 0)
        return -1;
    if (memcmp(&t, &r->reported_tcb, sizeof t) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "SEV-SNP report's reported TCB (bl %u tee %u snp %u ucode %u) is not the VCEK's "
                        "(bl %u tee %u snp %u ucode %u)",
                        r->reported_tcb.bootloader, r->reported_tcb.tee, r->reported_tcb.snp,
                        r->reported_tcb.microcode, t.bootloader, t.tee, t.snp, t.microcode);
    size_t n = 0;
    const uint8_t *hw = hw_cert_ext(vcek, OID_AMD_HWID, &n);
    if (hw && n == 66 && hw[0] == 0x04 && hw[1] == 64) hw += 2, n = 64; /* also accept a wrapped OCTET STRING */
    if (!hw || n != 64) return scp_fail(err, SCP_E_FORMAT, EIO, "VCEK certificate lacks its hwID extension");
    if (memcmp(hw, r->chip_id, 64) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "SEV-SNP report's chip id is not the VCEK's hwID");
    return 0;
}

static int cpu_matches(const scp_snp_report *r, const struct snp_product *p, scp_err *err) {
    if (r->version < 3) return 0; /* version 2 does not say */
    unsigned hi = r->cpuid_mod >> 4;
    int ok = r->cpuid_fam == 0x19 &&
             (strcmp(p->name, "Milan") == 0 ? hi == 0 : (hi == 1 || hi == 0xa));
    if (!ok)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "SEV-SNP report's CPU (family %#x model %#x) is not a %s",
                        r->cpuid_fam, r->cpuid_mod, p->name);
    return 0;
}

static X509 *load_vcek(const uint8_t *der, size_t len, const char *dir, const scp_snp_report *r, scp_err *err) {
    if (der) {
        X509 *certs[HW_CHAIN_MAX];
        int n = hw_certs_parse(der, len, certs, err);
        if (n < 0) {
            scp_err_prefix(err, "VCEK");
            return NULL;
        }
        if (n != 1) {
            hw_certs_free(certs, n);
            scp_fail(err, SCP_E_FORMAT, EIO, "VCEK: expected one certificate, found %d", n);
            return NULL;
        }
        return certs[0];
    }
    char chip[129], path[PATH_MAX];
    scp_hex(r->chip_id, 64, chip);
    if (snprintf(path, sizeof path, "%s/snp/vcek/%s-%016llx.der", dir, chip,
                 (unsigned long long)r->reported_tcb_raw) >= (int)sizeof path) {
        scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "collateral directory path too long");
        return NULL;
    }
    return hw_cert_load(path, "the VCEK of this chip at this TCB (AMD KDS vcek/v1/<Product>/<chip id>)", err);
}

/* Verified ARK/ASK pairs, so that a busy CAS parses AMD's certificates and checks their RSA
 * signatures once per collateral file, not once per report. An entry is keyed by both files'
 * content (SHA-256, hw_file_id_of) and by the pin it was checked against; editing or replacing
 * a file in the collateral directory misses the cache. Validity periods are checked again on
 * every use (they depend on the time). */
typedef hw_file_id file_id;
static struct ask_cache_ent {
    char ark_path[PATH_MAX];
    file_id ark_id, ask_id;
    uint8_t pin[32];
    X509 *ark, *ask;
} ask_cache[4];
static unsigned ask_cache_next;
static pthread_mutex_t ask_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static int same_id(const file_id *a, const file_id *b) { return memcmp(a->sha256, b->sha256, 32) == 0; }

/* On a hit, *ark and *ask get new references. */
static int ask_cache_get(const char *ark_path, const file_id *ark_id, const file_id *ask_id,
                         const uint8_t pin[32], X509 **ark, X509 **ask) {
    int hit = 0;
    pthread_mutex_lock(&ask_cache_lock);
    for (size_t i = 0; i < sizeof ask_cache / sizeof ask_cache[0] && !hit; i++) {
        struct ask_cache_ent *c = &ask_cache[i];
        if (c->ark && strcmp(c->ark_path, ark_path) == 0 && same_id(&c->ark_id, ark_id) &&
            same_id(&c->ask_id, ask_id) && memcmp(c->pin, pin, 32) == 0 && X509_up_ref(c->ark) == 1) {
            if (X509_up_ref(c->ask) != 1) {
                X509_free(c->ark);
                continue;
            }
            *ark = c->ark, *ask = c->ask;
            hit = 1;
        }
    }
    pthread_mutex_unlock(&ask_cache_lock);
    return hit;
}

static void ask_cache_put(const char *ark_path, const file_id *ark_id, const file_id *ask_id,
                          const uint8_t pin[32], X509 *ark, X509 *ask) {
    if (X509_up_ref(ark) != 1) return;
    if (X509_up_ref(ask) != 1) {
        X509_free(ark);
        return;
    }
    pthread_mutex_lock(&ask_cache_lock);
    struct ask_cache_ent *c = &ask_cache[ask_cache_next++ % (sizeof ask_cache / sizeof ask_cache[0])];
    X509_free(c->ark);
    X509_free(c->ask);
    snprintf(c->ark_path, sizeof c->ark_path, "%s", ark_path);
    c->ark_id = *ark_id, c->ask_id = *ask_id;
    memcpy(c->pin, pin, 32);
    c->ark = ark, c->ask = ask;
    pthread_mutex_unlock(&ask_cache_lock);
}

/* Load ARK and ASK, check the pin and the ARK -> ASK link (or take them from the cache). */
static int load_roots(const struct snp_product *p, const char *dir, const scp_snp_policy *pol, X509 **ark_out,
                      X509 **ask_out, scp_err *err) {
    char ark_path[PATH_MAX], ask_path[PATH_MAX];
    if (snprintf(ark_path, sizeof ark_path, "%s/snp/%s/ark.pem", dir, p->name) >= (int)sizeof ark_path ||
        snprintf(ask_path, sizeof ask_path, "%s/snp/%s/ask.pem", dir, p->name) >= (int)sizeof ask_path)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "collateral directory path too long");
    const uint8_t *pin = pol->ark_sha256 ? pol->ark_sha256 : p->ark_sha256;
    file_id ark_id, ask_id;
    int ids = hw_file_id_of(ark_path, &ark_id) == 0 && hw_file_id_of(ask_path, &ask_id) == 0;
    if (ids && ask_cache_get(ark_path, &ark_id, &ask_id, pin, ark_out, ask_out)) return 0;
    X509 *ark = hw_cert_load(ark_path, "AMD root key certificate (ARK)", err);
    if (!ark) return -1;
    X509 *ask = hw_cert_load(ask_path, "AMD SEV signing key certificate (ASK)", err);
    uint8_t fp[32];
    if (!ask || hw_cert_sha256(ark, fp, err) < 0) goto fail;
    if (memcmp(fp, pin, 32) != 0) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "%s is not AMD's root key for %s (its SHA-256 differs from the pinned one)",
                 ark_path, p->name);
        goto fail;
    }
    if (hw_cert_check_link(ark, ark, pol->now, "ARK", err) < 0 || hw_cert_check_link(ask, ark, pol->now, "ASK", err) < 0)
        goto fail;
    if (ids) ask_cache_put(ark_path, &ark_id, &ask_id, pin, ark, ask);
    *ark_out = ark, *ask_out = ask;
    return 0;
fail:
    X509_free(ask);
    X509_free(ark);
    return -1;
}

/* ARK (pinned) -> ASK -> VCEK. */
static int check_chain(X509 *vcek, const struct snp_product *p, const char *dir, const scp_snp_policy *pol,
                       scp_err *err) {
    X509 *ark = NULL, *ask = NULL;
    if (load_roots(p, dir, pol, &ark, &ask, err) < 0) return -1;
    int rc = hw_cert_check_time(ark, pol->now, "ARK", err) < 0 || hw_cert_check_time(ask, pol->now, "ASK", err) < 0 ||
                     hw_cert_check_link(vcek, ask, pol->now, "VCEK", err) < 0
                 ? -1
                 : 0;
    X509_free(ask);
    X509_free(ark);
    return rc;
}

static int check_signature(X509 *vcek, const uint8_t *report, const scp_snp_report *r, scp_err *err) {
    EVP_PKEY *k = X509_get0_pubkey(vcek);
    char group[32] = "";
    size_t glen = 0;
    if (!k || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof group, &glen) != 1 ||
        strcmp(group, "secp384r1") != 0)
        return scp_fail(err, SCP_E_FORMAT, EIO, "VCEK key is not ECDSA P-384");
    if (hw_ecdsa_verify_rs(k, EVP_sha384(), report, SCP_SNP_SIGNED_LEN, r->sig_r, r->sig_s, 72, 1, err) < 0) {
        scp_err_prefix(err, "SEV-SNP report");
        if (err) err->code = SCP_E_INTEGRITY;
        return -1;
    }
    return 0;
}

static int below(const scp_snp_tcb *have, const scp_snp_tcb *min) {
    return have->bootloader < min->bootloader || have->tee < min->tee || have->snp < min->snp ||
           have->microcode < min->microcode;
}

static int check_policy(const scp_snp_report *r, const scp_snp_policy *pol, scp_err *err) {
    if (r->policy & SCP_SNP_POLICY_DEBUG)
        return scp_fail(err, SCP_E_POLICY, EACCES, "SEV-SNP guest policy allows debugging: its memory is not private");
    if (r->vmpl > pol->max_vmpl)
        return scp_fail(err, SCP_E_POLICY, EACCES, "SEV-SNP report comes from VMPL %u (at most %u accepted)", r->vmpl,
                        pol->max_vmpl);
    if (below(&r->reported_tcb, &pol->min_tcb))
        return scp_fail(err, SCP_E_POLICY, EACCES,
                        "SEV-SNP TCB below the policy's minimum: reported bl %u tee %u snp %u ucode %u, "
                        "minimum bl %u tee %u snp %u ucode %u",
                        r->reported_tcb.bootloader, r->reported_tcb.tee, r->reported_tcb.snp,
                        r->reported_tcb.microcode, pol->min_tcb.bootloader, pol->min_tcb.tee, pol->min_tcb.snp,
                        pol->min_tcb.microcode);
    if (pol->measurement && memcmp(pol->measurement, r->measurement, 48) != 0) {
        char hex[97];
        scp_hex(r->measurement, 48, hex);
        return scp_fail(err, SCP_E_POLICY, EACCES, "SEV-SNP measurement %s is not the policy's", hex);
    }
    if (pol->host_data && memcmp(pol->host_data, r->host_data, 32) != 0)
        return scp_fail(err, SCP_E_POLICY, EACCES, "SEV-SNP host data is not the policy's");
    if (memcmp(pol->report_data, r->report_data, 64) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "SEV-SNP report data does not bind this CAS nonce and runtime key (replayed or foreign report)");
    return 0;
}

int scp_snp_verify(const uint8_t *report, size_t report_len, const uint8_t *vcek_der, size_t vcek_len,
                   const char *collateral_dir, const scp_snp_policy *pol, scp_snp_report *out, char *product,
                   scp_err *err) {
    if (!pol || !pol->report_data || !collateral_dir)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "SEV-SNP verification needs a policy with report data and a collateral directory");
    scp_snp_report r;
    if (scp_snp_report_parse(report, report_len, &r, err) < 0) return -1;
    unsigned signing_key = (r.flags >> 2) & 7;
    if (signing_key != 0)
        return scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "SEV-SNP report signed by %s: only VCEK-signed reports are supported",
                        signing_key == 1 ? "a VLEK" : "no key");
    if (r.flags & 2) return scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "SEV-SNP report has its signature masked (MASK_CHIP_KEY)");
    X509 *vcek = load_vcek(vcek_der, vcek_len, collateral_dir, &r, err);
    if (!vcek) return -1;
    int rc = -1;
    const struct snp_product *p = vcek_product(vcek, err);
    if (!p || check_chain(vcek, p, collateral_dir, pol, err) < 0 || check_signature(vcek, report, &r, err) < 0 ||
        vcek_matches(vcek, &r, err) < 0 || cpu_matches(&r, p, err) < 0 || check_policy(&r, pol, err) < 0)
        goto out;
    if (out) *out = r;
    if (product) snprintf(product, 16, "%s", p->name);
    rc = 0;
out:
    X509_free(vcek);
    return rc;
}

int scp_hw_chain_parse(const uint8_t *buf, size_t len, scp_err *err) {
    X509 *certs[HW_CHAIN_MAX];
    int n = hw_certs_parse(buf, len, certs, err);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        scp_err e;
        uint8_t v;
        (void)vcek_product(certs[i], &e);
        (void)vcek_spl(certs[i], OID_AMD_BL_SPL, "blSPL", &v, &e);
        (void)vcek_spl(certs[i], OID_AMD_UCODE_SPL, "ucodeSPL", &v, &e);
        (void)hw_cert_check_link(certs[i], certs[i + 1 < n ? i + 1 : i], 0, "certificate", &e);
        dcap_pck_info pk;
        (void)dcap_pck_tcb(certs[i], &pk, &e);
    }
    hw_certs_free(certs, n);
    return n;
}

int scp_hw_report_data(const uint8_t nonce[32], const uint8_t pubkey[32], const uint8_t measurement[32],
                       uint8_t out[64], scp_err *err) {
    return scp_hw_report_data_ik(nonce, pubkey, measurement, NULL, out, err);
}

/* The instance key comes last and has a fixed length, so evidence with and without one never
 * hash the same bytes. */
int scp_hw_report_data_ik(const uint8_t nonce[32], const uint8_t pubkey[32], const uint8_t measurement[32],
                          const uint8_t *instance_key, uint8_t out[64], scp_err *err) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = c && EVP_DigestInit_ex(c, EVP_sha512(), NULL) == 1 &&
             EVP_DigestUpdate(c, SCP_HW_REPORT_DATA_LABEL, sizeof SCP_HW_REPORT_DATA_LABEL) == 1 &&
             EVP_DigestUpdate(c, nonce, 32) == 1 && EVP_DigestUpdate(c, pubkey, 32) == 1 &&
             EVP_DigestUpdate(c, measurement, 32) == 1 &&
             (!instance_key || EVP_DigestUpdate(c, instance_key, SCP_INSTANCE_KEY_LEN) == 1) &&
             EVP_DigestFinal_ex(c, out, &n) == 1 && n == 64;
    EVP_MD_CTX_free(c);
    return ok ? 0 : scp_fail(err, SCP_E_CRYPTO, EIO, "cannot compute SHA-512");
}
