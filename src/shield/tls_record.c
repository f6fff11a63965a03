/* shield/tls_record.c - the lean TLS 1.3 record layer (tls_record.h). No sockets, no state
 * beyond a direction's: fuzz/fuzz_tls_record.c compiles this file as it is. */
#include <assert.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "shield/tls_record.h"

int tls_suite_for(unsigned id, struct tls_suite *s) {
    switch (id) {
    case 0x1301: *s = (struct tls_suite){EVP_aes_128_gcm(), EVP_sha256(), 16, 32}; break;
    case 0x1302: *s = (struct tls_suite){EVP_aes_256_gcm(), EVP_sha384(), 32, 48}; break;
    case 0x1303: *s = (struct tls_suite){EVP_chacha20_poly1305(), EVP_sha256(), 32, 32}; break;
    default: return -1;
    }
    return s->cipher && s->md ? 0 : -1;
}

/* HKDF-Expand-Label(secret, label, "", n) (7.1) for n <= the hash's length: HKDF-Expand's
 * first block, HMAC(secret, HkdfLabel || 0x01), is all of it. */
static int expand_label(const struct tls_suite *s, const unsigned char *secret, const char *label, unsigned char *out,
                        size_t n) {
    unsigned char info[2 + 1 + 6 + 16 + 1 + 1], md[EVP_MAX_MD_SIZE];
    size_t ll = strlen(label), k = 0;
    assert(n <= s->hashlen && ll <= 16);
    info[k++] = (unsigned char)(n >> 8);
    info[k++] = (unsigned char)n;
    info[k++] = (unsigned char)(6 + ll);
    memcpy(info + k, "tls13 ", 6);
    k += 6;
    memcpy(info + k, label, ll);
    k += ll;
    info[k++] = 0; /* an empty context */
    info[k++] = 1; /* the block counter */
    unsigned ml = 0;
    if (!HMAC(s->md, secret, (int)s->hashlen, info, k, md, &ml) || ml != s->hashlen) return -1;
    memcpy(out, md, n);
    OPENSSL_cleanse(md, sizeof md);
    return 0;
}

int tls_dir_start(struct tls_dir *d, const struct tls_suite *s, int enc) {
    unsigned char key[32];
    assert(s->keylen <= sizeof key && s->hashlen <= sizeof d->secret);
    if (expand_label(s, d->secret, "key", key, s->keylen) || expand_label(s, d->secret, "iv", d->iv, sizeof d->iv))
        goto bad;
    if (!d->ctx && !(d->ctx = EVP_CIPHER_CTX_new())) goto bad;
    if (EVP_CipherInit_ex(d->ctx, s->cipher, NULL, key, NULL, enc) != 1) goto bad;
    OPENSSL_cleanse(key, sizeof key);
    d->seq = 0;
    d->enc = enc;
    return 0;
bad:
    OPENSSL_cleanse(key, sizeof key);
    return -1;
}

int tls_dir_next(struct tls_dir *d, const struct tls_suite *s) {
    unsigned char next[48];
    if (expand_label(s, d->secret, "traffic upd", next, s->hashlen)) return -1;
    memcpy(d->secret, next, s->hashlen);
    OPENSSL_cleanse(next, sizeof next);
    return tls_dir_start(d, s, d->enc);
}

void tls_dir_free(struct tls_dir *d) {
    EVP_CIPHER_CTX_free(d->ctx); /* clears the key schedule */
    OPENSSL_cleanse(d, sizeof *d);
}

/* The per-record nonce (5.3): the IV xor the sequence number, left-padded to 12 bytes. */
static int set_nonce(struct tls_dir *d) {
    unsigned char nonce[12];
    memcpy(nonce, d->iv, 12);
    for (int i = 0; i < 8; i++) nonce[11 - i] ^= (unsigned char)(d->seq >> (8 * i));
    return EVP_CipherInit_ex(d->ctx, NULL, NULL, NULL, nonce, -1) == 1;
}

long tls_hdr(const unsigned char h[5]) {
    if (h[0] != TLS_CT_APPDATA) return -TLS_AL_UNEXPECTED_MESSAGE;
    long n = ((long)h[3] << 8) | h[4];
    return n > TLS_CT_MAX ? -TLS_AL_RECORD_OVERFLOW : n;
}

