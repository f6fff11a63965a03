/* cas/audit.c - the append-only, hash-chained audit log.
 *
 * Row i carries hash_i = HMAC-SHA256(k_audit, hash_{i-1} || encode(row_i)), hex, where
 * encode() length-prefixes every field (seq, time, actor, action, session, service,
 * measurement, platform, decision, reason) and hash_0 is "". Editing, deleting or reordering
 * a row breaks the chain from that row on; recomputing the chain needs the key (derived from
 * the master key), which the database does not hold. Truncating the newest rows is not
 * detectable from the database alone: the MACed head file (audit.head) records the last row,
 * and a CAS whose keystore existed before this start (so it has written rows: its first start
 * wrote a genesis row) refuses to start without an intact head and a log that reaches it,
 * unless the operator accepts a reset, which becomes the next row (see docs/cas.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>


#include "cas/internal.h"
#include "common/log.h"
#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"

typedef struct abuf {
    uint8_t b[2048];
    size_t n;
} abuf;

static void put_str(abuf *a, const char *s) {
    size_t n = strlen(s);
    if (a->n + 4 + n > sizeof a->b) n = 0; /* cannot happen: fields are bounded */
    scp_put_u32(a->b + a->n, (uint32_t)n);
    memcpy(a->b + a->n + 4, s, n);
    a->n += 4 + n;
}

void cas_audit_row_hash(const uint8_t key[32], const char *prev, const cas_audit_row *r, char out[65]) {
    abuf a;
    a.n = 0;
    put_str(&a, prev);
    scp_put_u64(a.b + a.n, (uint64_t)r->seq);
    scp_put_u64(a.b + a.n + 8, (uint64_t)r->ts_ms);
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
    scp_hmac_buf(key, 32, a.b, a.n, d, NULL);
    scp_hex(d, 32, out);
}

static void head_mac(cas_api *api, int64_t seq, const char *hash, char out[65]) {
    char buf[128];
    int n = snprintf(buf, sizeof buf, "scp-cas audit head%c%lld%c%s", 0, (long long)seq, 0, hash);
    uint8_t d[32];
    scp_hmac_buf(api->k_audit, 32, buf, (size_t)n, d, NULL);
    scp_hex(d, 32, out);
}

/* Called with audit_mu held (or before threads exist). */
static void write_head(cas_api *api) {
    char mac[65], text[256];
    head_mac(api, api->audit_seq, api->audit_hash, mac);
    int n = snprintf(text, sizeof text, "%lld %s %s\n", (long long)api->audit_seq,
                     api->audit_hash[0] ? api->audit_hash : "-", mac);
    scp_err e = {0};
    if (scp_write_file_atomic(api->head_path, text, (size_t)n, 0600, &e) < 0)
        scp_log(SCP_LOG_ERROR, "scp-cas", "cannot write the audit head: %s", e.msg);
    api->head_written_ms = cas_now_ms();
}

/* Rows whose absence cannot be explained: a CAS with history (its keystore existed before this
 * start) whose head file is missing or forged, whose log is empty (every log starts with a
 * genesis or reset row), or whose log ends before the row the head recorded. problem[0] == 0
 * if none. */
static void find_lost_rows(const cas_api *api, int history, char problem[200]) {
    problem[0] = 0;
    if (history && api->head_problem)
        snprintf(problem, 200, "the audit head file is missing or forged (log ends at row %lld)",
                 (long long)api->audit_seq);
    else if (history && api->audit_seq == 0)
        snprintf(problem, 200, "the audit log is empty but this CAS has written rows before");
    else if (api->audit_seq < api->floor_seq)
        snprintf(problem, 200, "the audit log ends at row %lld but row %lld was written",
                 (long long)api->audit_seq, (long long)api->floor_seq);
}

/* The first row of a new log (or of what is left of one, after an accepted reset). Written
 * before any thread exists. */
static int append_start_row(cas_api *api, const char *action, const char *actor, const char *decision,
                            const char *reason, scp_err *err) {
    cas_audit_info ai;
    memset(&ai, 0, sizeof ai);
    ai.action = action;
    snprintf(ai.actor, sizeof ai.actor, "%s", actor);
    if (cas_audit_append(api, &ai, decision, reason) < 0)
        return scp_fail(err, SCP_E_SYS, EIO, "cannot write the audit log's %s row", action);
    return 0;
}

