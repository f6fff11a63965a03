/* cas/util.h - small helpers shared by the CAS daemon and the attestation client:
 * hex/base64, hashing, AEAD (AES-256-GCM), HKDF, files with safe permissions. */
#ifndef SCP_CAS_UTIL_H
#define SCP_CAS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"

#define CAS_AEAD_OVERHEAD 28 /* 12-byte IV + 16-byte tag */

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void cas_hex(const uint8_t *in, size_t n, char *out);
/* Parse exactly 2n hex digits (and nothing else) into n bytes; -1 if malformed. */
int cas_unhex(const char *hex, uint8_t *out, size_t n);
/* Base64 (standard alphabet, padded). Returns malloc'd strings/buffers or NULL. */
char *cas_b64enc(const uint8_t *in, size_t n);
uint8_t *cas_b64dec(const char *in, size_t *out_len);

int cas_random(void *buf, size_t n, scp_err *err);
void cas_sha256(const void *data, size_t n, uint8_t out[32]);
int cas_hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t n, uint8_t out[32],
                    scp_err *err);
int cas_hkdf(const uint8_t *ikm, size_t ikmlen, const void *salt, size_t saltlen, const void *info,
             size_t infolen, uint8_t *out, size_t outlen, scp_err *err);

/* AES-256-GCM with a random IV. *out (malloc'd) = IV || ciphertext || tag. */
int cas_aead_seal(const uint8_t key[32], const void *aad, size_t aadlen, const void *pt, size_t ptlen,
                  uint8_t **out, size_t *outlen, scp_err *err);
/* Inverse of cas_aead_seal. *out is malloc'd with a NUL after the plaintext.
 * Fails with SCP_E_INTEGRITY if the data or the AAD were changed. */
int cas_aead_open(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                  uint8_t **out, size_t *outlen, scp_err *err);

/* Read a whole file (at most max bytes; larger files fail). *out is malloc'd and NUL-terminated. */
int cas_read_file(const char *path, size_t max, char **out, size_t *len, scp_err *err);
/* Write a file atomically (temp + fsync + rename) with the given mode. */
int cas_write_file(const char *path, const void *data, size_t len, unsigned mode, scp_err *err);

/* Constant-time comparison. */
int cas_memeq(const void *a, const void *b, size_t n);

/* Big-endian helpers. */
static inline void cas_put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void cas_put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void cas_put_u64(uint8_t *p, uint64_t v) {
    cas_put_u32(p, (uint32_t)(v >> 32)); cas_put_u32(p + 4, (uint32_t)v);
}
static inline uint16_t cas_get_u16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t cas_get_u32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t cas_get_u64(const uint8_t *p) {
    return ((uint64_t)cas_get_u32(p) << 32) | cas_get_u32(p + 4);
}

#endif
