/* tests/attest/hw_forge.c - synthetic hardware evidence under the test PKI of
 * tests/attest/mkpki.sh, for the fake configfs-tsm provider (tests/attest/fake_tsm.sh): what a
 * TDX or SEV-SNP guest's kernel would put in outblob and auxblob for the report data in inblob.
 * Signed with the test keys (never AMD's or Intel's), so only a CAS started with the test roots
 * (--test-snp-ark, --test-sgx-root) accepts it.
 *
 * usage: hw_forge snp PKI_DIR INBLOB AUXBLOB [OPTION...] > outblob
 *        hw_forge tdx PKI_DIR INBLOB [OPTION...] > outblob
 *        hw_forge tdx-collateral PKI_DIR DIR STATUS   (signed TCB info and QE identity in DIR/sgx)
 * options: --debug (debug guest/TD), --old-tcb (SNP: TCB bootloader 2 with its VCEK),
 *          --no-vcek (SNP: empty certificate table), --flip-rd (report data with one bit changed),
 *          --measure-byte N (SNP MEASUREMENT / TDX MRTD filled with byte N; default 0xab / 0x42)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest_hw.h"

static const char *pki;

static void die(const char *what) {
    fprintf(stderr, "hw_forge: %s\n", what);
    exit(2);
}

static uint8_t *slurp(const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", pki, name);
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    uint8_t *b = malloc(1 << 20);
    *len = b ? fread(b, 1, 1 << 20, f) : 0;
    fclose(f);
    if (!b) die("out of memory");
    return b;
}

static EVP_PKEY *load_key(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", pki, name);
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    if (!k) die(path);
    return k;
}

static void read_inblob(const char *path, uint8_t rd[64]) {
    FILE *f = fopen(path, "rb");
    if (!f || fread(rd, 1, 64, f) != 64) die("cannot read 64 bytes of inblob");
    fclose(f);
}

/* ECDSA signature (digest md) as r || s of n bytes each, big- or little-endian. */
static void sign_rs(EVP_PKEY *k, const EVP_MD *md, const uint8_t *msg, size_t len, uint8_t *out, int n, int le) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t der[256];
    size_t dl = sizeof der;
    if (!c || EVP_DigestSignInit(c, NULL, md, NULL, k) != 1 || EVP_DigestSign(c, der, &dl, msg, len) != 1)
        die("signing failed");
    EVP_MD_CTX_free(c);
    const uint8_t *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dl);
    int ok = sig && (le ? BN_bn2lebinpad(ECDSA_SIG_get0_r(sig), out, n) == n &&
                              BN_bn2lebinpad(ECDSA_SIG_get0_s(sig), out + n, n) == n
                        : BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, n) == n &&
                              BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + n, n) == n);
    if (!ok) die("signature conversion failed");
    ECDSA_SIG_free(sig);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

struct opts {
    int debug, old_tcb, no_vcek, flip_rd, measure_byte;
};

