/* cas/attest_api.c - attestation endpoints: nonces, evidence verification, configuration
 * release over a channel bound to the runtime's ephemeral key, and volume tag reports.
 *
 * Verifiers are chosen by the evidence's backend; only 'sim' exists now. A verifier checks
 * that the evidence was produced by an enrolled, unrevoked platform (signature) and yields
 * the measurement; the policy decides the rest. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "cas/internal.h"
#include "cas/util.h"
#include "scp/attest.h"
#include "scp/volume.h"

typedef int (*verifier_fn)(const scp_evidence *ev, const cas_platform_row *plat, scp_err *err);

static int verify_sim(const scp_evidence *ev, const cas_platform_row *plat, scp_err *err) {
    uint8_t pub[32];
    if (strcmp(plat->backend, "sim") != 0 || scp_unhex(plat->pubkey, pub, 32) < 0)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "platform is not a sim platform");
    return scp_sim_verify(ev, pub, err);
}

static verifier_fn verifier_for(uint16_t backend) { return backend == SCP_TEE_SIM ? verify_sim : NULL; }

void cas_handle_attest_nonce(cas_api *api, const http_request *req, cas_audit_info *ai, cas_response *resp) {
    (void)req;
    ai->action = "attest.nonce";
    uint8_t n[32];
    char hex[65];
    if (cas_nonce_issue(api, n) < 0) {
        cas_deny(resp, 503, "busy", "too many outstanding nonces; retry shortly");
        return;
    }
    scp_hex(n, 32, hex);
    cas_json_response(resp, 200, json_pack("{s:s, s:i}", "nonce", hex, "expires_in_ms", api->nonce_ttl_ms));
}

static int in_list(const cas_strlist *l, const char *s) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0) return 1;
    return 0;
}

/* Encrypt the configuration to the runtime's X25519 key. */
static int seal_to_runtime(const scp_evidence *ev, const uint8_t *evbuf, size_t evlen, const char *cfg,
                           json_t **envelope, scp_err *err) {
    EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, ev->pubkey, 32);
    uint8_t pub[32], shared[32], key[32], aad[32], *ct = NULL;
    size_t pl = 32, sl = 32, ctlen = 0;
    EVP_PKEY_CTX *dc = eph && peer ? EVP_PKEY_CTX_new(eph, NULL) : NULL;
    int ok = dc && EVP_PKEY_get_raw_public_key(eph, pub, &pl) == 1 && EVP_PKEY_derive_init(dc) == 1 &&
             EVP_PKEY_derive_set_peer(dc, peer) == 1 && EVP_PKEY_derive(dc, shared, &sl) == 1 && sl == 32;
    EVP_PKEY_CTX_free(dc);
    EVP_PKEY_free(eph);
    EVP_PKEY_free(peer);
    int rc = -1;
    if (!ok) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "the evidence's ephemeral key is not a usable X25519 key");
        goto out;
    }
    if (scp_attest_channel_key(shared, ev->nonce, ev->pubkey, pub, key, err) < 0) goto out;
    scp_sha256_buf(evbuf, evlen, aad);
    if (cas_aead_seal(key, aad, 32, cfg, strlen(cfg), &ct, &ctlen, err) < 0) goto out;
    char phex[65];
    scp_hex(pub, 32, phex);
    char *c64 = cas_b64enc(ct, ctlen);
    if (!c64) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    *envelope = json_pack("{s:s, s:s, s:s}", "cas_pubkey", phex, "ciphertext", c64, "channel", "x25519-hkdf-aes256gcm");
    free(c64);
    rc = *envelope ? 0 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
out:
    OPENSSL_cleanse(shared, sizeof shared);
    OPENSSL_cleanse(key, sizeof key);
    free(ct);
    return rc;
}

