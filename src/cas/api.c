/* cas/api.c - request routing, sessions, platforms, status and the audit endpoint.
 * Every request ends in one audit row (see audit.c). */
#include "cas/api.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cas/internal.h"
#include "common/log.h"
#include "common/util.h"
#include "crypto/crypto.h"

static void server_error(cas_response *resp, const scp_err *e) {
    scp_log(SCP_LOG_ERROR, "scp-cas", "internal error: %s", e->msg); /* scp_log escapes it */
    cas_deny(resp, 500, "internal", "internal error: %s", e->msg);
}

typedef struct legacy_tag {
    char session[CAS_NAME_MAX], incarnation[33], name[CAS_NAME_MAX], tag[81];
} legacy_tag;

typedef struct legacy_tags {
    legacy_tag *v;
    size_t n;
} legacy_tags;

static int collect_tag(void *ctx, const char *session, const char *incarnation, const char *name, const char *tag) {
    legacy_tags *l = ctx;
    legacy_tag *v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v) return -1;
    l->v = v;
    snprintf(v[l->n].session, sizeof v[l->n].session, "%s", session);
    snprintf(v[l->n].incarnation, sizeof v[l->n].incarnation, "%s", incarnation);
    snprintf(v[l->n].name, sizeof v[l->n].name, "%s", name);
    snprintf(v[l->n].tag, sizeof v[l->n].tag, "%s", tag);
    l->n++;
    return 0;
}

/* A database from before tag MACs (the store just added the column): MAC the tags found there,
 * trusting them once as the starting point. */
static int seal_legacy_tags(cas_api *a, scp_err *err) {
    legacy_tags l = {NULL, 0};
    int r = a->st->ops->volume_list(a->st, collect_tag, &l, err);
    if (r > 0) r = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (r == 0 && a->st->ops->begin(a->st, err) == 0) {
        for (size_t i = 0; r == 0 && i < l.n; i++)
            r = cas_volume_write_tag(a, l.v[i].session, l.v[i].incarnation, l.v[i].name, l.v[i].tag, err);
        if (r == 0)
            r = a->st->ops->commit(a->st, err);
        else
            a->st->ops->rollback(a->st);
    } else {
        r = -1;
    }
    free(l.v);
    return r;
}

cas_api *cas_api_new(const char *data_dir, const char *store, const uint8_t master[32], const cas_identity *id,
                     const char *const *admins, size_t n_admins, int nonce_ttl_ms, unsigned audit_flags,
                     scp_err *err) {
    cas_api *a = calloc(1, sizeof *a);
    if (!a) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    a->id = id;
    a->nonce_ttl_ms = nonce_ttl_ms > 0 ? nonce_ttl_ms : NONCE_TTL_MS;
    pthread_mutex_init(&a->nonce_mu, NULL);
    pthread_mutex_init(&a->audit_mu, NULL);
    pthread_mutex_init(&a->pc_mu, NULL);
    a->nonces = calloc((size_t)NONCE_BUCKETS * NONCE_WAYS, sizeof *a->nonces);
    a->admins = calloc(n_admins + 1, sizeof *a->admins);
    if (!a->nonces || !a->admins) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_admins; i++) {
        if (!(a->admins[i] = strdup(admins[i]))) goto fail;
        a->n_admins++;
    }
    if (scp_hkdf(master, 32, NULL, 0, "scp-cas data v1", 15, a->k_data, 32, err) < 0 ||
        scp_hkdf(master, 32, NULL, 0, "scp-cas audit v1", 16, a->k_audit, 32, err) < 0 ||
        scp_hkdf(master, 32, NULL, 0, "scp-cas token v1", 16, a->k_token, 32, err) < 0 ||
        scp_hkdf(master, 32, NULL, 0, "scp-cas volume tag v1", 21, a->k_tag, 32, err) < 0)
        goto fail;
    if (store) {
        a->st = cas_store_open_pg(store, err);
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s/cas.db", data_dir);
        a->st = cas_store_open_sqlite(path, err);
    }
    if (!a->st) goto fail;
    uint8_t owner[32];
    char owner_hex[65];
    if (scp_hkdf(master, 32, NULL, 0, "scp-cas store owner v1", 22, owner, sizeof owner, err) < 0) goto fail;
    scp_hex(owner, sizeof owner, owner_hex);
    int other = a->st->ops->bind_owner(a->st, owner_hex, err);
    if (other < 0) goto fail;
    if (other) {
        scp_fail(err, SCP_E_KEY, EACCES,
                 "the database belongs to another CAS (made with another master key than %s's): give this "
                 "CAS its own database, or the data directory that made this one",
                 data_dir);
        goto fail;
    }
    if (a->st->tags_need_mac && seal_legacy_tags(a, err) < 0) goto fail;
    if (cas_audit_init(a, data_dir, audit_flags, err) < 0) goto fail;
    return a;
fail:
    cas_api_free(a);
    return NULL;
}

