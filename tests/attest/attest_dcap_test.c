/* tests/attest/attest_dcap_test.c - the Intel DCAP quote verifier against a TDX quote v4
 * recorded on a real Sapphire Rapids machine (tests/attest/data, sources in its README), with
 * Intel's CRLs of that time, and synthetic quotes under a test PKI that tests/attest/mkpki.sh
 * made with the openssl binary.
 *
 * usage: attest_dcap_test DATA_DIR PKI_DIR TMP_DIR */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest_hw.h"

static int failures;
#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                            \
        }                                                                          \
    } while (0)

static const char *data_dir, *pki_dir, *tmp_dir;
#define RECORDED_NOW 1687219200 /* 2023-06-20, inside the recorded CRLs' validity */

static uint8_t *slurp(const char *dir, const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf = NULL;
    scp_err e;
    if (scp_read_file(AT_FDCWD, path, 1 << 20, &buf, len, &e) < 0) {
        fprintf(stderr, "cannot read %s: %s\n", path, e.msg);
        exit(2);
    }
    return buf;
}

static void expect_fail(int rc, const scp_err *e, scp_code code, const char *msg_part, const char *what) {
    if (rc == 0) {
        fprintf(stderr, "%s: accepted, expected %s\n", what, scp_code_name(code));
        failures++;
        return;
    }
    if (e->code != code || (msg_part && !strstr(e->msg, msg_part))) {
        fprintf(stderr, "%s: got %s (%s), expected %s with '%s'\n", what, scp_code_name(e->code), e->msg,
                scp_code_name(code), msg_part ? msg_part : "");
        failures++;
    }
}

/* The DER certificates of a PEM region, concatenated (to tell a change in the certificates
 * from one in PEM's unauthenticated spelling, such as base64 padding bits). */
