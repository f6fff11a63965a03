/* tests/attest/hw_forge.c - synthetic hardware evidence under the test PKI of
 * tests/attest/mkpki.sh, for the fake configfs-tsm provider (tests/attest/fake_tsm.sh): what a
 * TDX or SEV-SNP guest's kernel would put in outblob and auxblob for the report data in inblob.
 * Signed with the test keys (never AMD's or Intel's), so only a CAS started with the test roots
 * (--test-snp-ark, --test-sgx-root) accepts it.
 *
 * usage: hw_forge snp PKI_DIR INBLOB AUXBLOB [OPTION...] > outblob
 *        hw_forge tdx PKI_DIR INBLOB [OPTION...] > outblob
 *        hw_forge sgx-evidence PKI_DIR NONCE PUBKEY MEASUREMENT [OPTION...] > evidence
 *            (whole SCP evidence of backend sgx with an SGX quote v3: the SGX runtime side is a
 *            seam, so this stands in for it)
 *        hw_forge tdx-collateral|sgx-collateral PKI_DIR DIR STATUS
 *            (signed TCB info and QE identity in DIR/sgx)
 * options: --debug (debug guest/TD), --old-tcb (SNP: TCB bootloader 2 with its VCEK),
 *          --no-vcek (SNP: empty certificate table), --flip-rd (report data with one bit changed),
 *          --measure-byte N (SNP MEASUREMENT / TDX MRTD / SGX MRENCLAVE filled with byte N; default
 *          0xab / 0x42 / 0x43; SGX MRSIGNER is 0x44), --isvsvn N (SGX, default 5)
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
#include "scp/attest.h"
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
    int debug, old_tcb, no_vcek, flip_rd, measure_byte, isvsvn;
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

/* A DCAP quote: version 4 (TDX) or 3 (SGX), report data rd, on stdout... or into *out. */
static uint8_t *dcap_quote(int version, const uint8_t rd_in[64], const struct opts *o, size_t *out_len) {
    static const uint8_t intel_vendor[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                             0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};
    uint8_t rd[64];
    memcpy(rd, rd_in, 64);
    if (o->flip_rd) rd[0] ^= 1;
    size_t clen;
    uint8_t *chain = slurp("sgx/chain.pem", &clen);
    EVP_PKEY *pck = load_key("sgx/pck.key"), *ak = EVP_EC_gen("P-256");
    uint8_t pub[65];
    size_t pl = 0;
    if (!ak || EVP_PKEY_get_octet_string_param(ak, "pub", pub, sizeof pub, &pl) != 1 || pl != 65) die("key");
    int v4 = version == 4;
    size_t body = v4 ? 584 : 384, auth_len = 32, qe_part = 384 + 64 + 2 + auth_len + 6 + clen;
    size_t sig_len = 128 + (v4 ? 6 : 0) + qe_part, len = 48 + body + 4 + sig_len;
    uint8_t *q = calloc(1, len);
    if (!q) die("out of memory");
    put16(q, (uint16_t)version);
    put16(q + 2, 2);
    put32(q + 4, v4 ? 0x81 : 0);
    memcpy(q + 12, intel_vendor, 16);
    uint8_t *b = q + 48;
    if (v4) {
        memset(b + 136, o->measure_byte >= 0 ? o->measure_byte : 0x42, 48); /* MRTD */
        for (int i = 0; i < 4; i++) memset(b + 328 + 48 * i, 0x60 + i, 48); /* RTMR0..3 */
        b[120] = o->debug ? 1 : 0;
        memcpy(b + 520, rd, 64);
    } else {
        b[48] = o->debug ? 2 : 0;
        memset(b + 64, o->measure_byte >= 0 ? o->measure_byte : 0x43, 32); /* MRENCLAVE */
        memset(b + 128, 0x44, 32);                                           /* MRSIGNER */
        put16(b + 258, (uint16_t)o->isvsvn);
        memcpy(b + 320, rd, 64);
    }
    uint8_t *p = q + 48 + body;
    put32(p, (uint32_t)sig_len);
    p += 4;
    uint8_t *sig = p;
    memcpy(p + 64, pub + 1, 64);
    p += 128;
    if (v4) {
        put16(p, 6);
        put32(p + 2, (uint32_t)qe_part);
        p += 6;
    }
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
    EVP_PKEY_free(ak);
    EVP_PKEY_free(pck);
    free(chain);
    *out_len = len;
    return q;
}

static void tdx(const char *inblob, const struct opts *o) {
    uint8_t rd[64];
    read_inblob(inblob, rd);
    size_t len;
    uint8_t *q = dcap_quote(4, rd, o, &len);
    if (fwrite(q, 1, len, stdout) != len) die("cannot write the quote");
    free(q);
}

static size_t put_field(uint8_t *p, uint16_t type, const uint8_t *v, size_t len) {
    p[0] = (uint8_t)(type >> 8), p[1] = (uint8_t)type, p[2] = (uint8_t)(len >> 8), p[3] = (uint8_t)len;
    memcpy(p + 4, v, len);
    return 4 + len;
}