int cas_api_set_hw(cas_api *api, const char *data_dir, const char *collateral_dir, const uint8_t *test_ark,
                   const uint8_t *test_intel_root, scp_err *err) {
    int n = collateral_dir ? snprintf(api->collateral_dir, sizeof api->collateral_dir, "%s", collateral_dir)
                           : snprintf(api->collateral_dir, sizeof api->collateral_dir, "%s/collateral", data_dir);
    if (n < 0 || (size_t)n >= sizeof api->collateral_dir)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "collateral directory path too long");
    if ((api->has_test_ark = test_ark != NULL)) memcpy(api->test_ark, test_ark, 32);
    if ((api->has_test_intel_root = test_intel_root != NULL)) memcpy(api->test_intel_root, test_intel_root, 32);
    return 0;
}

void cas_api_free(cas_api *a) {
    if (!a) return;
    if (a->st && a->head_path[0]) cas_audit_close(a);
    if (a->st) a->st->ops->close(a->st);
    cas_policy_cache_free(a);
    pthread_mutex_destroy(&a->pc_mu);
    for (size_t i = 0; i < a->n_admins; i++) free(a->admins[i]);
    free(a->admins);
    free(a->nonces);
    OPENSSL_cleanse(a->k_data, 32);
    OPENSSL_cleanse(a->k_audit, 32);
    OPENSSL_cleanse(a->k_token, 32);
    OPENSSL_cleanse(a->k_tag, 32);
    pthread_mutex_destroy(&a->nonce_mu);
    pthread_mutex_destroy(&a->audit_mu);
    free(a);
}

static int is_admin(cas_api *a, const char *cid) {
    if (!cid) return 0;
    for (size_t i = 0; i < a->n_admins; i++)
        if (strcasecmp(a->admins[i], cid) == 0) return 1;
    return 0;
}

/* ---- sessions ------------------------------------------------------------------------------ */

int cas_load_policy(cas_api *api, const char *name, cas_session_row *row, cas_policy **pol, char **yaml,
                    cas_response *resp) {
    scp_err e = {0};
    int r = api->st->ops->session_get(api->st, name, row, &e);
    if (r < 0) {
        server_error(resp, &e);
        return -1;
    }
    if (r == 0) {
        cas_deny(resp, 404, "unknown_session", "no session named '%s'", name);
        return 0;
    }
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    if (cas_unseal(api, "policy", name, "", row->policy, row->policy_len, &pt, &ptlen, &e) < 0) {
        free(row->policy);
        row->policy = NULL;
        server_error(resp, &e);
        return -1;
    }
    if (pol) {
        *pol = cas_policy_parse((char *)pt, ptlen, &e);
        if (!*pol) {
            OPENSSL_clear_free(pt, ptlen);
            free(row->policy);
            row->policy = NULL;
            server_error(resp, &e);
            return -1;
        }
    }
    if (yaml)
        *yaml = (char *)pt;
    else
        OPENSSL_clear_free(pt, ptlen);
    return 1;
}

static void policy_hash(const http_request *req, char out[65]) {
    uint8_t h[32];
    scp_sha256_buf(req->body, req->body_len, h);
    scp_hex(h, 32, out);
}

