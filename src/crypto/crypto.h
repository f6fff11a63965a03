/* crypto/crypto.h - the few primitives SCP uses, all through OpenSSL 3.
 *
 * AES-256-GCM goes through EVP so that AES-NI/VAES are used. Cipher contexts are cached per
 * thread (a few keyed ones per direction, the least recently used re-keyed when a new key
 * comes, key copies in locked non-dumpable memory), so sealing a 4 KiB chunk costs one IV
 * setup and no allocation, also when a commit seals under three keys in turn.
 */
#ifndef SCP_CRYPTO_H
#define SCP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"

#define SCP_AEAD_KEY_LEN 32
#define SCP_AEAD_NONCE_LEN 12
#define SCP_AEAD_TAG_LEN 16
#define SCP_SHA256_LEN 32

/* Cryptographically secure random bytes. */
int scp_random(void *buf, size_t n, scp_err *err);
/* The same for values that need not stay secret (nonces, salts, file ids): drawn from a
 * per-thread buffer of the generator's output, refilled in another process (aead.c), so that
 * a commit's few nonces cost one RAND_bytes call per 40 of them instead of one each. Never for
 * keys. */
int scp_random_public(void *buf, size_t n, scp_err *err);

/* Drop every thread's cached AES-GCM contexts and key copies (their key schedules are cleared):
 * called when a volume closes, so that no key outlives it in a cache. The next operation of
 * any thread re-keys. */
void scp_crypto_forget_keys(void);
/* Cached keyed contexts over all threads (for tests: 0 right after scp_crypto_forget_keys). */
size_t scp_crypto_cached_keys(void);
/* Register the crypto layer's fork handlers now (idempotent; otherwise done at the first AEAD
 * call). Its prepare handler takes the lock of the per-thread context list, which a thread
 * inside a volume call may be waiting for while it holds volume locks. glibc runs prepare
 * handlers in the reverse order of registration, so a library whose fork handlers take such
 * locks calls this before it registers its own: its prepare then runs first, and the lock
 * order (volume locks, then this list) is the one threads use. */
void scp_crypto_atfork_register(void);
/* OpenSSL's base initialisation only (tens of microseconds: no configuration file, no
 * algorithms, which the first real use still loads). It registers OpenSSL's exit cleanup now:
 * a library that initialises OpenSSL lazily but uses it in a destructor (the shield commits at
 * exit) calls this from its constructor, so that the cleanup runs after that destructor. */
void scp_crypto_early_init(void);

/* AES-256-GCM. ct/pt may alias (in place). open returns -1 with SCP_E_INTEGRITY when the tag
 * does not verify; pt is then zeroed so that no unauthenticated byte escapes. */
int scp_aead_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                  size_t aad_len, const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[16],
                  scp_err *err);
int scp_aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                  size_t aad_len, const uint8_t *ct, size_t len, const uint8_t tag[16],
                  uint8_t *pt, scp_err *err);

/* HKDF-SHA256 (RFC 5869). */
int scp_hkdf(const uint8_t *ikm, size_t ikm_len, const void *salt, size_t salt_len,
             const void *info, size_t info_len, uint8_t *out, size_t out_len, scp_err *err);

/* A 32-byte key for one purpose: HKDF-SHA256(ikm = key, no salt, info = label || 0x00 || ctx).
 * The NUL ends the label, so two (label, ctx) pairs never give the same info. Every key that
 * SCP derives has its own label; ctx (at most 64 bytes) names the instance (file id, salt). */
int scp_derive_key(const uint8_t key[32], const char *label, const void *ctx, size_t ctx_len,
                   uint8_t out[32], scp_err *err);

/* HMAC-SHA256 over the concatenation of n parts. */
struct scp_buf {
    const void *p;
    size_t n;
};
int scp_hmac(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
             uint8_t out[32], scp_err *err);

/* SHA-256 over the concatenation of n parts. */
void scp_sha256(const struct scp_buf *parts, size_t n, uint8_t out[32]);

/* SHA-256 whose state can be saved and resumed: a midstate is a plain value (copy it to save
 * it), so a hash over a long input of which only a late part changed restarts from the state
 * saved before that part (chunk.c, table_root). Same digests as scp_sha256. */
typedef struct {
    _Alignas(8) unsigned char opaque[128];
} scp_sha256_mid;
void scp_sha256_mid_init(scp_sha256_mid *m);
void scp_sha256_mid_update(scp_sha256_mid *m, const void *p, size_t n);
/* The digest of what m has taken in so far; m itself is left as it was. */
void scp_sha256_mid_final(const scp_sha256_mid *m, uint8_t out[32]);

/* One-buffer forms of the two above. */
void scp_sha256_buf(const void *p, size_t n, uint8_t out[32]);
int scp_hmac_buf(const uint8_t *key, size_t key_len, const void *p, size_t n, uint8_t out[32],
                 scp_err *err);

/* SHA-256 of the whole content of the file open at fd (read with pread from offset 0) and its
 * size: the per-file hash of the measurement (scp_attest_measure_fds) and of the shield's
 * trusted-file checks, one function so that both always agree. Returns 0, or -1 with errno. */
int scp_sha256_fd(int fd, uint8_t out[32], uint64_t *size);

/* Constant-time comparison; 0 when equal. */
int scp_ct_cmp(const void *a, const void *b, size_t n);

/* A sealed envelope: AES-256-GCM under a fresh random IV, laid out IV || ciphertext || tag
 * (SCP_ENVELOPE_OVERHEAD bytes more than the plaintext). *out is malloc'd. */
#define SCP_ENVELOPE_OVERHEAD 28 /* 12-byte IV + 16-byte tag */
int scp_envelope_seal(const uint8_t key[32], const void *aad, size_t aadlen, const void *pt, size_t ptlen,
                      uint8_t **out, size_t *outlen, scp_err *err);
/* Inverse of scp_envelope_seal. *out is malloc'd with a NUL after the plaintext. Fails with
 * SCP_E_INTEGRITY if the data or the AAD were changed. */
int scp_envelope_open(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                      uint8_t **out, size_t *outlen, scp_err *err);

#endif
