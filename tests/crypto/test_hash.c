/* test_hash - scp_sha256, scp_hmac and scp_hkdf (crypto/crypto.h) against published vectors
 * (FIPS 180-2, RFC 4231, RFC 5869) and against OpenSSL's own HMAC and HKDF for keys, salts and
 * messages of many lengths, split into parts; from several threads at once (each thread keeps
 * a spare digest context); and scp_sha256_mid's saved and resumed midstates. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include "crypto/crypto.h"

#include "check.h"

static void unhex(const char *h, uint8_t *out) {
    for (size_t i = 0; h[2 * i]; i++) sscanf(h + 2 * i, "%2hhx", &out[i]);
}

static int eq_hex(const uint8_t d[32], const char *h) {
    uint8_t x[32];
    unhex(h, x);
    return memcmp(d, x, 32) == 0;
}

static int eq_hexn(const uint8_t *d, const char *h, size_t n) {
    uint8_t x[128];
    unhex(h, x);
    return memcmp(d, x, n) == 0;
}

/* OpenSSL's HKDF-SHA256 (EVP_PKEY), the reference. */
static int openssl_hkdf(const uint8_t *ikm, size_t il, const uint8_t *salt, size_t sl,
                        const uint8_t *info, size_t nl, uint8_t *out, size_t ol) {
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    int ok = c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_CTX_set_hkdf_md(c, EVP_sha256()) == 1 &&
             (sl == 0 || EVP_PKEY_CTX_set1_hkdf_salt(c, salt, (int)sl) == 1) &&
             EVP_PKEY_CTX_set1_hkdf_key(c, ikm, (int)il) == 1 &&
             (nl == 0 || EVP_PKEY_CTX_add1_hkdf_info(c, info, (int)nl) == 1) &&
             EVP_PKEY_derive(c, out, &ol) == 1;
    EVP_PKEY_CTX_free(c);
    return ok ? 0 : -1;
}

