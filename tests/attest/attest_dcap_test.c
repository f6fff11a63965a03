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

    /* The TCB status is not evaluated: refused unless the policy allows it (fail closed). */
    scp_dcap_policy p2 = pol;
    p2.allow_unevaluated_tcb = 0;
    expect_fail(scp_dcap_verify(qb, len, coll, &p2, NULL, &e), &e, SCP_E_NOTSUP, "TCB info", "unevaluated TCB");

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

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DATA_DIR PKI_DIR TMP_DIR\n", argv[0]);
        return 2;
    }
    data_dir = argv[1], pki_dir = argv[2], tmp_dir = argv[3];
    recorded();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all DCAP verifier checks passed\n");
    return 0;
}