static size_t pem_der(const uint8_t *pem, size_t len, uint8_t *out, size_t cap) {
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    size_t n = 0;
    X509 *c;
    while (b && (c = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        uint8_t *der = NULL;
        int dl = i2d_X509(c, &der);
        if (dl > 0 && n + (size_t)dl <= cap) memcpy(out + n, der, (size_t)dl), n += (size_t)dl;
        OPENSSL_free(der);
        X509_free(c);
    }
    BIO_free(b);
    return n;
}

static const char *GTG_MRTD =
    "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb";

/* Intel's TCB info and QE identity of June 2023 for this platform (FMSPC 50806f000000), both
 * signed by Intel. The QE identity matches the quoting enclave; the PCK's SGX TCB components
 * (3,3,2,2,2,1,0,2) are below both TCB levels of that TCB info (5,5,2,2,3,1,0,3), so by Intel's
 * algorithm the platform's TCB is not supported: refused. */
static void tcb(uint8_t *qb, size_t len, const char *coll, const scp_dcap_policy *base) {
    scp_dcap_policy pol = *base;
    pol.allow_unevaluated_tcb = 0;
    scp_err e;
    scp_dcap_policy p2;
    expect_fail(scp_dcap_verify(qb, len, coll, &pol, NULL, &e), &e, SCP_E_POLICY, "below every level",
                "recorded TDX quote with TCB evaluation");
    printf("recorded TDX quote, TCB evaluated: %s\n", e.msg);
    /* Collateral copies: missing TCB info is named; an edited one fails its signature. */
    char dir[1024], cmd[16384], path[8192];
    snprintf(dir, sizeof dir, "%s/tcbcoll", tmp_dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp -r '%s/sgx' '%s/' && rm '%s/sgx/tcbinfo-tdx-50806f000000.json'",
             dir, dir, coll, dir, dir);
    CHECK(system(cmd) == 0);
    expect_fail(scp_dcap_verify(qb, len, dir, &pol, NULL, &e), &e, SCP_E_NOENT, "tcbinfo-tdx-50806f000000.json",
                "missing TCB info");
    printf("missing TCB info: %s\n", e.msg);
    snprintf(cmd, sizeof cmd, "sed 's/\"OutOfDate\"/\"UpToDate\"/' '%s/sgx/tcbinfo-tdx-50806f000000.json' > '%s/sgx/tcbinfo-tdx-50806f000000.json'",
             coll, dir);
    CHECK(system(cmd) == 0);
    expect_fail(scp_dcap_verify(qb, len, dir, &pol, NULL, &e), &e, SCP_E_INTEGRITY, "TCB signing key",
                "edited TCB info");
    snprintf(path, sizeof path, "%s/sgx/qeidentity-tdx.json", dir);
    CHECK(unlink(path) == 0);
    snprintf(cmd, sizeof cmd, "cp '%s/sgx/tcbinfo-tdx-50806f000000.json' '%s/sgx/'", coll, dir);
    CHECK(system(cmd) == 0);
    expect_fail(scp_dcap_verify(qb, len, dir, &pol, NULL, &e), &e, SCP_E_NOENT, "QE identity", "missing QE identity");
    /* After July 2023 the collateral has expired (the PCK CRL first, on 2023-07-08). */
    p2 = pol;
    p2.now = 1689724800; /* 2023-07-19 */
    expect_fail(scp_dcap_verify(qb, len, coll, &p2, NULL, &e), &e, SCP_E_INTEGRITY, "expired", "expired collateral");
}

static void recorded(void) {
    size_t len;
    uint8_t *qb = slurp(data_dir, "tdx/gtg-spr-quote-v4.dat", &len);
    char coll[4096];
    snprintf(coll, sizeof coll, "%s/collateral", data_dir);
    scp_dcap_quote q;
    scp_err e;
    CHECK(scp_dcap_quote_parse(qb, len, &q, &e) == 0);
    uint8_t rd[64], mrtd[48];
    memcpy(rd, q.report_data, 64);
    CHECK(scp_unhex(GTG_MRTD, mrtd, 48) == 0);
    scp_dcap_policy pol = {.report_data = rd, .mrtd = mrtd, .allow_unevaluated_tcb = 1, .now = RECORDED_NOW};
    scp_dcap_quote out;
    int rc = scp_dcap_verify(qb, len, coll, &pol, &out, &e);
    if (rc) fprintf(stderr, "recorded TDX quote: %s\n", e.msg);
    CHECK(rc == 0);
    CHECK(out.tee_type == SCP_DCAP_TEE_TDX && out.version == 4);
    printf("recorded TDX quote v4: accepted, MRTD %s\n", GTG_MRTD);

    CHECK(out.tcb_status == SCP_DCAP_TCB_UNEVALUATED);
    tcb(qb, len, coll, &pol);
    scp_dcap_policy p2;

    /* One bit of every byte (bit = offset mod 8) flipped alone is refused; before the PEM chain
     * an integrity failure except in the structural fields (version, key type, TEE type, QE
     * vendor, lengths and types), which are format errors or an unsupported vendor. */
    size_t pem = (size_t)(q.pck_chain - qb);
    unsigned refused = 0, integrity = 0;
    for (size_t off = 0; off < len; off++) {
        int bit = (int)(off % 8);
        qb[off] ^= (uint8_t)(1u << bit);
        memset(&e, 0, sizeof e);
        rc = scp_dcap_verify(qb, len, coll, &pol, NULL, &e);
        qb[off] ^= (uint8_t)(1u << bit);
        if (rc == 0) {
            /* Only a flip that leaves the certificates' bytes unchanged may pass. */
            static uint8_t a[16384], b2[16384];
            qb[off] ^= (uint8_t)(1u << bit);
            size_t na = off >= pem ? pem_der(qb + pem, len - pem, a, sizeof a) : 0;
            qb[off] ^= (uint8_t)(1u << bit);
            size_t nb = pem_der(qb + pem, len - pem, b2, sizeof b2);
            if (off < pem || na != nb || memcmp(a, b2, na) != 0) {
                fprintf(stderr, "TDX quote: bit %d of byte %#zx flipped: accepted\n", bit, off);
                failures++;
            } else {
                printf("TDX quote: bit %d of byte %#zx (PEM base64 padding) flipped: same certificates, accepted\n",
                       bit, off);
            }
            continue;
        }
        refused++;
        integrity += e.code == SCP_E_INTEGRITY;
        size_t sig = 48 + 584; /* u32 signature data length */
        int structural = off < 28 || (off >= sig && off < sig + 4) || (off >= sig + 132 && off < sig + 138) ||
                         (off >= sig + 138 + 448 && off < sig + 138 + 450) ||
                         (off >= pem - 6 && off < pem);
        if (off < pem && !structural && e.code != SCP_E_INTEGRITY) {
            fprintf(stderr, "TDX quote: byte %#zx bit %d: %s (%s)\n", off, bit, scp_code_name(e.code), e.msg);
            failures++;
        }
    }
    printf("recorded TDX quote: %u of %zu single-bit flips refused (%u as integrity failures)\n", refused, len,
           integrity);

    uint8_t rd2[64];
    memcpy(rd2, rd, 64);
    rd2[63] ^= 1;
    p2 = pol;
    p2.report_data = rd2;
    expect_fail(scp_dcap_verify(qb, len, coll, &p2, NULL, &e), &e, SCP_E_INTEGRITY, "report data", "wrong report data");
    uint8_t m2[48];
    memcpy(m2, mrtd, 48);
    m2[0] ^= 1;
    p2 = pol;
    p2.mrtd = m2;
    expect_fail(scp_dcap_verify(qb, len, coll, &p2, NULL, &e), &e, SCP_E_POLICY, "MRTD", "other MRTD");
    /* Today the recorded CRLs are long past their next update: expired collateral. */
    p2 = pol;
    p2.now = 0;
    expect_fail(scp_dcap_verify(qb, len, coll, &p2, NULL, &e), &e, SCP_E_INTEGRITY, "CRL expired", "expired CRL");
    printf("expired collateral: %s\n", e.msg);
    /* The test root is not Intel's. */
    uint8_t other[32] = {1};
    p2 = pol;
    p2.root_sha256 = other;
    expect_fail(scp_dcap_verify(qb, len, coll, &p2, NULL, &e), &e, SCP_E_INTEGRITY, "Intel's SGX Root CA", "other root");
    /* Missing CRL collateral is named. */
    char empty[4096];
    snprintf(empty, sizeof empty, "%s/empty", tmp_dir);
    CHECK(mkdir(empty, 0700) == 0 || errno == EEXIST);
    expect_fail(scp_dcap_verify(qb, len, empty, &pol, NULL, &e), &e, SCP_E_NOENT, "rootcrl.der", "missing root CRL");
    printf("missing collateral: %s\n", e.msg);
    /* Bytes after the quote. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, qb, len);
    longer[len] = 0;
    expect_fail(scp_dcap_verify(longer, len + 1, coll, &pol, NULL, &e), &e, SCP_E_FORMAT, NULL, "trailing byte");
    free(longer);
    free(qb);
}

/* An SGX quote v3 recorded on a live system (Processor CA chain), from a debug enclave
 * (ATTRIBUTES 0x07): authentic, so the verdict is the debug refusal, reached after every
 * integrity check; any single-bit change is refused before that. */
static void recorded_sgx(void) {
    size_t len;
    uint8_t *qb = slurp(data_dir, "sgx/mc-sgx-quote-v3.dat", &len);
    char coll[4096];
    snprintf(coll, sizeof coll, "%s/collateral", data_dir);
    scp_dcap_quote q;
    scp_err e;
    CHECK(scp_dcap_quote_parse(qb, len, &q, &e) == 0);
    CHECK(q.version == 3 && q.tee_type == SCP_DCAP_TEE_SGX);
    scp_dcap_policy pol = {.report_data = q.report_data, .allow_unevaluated_tcb = 1, .now = 1683000000 /* 2023-05-02 */};
    expect_fail(scp_dcap_verify(qb, len, coll, &pol, NULL, &e), &e, SCP_E_POLICY, "debug enclave", "recorded SGX quote");
    printf("recorded SGX quote v3: refused: %s\n", e.msg);
    size_t pem = (size_t)(q.pck_chain - qb), sig = 48 + 384;
    unsigned refused = 0;
    for (size_t off = 0; off < pem; off++) {
        int bit = (int)(off % 8);
        qb[off] ^= (uint8_t)(1u << bit);
        memset(&e, 0, sizeof e);
        int rc = scp_dcap_verify(qb, len, coll, &pol, NULL, &e);
        qb[off] ^= (uint8_t)(1u << bit);
        int structural = off < 28 || (off >= sig && off < sig + 4) || (off >= sig + 132 + 448 && off < sig + 132 + 450) ||
                         off >= pem - 6;
        if (rc == 0 || (!structural && e.code != SCP_E_INTEGRITY)) {
            fprintf(stderr, "SGX quote: byte %#zx bit %d: %s (%s)\n", off, bit, rc ? scp_code_name(e.code) : "accepted",
                    e.msg);
            failures++;
        } else {
            refused++;
        }
    }
    printf("recorded SGX quote: %u of %zu single-bit flips before the PEM chain refused as expected\n", refused, pem);
    scp_dcap_policy p2 = pol;
    p2.now = 0;
    expect_fail(scp_dcap_verify(qb, len, coll, &p2, NULL, &e), &e, SCP_E_INTEGRITY, "CRL expired", "SGX: expired CRL");
    free(qb);
}

/* ---- synthetic quotes under the test PKI ------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static EVP_PKEY *load_key(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sgx/%s", pki_dir, name);
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    if (!k) {
        fprintf(stderr, "cannot load %s\n", path);
        exit(2);
    }
    return k;
}

/* ECDSA P-256 SHA-256 signature as big-endian r || s. */
static void sign_rs(EVP_PKEY *k, const uint8_t *msg, size_t len, uint8_t out[64]) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t der[128];
    size_t dl = sizeof der;
    if (!c || EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, k) != 1 || EVP_DigestSign(c, der, &dl, msg, len) != 1)
        exit(2);
    EVP_MD_CTX_free(c);
    const uint8_t *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dl);
    if (!sig || BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32) != 32)
        exit(2);
    ECDSA_SIG_free(sig);
}

