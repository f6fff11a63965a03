/* common/base64.c - see base64.h. */
#include "common/base64.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

char *scp_b64enc(const uint8_t *in, size_t n) {
    if (n > (1u << 28)) return NULL;
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out) return NULL;
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return out;
}

uint8_t *scp_b64dec(const char *in, size_t *out_len) {
    size_t n = strlen(in);
    if (n % 4 != 0 || n > (1u << 28)) return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                 c == '/' || (c == '=' && i >= n - 2);
        if (!ok) return NULL;
    }
    if (n >= 2 && in[n - 2] == '=' && in[n - 1] != '=') return NULL;
    uint8_t *out = malloc(n / 4 * 3 + 1);
    if (!out) return NULL;
    int r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (r < 0) {
        free(out);
        return NULL;
    }
    size_t len = (size_t)r;
    if (n >= 1 && in[n - 1] == '=') len--;
    if (n >= 2 && in[n - 2] == '=') len--;
    *out_len = len;
    return out;
}