static void snp(const char *inblob, const char *auxblob, const struct opts *o) {
    uint8_t rep[SCP_SNP_REPORT_LEN] = {0}, rd[64];
    read_inblob(inblob, rd);
    if (o->flip_rd) rd[0] ^= 1;
    int bl = o->old_tcb ? 2 : 3;
    uint64_t tcb = (uint64_t)bl | (uint64_t)8 << 48 | (uint64_t)0x73 << 56;
    put32(rep + 0x00, 3);
    put32(rep + 0x04, 1);
    put64(rep + 0x08, 0x30000 | (o->debug ? SCP_SNP_POLICY_DEBUG : 0));
    put32(rep + 0x34, 1);
    put64(rep + 0x38, tcb);
    memcpy(rep + 0x50, rd, 64);
    memset(rep + 0x90, o->measure_byte >= 0 ? o->measure_byte : 0xab, 48);
    memset(rep + 0xc0, 0xcd, 32);
    put64(rep + 0x180, tcb);
    rep[0x188] = 0x19, rep[0x189] = 0x01, rep[0x18a] = 1;
    memset(rep + 0x1a0, 0x11, 64);
    put64(rep + 0x1e0, tcb);
    put64(rep + 0x1f0, tcb);
    EVP_PKEY *k = load_key("vcek.key");
    sign_rs(k, EVP_sha384(), rep, SCP_SNP_SIGNED_LEN, rep + 0x2a0, 72, 1);
    EVP_PKEY_free(k);
    /* the certificate table: VCEK entry, terminator, the certificate */
    size_t vl = 0;
    uint8_t *vcek = o->no_vcek ? NULL : slurp(o->old_tcb ? "vcek-old.der" : "vcek.der", &vl);
    static const uint8_t guid[16] = {0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45,
                                     0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
    size_t tl = vcek ? 48 + vl : 24;
    uint8_t *t = calloc(1, tl);
    if (!t) die("out of memory");
    if (vcek) {
        memcpy(t, guid, 16);
        put32(t + 16, 48);
        put32(t + 20, (uint32_t)vl);
        memcpy(t + 48, vcek, vl);
    }
    FILE *f = fopen(auxblob, "wb");
    if (!f || fwrite(t, 1, tl, f) != tl || fclose(f) != 0) die("cannot write auxblob");
    free(t);
    free(vcek);
    if (fwrite(rep, 1, sizeof rep, stdout) != sizeof rep) die("cannot write the report");
}

static void tdx(const char *inblob, const struct opts *o) {
    static const uint8_t intel_vendor[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                             0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};
    uint8_t rd[64];
    read_inblob(inblob, rd);
    if (o->flip_rd) rd[0] ^= 1;
    size_t clen;
    uint8_t *chain = slurp("sgx/chain.pem", &clen);
    EVP_PKEY *pck = load_key("sgx/pck.key"), *ak = EVP_EC_gen("P-256");
    uint8_t pub[65];
    size_t pl = 0;
    if (!ak || EVP_PKEY_get_octet_string_param(ak, "pub", pub, sizeof pub, &pl) != 1 || pl != 65) die("key");
    size_t body = 584, auth_len = 32, qe_part = 384 + 64 + 2 + auth_len + 6 + clen;
    size_t sig_len = 128 + 6 + qe_part, len = 48 + body + 4 + sig_len;
    uint8_t *q = calloc(1, len);
    if (!q) die("out of memory");
    put16(q, 4);
    put16(q + 2, 2);
    put32(q + 4, 0x81);
    memcpy(q + 12, intel_vendor, 16);
    uint8_t *b = q + 48;
    memset(b + 136, o->measure_byte >= 0 ? o->measure_byte : 0x42, 48); /* MRTD */
    for (int i = 0; i < 4; i++) memset(b + 328 + 48 * i, 0x60 + i, 48); /* RTMR0..3 */
    b[120] = o->debug ? 1 : 0;
    memcpy(b + 520, rd, 64);
    uint8_t *p = q + 48 + body;
    put32(p, (uint32_t)sig_len);
    p += 4;
    uint8_t *sig = p;
    memcpy(p + 64, pub + 1, 64);
    p += 128;
    put16(p, 6);
    put32(p + 2, (uint32_t)qe_part);
    p += 6;
    uint8_t *qe = p, auth[32];
    memset(auth, 0x5a, sizeof auth);
    struct scp_buf parts[2] = {{pub + 1, 64}, {auth, 32}};
    scp_sha256(parts, 2, qe + 320);
    sign_rs(pck, EVP_sha256(), qe, 384, qe + 384, 32, 0);
    p += 384 + 64;
    put16(p, (uint16_t)auth_len);
    memcpy(p + 2, auth, auth_len);
    p += 2 + auth_len;
    put16(p, 5);
    put32(p + 2, (uint32_t)clen);
    memcpy(p + 6, chain, clen);
    sign_rs(ak, EVP_sha256(), q, 48 + body, sig, 32, 0);
    if (fwrite(q, 1, len, stdout) != len) die("cannot write the quote");
    EVP_PKEY_free(ak);
    EVP_PKEY_free(pck);
    free(chain);
    free(q);
}

/* DIR/sgx/name = {"key":obj,"signature":"<r||s hex>"} signed by the test TCB signing key. */
static void write_signed(const char *dir, const char *name, const char *key, const char *obj) {
    EVP_PKEY *k = load_key("sgx/tcbsign.key");
    uint8_t sig[64];
    char hex[129], path[8192];
    sign_rs(k, EVP_sha256(), (const uint8_t *)obj, strlen(obj), sig, 32, 0);
    EVP_PKEY_free(k);
    scp_hex(sig, 64, hex);
    snprintf(path, sizeof path, "%s/sgx/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) die(path);
    fprintf(f, "{\"%s\":%s,\"signature\":\"%s\"}\n", key, obj, hex);
    fclose(f);
}

/* TCB info for the test PCK (SGX components 3,3,2,2,2,1,0,2, PCESVN 11) with one level of the
 * given status, and a QE identity the forged quotes' zeroed QE report matches. */
static void tdx_collateral(const char *dir, const char *status) {
    char obj[4096], comps[1024] = "", tdxc[1024] = "";
    static const int sv[16] = {3, 3, 2, 2, 2, 1, 0, 2};
    for (int i = 0; i < 16; i++) {
        size_t l = strlen(comps), m = strlen(tdxc);
        snprintf(comps + l, sizeof comps - l, "%s{\"svn\":%d}", i ? "," : "", sv[i]);
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

int main(int argc, char **argv) {
    if (argc < 4) die("usage: hw_forge snp|tdx|tdx-collateral PKI_DIR ...");
    pki = argv[2];
    if (strcmp(argv[1], "tdx-collateral") == 0) {
        if (argc != 5) die("usage: hw_forge tdx-collateral PKI_DIR DIR STATUS");
        tdx_collateral(argv[3], argv[4]);
        return 0;
    }
    int is_snp = strcmp(argv[1], "snp") == 0, first = is_snp ? 5 : 4;
    if (argc < first || (!is_snp && strcmp(argv[1], "tdx") != 0)) die("usage: hw_forge snp|tdx PKI_DIR INBLOB ...");
    struct opts o = {.measure_byte = -1};
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--debug") == 0) o.debug = 1;
        else if (strcmp(argv[i], "--old-tcb") == 0) o.old_tcb = 1;
        else if (strcmp(argv[i], "--no-vcek") == 0) o.no_vcek = 1;
        else if (strcmp(argv[i], "--flip-rd") == 0) o.flip_rd = 1;
        else if (strcmp(argv[i], "--measure-byte") == 0 && i + 1 < argc) o.measure_byte = (int)strtol(argv[++i], NULL, 0) & 0xff;
        else die("unknown option");
    }
    if (is_snp) snp(argv[3], argv[4], &o);
    else tdx(argv[3], &o);
    return fflush(stdout) == 0 ? 0 : 2;
}