/* POST /v1/sessions (create) and PUT /v1/sessions/NAME (update). */
static void put_session(cas_api *api, const http_request *req, const char *cid, const char *url_name, cas_audit_info *ai,
                        cas_response *resp) {
    ai->action = url_name ? "session.update" : "session.create";
    if (!cid) {
        cas_deny(resp, 401, "no_identity", "managing sessions needs a client certificate (scpctl identity)");
        return;
    }
    if (url_name) snprintf(ai->session, sizeof ai->session, "%s", url_name);
    scp_err e = {0};
    if (memchr(req->body, 0, req->body_len)) {
        cas_deny(resp, 400, "bad_policy", "the policy contains a NUL byte");
        return;
    }
    cas_policy *p = cas_policy_parse(req->body, req->body_len, &e);
    if (!p) {
        cas_deny(resp, 400, "bad_policy", "%s", e.msg);
        return;
    }
    snprintf(ai->session, sizeof ai->session, "%s", p->name);
    if (cas_check_reserved_names(p, &e) < 0) {
        cas_deny(resp, 403, "reserved_name", "%s", e.msg);
        cas_policy_free(p);
        return;
    }
    cas_session_row row, cur = {0};
    memset(&row, 0, sizeof row);
    snprintf(row.name, sizeof row.name, "%s", p->name);
    snprintf(row.owner, sizeof row.owner, "%s", cid);
    policy_hash(req, row.hash);
    row.updated = cas_now_ms() / 1000;
    int in_tx = 0;
    if (url_name && strcmp(url_name, p->name) != 0) {
        cas_deny(resp, 400, "bad_policy", "the policy's name '%s' is not the session '%s' being updated", p->name,
                 url_name);
        goto out;
    }
    if (!url_name && p->predecessor) {
        cas_deny(resp, 400, "bad_policy", "a new session has no predecessor; to update, use 'scpctl session update'");
        goto out;
    }
    if (url_name) {
        if (!p->predecessor) {
            cas_deny(resp, 400, "no_predecessor", "an update must name its predecessor (the current hash)");
            goto out;
        }
        int r = api->st->ops->session_get(api->st, p->name, &cur, &e);
        if (r < 0) {
            server_error(resp, &e);
            goto out;
        }
        if (r == 0) {
            cas_deny(resp, 404, "unknown_session", "no session named '%s'", p->name);
            goto out;
        }
        if (strcmp(cur.owner, cid) != 0) {
            cas_deny(resp, 403, "not_owner", "only the owner of session '%s' may update it", p->name);
            goto out;
        }
        if (strcmp(cur.hash, p->predecessor) != 0) {
            cas_deny(resp, 409, "stale_predecessor",
                     "session '%s' is at %s, not at the predecessor %s: someone else updated it; fetch it and retry",
                     p->name, cur.hash, p->predecessor);
            goto out;
        }
        snprintf(row.predecessor, sizeof row.predecessor, "%s", p->predecessor);
        snprintf(row.incarnation, sizeof row.incarnation, "%s", cur.incarnation);
    } else {
        uint8_t inc[16];
        if (scp_random(inc, sizeof inc, &e) < 0) {
            server_error(resp, &e);
            goto out;
        }
        scp_hex(inc, sizeof inc, row.incarnation);
    }
    if (cas_seal(api, "policy", p->name, "", req->body, req->body_len, &row.policy, &row.policy_len, &e) < 0) {
        server_error(resp, &e);
        goto out;
    }
    if (api->st->ops->begin(api->st, &e) < 0) {
        server_error(resp, &e);
        goto out;
    }
    in_tx = 1;
    if (url_name) {
        int r = api->st->ops->session_replace(api->st, &row, p->predecessor, &e);
        if (r < 0) {
            server_error(resp, &e);
            goto out;
        }
        if (r == 0) {
            cas_deny(resp, 409, "stale_predecessor", "session '%s' was updated concurrently; fetch it and retry",
                     p->name);
            goto out;
        }
    } else if (api->st->ops->session_insert(api->st, &row, &e) < 0) {
        if (e.code == SCP_E_EXIST)
            cas_deny(resp, 409, "exists", "a session named '%s' exists already", p->name);
        else
            server_error(resp, &e);
        goto out;
    }
    if (cas_ensure_secrets(api, p, row.owner, &e) < 0 || cas_ensure_volumes(api, p, row.incarnation, &e) < 0) {
        if (e.code == SCP_E_INVAL)
            cas_deny(resp, 400, "bad_policy", "%s", e.msg);
        else
            server_error(resp, &e);
        goto out;
    }
    if (api->st->ops->commit(api->st, &e) < 0) {
        in_tx = 0;
        server_error(resp, &e);
        goto out;
    }
    in_tx = 0;
    cas_json_response(resp, url_name ? 200 : 201,
                      json_pack("{s:s, s:s, s:s}", "name", row.name, "hash", row.hash, "predecessor", row.predecessor));
out:
    if (in_tx) api->st->ops->rollback(api->st);
    free(row.policy);
    free(cur.policy);
    cas_policy_free(p);
}

static void get_session(cas_api *api, const char *cid, const char *name, cas_audit_info *ai, cas_response *resp) {
    ai->action = "session.read";
    snprintf(ai->session, sizeof ai->session, "%s", name);
    if (!cid) {
        cas_deny(resp, 401, "no_identity", "reading sessions needs a client certificate");
        return;
    }
    cas_session_row row = {0};
    char *yaml = NULL;
    int r = cas_load_policy(api, name, &row, NULL, &yaml, resp);
    if (r <= 0) return;
    if (strcmp(row.owner, cid) != 0) {
        cas_deny(resp, 403, "not_owner", "only the owner of session '%s' may read it", name);
    } else {
        /* the volumes with the freshness tag CAS expects (never their keys) */
        json_t *vols = json_array();
        scp_err e = {0};
        cas_policy *p = cas_policy_parse(yaml, strlen(yaml), &e);
        for (size_t i = 0; p && i < p->n_volumes; i++) {
            uint8_t *ct = NULL;
            size_t ctlen = 0;
            char tag[81] = "";
            int g = cas_volume_read(api, name, row.incarnation, p->volumes[i].name, &ct, &ctlen, tag, &e);
            free(ct);
            json_t *v = json_pack("{s:s, s:s, s:o}", "name", p->volumes[i].name, "path", p->volumes[i].path,
                                  "expected_tag", g == 1 && tag[0] ? json_string(tag) : json_null());
            if (g < 0 && e.code == SCP_E_INTEGRITY) json_object_set_new(v, "integrity_error", json_string(e.msg));
            if (p->volumes[i].chunk_size) json_object_set_new(v, "chunk_size", json_integer(p->volumes[i].chunk_size));
            json_array_append_new(vols, v);
        }
        cas_policy_free(p);
        cas_json_response(resp, 200,
                          json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:s}", "name", row.name, "owner", row.owner,
                                    "hash", row.hash, "predecessor", row.predecessor, "updated",
                                    (json_int_t)row.updated, "volumes", vols, "policy", yaml));
    }
    OPENSSL_cleanse(yaml, strlen(yaml));
    free(yaml);
    free(row.policy);
}

