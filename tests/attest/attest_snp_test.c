/* tests/attest/attest_snp_test.c - the SEV-SNP report verifier against reports recorded on
 * real Milan machines (tests/attest/data, sources in its README) and synthetic reports signed
 * under a test PKI that tests/attest/mkpki.sh made with the openssl binary.
 *
 * usage: attest_snp_test DATA_DIR PKI_DIR TMP_DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/util.h"
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

/* Expect refusal with code; msg_part must appear in the message (if not NULL). */
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

/* ---- recorded reports ------------------------------------------------------------------- */

/* The launch measurement of the virtee/sev recording (report bytes 0x90..0xbf). */
static const char *VIRTEE_MEASUREMENT =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

/* A recorded report and its VCEK. want_measurement: the expected launch measurement (hex).
 * debug_guest: the recording's guest policy allows debugging, so the verdict must be that
 * refusal (after the signature and chain were accepted). */
static void recorded(const char *report_name, const char *vcek_name, const char *want_measurement, int debug_guest) {
    size_t rlen, vlen;
    uint8_t *rep = slurp(data_dir, report_name, &rlen), *vcek = slurp(data_dir, vcek_name, &vlen);
    char coll[4096];
    snprintf(coll, sizeof coll, "%s/collateral", data_dir);
    scp_snp_report r;
    scp_err e;
    CHECK(scp_snp_report_parse(rep, rlen, &r, &e) == 0);
    uint8_t meas[48];
    scp_snp_policy pol = {.report_data = r.report_data, .measurement = meas};
    if (want_measurement) {
        CHECK(scp_unhex(want_measurement, meas, 48) == 0);
    } else {
        memcpy(meas, r.measurement, 48);
    }
    char product[16] = "";
    scp_snp_report out;
    int rc = scp_snp_verify(rep, rlen, vcek, vlen, coll, &pol, &out, product, &e);
    char hex[97];
    scp_hex(r.measurement, 48, hex);
    if (debug_guest) {
        CHECK(r.policy & SCP_SNP_POLICY_DEBUG);
        expect_fail(rc, &e, SCP_E_POLICY, "allows debugging", report_name);
        printf("%s: refused: %s\n", report_name, e.msg);
        /* Authentic otherwise: the verdict is the debug bit, not the signature or chain. */
        free(rep);
        free(vcek);
        return;
    }
    if (rc != 0) fprintf(stderr, "%s: %s\n", report_name, e.msg);
    CHECK(rc == 0);
    CHECK(strcmp(product, "Milan") == 0);
    CHECK(memcmp(out.measurement, meas, 48) == 0);
    printf("%s: accepted, version %u, measurement %s, reported TCB bl %u tee %u snp %u ucode %u\n", report_name,
           r.version, hex, r.reported_tcb.bootloader, r.reported_tcb.tee, r.reported_tcb.snp, r.reported_tcb.microcode);

    /* One bit of every byte of the report (bit = offset mod 8, so that each bit position is
     * hit across the report), flipped alone, is refused: an integrity failure in the signed
     * part and the signature, a format error in the version, algorithm and signing-key fields
     * and in the unsigned tail (which must be zero). */
    unsigned refused = 0, integrity = 0;
    for (size_t off = 0; off < rlen; off++)
        for (int bit = (int)(off % 8); bit == (int)(off % 8); bit++) {
            rep[off] ^= (uint8_t)(1u << bit);
            memset(&e, 0, sizeof e);
            rc = scp_snp_verify(rep, rlen, vcek, vlen, coll, &pol, NULL, NULL, &e);
            rep[off] ^= (uint8_t)(1u << bit);
            if (rc == 0) {
                fprintf(stderr, "%s: bit %d of byte %#zx flipped: accepted\n", report_name, bit, off);
                failures++;
                continue;
            }
            refused++;
            int header = off < 4 || (off >= 0x34 && off < 0x38) || (off >= 0x48 && off < 0x4c);
            if (off >= 0x330) {
                if (e.code != SCP_E_FORMAT) fprintf(stderr, "byte %#zx: %s\n", off, e.msg), failures++;
            } else if (!header && e.code != SCP_E_INTEGRITY) {
                fprintf(stderr, "%s: byte %#zx bit %d: %s (%s)\n", report_name, off, bit, scp_code_name(e.code), e.msg);
                failures++;
            }
            integrity += e.code == SCP_E_INTEGRITY;
        }
    printf("%s: %u of %zu single-bit flips refused (%u as integrity failures)\n", report_name, refused, rlen,
           integrity);

    /* A wrong nonce/key binding, a TCB minimum above the report's, another measurement. */
    uint8_t rd[64];
    memcpy(rd, r.report_data, 64);
    rd[0] ^= 1;
    scp_snp_policy p2 = pol;
    p2.report_data = rd;
    expect_fail(scp_snp_verify(rep, rlen, vcek, vlen, coll, &p2, NULL, NULL, &e), &e, SCP_E_INTEGRITY,
                "report data", "recorded report, wrong report data");
    p2 = pol;
    p2.min_tcb = r.reported_tcb;
    CHECK(scp_snp_verify(rep, rlen, vcek, vlen, coll, &p2, NULL, NULL, &e) == 0); /* equal is enough */
    p2.min_tcb.microcode = (uint8_t)(r.reported_tcb.microcode + 1);
    expect_fail(scp_snp_verify(rep, rlen, vcek, vlen, coll, &p2, NULL, NULL, &e), &e, SCP_E_POLICY,
                "TCB below the policy's minimum", "recorded report, microcode below minimum");
    p2 = pol;
    uint8_t m2[48];
    memcpy(m2, meas, 48);
    m2[47] ^= 0x80;
    p2.measurement = m2;
    expect_fail(scp_snp_verify(rep, rlen, vcek, vlen, coll, &p2, NULL, NULL, &e), &e, SCP_E_POLICY, "measurement",
                "recorded report, other measurement");
    /* Expired collateral: the VCEK is valid for 7 years from issue. */
    p2 = pol;
    p2.now = 4102444800; /* 2100-01-01 */
    expect_fail(scp_snp_verify(rep, rlen, vcek, vlen, coll, &p2, NULL, NULL, &e), &e, SCP_E_INTEGRITY, "expired",
                "recorded report, collateral expired");
    free(rep);
    free(vcek);
}