typedef struct qspec {
    int version;          /* 4: TDX, 3: SGX */
    int debug;            /* TUD.DEBUG / SGX DEBUG attribute */
    uint16_t isvsvn;
    const char *chain;    /* file in PKI_DIR/sgx */
    const char *pck_key;
    int bad_qe_binding;   /* QE report data not over this attestation key */
    uint8_t report_data[64];
} qspec;

static const uint8_t intel_vendor[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                         0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

static uint8_t *build_quote(const qspec *s, size_t *out_len) {
    size_t clen;
    uint8_t *chain = slurp(pki_dir, s->chain, &clen);
    EVP_PKEY *pck = load_key(s->pck_key), *ak = EVP_EC_gen("P-256");
    uint8_t pub[65];
    size_t pl = 0;
    if (!ak || EVP_PKEY_get_octet_string_param(ak, "pub", pub, sizeof pub, &pl) != 1 || pl != 65) exit(2);
    size_t body = s->version == 4 ? 584 : 384, auth_len = 32;
    size_t qe_part = 384 + 64 + 2 + auth_len + 6 + clen;
    size_t sig_len = 128 + (s->version == 4 ? 6 : 0) + qe_part;
    size_t len = 48 + body + 4 + sig_len;
    uint8_t *q = calloc(1, len);
    put16(q, (uint16_t)s->version);
    put16(q + 2, 2);
    put32(q + 4, s->version == 4 ? 0x81 : 0);
    memcpy(q + 12, intel_vendor, 16);
    uint8_t *b = q + 48;
    if (s->version == 4) {
        memset(b + 136, 0x42, 48); /* MRTD */
        b[120] = s->debug ? 1 : 0;
        memcpy(b + 520, s->report_data, 64);
    } else {
        b[48] = s->debug ? 2 : 0;
        memset(b + 64, 0x43, 32); /* MRENCLAVE */
        memset(b + 128, 0x44, 32); /* MRSIGNER */
        put16(b + 258, s->isvsvn);
        memcpy(b + 320, s->report_data, 64);
    }
    uint8_t *p = q + 48 + body;
    put32(p, (uint32_t)sig_len);
    p += 4;
    uint8_t *sig = p;
    memcpy(p + 64, pub + 1, 64);
    p += 128;
    if (s->version == 4) {
        put16(p, 6);
        put32(p + 2, (uint32_t)qe_part);
        p += 6;
    }
    uint8_t *qe = p, auth[32];
    memset(auth, 0x5a, sizeof auth);
    struct scp_buf parts[2] = {{pub + 1, 64}, {auth, s->bad_qe_binding ? 31 : 32}};
    scp_sha256(parts, 2, qe + 320);
    sign_rs(pck, qe, 384, qe + 384);
    p += 384 + 64;
    put16(p, (uint16_t)auth_len);
    memcpy(p + 2, auth, auth_len);
    p += 2 + auth_len;
    put16(p, 5);
    put32(p + 2, (uint32_t)clen);
    memcpy(p + 6, chain, clen);
    sign_rs(ak, q, 48 + body, sig);
    EVP_PKEY_free(ak);
    EVP_PKEY_free(pck);
    free(chain);
    *out_len = len;
    return q;
}

static int verify_spec(const qspec *s, const scp_dcap_policy *pol, scp_err *e) {
    size_t len;
    uint8_t *q = build_quote(s, &len);
    char coll[4096];
    snprintf(coll, sizeof coll, "%s/sgxcoll", pki_dir);
    memset(e, 0, sizeof *e);
    int rc = scp_dcap_verify(q, len, coll, pol, NULL, e);
    free(q);
    return rc;
}

/* Write DIR/sgx/name = {"key":obj,"signature":"<r||s hex>"} signed by the test TCB signing key. */
static void write_signed(const char *dir, const char *name, const char *key, const char *obj) {
    EVP_PKEY *k = load_key("tcbsign.key");
    uint8_t sig[64];
    char hex[129], path[8192];
    sign_rs(k, (const uint8_t *)obj, strlen(obj), sig);
    EVP_PKEY_free(k);
    scp_hex(sig, 64, hex);
    snprintf(path, sizeof path, "%s/sgx/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fprintf(f, "{\"%s\":%s,\"signature\":\"%s\"}\n", key, obj, hex);
        fclose(f);
    }
}

/* Synthetic TCB info and QE identity for the test platform (the PCK's SGX extension is the
 * recorded one: components 3,3,2,2,2,1,0,2, PCESVN 11), with the given platform status. */
static void synth_collateral(const char *dir, const char *status, int sgx_comp0) {
    char cmd[16384], obj[4096], comps[1024] = "", tdxc[1024] = "";
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp -r '%s/sgxcoll/sgx' '%s/'", dir, dir, pki_dir, dir);
    CHECK(system(cmd) == 0);
    static const int sv[16] = {3, 3, 2, 2, 2, 1, 0, 2};
    for (int i = 0; i < 16; i++) {
        size_t l = strlen(comps), m = strlen(tdxc);
        snprintf(comps + l, sizeof comps - l, "%s{\"svn\":%d}", i ? "," : "", i == 0 ? sgx_comp0 : sv[i]);
        snprintf(tdxc + m, sizeof tdxc - m, "%s{\"svn\":0}", i ? "," : "");
    }
    snprintf(obj, sizeof obj,
             "{\"id\":\"TDX\",\"version\":3,\"issueDate\":\"2026-01-01T00:00:00Z\",\"nextUpdate\":\"2099-01-01T00:00:00Z\","
             "\"fmspc\":\"50806f000000\",\"pceId\":\"0000\",\"tcbType\":0,\"tdxModule\":{\"mrsigner\":\"%096d\","
             "\"attributes\":\"0000000000000000\",\"attributesMask\":\"FFFFFFFFFFFFFFFF\"},\"tcbLevels\":["
             "{\"tcb\":{\"sgxtcbcomponents\":[%s],\"pcesvn\":11,\"tdxtcbcomponents\":[%s]},\"tcbStatus\":\"%s\"}]}",
             0, comps, tdxc, status);
    write_signed(dir, "tcbinfo-tdx-50806f000000.json", "tcbInfo", obj);
    snprintf(obj, sizeof obj,
             "{\"id\":\"TD_QE\",\"version\":2,\"issueDate\":\"2026-01-01T00:00:00Z\",\"nextUpdate\":\"2099-01-01T00:00:00Z\","
             "\"miscselect\":\"00000000\",\"miscselectMask\":\"FFFFFFFF\",\"attributes\":\"%032d\","
             "\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",\"mrsigner\":\"%064d\",\"isvprodid\":0,"
             "\"tcbLevels\":[{\"tcb\":{\"isvsvn\":0},\"tcbStatus\":\"UpToDate\"}]}",
             0, 0);
    write_signed(dir, "qeidentity-tdx.json", "enclaveIdentity", obj);
}

static int verify_in(const qspec *s, const char *dir, const scp_dcap_policy *pol, scp_dcap_quote *out, scp_err *e) {
    size_t len;
    uint8_t *q = build_quote(s, &len);
    memset(e, 0, sizeof *e);
    int rc = scp_dcap_verify(q, len, dir, pol, out, e);
    free(q);
    return rc;
}

static void synthetic_tcb(const qspec *s, const uint8_t root[32]) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/synthtcb", tmp_dir);
    scp_dcap_policy pol = {.report_data = s->report_data, .root_sha256 = root};
    scp_dcap_quote out;
    scp_err e;
    synth_collateral(dir, "UpToDate", 3);
    int rc = verify_in(s, dir, &pol, &out, &e);
    if (rc) fprintf(stderr, "synthetic TCB UpToDate: %s\n", e.msg);
    CHECK(rc == 0 && out.tcb_status == SCP_DCAP_TCB_UP_TO_DATE);
    synth_collateral(dir, "SWHardeningNeeded", 3);
    expect_fail(verify_in(s, dir, &pol, NULL, &e), &e, SCP_E_POLICY, "SWHardeningNeeded is not accepted",
                "SWHardeningNeeded by default");
    scp_dcap_policy p2 = pol;
    p2.accept_tcb = 1u << SCP_DCAP_TCB_UP_TO_DATE | 1u << SCP_DCAP_TCB_SW_HARDENING_NEEDED;
    rc = verify_in(s, dir, &p2, &out, &e);
    CHECK(rc == 0 && out.tcb_status == SCP_DCAP_TCB_SW_HARDENING_NEEDED);
    synth_collateral(dir, "Revoked", 3);
    p2.accept_tcb = ~0u;
    expect_fail(verify_in(s, dir, &p2, NULL, &e), &e, SCP_E_POLICY, "Revoked", "Revoked even if accepted");
    printf("revoked TCB: %s\n", e.msg);
    /* A level that needs a newer component than the PCK certifies: below every level. */
    synth_collateral(dir, "UpToDate", 4);
    expect_fail(verify_in(s, dir, &pol, NULL, &e), &e, SCP_E_POLICY, "below every level", "TCB below the level");
}

