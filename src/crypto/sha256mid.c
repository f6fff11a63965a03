/* SHA-256 midstates (crypto.h, scp_sha256_mid): OpenSSL's low-level SHA-256, whose context is
 * a plain struct, so that saving the state of a computation is a copy of 112 bytes. The EVP
 * interface can only duplicate a context through the provider (an allocation per copy), and a
 * volume commit saves a few midstates per write (chunk.c, table_root). The low-level functions
 * are deprecated in OpenSSL 3 but run the same assembly (SHA-NI where the CPU has it); this
 * file is the only user, so the deprecation is silenced here alone. scp_sha256 and the HMAC
 * (aead.c) run on these too: EVP's provider dispatch cost more than a short input's hashing. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "crypto/crypto.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(scp_sha256_mid), "scp_sha256_mid too small");
_Static_assert(alignof(SHA256_CTX) <= alignof(scp_sha256_mid), "scp_sha256_mid misaligned");

void scp_sha256_mid_init(scp_sha256_mid *m) {
    /* (SHA256_Init only fails on a NULL context) */
    if (SHA256_Init((SHA256_CTX *)(void *)m) != 1) abort();
}

void scp_sha256_mid_update(scp_sha256_mid *m, const void *p, size_t n) {
    if (n) SHA256_Update((SHA256_CTX *)(void *)m, p, n);
}

void scp_sha256_mid_final(const scp_sha256_mid *m, uint8_t out[32]) {
    SHA256_CTX c;
    memcpy(&c, m, sizeof c);
    SHA256_Final(out, &c); /* (on a copy: m goes on from where it was) */
    /* The copy's state is now the digest, which may be secret (an HMAC's inner hash, HKDF's
     * key): not left on the stack. */
    OPENSSL_cleanse(&c, sizeof c);
}
