/* hashbench - CPU time per call of the library's SHA-256, HMAC (the volume tag), HKDF (a
 * file key), AES-256-GCM (a 4 KiB chunk and a 200-byte record, under one key and under three
 * keys in turn, as a journaled commit seals its chunks, its commit record and its manifest-log
 * record) and scp_random / scp_random_public (a 12-byte nonce), best of 5 rounds of a hot
 * loop. Hot-loop figures are a floor: in a workload that
 * sleeps in fdatasync between commits each call runs cold and costs more.
 *
 *   build/bench/crypto/hashbench [CALLS]      (default 200000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "crypto/crypto.h"

static double cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200000;
    if (n < 10) n = 10;
    uint8_t rec[400] = {1}, key[32] = {2}, out[32];
    static uint8_t chunk[4096], ct[4096];
    uint8_t keys[3][32] = {{3}, {4}, {5}}, nonce[12] = {0}, gtag[16];
    double best[8] = {1e30, 1e30, 1e30, 1e30, 1e30, 1e30, 1e30, 1e30};
    struct scp_buf tag[4] = {{"scp/v3/tag", 10}, {rec, 16}, {rec + 16, 8}, {rec + 24, 32}};
    for (int round = 0; round < 5; round++) {
        double t = cpu_ns();
        for (int i = 0; i < n; i++) scp_sha256_buf(rec, sizeof rec, out);
        t = (cpu_ns() - t) / n;
        if (t < best[0]) best[0] = t;
        t = cpu_ns();
        for (int i = 0; i < n; i++) (void)scp_hmac(key, sizeof key, tag, 4, out, NULL);
        t = (cpu_ns() - t) / n;
        if (t < best[1]) best[1] = t;
        t = cpu_ns();
        for (int i = 0; i < n / 10; i++) (void)scp_derive_key(key, "scp/v2/file", rec, 16, out, NULL);
        t = (cpu_ns() - t) / (n / 10);
        if (t < best[2]) best[2] = t;
        t = cpu_ns();
        for (int i = 0; i < n / 10; i++)
            (void)scp_aead_seal(keys[0], nonce, rec, 44, chunk, sizeof chunk, ct, gtag, NULL);
        t = (cpu_ns() - t) / (n / 10);
        if (t < best[3]) best[3] = t;
        t = cpu_ns();
        for (int i = 0; i < n / 10; i++) /* chunk, commit record, log record: three keys */
            (void)scp_aead_seal(keys[i % 3], nonce, rec, 44, chunk, i % 3 ? 200 : sizeof chunk, ct,
                                gtag, NULL);
        t = (cpu_ns() - t) / (n / 10);
        if (t < best[4]) best[4] = t;
        t = cpu_ns();
        for (int i = 0; i < n / 10; i++)
            (void)scp_aead_seal(keys[0], nonce, rec, 44, chunk, i % 3 ? 200 : sizeof chunk, ct,
                                gtag, NULL);
        t = (cpu_ns() - t) / (n / 10);
        if (t < best[5]) best[5] = t;
        t = cpu_ns();
        for (int i = 0; i < n / 10; i++) (void)scp_random(nonce, sizeof nonce, NULL);
        t = (cpu_ns() - t) / (n / 10);
        if (t < best[6]) best[6] = t;
        t = cpu_ns();
        for (int i = 0; i < n / 10; i++) (void)scp_random_public(nonce, sizeof nonce, NULL);
        t = (cpu_ns() - t) / (n / 10);
        if (t < best[7]) best[7] = t;
    }
    printf("scp_sha256 (400 bytes): %.0f ns\nscp_hmac (volume tag): %.0f ns\n"
           "scp_derive_key (HKDF, a file key): %.0f ns\n"
           "scp_aead_seal (4 KiB, one key): %.0f ns\n"
           "scp_aead_seal (4 KiB, 200, 200 bytes under three keys in turn), per call: %.0f ns\n"
           "scp_aead_seal (the same under one key), per call: %.0f ns\n"
           "scp_random (12 bytes): %.0f ns\n"
           "scp_random_public (12 bytes): %.0f ns\n",
           best[0], best[1], best[2], best[3], best[4], best[5], best[6], best[7]);
    return 0;
}