static void synthetic(void) {
    size_t n;
    char *hex = (char *)slurp(pki_dir, "sgx/root.sha256", &n);
    uint8_t root[32];
    CHECK(n >= 64 && scp_unhex((hex[64] = 0, hex), root, 32) == 0);
    free(hex);
    uint8_t nonce[32], pub[32], meas[32], rd[64];
    memset(nonce, 7, 32), memset(pub, 8, 32), memset(meas, 9, 32);
    scp_err e;
    CHECK(scp_hw_report_data(nonce, pub, meas, rd, &e) == 0);
    qspec s = {.version = 4, .chain = "sgx/chain.pem", .pck_key = "pck.key", .isvsvn = 5};
    memcpy(s.report_data, rd, 64);
    uint8_t mrtd[48], mre[32], mrs[32];
    memset(mrtd, 0x42, 48), memset(mre, 0x43, 32), memset(mrs, 0x44, 32);
    scp_dcap_policy pol = {.report_data = rd, .mrtd = mrtd, .allow_unevaluated_tcb = 1, .root_sha256 = root};
    int rc = verify_spec(&s, &pol, &e);
    if (rc) fprintf(stderr, "synthetic TDX: %s\n", e.msg);
    CHECK(rc == 0);

    qspec d = s;
    d.debug = 1;
    expect_fail(verify_spec(&d, &pol, &e), &e, SCP_E_POLICY, "debug TD", "debug TD");
    printf("debug TD: %s\n", e.msg);
    d = s;
    d.chain = "sgx/chain-revoked.pem", d.pck_key = "pck2.key";
    expect_fail(verify_spec(&d, &pol, &e), &e, SCP_E_INTEGRITY, "revoked", "revoked PCK");
    printf("revoked PCK: %s\n", e.msg);
    d = s;
    d.bad_qe_binding = 1;
    expect_fail(verify_spec(&d, &pol, &e), &e, SCP_E_INTEGRITY, "does not certify this attestation key",
                "QE report over another key");
    /* Another nonce. */
    uint8_t rd2[64];
    nonce[0] ^= 1;
    CHECK(scp_hw_report_data(nonce, pub, meas, rd2, &e) == 0);
    scp_dcap_policy p2 = pol;
    p2.report_data = rd2;
    expect_fail(verify_spec(&s, &p2, &e), &e, SCP_E_INTEGRITY, "report data", "wrong nonce");
    p2 = pol;
    p2.root_sha256 = NULL;
    expect_fail(verify_spec(&s, &p2, &e), &e, SCP_E_INTEGRITY, "Intel's SGX Root CA", "test root without override");

    synthetic_tcb(&s, root);

    /* SGX quote v3. */
    qspec g = s;
    g.version = 3;
    scp_dcap_policy sp = {.report_data = rd, .mrenclave = mre, .mrsigner = mrs, .min_isvsvn = 5,
                          .allow_unevaluated_tcb = 1, .root_sha256 = root};
    rc = verify_spec(&g, &sp, &e);
    if (rc) fprintf(stderr, "synthetic SGX: %s\n", e.msg);
    CHECK(rc == 0);
    d = g;
    d.debug = 1;
    expect_fail(verify_spec(&d, &sp, &e), &e, SCP_E_POLICY, "debug enclave", "debug enclave");
    d = g;
    d.isvsvn = 4;
    expect_fail(verify_spec(&d, &sp, &e), &e, SCP_E_POLICY, "ISVSVN", "ISVSVN below minimum");
    p2 = sp;
    uint8_t other[32];
    memset(other, 0x45, 32);
    p2.mrsigner = other;
    expect_fail(verify_spec(&g, &p2, &e), &e, SCP_E_POLICY, "MRSIGNER", "other MRSIGNER");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DATA_DIR PKI_DIR TMP_DIR\n", argv[0]);
        return 2;
    }
    data_dir = argv[1], pki_dir = argv[2], tmp_dir = argv[3];
    recorded();
    recorded_sgx();
    synthetic();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all DCAP verifier checks passed\n");
    return 0;
}
