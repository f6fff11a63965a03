/* cas/policy_cache.c - parsed policies shared between requests, keyed by (session, hash).
 *
 * Attestation is the hot path: decrypting and parsing the YAML on every request costs more than
 * looking the session up. The store stays the source of truth: every acquire reads the
 * session's current hash from the store, and only a parsed policy of exactly that version is
 * reused. Entries are reference-counted, so an update never frees a policy in use. */
#include <string.h>

#include "cas/internal.h"

static cached_policy *find_locked(cas_api *api, const char *name, const char *hash) {
    for (int i = 0; i < POLICY_CACHE; i++) {
        cached_policy *c = &api->pc[i];
        if (c->p && !c->dead && strcmp(c->name, name) == 0 && strcmp(c->hash, hash) == 0) return c;
    }
    return NULL;
}

int cas_policy_acquire(cas_api *api, const char *name, cas_session_row *row, cas_policy **pol, cas_response *resp) {
    scp_err e = {0};
    int r = api->st->ops->session_get(api->st, name, row, &e);
    if (r < 0) {
        cas_deny(resp, 500, "internal", "%s", e.msg);
        return -1;
    }
    if (r == 0) {
        cas_deny(resp, 404, "unknown_session", "no session named '%s'", name);
        return 0;
    }
    pthread_mutex_lock(&api->pc_mu);
    cached_policy *c = find_locked(api, name, row->hash);
    if (c) {
        c->refs++;
        c->used = ++api->pc_clock;
        *pol = c->p;
        pthread_mutex_unlock(&api->pc_mu);
        return 1;
    }
    pthread_mutex_unlock(&api->pc_mu);
    free(row->policy);
    row->policy = NULL;
    cas_policy *p = NULL;
    r = cas_load_policy(api, name, row, &p, NULL, resp);
    if (r <= 0) return r;
    pthread_mutex_lock(&api->pc_mu);
    cached_policy *slot = NULL;
    for (int i = 0; i < POLICY_CACHE; i++) {
        cached_policy *x = &api->pc[i];
        if (x->p && !x->dead && strcmp(x->name, name) == 0) x->dead = 1; /* an older version */
        if (x->p && x->dead && x->refs == 0) {
            cas_policy_free(x->p);
            memset(x, 0, sizeof *x);
        }
    }
    for (int i = 0; i < POLICY_CACHE; i++) {
        cached_policy *x = &api->pc[i];
        if (!x->p) {
            slot = x;
            break;
        }
        if (x->refs == 0 && (!slot || x->used < slot->used)) slot = x;
    }
    if (slot) {
        if (slot->p) cas_policy_free(slot->p);
        memset(slot, 0, sizeof *slot);
        snprintf(slot->name, sizeof slot->name, "%s", name);
        snprintf(slot->hash, sizeof slot->hash, "%s", row->hash);
        slot->p = p;
        slot->refs = 1;
        slot->used = ++api->pc_clock;
    }
    pthread_mutex_unlock(&api->pc_mu);
    *pol = p; /* uncached when every slot is in use: released by freeing */
    return 1;
}

void cas_policy_release(cas_api *api, cas_policy *pol) {
    if (!pol) return;
    pthread_mutex_lock(&api->pc_mu);
    for (int i = 0; i < POLICY_CACHE; i++) {
        cached_policy *x = &api->pc[i];
        if (x->p == pol) {
            if (--x->refs == 0 && x->dead) {
                cas_policy_free(x->p);
                memset(x, 0, sizeof *x);
            }
            pthread_mutex_unlock(&api->pc_mu);
            return;
        }
    }
    pthread_mutex_unlock(&api->pc_mu);
    cas_policy_free(pol);
}

void cas_policy_cache_free(cas_api *api) {
    for (int i = 0; i < POLICY_CACHE; i++) {
        cas_policy_free(api->pc[i].p);
        memset(&api->pc[i], 0, sizeof api->pc[i]);
    }
}