static void delete_session(cas_api *api, const char *cid, const char *name, cas_audit_info *ai, cas_response *resp) {
    ai->action = "session.delete";
    snprintf(ai->session, sizeof ai->session, "%s", name);
    if (!cid) {
        cas_deny(resp, 401, "no_identity", "deleting sessions needs a client certificate");
        return;
    }
    scp_err e = {0};
    cas_session_row row = {0};
    int r = api->st->ops->session_get(api->st, name, &row, &e);
    free(row.policy);
    if (r < 0) { server_error(resp, &e); return; }
    if (r == 0) {
        cas_deny(resp, 404, "unknown_session", "no session named '%s'", name);
        return;
    }
    if (strcmp(row.owner, cid) != 0) {
        cas_deny(resp, 403, "not_owner", "only the owner of session '%s' may delete it", name);
        return;
    }
    if (api->st->ops->session_delete(api->st, name, &e) < 0) { server_error(resp, &e); return; }
    cas_json_response(resp, 200, json_pack("{s:s, s:b}", "name", name, "deleted", 1));
}

static int list_cb(void *ctx, const cas_session_row *r) {
    json_array_append_new(ctx, json_pack("{s:s, s:s, s:I}", "name", r->name, "hash", r->hash, "updated",
                                         (json_int_t)r->updated));
    return 0;
}

static void list_sessions(cas_api *api, const char *cid, cas_audit_info *ai, cas_response *resp) {
    ai->action = "session.list";
    if (!cid) {
        cas_deny(resp, 401, "no_identity", "listing sessions needs a client certificate");
        return;
    }
    scp_err e = {0};
    json_t *arr = json_array();
    if (api->st->ops->session_list(api->st, cid, list_cb, arr, &e) < 0) {
        json_decref(arr);
        { server_error(resp, &e); return; }
    }
    cas_json_response(resp, 200, json_pack("{s:o}", "sessions", arr));
}

/* PUT /v1/sessions/NAME/volumes/VOL/tag {"tag": HEX|""}: the owner sets the expected tag
 * (recovery when a reported commit was lost, see docs/cas.md). */
static void owner_set_tag(cas_api *api, const http_request *req, const char *cid, const char *name, const char *vol,
                          cas_audit_info *ai, cas_response *resp) {
    ai->action = "volume.set_tag";
    snprintf(ai->session, sizeof ai->session, "%s", name);
    if (!cid) {
        cas_deny(resp, 401, "no_identity", "this needs a client certificate");
        return;
    }
    json_t *j = json_loadb(req->body, req->body_len, 0, NULL);
    const char *tag = j ? json_string_value(json_object_get(j, "tag")) : NULL;
    uint8_t tb[40];
    if (!tag || (*tag && scp_unhex(tag, tb, 40) < 0)) {
        json_decref(j);
        cas_deny(resp, 400, "bad_request", "want {\"tag\": \"<80 hex digits>\" or \"\"}");
        return;
    }
    scp_err e = {0};
    cas_session_row row = {0};
    int r = api->st->ops->session_get(api->st, name, &row, &e);
    free(row.policy);
    if (r <= 0) {
        json_decref(j);
        if (r < 0) { server_error(resp, &e); return; }
        cas_deny(resp, 404, "unknown_session", "no session named '%s'", name);
        return;
    }
    if (strcmp(row.owner, cid) != 0) {
        json_decref(j);
        cas_deny(resp, 403, "not_owner", "only the owner of session '%s' may set volume tags", name);
        return;
    }
    char lower[81] = "";
    if (*tag) scp_hex(tb, 40, lower);
    json_decref(j);
    if (cas_volume_write_tag(api, name, row.incarnation, vol, lower, &e) < 0) {
        if (e.code == SCP_E_NOENT) {
            cas_deny(resp, 404, "unknown_volume", "%s", e.msg);
            return;
        }
        { server_error(resp, &e); return; }
    }
    cas_json_response(resp, 200, json_pack("{s:s, s:s, s:s}", "session", name, "volume", vol, "tag", lower));
}

/* The policy of session `name` when the client `cid` owns it; otherwise NULL with the refusal
 * (401 without a client certificate, 403 for another identity, 404 for no such session) in
 * resp. `what` names what the owner reads, for the messages. */
