/* cas/nonce.c - single-use attestation nonces, kept in memory for NONCE_TTL_MS.
 * A table of NONCE_BUCKETS buckets of NONCE_WAYS slots; a nonce lives in the bucket its first
 * bytes select. A restart forgets all nonces (they are short-lived; clients ask again). */
#include <string.h>

#include "cas/internal.h"
#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"

static nonce_slot *bucket(cas_api *api, const uint8_t nonce[32]) {
    uint32_t b = scp_get_u32(nonce) % NONCE_BUCKETS;
    return &api->nonces[(size_t)b * NONCE_WAYS];
}

int cas_nonce_issue(cas_api *api, uint8_t nonce[32]) {
    if (scp_random(nonce, 32, NULL) < 0) return -1;
    int64_t now = cas_now_ms();
    pthread_mutex_lock(&api->nonce_mu);
    nonce_slot *b = bucket(api, nonce);
    int rc = -1;
    for (int i = 0; i < NONCE_WAYS; i++)
        if (b[i].expires_ms <= now) { /* free or expired */
            memcpy(b[i].nonce, nonce, 32);
            b[i].expires_ms = now + api->nonce_ttl_ms;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&api->nonce_mu);
    return rc;
}

int cas_nonce_take(cas_api *api, const uint8_t nonce[32]) {
    int64_t now = cas_now_ms();
    pthread_mutex_lock(&api->nonce_mu);
    nonce_slot *b = bucket(api, nonce);
    int found = 0;
    for (int i = 0; i < NONCE_WAYS; i++)
        if (b[i].expires_ms != 0 && !scp_ct_cmp(b[i].nonce, nonce, 32)) {
            found = b[i].expires_ms > now;
            b[i].expires_ms = 0; /* used (or expired): never again */
            break;
        }
    pthread_mutex_unlock(&api->nonce_mu);
    return found;
}