int cas_audit_init(cas_api *api, const char *data_dir, unsigned flags, scp_err *err) {
    if (api->st->ops->audit_last(api->st, &api->audit_seq, api->audit_hash, err) < 0) return -1;
    snprintf(api->head_path, sizeof api->head_path, "%s/audit.head", data_dir);
    char *text = NULL;
    size_t len = 0;
    scp_err e = {0};
    int history = !(flags & CAS_AUDIT_NEW_KEYSTORE);
    if (scp_read_path(api->head_path, 1024, &text, &len, &e) == 0) {
        long long seq = -1;
        char hash[80] = "", mac[80] = "", want[65];
        if (sscanf(text, "%lld %79s %79s", &seq, hash, mac) == 3 && seq >= 0) {
            if (strcmp(hash, "-") == 0) hash[0] = 0;
            head_mac(api, seq, hash, want);
            if (strlen(mac) == 64 && !scp_ct_cmp(mac, want, 64)) {
                api->floor_seq = seq;
                snprintf(api->floor_hash, sizeof api->floor_hash, "%.64s", hash);
            } else {
                api->head_problem = 1;
            }
        } else {
            api->head_problem = 1;
        }
        free(text);
    } else if (api->audit_seq > 0 || history) {
        api->head_problem = 1; /* the head file was removed */
    }
    char lost[200];
    find_lost_rows(api, history, lost);
    if (lost[0] && !(flags & CAS_AUDIT_ACCEPT_RESET)) {
        api->head_frozen = 1; /* a refused start leaves everything as it found it */
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "refusing to start: %s: audit rows were removed; if that is expected (a restored "
                        "backup), start once with --accept-audit-reset (the reset is recorded in the log)",
                        lost);
    }
    if (lost[0]) {
        /* the operator accepts what is left: the head follows the log again, and the reset is
         * the first row after it (the first row at all if the log was emptied) */
        api->head_problem = 0;
        api->floor_seq = 0;
        api->floor_hash[0] = 0;
        char reason[260];
        snprintf(reason, sizeof reason, "reset accepted at start (--accept-audit-reset): %s", lost);
        if (append_start_row(api, "audit.reset", "operator", "accepted", reason, err) < 0) return -1;
        scp_log(SCP_LOG_WARN, "scp-cas", "WARNING: audit log reset accepted: %s; recorded as row %lld", lost,
                (long long)api->audit_seq);
    } else if (!history && api->audit_seq == 0) {
        if (append_start_row(api, "audit.genesis", "cas", "ok", "a new CAS: its audit log starts here", err) < 0)
            return -1;
    }
    int64_t count;
    char problem[200];
    int64_t bad = cas_audit_verify(api, &count, NULL, problem, err);
    if (bad < 0) return -1;
    if (bad > 0) {
        /* keep the evidence: the head stays where it is for as long as the log is broken */
        api->head_frozen = 1;
        scp_log(SCP_LOG_WARN, "scp-cas", "WARNING: the audit log is broken at row %lld: %s", (long long)bad, problem);
        return 0;
    }
    write_head(api);
    return 0;
}

void cas_audit_close(cas_api *api) {
    pthread_mutex_lock(&api->audit_mu);
    if (!api->head_problem && !api->head_frozen) write_head(api);
    pthread_mutex_unlock(&api->audit_mu);
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
        /* about once a second; never move the head over a log that lost rows */
        if (!api->head_problem && !api->head_frozen && r.ts_ms - api->head_written_ms >= 1000)
            write_head(api);
    } else {
        scp_log(SCP_LOG_ERROR, "scp-cas", "cannot append to the audit log: %s", e.msg);
    }
    pthread_mutex_unlock(&api->audit_mu);
    return rc;
}

typedef struct vctx {
    cas_api *api;
    char prev[65];
    int64_t expect, bad, count;
    char *problem;
    int64_t reset_at; /* the last row that records an accepted reset */
} vctx;

static int verify_cb(void *ctx, const cas_audit_row *r) {
    vctx *v = ctx;
    char h[65];
    v->count++;
    if (r->seq != v->expect) {
        v->bad = v->expect; /* a row is missing or out of order */
        snprintf(v->problem, 200, "row %lld is missing or out of order", (long long)v->expect);
        return 1;
    }
    cas_audit_row_hash(v->api->k_audit, v->prev, r, h);
    if (!!scp_ct_cmp(h, r->hash, 64)) {
        v->bad = r->seq;
        snprintf(v->problem, 200, "row %lld does not match its chain hash (edited, or chained to an edited row)",
                 (long long)r->seq);
        return 1;
    }
    if (r->seq == v->api->floor_seq && strcmp(r->hash, v->api->floor_hash) != 0) {
        v->bad = r->seq;
        snprintf(v->problem, 200, "row %lld is not the row recorded in the audit head (the log was rewritten)",
                 (long long)r->seq);
        return 1;
    }
    if (strcmp(r->action, "audit.reset") == 0) v->reset_at = r->seq;
    memcpy(v->prev, r->hash, 65);
    v->expect++;
    return 0;
}

int64_t cas_audit_verify(cas_api *api, int64_t *count, int64_t *reset_at, char problem[200], scp_err *err) {
    vctx v = {api, "", 1, 0, 0, problem, 0};
    problem[0] = 0;
    /* hold the append lock so that the chain does not move under us */
    pthread_mutex_lock(&api->audit_mu);
    int r = api->st->ops->audit_scan(api->st, 1, INT64_MAX, verify_cb, &v, err);
    int64_t last = api->audit_seq;
    pthread_mutex_unlock(&api->audit_mu);
    if (r < 0) return -1;
    if (v.bad == 0 && v.expect - 1 != last) {
        v.bad = v.expect; /* rows after the gap are gone */
        snprintf(problem, 200, "rows from %lld on are gone", (long long)v.expect);
    }
    if (v.bad == 0 && v.expect - 1 < api->floor_seq) {
        v.bad = v.expect;
        snprintf(problem, 200, "the log ends at row %lld but row %lld was written: the newest rows were removed",
                 (long long)(v.expect - 1), (long long)api->floor_seq);
    }
    if (v.bad == 0 && last == 0) {
        v.bad = 1;
        snprintf(problem, 200, "the log is empty (every log starts with a genesis or reset row): it was deleted");
    }
    if (v.bad == 0 && api->head_problem) {
        v.bad = 1;
        snprintf(problem, 200, "the audit head file is missing or forged: rows may have been removed");
    }
    *count = last;
    if (reset_at) *reset_at = v.reset_at;
    return v.bad;
}