static cas_policy *owned_policy(cas_api *api, const char *cid, const char *name, const char *what,
                                cas_response *resp) {
    if (!cid) {
        cas_deny(resp, 401, "no_identity", "reading %s needs a client certificate", what);
        return NULL;
    }
    cas_session_row row = {0};
    cas_policy *p = NULL;
    int r = cas_load_policy(api, name, &row, &p, NULL, resp);
    free(row.policy);
    if (r <= 0) return NULL;
    if (strcmp(row.owner, cid) != 0) {
        cas_policy_free(p);
        cas_deny(resp, 403, "not_owner", "only the owner of session '%s' may read its %s", name, what);
        return NULL;
    }
    return p;
}

/* GET /v1/sessions/NAME/secrets/SECRET: the owner reads a secret's value (a generated password
 * that the owner's clients need; an x509 secret's certificate only). Audited with the secret's
 * name; the value goes nowhere else. */
static void owner_read_secret(cas_api *api, const char *cid, const char *name, const char *secret, cas_audit_info *ai,
                              cas_response *resp) {
    ai->action = "secret.read";
    snprintf(ai->session, sizeof ai->session, "%s", name);
    snprintf(ai->note, sizeof ai->note, "secret %s", secret);
    cas_policy *p = owned_policy(api, cid, name, "secrets", resp);
    if (!p) return;
    scp_err e = {0};
    int r;
    char *val = NULL;
    size_t len = 0;
    const cas_secret_def *def = cas_policy_secret(p, secret);
    int hex = def && def->kind == SECRET_RANDOM; /* bytes: hex, as placeholders render them */
    r = cas_secret_owner_read(api, p, secret, &val, &len, &e);
    cas_policy_free(p);
    if (r < 0) {
        if (e.code == SCP_E_NOENT) cas_deny(resp, 404, "unknown_secret", "%s", e.msg);
        else if (e.code == SCP_E_NOTSUP) cas_deny(resp, 409, "imported_secret", "%s", e.msg);
        else server_error(resp, &e);
        return;
    }
    json_t *v = NULL;
    if (hex) {
        char *h = malloc(2 * len + 1);
        if (h) {
            scp_hex((const uint8_t *)val, len, h);
            v = json_string(h);
            OPENSSL_clear_free(h, 2 * len + 1);
        }
    } else {
        v = json_stringn(val, len);
    }
    OPENSSL_clear_free(val, len + 1);
    if (!v) {
        cas_api_error(resp, 500, "internal", "out of memory");
        return;
    }
    cas_json_response(resp, 200, json_pack("{s:s, s:s, s:s, s:o}", "session", name, "secret", secret, "encoding",
                                           hex ? "hex" : "text", "value", v));
}

/* GET /v1/sessions/NAME/console/SERVICE: the owner gets the service's console key, to read
 * its sealed stdout/stderr and to seal its stdin (scpctl logs / attach). Audited. */
static void owner_read_console(cas_api *api, const char *cid, const char *name, const char *service,
                               cas_audit_info *ai, cas_response *resp) {
    ai->action = "console.key";
    snprintf(ai->session, sizeof ai->session, "%s", name);
    snprintf(ai->service, sizeof ai->service, "%s", service);
    cas_policy *p = owned_policy(api, cid, name, "console keys", resp);
    if (!p) return;
    int known = cas_policy_service(p, service) != NULL;
    cas_policy_free(p);
    if (!known) {
        cas_deny(resp, 404, "unknown_service", "session '%s' has no service '%s'", name, service);
        return;
    }
    uint8_t key[32];
    char hex[65];
    scp_err e = {0};
    int g = cas_console_key(api, name, service, key, &e);
    if (g <= 0) {
        if (g == 0) cas_deny(resp, 404, "no_console_key", "session '%s' has no console key yet: update it once", name);
        else server_error(resp, &e);
        return;
    }
    scp_hex(key, 32, hex);
    OPENSSL_cleanse(key, sizeof key);
    cas_json_response(resp, 200, json_pack("{s:s, s:s, s:s}", "session", name, "service", service, "key", hex));
    OPENSSL_cleanse(hex, sizeof hex);
}

/* ---- platforms ---------------------------------------------------------------------------- */

static int need_admin(cas_api *api, const char *cid, cas_response *resp) {
    if (is_admin(api, cid)) return 1;
    cas_deny(resp, cid ? 403 : 401, "not_admin",
             "this needs an administrator identity (started with 'scpctl cas serve --admin ID')");
    return 0;
}