size_t tls_sealv(struct tls_dir *d, int type, const struct iovec *v, int nv, size_t n, unsigned char *out) {
    assert(d->enc == 1 && n <= TLS_PT_MAX && nv >= 0);
    if (d->seq == UINT64_MAX) return 0; /* must not wrap (5.3); the writer rekeys long before */
    size_t body = n + 1 + TLS_TAG;
    out[0] = TLS_CT_APPDATA;
    out[1] = 3;
    out[2] = 3;
    out[3] = (unsigned char)(body >> 8);
    out[4] = (unsigned char)body;
    unsigned char t = (unsigned char)type;
    int l = 0;
    if (!set_nonce(d) || EVP_EncryptUpdate(d->ctx, NULL, &l, out, 5) != 1) return 0;
    /* GCM and ChaCha20-Poly1305 take the plaintext in pieces of any length: the output of each
     * update follows the last */
    size_t at = 0;
    for (int i = 0; i < nv; i++) {
        size_t k = v[i].iov_len;
        if (!k) continue;
        assert(k <= n - at);
        if (EVP_EncryptUpdate(d->ctx, out + 5 + at, &l, v[i].iov_base, (int)k) != 1 || (size_t)l != k) return 0;
        at += k;
    }
    assert(at == n);
    if (EVP_EncryptUpdate(d->ctx, out + 5 + n, &l, &t, 1) != 1 || l != 1) return 0;
    if (EVP_EncryptFinal_ex(d->ctx, out + 5 + n + 1, &l) != 1 || l != 0) return 0;
    if (EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_GET_TAG, TLS_TAG, out + 5 + n + 1) != 1) return 0;
    d->seq++;
    return 5 + body;
}

size_t tls_seal(struct tls_dir *d, int type, const void *pt, size_t n, unsigned char *out) {
    struct iovec v = {(void *)(uintptr_t)pt, n};
    return tls_sealv(d, type, &v, 1, n, out);
}

long tls_open(struct tls_dir *d, unsigned char *rec, size_t len, int *type) {
    assert(d->enc == 0 && len >= 5 && (long)(len - 5) == tls_hdr(rec));
    size_t blen = len - 5;
    unsigned char *body = rec + 5;
    if (blen < 1 + TLS_TAG) return -TLS_AL_BAD_RECORD_MAC; /* no room for a content type and a tag */
    if (d->seq == UINT64_MAX) return -TLS_AL_UNEXPECTED_MESSAGE; /* the peer should have rekeyed */
    size_t clen = blen - TLS_TAG;
    int l = 0, l2 = 0;
    if (!set_nonce(d) || EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_TAG, TLS_TAG, body + clen) != 1 ||
        EVP_DecryptUpdate(d->ctx, NULL, &l, rec, 5) != 1 ||
        EVP_DecryptUpdate(d->ctx, body, &l, body, (int)clen) != 1 ||
        EVP_DecryptFinal_ex(d->ctx, body + l, &l2) != 1 || l < 0 || l2 < 0 || (size_t)l + (size_t)l2 != clen) {
        OPENSSL_cleanse(body, blen); /* what did not authenticate never leaves */
        return -TLS_AL_BAD_RECORD_MAC;
    }
    d->seq++;
    size_t i = clen;
    while (i > 0 && body[i - 1] == 0) i--; /* the padding (5.4) */
    if (i == 0) return -TLS_AL_UNEXPECTED_MESSAGE;
    *type = body[i - 1];
    if (i - 1 > TLS_PT_MAX) return -TLS_AL_RECORD_OVERFLOW;
    return (long)(i - 1);
}

long tls_post_handshake(const unsigned char *p, size_t n, int server, int *key_update, const char **why) {
    *key_update = -1;
    *why = NULL;
    if (!n) {
        *why = "an empty handshake record";
        return -TLS_AL_UNEXPECTED_MESSAGE;
    }
    while (n) {
        size_t ml = n < 4 ? 0 : (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (n < 4 || ml > n - 4) {
            *why = "a post-handshake message split across records (not taken by the lean record layer)";
            return -TLS_AL_UNEXPECTED_MESSAGE;
        }
        if (p[0] == TLS_HS_NEW_SESSION_TICKET && !server) {
            /* not kept: resumption uses the tickets that came through OpenSSL */
        } else if (p[0] == TLS_HS_KEY_UPDATE) {
            if (ml != 1 || p[4] > 1) {
                *why = "a malformed KeyUpdate";
                return -TLS_AL_DECODE_ERROR;
            }
            if (ml + 4 != n) { /* a key change must end its record (5.1) */
                *why = "a KeyUpdate not at the end of its record";
                return -TLS_AL_UNEXPECTED_MESSAGE;
            }
            *key_update = p[4];
        } else {
            *why = "a post-handshake message of a type the lean record layer does not take";
            return -TLS_AL_UNEXPECTED_MESSAGE;
        }
        p += 4 + ml, n -= 4 + ml;
    }
    return 0;
}