/* The VCEK from the collateral cache instead of the evidence; missing collateral is named. */
static void cache(void) {
    size_t rlen, vlen;
    uint8_t *rep = slurp(data_dir, "snp/virtee-milan-report.bin", &rlen);
    uint8_t *vcek = slurp(data_dir, "snp/virtee-milan-vcek.der", &vlen);
    scp_snp_report r;
    scp_err e;
    CHECK(scp_snp_report_parse(rep, rlen, &r, &e) == 0);
    scp_snp_policy pol = {.report_data = r.report_data};
    char cmd[16384], coll[1024], chip[129], path[8192];
    snprintf(coll, sizeof coll, "%s/cache", tmp_dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s/snp/vcek' && cp -r '%s/collateral/snp/Milan' '%s/snp/'",
             coll, coll, data_dir, coll);
    CHECK(system(cmd) == 0);
    expect_fail(scp_snp_verify(rep, rlen, NULL, 0, coll, &pol, NULL, NULL, &e), &e, SCP_E_NOENT,
                "missing attestation collateral: the VCEK", "VCEK not in the cache");
    scp_hex(r.chip_id, 64, chip);
    CHECK(strstr(e.msg, chip) != NULL); /* the message names the file to fetch */
    printf("missing VCEK: %s\n", e.msg);
    snprintf(path, sizeof path, "%s/snp/vcek/%s-%016llx.der", coll, chip, (unsigned long long)r.reported_tcb_raw);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(vcek, 1, vlen, f) == vlen);
    if (f) fclose(f);
    CHECK(scp_snp_verify(rep, rlen, NULL, 0, coll, &pol, NULL, NULL, &e) == 0);
    snprintf(path, sizeof path, "%s/snp/Milan/ask.pem", coll);
    CHECK(unlink(path) == 0);
    expect_fail(scp_snp_verify(rep, rlen, NULL, 0, coll, &pol, NULL, NULL, &e), &e, SCP_E_NOENT, "(ASK)",
                "ASK not in the cache");
    printf("missing ASK: %s\n", e.msg);
    /* A Milan VCEK presented with the Genoa root and ASK in Milan's place. */
    snprintf(cmd, sizeof cmd, "cp '%s/collateral/snp/Genoa/ask.pem' '%s/snp/Milan/ask.pem'", data_dir, coll);
    CHECK(system(cmd) == 0);
    expect_fail(scp_snp_verify(rep, rlen, NULL, 0, coll, &pol, NULL, NULL, &e), &e, SCP_E_INTEGRITY, "ASK",
                "Genoa ASK for a Milan VCEK");
    snprintf(cmd, sizeof cmd, "cp '%s/collateral/snp/Genoa/ark.pem' '%s/snp/Milan/ark.pem'", data_dir, coll);
    CHECK(system(cmd) == 0);
    expect_fail(scp_snp_verify(rep, rlen, NULL, 0, coll, &pol, NULL, NULL, &e), &e, SCP_E_INTEGRITY,
                "not AMD's root key for Milan", "Genoa ARK as Milan's");
    free(rep);
    free(vcek);
}