static void enroll_platform(cas_api *api, const http_request *req, const char *cid, cas_audit_info *ai,
                            cas_response *resp) {
    ai->action = "platform.enroll";
    if (!need_admin(api, cid, resp)) return;
    json_t *j = json_loadb(req->body, req->body_len, 0, NULL);
    const char *name = j ? json_string_value(json_object_get(j, "name")) : NULL;
    const char *backend = j ? json_string_value(json_object_get(j, "backend")) : NULL;
    const char *pub = j ? json_string_value(json_object_get(j, "pubkey")) : NULL;
    uint8_t pk[32], id[32];
    cas_platform_row row;
    memset(&row, 0, sizeof row);
    if (!name || !cas_name_ok(name) || !pub || scp_unhex(pub, pk, 32) < 0) {
        cas_deny(resp, 400, "bad_request",
                 "want {\"name\": NAME, \"backend\": \"sim\"|\"snp\"|\"tdx\"|\"sgx\", \"pubkey\": <64 hex digits>}");
        goto out;
    }
    /* hardware platforms: pubkey is their hardware identity (scp_hw_platform_identity) */
    if (!backend) backend = "sim";
    if (strcmp(backend, "sim") != 0 && strcmp(backend, "snp") != 0 && strcmp(backend, "tdx") != 0 &&
        strcmp(backend, "sgx") != 0) {
        cas_deny(resp, 400, "unsupported_backend", "backend must be sim, snp, tdx or sgx");
        goto out;
    }
    scp_sha256_buf(pk, 32, id);
    scp_hex(id, 32, row.id);
    snprintf(row.name, sizeof row.name, "%s", name);
    snprintf(row.backend, sizeof row.backend, "%s", backend);
    scp_hex(pk, 32, row.pubkey);
    row.created = cas_now_ms() / 1000;
    snprintf(ai->platform, sizeof ai->platform, "%s", row.id);
    scp_err e = {0};
    if (api->st->ops->platform_put(api->st, &row, &e) < 0) {
        if (e.code == SCP_E_EXIST)
            cas_deny(resp, 409, "exists", "platform %s is enrolled already (revoked platforms stay revoked)", row.id);
        else
            server_error(resp, &e);
        goto out;
    }
    cas_json_response(resp, 201, json_pack("{s:s, s:s, s:s}", "id", row.id, "name", row.name, "backend", row.backend));
out:
    json_decref(j);
}

static void revoke_platform(cas_api *api, const char *cid, const char *pid, cas_audit_info *ai, cas_response *resp) {
    ai->action = "platform.revoke";
    snprintf(ai->platform, sizeof ai->platform, "%s", pid);
    if (!need_admin(api, cid, resp)) return;
    scp_err e = {0};
    int r = api->st->ops->platform_revoke(api->st, pid, &e);
    if (r < 0) { server_error(resp, &e); return; }
    if (r == 0) {
        cas_deny(resp, 404, "unknown_platform", "no platform %s", pid);
        return;
    }
    cas_json_response(resp, 200, json_pack("{s:s, s:b}", "id", pid, "revoked", 1));
}

static int plat_cb(void *ctx, const cas_platform_row *r) {
    json_array_append_new(ctx, json_pack("{s:s, s:s, s:s, s:s, s:b, s:I}", "id", r->id, "name", r->name, "backend",
                                         r->backend, "pubkey", r->pubkey, "revoked", r->revoked, "created",
                                         (json_int_t)r->created));
    return 0;
}

static void list_platforms(cas_api *api, const char *cid, cas_audit_info *ai, cas_response *resp) {
    ai->action = "platform.list";
    if (!need_admin(api, cid, resp)) return;
    scp_err e = {0};
    json_t *arr = json_array();
    if (api->st->ops->platform_list(api->st, plat_cb, arr, &e) < 0) {
        json_decref(arr);
        { server_error(resp, &e); return; }
    }
    cas_json_response(resp, 200, json_pack("{s:o}", "platforms", arr));
}

/* ---- audit ----------------------------------------------------------------------------- */

static int audit_cb(void *ctx, const cas_audit_row *r) {
    json_array_append_new(ctx, json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "seq",
                                         (json_int_t)r->seq, "ts_ms", (json_int_t)r->ts_ms, "actor", r->actor,
                                         "action", r->action, "session", r->session, "service", r->service,
                                         "measurement", r->measurement, "platform", r->platform, "decision",
                                         r->decision, "reason", r->reason, "hash", r->hash));
    return 0;
}

static void read_audit(cas_api *api, const http_request *req, const char *cid, cas_audit_info *ai, cas_response *resp) {
    ai->action = "audit.read";
    if (!need_admin(api, cid, resp)) return;
    char v[24];
    int64_t from = 1, limit = 1000;
    if ((http_query_get(req->query, "from", v, sizeof v) && scp_parse_i64(v, 1, INT64_MAX, &from) < 0) ||
        (http_query_get(req->query, "limit", v, sizeof v) && scp_parse_i64(v, 1, 10000, &limit) < 0)) {
        cas_deny(resp, 400, "bad_request", "from wants a record number from 1 up, limit a number from 1 to 10000");
        return;
    }
    scp_err e = {0};
    int64_t count = 0, reset_at = 0;
    char problem[200];
    int64_t bad = cas_audit_verify(api, &count, &reset_at, problem, &e);
    if (bad < 0) { server_error(resp, &e); return; }
    json_t *arr = json_array();
    if (api->st->ops->audit_scan(api->st, from, limit, audit_cb, arr, &e) < 0) {
        json_decref(arr);
        { server_error(resp, &e); return; }
    }
    json_t *o = json_pack("{s:o, s:b, s:I}", "entries", arr, "verified", bad == 0, "count", (json_int_t)count);
    if (reset_at > 0) json_object_set_new(o, "reset_at", json_integer(reset_at));
    if (bad > 0) {
        json_object_set_new(o, "first_bad", json_integer(bad));
        json_object_set_new(o, "problem", json_string(problem));
    }
    cas_json_response(resp, 200, o);
}

