/* cas/audit.c - the append-only, hash-chained audit log.
 *
 * Row i carries hash_i = HMAC-SHA256(k_audit, hash_{i-1} || encode(row_i)), hex, where
 * encode() length-prefixes every field (seq, time, actor, action, session, service,
 * measurement, platform, decision, reason) and hash_0 is "". Editing, deleting or reordering
 * a row breaks the chain from that row on; recomputing the chain needs the key (derived from
 * the master key), which the database does not hold. Truncating the newest rows is not
 * detectable from the database alone (see docs/cas.md). */
#include <stdio.h>
#include <string.h>


#include "cas/internal.h"
#include "cas/util.h"

typedef struct abuf {
    uint8_t b[2048];
    size_t n;
} abuf;

static void put_str(abuf *a, const char *s) {
    size_t n = strlen(s);
    if (a->n + 4 + n > sizeof a->b) n = 0; /* cannot happen: fields are bounded */
    cas_put_u32(a->b + a->n, (uint32_t)n);
    memcpy(a->b + a->n + 4, s, n);
    a->n += 4 + n;
}

void cas_audit_row_hash(const uint8_t key[32], const char *prev, const cas_audit_row *r, char out[65]) {
    abuf a;
    a.n = 0;
    put_str(&a, prev);
    cas_put_u64(a.b + a.n, (uint64_t)r->seq);
    cas_put_u64(a.b + a.n + 8, (uint64_t)r->ts_ms);
    a.n += 16;
    put_str(&a, r->actor);
    put_str(&a, r->action);
    put_str(&a, r->session);
    put_str(&a, r->service);
    put_str(&a, r->measurement);
    put_str(&a, r->platform);
    put_str(&a, r->decision);
    put_str(&a, r->reason);
    uint8_t d[32];
    cas_hmac_sha256(key, 32, a.b, a.n, d, NULL);
    cas_hex(d, 32, out);
}

int cas_audit_init(cas_api *api, scp_err *err) {
    return api->st->ops->audit_last(api->st, &api->audit_seq, api->audit_hash, err);
}

int cas_audit_append(cas_api *api, const cas_audit_info *ai, const char *decision, const char *reason) {
    cas_audit_row r;
    memset(&r, 0, sizeof r);
    r.ts_ms = cas_now_ms();
    snprintf(r.actor, sizeof r.actor, "%s", ai->actor[0] ? ai->actor : "anonymous");
    snprintf(r.action, sizeof r.action, "%s", ai->action ? ai->action : "request");
    snprintf(r.session, sizeof r.session, "%s", ai->session);
    snprintf(r.service, sizeof r.service, "%s", ai->service);
    snprintf(r.measurement, sizeof r.measurement, "%s", ai->measurement);
    snprintf(r.platform, sizeof r.platform, "%s", ai->platform);
    snprintf(r.decision, sizeof r.decision, "%s", decision);
    snprintf(r.reason, sizeof r.reason, "%s", reason);
    pthread_mutex_lock(&api->audit_mu);
    r.seq = api->audit_seq + 1;
    cas_audit_row_hash(api->k_audit, api->audit_hash, &r, r.hash);
    scp_err e = {0};
    int rc = api->st->ops->audit_append(api->st, &r, &e);
    if (rc == 0) {
        api->audit_seq = r.seq;
        memcpy(api->audit_hash, r.hash, 65);
    } else {
        fprintf(stderr, "scp-cas: cannot append to the audit log: %s\n", e.msg);
    }
    pthread_mutex_unlock(&api->audit_mu);
    return rc;
}

typedef struct vctx {
    cas_api *api;
    char prev[65];
    int64_t expect, bad, count;
} vctx;

static int verify_cb(void *ctx, const cas_audit_row *r) {
    vctx *v = ctx;
    char h[65];
    v->count++;
    if (r->seq != v->expect) {
        v->bad = v->expect; /* a row is missing or out of order */
        return 1;
    }
    cas_audit_row_hash(v->api->k_audit, v->prev, r, h);
    if (!cas_memeq(h, r->hash, 64)) {
        v->bad = r->seq;
        return 1;
    }
    memcpy(v->prev, r->hash, 65);
    v->expect++;
    return 0;
}

int64_t cas_audit_verify(cas_api *api, int64_t *count, scp_err *err) {
    vctx v = {api, "", 1, 0, 0};
    /* hold the append lock so that the chain does not move under us */
    pthread_mutex_lock(&api->audit_mu);
    int r = api->st->ops->audit_scan(api->st, 1, INT64_MAX, verify_cb, &v, err);
    int64_t last = api->audit_seq;
    pthread_mutex_unlock(&api->audit_mu);
    if (r < 0) return -1;
    if (v.bad == 0 && v.expect - 1 != last) v.bad = v.expect; /* rows after the gap are gone */
    *count = last;
    return v.bad;
}