/* ---- synthetic reports under the test PKI ------------------------------------------------- */

static EVP_PKEY *vcek_key;

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

#define TCB(bl, tee, snp, uc) \
    ((uint64_t)(bl) | (uint64_t)(tee) << 8 | (uint64_t)(snp) << 48 | (uint64_t)(uc) << 56)

typedef struct synth {
    uint32_t version, vmpl, flags;
    uint64_t policy, tcb;
    uint8_t cpu_model;
    uint8_t report_data[64];
} synth;

static void synth_default(synth *s) {
    memset(s, 0, sizeof *s);
    s->version = 3;
    s->policy = 0x30000; /* SMT allowed, reserved bit 17 set, debug clear */
    s->tcb = TCB(3, 0, 8, 0x73);
    s->cpu_model = 0x01;
    for (int i = 0; i < 64; i++) s->report_data[i] = (uint8_t)i;
}

static void synth_build(const synth *s, uint8_t rep[SCP_SNP_REPORT_LEN]) {
    memset(rep, 0, SCP_SNP_REPORT_LEN);
    put_le32(rep + 0x00, s->version);
    put_le32(rep + 0x04, 1);
    put_le64(rep + 0x08, s->policy);
    put_le32(rep + 0x30, s->vmpl);
    put_le32(rep + 0x34, 1);
    put_le64(rep + 0x38, s->tcb);
    put_le32(rep + 0x48, s->flags);
    memcpy(rep + 0x50, s->report_data, 64);
    memset(rep + 0x90, 0xab, 48);
    memset(rep + 0xc0, 0xcd, 32);
    put_le64(rep + 0x180, s->tcb);
    if (s->version >= 3) rep[0x188] = 0x19, rep[0x189] = s->cpu_model, rep[0x18a] = 1;
    memset(rep + 0x1a0, 0x11, 64);
    put_le64(rep + 0x1e0, s->tcb);
    put_le64(rep + 0x1f0, s->tcb);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t der[256];
    size_t dl = sizeof der;
    if (!c || EVP_DigestSignInit(c, NULL, EVP_sha384(), NULL, vcek_key) != 1 ||
        EVP_DigestSign(c, der, &dl, rep, SCP_SNP_SIGNED_LEN) != 1) {
        fprintf(stderr, "signing failed\n");
        exit(2);
    }
    EVP_MD_CTX_free(c);
    const uint8_t *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dl);
    if (!sig || BN_bn2lebinpad(ECDSA_SIG_get0_r(sig), rep + 0x2a0, 72) != 72 ||
        BN_bn2lebinpad(ECDSA_SIG_get0_s(sig), rep + 0x2a0 + 72, 72) != 72) {
        fprintf(stderr, "signature conversion failed\n");
        exit(2);
    }
    ECDSA_SIG_free(sig);
}

static int synth_verify(const synth *s, const char *vcek_name, const scp_snp_policy *pol, scp_err *e) {
    uint8_t rep[SCP_SNP_REPORT_LEN];
    synth_build(s, rep);
    size_t vlen;
    uint8_t *vcek = slurp(pki_dir, vcek_name, &vlen);
    char coll[4096];
    snprintf(coll, sizeof coll, "%s/collateral", pki_dir);
    memset(e, 0, sizeof *e);
    int rc = scp_snp_verify(rep, sizeof rep, vcek, vlen, coll, pol, NULL, NULL, e);
    free(vcek);
    return rc;
}