/* ---- router ------------------------------------------------------------------------------ */

/* Split "/v1/a/b/c" into at most 6 segments (in place in a copy). */
/* ---- Routing ------------------------------------------------------------------------------
 * One table names every endpoint: method, path pattern and handler. In a pattern, "*" is a
 * name segment (a session, volume, secret or service name that cas_name_ok accepts) and "#" a
 * platform id (64 hex digits); the handler gets them in order in c->arg. A path that matches a
 * row's pattern under another method is answered 405, any other path 404. */

typedef struct cas_call {
    cas_api *api;
    const http_request *req;
    const char *cid; /* hex id of the client's certificate, or NULL */
    const char *arg[2];
    cas_audit_info *ai;
    cas_response *resp;
} cas_call;

static void r_status(const cas_call *c) {
    c->ai->action = "status";
    cas_json_response(c->resp, 200,
                      json_pack("{s:s, s:s, s:s, s:b, s:s, s:s*}", "service", "scp-cas", "version", "0.1.0",
                                "ca_fingerprint", c->api->id->ca_fp, "memory_protected", 0, "tee", "sim", "client",
                                c->cid));
}
static void r_create_session(const cas_call *c) { put_session(c->api, c->req, c->cid, NULL, c->ai, c->resp); }
static void r_list_sessions(const cas_call *c) { list_sessions(c->api, c->cid, c->ai, c->resp); }
static void r_get_session(const cas_call *c) { get_session(c->api, c->cid, c->arg[0], c->ai, c->resp); }
static void r_put_session(const cas_call *c) { put_session(c->api, c->req, c->cid, c->arg[0], c->ai, c->resp); }
static void r_delete_session(const cas_call *c) { delete_session(c->api, c->cid, c->arg[0], c->ai, c->resp); }
static void r_set_tag(const cas_call *c) { owner_set_tag(c->api, c->req, c->cid, c->arg[0], c->arg[1], c->ai, c->resp); }
static void r_read_secret(const cas_call *c) { owner_read_secret(c->api, c->cid, c->arg[0], c->arg[1], c->ai, c->resp); }
static void r_read_console(const cas_call *c) {
    owner_read_console(c->api, c->cid, c->arg[0], c->arg[1], c->ai, c->resp);
}
static void r_enroll_platform(const cas_call *c) { enroll_platform(c->api, c->req, c->cid, c->ai, c->resp); }
static void r_list_platforms(const cas_call *c) { list_platforms(c->api, c->cid, c->ai, c->resp); }
static void r_revoke_platform(const cas_call *c) { revoke_platform(c->api, c->cid, c->arg[0], c->ai, c->resp); }
static void r_attest_nonce(const cas_call *c) { cas_handle_attest_nonce(c->api, c->req, c->ai, c->resp); }
static void r_attest(const cas_call *c) { cas_handle_attest(c->api, c->req, c->ai, c->resp); }
static void r_volume_tag(const cas_call *c) { cas_handle_volume_tag(c->api, c->req, c->ai, c->resp); }
static void r_read_audit(const cas_call *c) { read_audit(c->api, c->req, c->cid, c->ai, c->resp); }

static const struct route {
    const char *method;
    const char *pattern;
    const char *bad_arg; /* the 400 message when a "*" or "#" segment is not acceptable */
    void (*handler)(const cas_call *c);
} routes[] = {
    {"GET", "/v1/status", NULL, r_status},
    {"POST", "/v1/sessions", NULL, r_create_session},
    {"GET", "/v1/sessions", NULL, r_list_sessions},
    {"GET", "/v1/sessions/*", "bad session name", r_get_session},
    {"PUT", "/v1/sessions/*", "bad session name", r_put_session},
    {"DELETE", "/v1/sessions/*", "bad session name", r_delete_session},
    {"PUT", "/v1/sessions/*/volumes/*/tag", "bad session or volume name", r_set_tag},
    {"GET", "/v1/sessions/*/secrets/*", "bad session or secret name", r_read_secret},
    {"GET", "/v1/sessions/*/console/*", "bad session or service name", r_read_console},
    {"POST", "/v1/platforms", NULL, r_enroll_platform},
    {"GET", "/v1/platforms", NULL, r_list_platforms},
    {"DELETE", "/v1/platforms/#", "a platform id is 64 hex digits", r_revoke_platform},
    {"POST", "/v1/attest/nonce", NULL, r_attest_nonce},
    {"POST", "/v1/attest", NULL, r_attest},
    {"POST", "/v1/volumes/tag", NULL, r_volume_tag},
    {"GET", "/v1/audit", NULL, r_read_audit},
};