void cas_handle_attest(cas_api *api, const http_request *req, cas_audit_info *ai, cas_response *resp) {
    ai->action = "attest";
    json_t *j = json_loadb(req->body, req->body_len, 0, NULL);
    const char *session = j ? json_string_value(json_object_get(j, "session")) : NULL;
    const char *service = j ? json_string_value(json_object_get(j, "service")) : NULL;
    const char *ev64 = j ? json_string_value(json_object_get(j, "evidence")) : NULL;
    uint8_t *evbuf = NULL;
    size_t evlen = 0;
    cas_policy *pol = NULL;
    cas_session_row row = {0};
    scp_err e = {0};
    if (!session || !service || !ev64 || !cas_name_ok(session) || !cas_name_ok(service)) {
        cas_deny(resp, 400, "bad_request", "want {\"session\": NAME, \"service\": NAME, \"evidence\": BASE64}");
        goto out;
    }
    snprintf(ai->session, sizeof ai->session, "%s", session);
    snprintf(ai->service, sizeof ai->service, "%s", service);
    if (strlen(ev64) > 2 * SCP_EVIDENCE_MAX || !(evbuf = cas_b64dec(ev64, &evlen))) {
        cas_deny(resp, 400, "bad_evidence", "the evidence is not valid base64 of at most %d bytes", SCP_EVIDENCE_MAX);
        goto out;
    }
    scp_evidence ev;
    if (scp_evidence_parse(evbuf, evlen, &ev, &e) < 0) {
        cas_deny(resp, 400, "bad_evidence", "%s", e.msg);
        goto out;
    }
    scp_hex(ev.measurement, 32, ai->measurement);
    scp_hex(ev.platform_id, 32, ai->platform);
    /* the nonce is used up by this attempt, whatever its outcome */
    if (!cas_nonce_take(api, ev.nonce)) {
        cas_deny(resp, 403, "bad_nonce", "the evidence's nonce is unknown, expired or already used; get a new one");
        goto out;
    }
    cas_platform_row plat;
    int r = api->st->ops->platform_get(api->st, ai->platform, &plat, &e);
    if (r < 0) {
        cas_deny(resp, 500, "internal", "%s", e.msg);
        goto out;
    }
    if (r == 0) {
        cas_deny(resp, 403, "unknown_platform", "platform %s is not enrolled", ai->platform);
        goto out;
    }
    if (plat.revoked) {
        cas_deny(resp, 403, "revoked_platform", "platform %s (%s) is revoked", ai->platform, plat.name);
        goto out;
    }
    verifier_fn vf = verifier_for(ev.backend);
    if (!vf) {
        cas_deny(resp, 400, "unsupported_backend", "no verifier for TEE backend %u", ev.backend);
        goto out;
    }
    if (vf(&ev, &plat, &e) < 0) {
        cas_deny(resp, 403, "bad_evidence", "verification failed: %s", e.msg);
        goto out;
    }
    r = cas_policy_acquire(api, session, &row, &pol, resp);
    if (r <= 0) goto out;
    const cas_service_def *svc = cas_policy_service(pol, service);
    if (!svc) {
        cas_deny(resp, 404, "unknown_service", "session '%s' has no service '%s'", session, service);
        goto out;
    }
    if (!in_list(&svc->measurements, ai->measurement)) {
        cas_deny(resp, 403, "wrong_measurement", "measurement %s is not allowed for service '%s' of session '%s'",
                 ai->measurement, service, session);
        goto out;
    }
    if (svc->platforms.n && !in_list(&svc->platforms, ai->platform)) {
        cas_deny(resp, 403, "platform_not_allowed", "platform %s is not allowed for service '%s'", ai->platform, service);
        goto out;
    }
    json_t *cfg = cas_render_config(api, &row, pol, svc, resp);
    if (!cfg) goto out;
    char *text = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    if (!text) {
        cas_deny(resp, 500, "internal", "out of memory");
        goto out;
    }
    json_t *env = NULL;
    r = seal_to_runtime(&ev, evbuf, evlen, text, &env, &e);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    if (r < 0) {
        cas_deny(resp, 400, "bad_evidence", "%s", e.msg);
        goto out;
    }
    cas_json_response(resp, 200, env);
out:
    free(row.policy);
    cas_policy_release(api, pol);
    free(evbuf);
    json_decref(j);
}

/* POST /v1/volumes/tag {"session","service","volume","tag","token"}: a running service
 * reports the tag of a durable commit. Tags only move forward. */