static void synthetic(void) {
    size_t n;
    char *hex = (char *)slurp(pki_dir, "ark.sha256", &n);
    uint8_t ark[32];
    CHECK(n >= 64 && scp_unhex((hex[64] = 0, hex), ark, 32) == 0);
    free(hex);
    char keypath[4096];
    snprintf(keypath, sizeof keypath, "%s/vcek.key", pki_dir);
    FILE *f = fopen(keypath, "r");
    CHECK(f != NULL);
    vcek_key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    if (!vcek_key) exit(2);

    /* The binding CAS computes: nonce, runtime key and program measurement. */
    uint8_t nonce[32], pub[32], meas[32], rd[64];
    memset(nonce, 1, 32), memset(pub, 2, 32), memset(meas, 3, 32);
    scp_err e;
    CHECK(scp_hw_report_data(nonce, pub, meas, rd, &e) == 0);
    synth s;
    synth_default(&s);
    memcpy(s.report_data, rd, 64);
    scp_snp_policy pol = {.report_data = rd, .ark_sha256 = ark, .min_tcb = {3, 0, 8, 0x73}};
    int rc = synth_verify(&s, "vcek.der", &pol, &e);
    if (rc) fprintf(stderr, "synthetic v3: %s\n", e.msg);
    CHECK(rc == 0);
    s.version = 2;
    CHECK(synth_verify(&s, "vcek.der", &pol, &e) == 0);
    s.version = 5;
    CHECK(synth_verify(&s, "vcek.der", &pol, &e) == 0);
    s.version = 4;
    expect_fail(synth_verify(&s, "vcek.der", &pol, &e), &e, SCP_E_FORMAT, "version", "version 4");
    synth_default(&s);
    memcpy(s.report_data, rd, 64);

    /* Another nonce: the report binds the old one. */
    uint8_t rd2[64];
    nonce[0] ^= 1;
    CHECK(scp_hw_report_data(nonce, pub, meas, rd2, &e) == 0);
    scp_snp_policy p2 = pol;
    p2.report_data = rd2;
    expect_fail(synth_verify(&s, "vcek.der", &p2, &e), &e, SCP_E_INTEGRITY, "report data", "wrong nonce");

    synth d = s;
    d.policy |= SCP_SNP_POLICY_DEBUG;
    expect_fail(synth_verify(&d, "vcek.der", &pol, &e), &e, SCP_E_POLICY, "debug", "debug policy");
    printf("debug: %s\n", e.msg);
    d = s;
    d.vmpl = 1;
    expect_fail(synth_verify(&d, "vcek.der", &pol, &e), &e, SCP_E_POLICY, "VMPL", "VMPL 1");
    /* An older TCB, properly certified by its own VCEK: refused by the minimum only. */
    d = s;
    d.tcb = TCB(2, 0, 8, 0x73);
    expect_fail(synth_verify(&d, "vcek-old.der", &pol, &e), &e, SCP_E_POLICY, "TCB below", "boot loader below minimum");
    printf("old TCB: %s\n", e.msg);
    p2 = pol;
    p2.min_tcb.bootloader = 2;
    CHECK(synth_verify(&d, "vcek-old.der", &p2, &e) == 0);
    /* A report claiming a TCB its VCEK does not certify. */
    expect_fail(synth_verify(&d, "vcek.der", &p2, &e), &e, SCP_E_INTEGRITY, "reported TCB", "TCB not the VCEK's");
    /* A Genoa CPU under a Milan VCEK. */
    d = s;
    d.cpu_model = 0x11;
    expect_fail(synth_verify(&d, "vcek.der", &pol, &e), &e, SCP_E_INTEGRITY, "not a Milan", "Genoa CPU");
    d = s;
    d.flags = 1u << 2; /* VLEK */
    expect_fail(synth_verify(&d, "vcek.der", &pol, &e), &e, SCP_E_NOTSUP, "VLEK", "VLEK-signed");
    /* The test root is not AMD's: without the override it is refused. */
    p2 = pol;
    p2.ark_sha256 = NULL;
    expect_fail(synth_verify(&s, "vcek.der", &p2, &e), &e, SCP_E_INTEGRITY, "not AMD's root key",
                "test root without override");
    /* Structure: wrong length. */
    uint8_t rep[SCP_SNP_REPORT_LEN];
    synth_build(&s, rep);
    scp_snp_report r;
    expect_fail(scp_snp_report_parse(rep, sizeof rep - 1, &r, &e), &e, SCP_E_FORMAT, "1184", "short report");
    EVP_PKEY_free(vcek_key);
}

static void chain_parse(void) {
    size_t n;
    uint8_t *pem = slurp(data_dir, "collateral/snp/Milan/ark.pem", &n);
    scp_err e;
    CHECK(scp_hw_chain_parse(pem, n, &e) == 1);
    free(pem);
    expect_fail(scp_hw_chain_parse((const uint8_t *)"\x30\x03\x02\x01", 4, &e), &e, SCP_E_FORMAT, "DER",
                "truncated DER");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DATA_DIR PKI_DIR TMP_DIR\n", argv[0]);
        return 2;
    }
    data_dir = argv[1], pki_dir = argv[2], tmp_dir = argv[3];
    recorded("snp/virtee-milan-report.bin", "snp/virtee-milan-vcek.der", VIRTEE_MEASUREMENT, 0);
    recorded("snp/gsg-milan-report.bin", "snp/gsg-milan-vcek.der", NULL, 1);
    cache();
    synthetic();
    chain_parse();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all SEV-SNP verifier checks passed\n");
    return 0;
}