/* Split path into at most 6 segments in buf; returns their number, -1 if too long or deep. */
static int split_path(const char *path, char *buf, size_t bufsz, char *seg[6]) {
    if (strlen(path) >= bufsz) return -1;
    strcpy(buf, path);
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == 6) return -1;
        seg[n++] = t;
    }
    return n;
}

/* Does the path's segments match the pattern's shape? Fills arg with the variable segments and
 * *args_ok with whether they are acceptable names or ids. */
static int route_matches(const char *pattern, char *const *seg, int n, const char *arg[2], int *args_ok) {
    char buf[128], *pseg[6];
    int pn = split_path(pattern, buf, sizeof buf, pseg);
    assert(pn > 0);
    if (pn != n) return 0;
    int na = 0;
    *args_ok = 1;
    for (int i = 0; i < n; i++) {
        if (strcmp(pseg[i], "*") == 0 || strcmp(pseg[i], "#") == 0) {
            assert(na < 2);
            arg[na++] = seg[i];
            uint8_t id[32];
            if (pseg[i][0] == '*' ? !cas_name_ok(seg[i]) : scp_unhex(seg[i], id, sizeof id) < 0) *args_ok = 0;
        } else if (strcmp(pseg[i], seg[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

static void route(cas_api *api, const http_request *req, const char *cid, cas_audit_info *ai, cas_response *resp) {
    char buf[1024], *seg[6] = {0};
    int n = split_path(req->path, buf, sizeof buf, seg);
    if (n < 1 || strcmp(seg[0], "v1") != 0) {
        cas_deny(resp, 404, "not_found", "no such endpoint; the API lives under /v1");
        return;
    }
    int other_method = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        cas_call c = {api, req, cid, {NULL, NULL}, ai, resp};
        int args_ok;
        if (!route_matches(routes[i].pattern, seg, n, c.arg, &args_ok)) continue;
        if (strcmp(req->method, routes[i].method) != 0) {
            other_method = 1;
            continue;
        }
        if (!args_ok)
            cas_deny(resp, 400, "bad_request", "%s", routes[i].bad_arg);
        else
            routes[i].handler(&c);
        return;
    }
    if (other_method)
        cas_deny(resp, 405, "method_not_allowed", "%s is not allowed on %s", req->method, req->path);
    else
        cas_deny(resp, 404, "not_found", "no such endpoint: %s %s", req->method, req->path);
}

void cas_api_handle(cas_api *api, const http_request *req, const char *cid, cas_response *resp) {
    cas_audit_info ai;
    memset(&ai, 0, sizeof ai);
    ai.action = "request";
    snprintf(ai.actor, sizeof ai.actor, "%s", cid ? cid : "anonymous");
    memset(resp, 0, sizeof *resp);
    route(api, req, cid, &ai, resp);
    if (!resp->body) cas_api_error(resp, 500, "internal", "no response");
    /* the reason of a refusal is the error message of the response */
    char reason[256] = "";
    if (resp->status >= 400) {
        json_t *j = json_loadb(resp->body, resp->len, 0, NULL);
        const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
        /* what the decision was based on (an attestation's backend and TCB) stays in the row
         * even when the message is long */
        int room = (int)sizeof reason - 16 - (ai.note[0] ? (int)strlen(ai.note) + 3 : 0);
        snprintf(reason, sizeof reason, "%d %.*s%s%s%s", resp->status, room, msg ? msg : "", ai.note[0] ? " [" : "",
                 ai.note, ai.note[0] ? "]" : "");
        json_decref(j);
    } else if (ai.note[0]) {
        snprintf(reason, sizeof reason, "%s", ai.note);
    }
    const char *decision = resp->status >= 400 ? "denied" : strcmp(ai.action, "attest") == 0 ? "granted" : "ok";
    if (cas_audit_append(api, &ai, decision, reason) < 0 && resp->status < 400) {
        /* fail closed: nothing is granted or changed-and-acknowledged without its audit row */
        cas_api_error(resp, 503, "audit_unavailable", "the audit log cannot be written; request refused");
    }
}

void cas_api_audit_transport(cas_api *api, const char *cid, int status, const char *why) {
    cas_audit_info ai;
    memset(&ai, 0, sizeof ai);
    ai.action = "request";
    snprintf(ai.actor, sizeof ai.actor, "%s", cid ? cid : "anonymous");
    char reason[256];
    snprintf(reason, sizeof reason, "%d %s", status, why);
    cas_audit_append(api, &ai, "denied", reason);
}