static void vectors(void) {
    uint8_t d[32];
    scp_sha256_buf("abc", 3, d);
    CHECK(eq_hex(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    scp_sha256_buf("", 0, d);
    CHECK(eq_hex(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));

    /* RFC 4231 test case 1: 20-byte key of 0x0b, "Hi There" */
    uint8_t k1[20];
    memset(k1, 0x0b, sizeof k1);
    CHECK(scp_hmac_buf(k1, sizeof k1, "Hi There", 8, d, NULL) == 0);
    CHECK(eq_hex(d, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
    /* test case 2: key "Jefe", in two parts */
    struct scp_buf p2[2] = {{"what do ya want ", 16}, {"for nothing?", 12}};
    CHECK(scp_hmac((const uint8_t *)"Jefe", 4, p2, 2, d, NULL) == 0);
    CHECK(eq_hex(d, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    /* test case 6: a 131-byte key (longer than a block: hashed first) */
    uint8_t k6[131];
    memset(k6, 0xaa, sizeof k6);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK(scp_hmac_buf(k6, sizeof k6, m6, strlen(m6), d, NULL) == 0);
    CHECK(eq_hex(d, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));

    /* RFC 5869 test case 1: salt 0x00..0x0c, info 0xf0..0xf9, 42 bytes */
    uint8_t ikm[22], salt[13], info[10], okm[42];
    memset(ikm, 0x0b, sizeof ikm);
    for (int i = 0; i < 13; i++) salt[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++) info[i] = (uint8_t)(0xf0 + i);
    CHECK(scp_hkdf(ikm, sizeof ikm, salt, sizeof salt, info, sizeof info, okm, sizeof okm, NULL) == 0);
    CHECK(eq_hexn(okm, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865", 42));
    /* test case 3: no salt, no info */
    CHECK(scp_hkdf(ikm, sizeof ikm, NULL, 0, NULL, 0, okm, sizeof okm, NULL) == 0);
    CHECK(eq_hexn(okm, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8", 42));
}

/* Against OpenSSL's HMAC for keys of 0..150 bytes and messages of 0..300 in three parts. */
static void *against_openssl(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    uint8_t key[150], msg[300], a[32], b[32];
    for (int round = 0; round < 400; round++) {
        size_t kl = (size_t)rand_r(&seed) % sizeof key, ml = (size_t)rand_r(&seed) % sizeof msg;
        for (size_t i = 0; i < kl; i++) key[i] = (uint8_t)rand_r(&seed);
        for (size_t i = 0; i < ml; i++) msg[i] = (uint8_t)rand_r(&seed);
        size_t c1 = ml ? (size_t)rand_r(&seed) % ml : 0, c2 = c1 + (ml - c1) / 2;
        struct scp_buf parts[3] = {{msg, c1}, {msg + c1, c2 - c1}, {msg + c2, ml - c2}};
        unsigned bl = 0;
        CHECK(scp_hmac(key, kl, parts, 3, a, NULL) == 0);
        CHECK(HMAC(EVP_sha256(), key, (int)kl, msg, ml, b, &bl) != NULL && bl == 32);
        CHECK(memcmp(a, b, 32) == 0);
        scp_sha256(parts, 3, a);
        CHECK(EVP_Digest(msg, ml, b, &bl, EVP_sha256(), NULL) == 1);
        CHECK(memcmp(a, b, 32) == 0);
        /* HKDF: key material, salt (or none) and info from the same bytes, 1..100 bytes out */
        uint8_t x[100], y[100];
        size_t sl = (size_t)rand_r(&seed) % 70, nl = (size_t)rand_r(&seed) % 60;
        size_t ol = 1 + (size_t)rand_r(&seed) % sizeof x, il = kl ? kl : 1;
        CHECK(scp_hkdf(key, il, msg, sl, msg + 70, nl, x, ol, NULL) == 0);
        CHECK(openssl_hkdf(key, il, msg, sl, msg + 70, nl, y, ol) == 0);
        CHECK(memcmp(x, y, ol) == 0);
    }
    return NULL;
}

/* scp_sha256_mid: a midstate saved anywhere in a message and resumed gives scp_sha256's digest
 * of the whole; final leaves the state as it was (a volume root resumes from midstates, and
 * finalises one that it keeps: chunk.c, table_root). */
static void midstates(void) {
    static uint8_t msg[20000];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(i * 131 + (i >> 7));
    scp_sha256_mid m;
    uint8_t d[32], want[32];
    scp_sha256_mid_init(&m);
    scp_sha256_mid_update(&m, "abc", 3);
    scp_sha256_mid_final(&m, d);
    CHECK(eq_hex(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    scp_sha256_mid_final(&m, d); /* (again: m was not consumed) */
    CHECK(eq_hex(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    for (size_t len = 0; len <= sizeof msg; len += len < 200 ? 1 : 997) {
        scp_sha256_buf(msg, len, want);
        size_t cut = len * 7 / 13; /* (at and off block boundaries as len moves) */
        scp_sha256_mid_init(&m);
        scp_sha256_mid_update(&m, msg, cut);
        scp_sha256_mid saved = m, fresh;
        scp_sha256_mid_update(&m, msg + cut, len - cut);
        scp_sha256_mid_final(&m, d);
        CHECK(memcmp(d, want, 32) == 0);
        fresh = saved; /* resumed from the copy, after the original went on */
        scp_sha256_mid_update(&fresh, msg + cut, len - cut);
        scp_sha256_mid_final(&fresh, d);
        CHECK(memcmp(d, want, 32) == 0);
    }
}

int main(void) {
    vectors();
    midstates();
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, against_openssl, (void *)(i + 1));
    against_openssl((void *)99);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    vectors(); /* (after the threads' contexts were freed) */
    if (failures) {
        fprintf(stderr, "test_hash: %d failures\n", failures);
        return 1;
    }
    printf("test_hash: ok\n");
    return 0;
}
