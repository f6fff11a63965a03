/* common/base64.c - see base64.h. */
#include "common/base64.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>


static int b64_valid(const char *in, size_t n) {
    if (n % 4 != 0 || n > (1u << 28)) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                 c == '/' || (c == '=' && i >= n - 2);
        if (!ok) return 0;
    }
    return !(n >= 2 && in[n - 2] == '=' && in[n - 1] != '=');
}

size_t scp_b64enc_to(const uint8_t *in, size_t n, char *out) {
    size_t len = 4 * ((n + 2) / 3);
    if (!n) return 0;
    /* EVP_EncodeBlock writes a NUL after the text: encode all but the last group directly,
     * the last through a small buffer, so that out needs no byte more than the text */
    size_t head = (n - 1) / 3 * 3;
    if (head) EVP_EncodeBlock((unsigned char *)out, in, (int)head);
    unsigned char last[5];
    EVP_EncodeBlock(last, in + head, (int)(n - head));
    memcpy(out + len - 4, last, 4);
    return len;
}

char *scp_b64enc(const uint8_t *in, size_t n) {
    if (n > (1u << 28)) return NULL;
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out) return NULL;
    out[scp_b64enc_to(in, n, out)] = '\0';
    return out;
}

int scp_b64dec_to(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len) {
    if (!b64_valid(in, n)) return -1;
    if (n == 0) {
        *out_len = 0;
        return 0;
    }
    size_t len = n / 4 * 3 - (in[n - 1] == '=') - (in[n - 2] == '=');
    if (len > cap) return -1;
    /* EVP_DecodeBlock writes three bytes per group, padding included: the last group goes
     * through a small buffer, so that out needs room for the decoded bytes only */
    if (n > 4 && EVP_DecodeBlock(out, (const unsigned char *)in, (int)(n - 4)) < 0) return -1;
    unsigned char last[3];
    if (EVP_DecodeBlock(last, (const unsigned char *)in + n - 4, 4) < 0) return -1;
    memcpy(out + (n - 4) / 4 * 3, last, len - (n - 4) / 4 * 3);
    *out_len = len;
    return 0;
}

uint8_t *scp_b64dec(const char *in, size_t *out_len) {
    size_t n = strlen(in);
    uint8_t *out = malloc(n / 4 * 3 + 1);
    if (!out) return NULL;
    if (scp_b64dec_to(in, n, out, n / 4 * 3 + 1, out_len) < 0) {
        free(out);
        return NULL;
    }
    return out;
}
