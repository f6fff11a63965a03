/* fuzz/cas/fuzz_cas_evidence.c - the evidence parser and the sim verifier on arbitrary bytes.
 * Properties: parsed fields lie inside the input; the signed part ends where the signature
 * field begins; hardware evidence has a quote and no signature (its verifiers are fuzzed in
 * fuzz/attest); nothing but evidence signed by the fixed platform key verifies. Inputs that
 * start with 0xA5 are "re-signed" by the fixture key first, so mutations get past the
 * signature and the verifier's acceptance path is explored too. */
#include <string.h>

#include <openssl/evp.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"
#include "../fuzz_util.h"

static EVP_PKEY *key;
static uint8_t pub[32];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    uint8_t seed[32];
    memset(seed, 0x42, sizeof seed);
    key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    size_t n = 32;
    EVP_PKEY_get_raw_public_key(key, pub, &n);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    uint8_t buf[SCP_EVIDENCE_MAX + 64];
    int resign = size > 0 && data[0] == 0xA5;
    if (resign) {
        data++;
        size--;
    }
    if (size > SCP_EVIDENCE_MAX) return 0;
    memcpy(buf, data, size);
    scp_evidence ev;
    if (scp_evidence_parse(buf, size, &ev, NULL) < 0) return 0;
    FUZZ_CHECK(!ev.vcek || (ev.backend == SCP_TEE_SNP && ev.vcek >= buf && ev.vcek + ev.vcek_len <= buf + size));
    if (ev.backend != SCP_TEE_SIM) {
        FUZZ_CHECK(!ev.signature && !ev.signed_part && ev.quote && ev.quote >= buf &&
                   ev.quote + ev.quote_len <= buf + size);
        return 0;
    }
    FUZZ_CHECK(ev.signed_part == buf && ev.signed_len + 4 + ev.signature_len == size);
    FUZZ_CHECK(ev.signature == buf + ev.signed_len + 4);
    FUZZ_CHECK(!ev.quote || (ev.quote >= buf && ev.quote + ev.quote_len <= buf + size));
    if (resign && ev.signature_len == 64) {
        /* the sim signing rule: context string with its NUL, then the signed part */
        static const char ctx[] = "SCP-EVIDENCE-SIM-v1";
        uint8_t msg[sizeof ctx + SCP_EVIDENCE_MAX];
        memcpy(msg, ctx, sizeof ctx);
        memcpy(msg + sizeof ctx, buf, ev.signed_len);
        uint8_t id[32];
        scp_sha256_buf(pub, 32, id);
        memcpy(ev.platform_id, id, 32); /* as if the platform field named the fixture key */
        size_t sl = 64;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_DigestSignInit(md, NULL, NULL, NULL, key);
        EVP_DigestSign(md, buf + ev.signed_len + 4, &sl, msg, sizeof ctx + ev.signed_len);
        EVP_MD_CTX_free(md);
        int ok = scp_sim_verify(&ev, pub, NULL) == 0;
        FUZZ_CHECK(ok == (ev.backend == SCP_TEE_SIM));
    } else {
        /* random signatures never verify */
        FUZZ_CHECK(scp_sim_verify(&ev, pub, NULL) < 0);
    }
    return 0;
}
