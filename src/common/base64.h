/* common/base64.h - Base64 (standard alphabet, padded), as CAS's JSON and the attestation
 * messages carry binary values. */
#ifndef SCP_COMMON_BASE64_H
#define SCP_COMMON_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Encode n bytes. Returns a malloc'd NUL-terminated string, or NULL (out of memory, n > 256 MiB). */
char *scp_b64enc(const uint8_t *in, size_t n);
/* Decode a padded Base64 string (strict: only the alphabet, '=' only at the end). Returns a
 * malloc'd buffer and its length in *out_len, or NULL for malformed input. */
uint8_t *scp_b64dec(const char *in, size_t *out_len);
/* The same without allocating (async-signal-safe): encode n bytes into out (4 * ((n + 2) / 3)
 * bytes, no NUL), returning that length; decode the n characters of in (strict, as above)
 * into out (cap bytes), returning 0 and the length in *out_len, or -1 for malformed input or
 * an out too small. */
size_t scp_b64enc_to(const uint8_t *in, size_t n, char *out);
int scp_b64dec_to(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);

#endif