void cas_handle_volume_tag(cas_api *api, const http_request *req, cas_audit_info *ai, cas_response *resp) {
    ai->action = "volume.tag";
    json_t *j = json_loadb(req->body, req->body_len, 0, NULL);
    const char *session = j ? json_string_value(json_object_get(j, "session")) : NULL;
    const char *service = j ? json_string_value(json_object_get(j, "service")) : NULL;
    const char *volume = j ? json_string_value(json_object_get(j, "volume")) : NULL;
    const char *tag = j ? json_string_value(json_object_get(j, "tag")) : NULL;
    const char *token = j ? json_string_value(json_object_get(j, "token")) : NULL;
    cas_policy *pol = NULL;
    cas_session_row row = {0};
    uint8_t nt[SCP_VOLUME_TAG_LEN];
    scp_err e = {0};
    int in_tx = 0;
    if (!session || !service || !volume || !tag || !token || !cas_name_ok(session) || !cas_name_ok(service) ||
        !cas_name_ok(volume) || scp_unhex(tag, nt, sizeof nt) < 0) {
        cas_deny(resp, 400, "bad_request",
                 "want {\"session\", \"service\", \"volume\", \"tag\": <80 hex digits>, \"token\"}");
        goto out;
    }
    snprintf(ai->session, sizeof ai->session, "%s", session);
    snprintf(ai->service, sizeof ai->service, "%s", service);
    /* the token is bound to the session's incarnation: a token from a deleted session (even
     * one re-created under the same names) is refused, and so is any report for a deleted one */
    int r = cas_policy_acquire(api, session, &row, &pol, resp);
    if (r < 0) goto out;
    char expect[65];
    if (r == 1) cas_volume_token(api, session, row.incarnation, service, expect);
    if (r == 0 || strlen(token) != 64 || !!scp_ct_cmp(expect, token, 64)) {
        cas_deny(resp, 403, "bad_token", "the volume token is not valid for this session and service");
        goto out;
    }
    const cas_service_def *svc = cas_policy_service(pol, service);
    if (!svc || !in_list(&svc->volumes, volume)) {
        cas_deny(resp, 403, "not_mounted", "service '%s' does not mount volume '%s'", service, volume);
        goto out;
    }
    if (api->st->ops->begin(api->st, &e) < 0) {
        cas_deny(resp, 500, "internal", "%s", e.msg);
        goto out;
    }
    in_tx = 1;
    cas_session_row now = {0}; /* the session may have been deleted (and re-created) meanwhile */
    r = api->st->ops->session_get(api->st, session, &now, &e);
    free(now.policy);
    if (r < 0) {
        cas_deny(resp, 500, "internal", "%s", e.msg);
        goto out;
    }
    if (r == 0 || strcmp(now.incarnation, row.incarnation) != 0) {
        cas_deny(resp, 403, "bad_token", "the volume token is not valid for this session and service");
        goto out;
    }
    uint8_t *ct = NULL;
    size_t ctlen = 0;
    char old[81];
    r = cas_volume_read(api, session, row.incarnation, volume, &ct, &ctlen, old, &e);
    free(ct);
    if (r <= 0) {
        int integrity = r < 0 && e.code == SCP_E_INTEGRITY;
        cas_deny(resp, r < 0 ? 500 : 404, integrity ? "tag_integrity" : r < 0 ? "internal" : "unknown_volume", "%s",
                 r < 0 ? e.msg : "the volume has no key yet");
        goto out;
    }
    char lower[81];
    scp_hex(nt, sizeof nt, lower);
    if (old[0]) {
        uint8_t ot[SCP_VOLUME_TAG_LEN];
        if (scp_unhex(old, ot, sizeof ot) == 0) {
            uint64_t og = scp_get_u64(ot), ng = scp_get_u64(nt);
            if (ng < og) {
                cas_deny(resp, 409, "rollback", "volume '%s' is at generation %llu; refusing older generation %llu",
                         volume, (unsigned long long)og, (unsigned long long)ng);
                goto out;
            }
            if (ng == og && strcmp(old, lower) != 0) {
                cas_deny(resp, 409, "fork", "volume '%s' has another state at generation %llu", volume,
                         (unsigned long long)og);
                goto out;
            }
        }
    }
    if (cas_volume_write_tag(api, session, row.incarnation, volume, lower, &e) < 0) {
        cas_deny(resp, 500, "internal", "%s", e.msg);
        goto out;
    }
    in_tx = 0;
    if (api->st->ops->commit(api->st, &e) < 0) {
        cas_deny(resp, 500, "internal", "%s", e.msg);
        goto out;
    }
    /* a decimal string: generations are unsigned 64-bit, a JSON integer (jansson's, and
     * JavaScript's beyond 2^53) is not */
    char gen[24];
    snprintf(gen, sizeof gen, "%llu", (unsigned long long)scp_get_u64(nt));
    cas_json_response(resp, 200, json_pack("{s:s, s:s, s:s}", "volume", volume, "tag", lower, "generation", gen));
out:
    if (in_tx) api->st->ops->rollback(api->st);
    free(row.policy);
    cas_policy_release(api, pol);
    json_decref(j);
}
