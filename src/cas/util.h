/* cas/util.h - helpers shared by the CAS daemon and the attestation client: base64, a sealed
 * envelope (AES-256-GCM with its IV), files with safe permissions. Hex, hashing, HKDF and
 * big-endian integers come from the project's common/ and crypto/ modules, included here. */
#ifndef SCP_CAS_UTIL_H
#define SCP_CAS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/err.h"

#define CAS_AEAD_OVERHEAD 28 /* 12-byte IV + 16-byte tag */

/* Base64 (standard alphabet, padded). Returns malloc'd strings/buffers or NULL. */
char *cas_b64enc(const uint8_t *in, size_t n);
uint8_t *cas_b64dec(const char *in, size_t *out_len);

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

/* Copy text that may come from a client into a line of output: control characters (C0, DEL,
 * and C1 in UTF-8) become \n, \t, \r or \xNN and a backslash becomes \\, so that the text
 * can neither start a new line or field nor drive a terminal. Always NUL-terminates out
 * (outsz > 0); a truncated result ends at a whole escape. Returns out. */
char *cas_escape_text(const char *in, char *out, size_t outsz);

#endif