/* Whole SCP evidence of backend sgx (there is no SGX runtime side: this stands in for it). */
static void sgx_evidence(const char *nonce_hex, const char *pub_hex, const char *meas_hex, const struct opts *o) {
    uint8_t nonce[32], pub[32], meas[32], rd[64], ident[32], id[32];
    scp_err e;
    if (scp_unhex(nonce_hex, nonce, 32) < 0 || scp_unhex(pub_hex, pub, 32) < 0 || scp_unhex(meas_hex, meas, 32) < 0)
        die("nonce, pubkey and measurement are 64 hex digits each");
    if (scp_hw_report_data(nonce, pub, meas, rd, &e) < 0) die(e.msg);
    size_t ql;
    uint8_t *q = dcap_quote(3, rd, o, &ql);
    if (scp_hw_platform_identity(SCP_TEE_SGX, q, ql, ident, &e) < 0) die(e.msg);
    struct scp_buf b = {ident, 32};
    scp_sha256(&b, 1, id);
    size_t len = 12 + 4 * 36 + 4 + ql;
    uint8_t *ev = malloc(len), *p = ev + 12;
    if (!ev) die("out of memory");
    memcpy(ev, "SCPE\0\1\0\4", 8); /* version 1, backend 4 (sgx) */
    uint32_t body = (uint32_t)(len - 12);
    ev[8] = (uint8_t)(body >> 24), ev[9] = (uint8_t)(body >> 16), ev[10] = (uint8_t)(body >> 8), ev[11] = (uint8_t)body;
    p += put_field(p, 1, nonce, 32);
    p += put_field(p, 2, pub, 32);
    p += put_field(p, 3, meas, 32);
    p += put_field(p, 4, id, 32);
    p += put_field(p, 5, q, ql);
    if ((size_t)(p - ev) != len || fwrite(ev, 1, len, stdout) != len) die("cannot write the evidence");
    free(ev);
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
static void dcap_collateral(const char *dir, int tdx_, const char *status) {
    char obj[4096], comps[1024] = "", tdxc[1024] = "";
    static const int sv[16] = {3, 3, 2, 2, 2, 1, 0, 2};
    for (int i = 0; i < 16; i++) {
        size_t l = strlen(comps), m = strlen(tdxc);
        snprintf(comps + l, sizeof comps - l, "%s{\"svn\":%d}", i ? "," : "", sv[i]);
        snprintf(tdxc + m, sizeof tdxc - m, "%s{\"svn\":0}", i ? "," : "");
    }
    if (!tdx_) {
        snprintf(obj, sizeof obj,
                 "{\"id\":\"SGX\",\"version\":3,\"issueDate\":\"2026-01-01T00:00:00Z\",\"nextUpdate\":\"2099-01-01T00:00:00Z\","
                 "\"fmspc\":\"50806f000000\",\"pceId\":\"0000\",\"tcbType\":0,\"tcbLevels\":["
                 "{\"tcb\":{\"sgxtcbcomponents\":[%s],\"pcesvn\":11},\"tcbStatus\":\"%s\"}]}",
                 comps, status);
        write_signed(dir, "tcbinfo-sgx-50806f000000.json", "tcbInfo", obj);
        snprintf(obj, sizeof obj,
                 "{\"id\":\"QE\",\"version\":2,\"issueDate\":\"2026-01-01T00:00:00Z\",\"nextUpdate\":\"2099-01-01T00:00:00Z\","
                 "\"miscselect\":\"00000000\",\"miscselectMask\":\"FFFFFFFF\",\"attributes\":\"%032d\","
                 "\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",\"mrsigner\":\"%064d\",\"isvprodid\":0,"
                 "\"tcbLevels\":[{\"tcb\":{\"isvsvn\":0},\"tcbStatus\":\"UpToDate\"}]}",
                 0, 0);
        write_signed(dir, "qeidentity-sgx.json", "enclaveIdentity", obj);
        return;
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
    if (strcmp(argv[1], "tdx-collateral") == 0 || strcmp(argv[1], "sgx-collateral") == 0) {
        if (argc != 5) die("usage: hw_forge tdx-collateral|sgx-collateral PKI_DIR DIR STATUS");
        dcap_collateral(argv[3], argv[1][0] == 't', argv[4]);
        return 0;
    }
    if (strcmp(argv[1], "sgx-evidence") == 0) {
        if (argc < 6) die("usage: hw_forge sgx-evidence PKI_DIR NONCE PUBKEY MEASUREMENT [OPTION...]");
    }
    int is_snp = strcmp(argv[1], "snp") == 0, is_sgx = strcmp(argv[1], "sgx-evidence") == 0;
    int first = is_sgx ? 6 : is_snp ? 5 : 4;
    if (argc < first || (!is_snp && !is_sgx && strcmp(argv[1], "tdx") != 0))
        die("usage: hw_forge snp|tdx PKI_DIR INBLOB ...");
    struct opts o = {.measure_byte = -1, .isvsvn = 5};
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--debug") == 0) o.debug = 1;
        else if (strcmp(argv[i], "--old-tcb") == 0) o.old_tcb = 1;
        else if (strcmp(argv[i], "--no-vcek") == 0) o.no_vcek = 1;
        else if (strcmp(argv[i], "--flip-rd") == 0) o.flip_rd = 1;
        else if (strcmp(argv[i], "--isvsvn") == 0 && i + 1 < argc) o.isvsvn = atoi(argv[++i]);
        else if (strcmp(argv[i], "--measure-byte") == 0 && i + 1 < argc) o.measure_byte = (int)strtol(argv[++i], NULL, 0) & 0xff;
        else die("unknown option");
    }
    if (is_sgx) sgx_evidence(argv[3], argv[4], argv[5], &o);
    else if (is_snp) snp(argv[3], argv[4], &o);
    else tdx(argv[3], &o);
    return fflush(stdout) == 0 ? 0 : 2;
}
