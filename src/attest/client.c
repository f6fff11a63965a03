/* attest/client.c - the runtime's side of attestation (scp/attest.h): nonce, evidence,
 * configuration received over a channel bound to an ephemeral X25519 key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/base64.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"

int scp_attest_channel_key(const uint8_t shared[32], const uint8_t nonce[32], const uint8_t runtime_pub[32],
                           const uint8_t cas_pub[32], uint8_t key[32], scp_err *err) {
    uint8_t info[17 + 64];
    memcpy(info, "scp cas config v1", 17);
    memcpy(info + 17, runtime_pub, 32);
    memcpy(info + 49, cas_pub, 32);
    return scp_hkdf(shared, 32, nonce, 32, info, sizeof info, key, 32, err);
}

/* Turn a non-2xx answer into an error with CAS's message. */
static int cas_refusal(int status, const char *body, scp_err *err) {
    json_t *j = json_loads(body ? body : "", 0, NULL);
    const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
    const char *code = j ? json_string_value(json_object_get(j, "error")) : NULL;
    scp_code c = status == 404 ? SCP_E_NOENT : status == 409 ? SCP_E_ROLLBACK : SCP_E_INVAL;
    scp_fail(err, c, status == 403 ? EACCES : EINVAL, "CAS refused (%d %s): %s", status, code ? code : "error",
             msg ? msg : "no details");
    json_decref(j);
    return -1;
}

static json_t *post_json(scp_cas_client *c, const char *path, json_t *req, int *status, scp_err *err) {
    char *body = json_dumps(req, JSON_COMPACT);
    if (!body) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    char *resp = NULL;
    size_t rl = 0;
    int st = scp_cas_request(c, "POST", path, "application/json", body, strlen(body), &resp, &rl, err);
    free(body);
    if (st < 0) return NULL;
    *status = st;
    if (st < 200 || st > 299) {
        cas_refusal(st, resp, err);
        free(resp);
        return NULL;
    }
    json_t *j = json_loadb(resp, rl, 0, NULL);
    OPENSSL_cleanse(resp, rl);
    free(resp);
    if (!j) scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent malformed JSON");
    return j;
}

struct sim_source {
    const char *key;
    const uint8_t *m;
    const uint8_t *ik; /* the instance key, or NULL */
};

static int sim_evidence_cb(void *ctx, const uint8_t nonce[32], const uint8_t pub[32], uint8_t **ev, size_t *evlen,
                           scp_err *err) {
    const struct sim_source *s = ctx;
    return scp_sim_evidence_ik(s->key, nonce, pub, s->m, s->ik, ev, evlen, err);
}

int scp_attest_get_config(scp_cas_client *c, const char *session, const char *service, const char *platform_key_path,
                          const uint8_t measurement[32], char **config_json, scp_err *err) {
    struct sim_source s = {platform_key_path, measurement, NULL};
    scp_sim_warn();
    return scp_attest_get_config_ev(c, session, service, sim_evidence_cb, &s, config_json, err);
}

int scp_attest_get_config_ev(scp_cas_client *c, const char *session, const char *service, scp_attest_evidence_fn get_ev,
                             void *ctx, char **config_json, scp_err *err) {
    int status, rc = -1;
    uint8_t nonce[32], pub[32], cas_pub[32], shared[32], key[32];
    uint8_t *ev = NULL, *ct = NULL, *pt = NULL;
    size_t evlen = 0, ctlen = 0, ptlen = 0;
    EVP_PKEY *eph = NULL, *peer = NULL;
    json_t *req = NULL, *resp = NULL;
    char *ev64 = NULL;

    req = json_object();
    resp = post_json(c, "/v1/attest/nonce", req, &status, err);
    json_decref(req);
    req = NULL;
    if (!resp) goto out;
    if (scp_unhex(json_string_value(json_object_get(resp, "nonce")), nonce, 32) < 0) {
        scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent no valid nonce");
        goto out;
    }
    json_decref(resp);
    resp = NULL;

    eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    size_t pl = 32;
    if (!eph || EVP_PKEY_get_raw_public_key(eph, pub, &pl) != 1) {
        scp_fail(err, SCP_E_CRYPTO, EIO, "cannot make an ephemeral X25519 key");
        goto out;
    }
    if (get_ev(ctx, nonce, pub, &ev, &evlen, err) < 0) goto out;
    ev64 = scp_b64enc(ev, evlen);
    req = json_pack("{s:s, s:s, s:s}", "session", session, "service", service, "evidence", ev64 ? ev64 : "");
    if (!ev64 || !req) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    resp = post_json(c, "/v1/attest", req, &status, err);
    if (!resp) goto out;
    const char *cp = json_string_value(json_object_get(resp, "cas_pubkey"));
    const char *c64 = json_string_value(json_object_get(resp, "ciphertext"));
    if (scp_unhex(cp, cas_pub, 32) < 0 || !c64 || !(ct = scp_b64dec(c64, &ctlen))) {
        scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a malformed configuration envelope");
        goto out;
    }
    peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, cas_pub, 32);
    EVP_PKEY_CTX *dc = peer ? EVP_PKEY_CTX_new(eph, NULL) : NULL;
    size_t sl = 32;
    int ok = dc && EVP_PKEY_derive_init(dc) == 1 && EVP_PKEY_derive_set_peer(dc, peer) == 1 &&
             EVP_PKEY_derive(dc, shared, &sl) == 1 && sl == 32;
    EVP_PKEY_CTX_free(dc);
    if (!ok) {
        scp_fail(err, SCP_E_CRYPTO, EIO, "key agreement with CAS failed");
        goto out;
    }
    if (scp_attest_channel_key(shared, nonce, pub, cas_pub, key, err) < 0) goto out;
    uint8_t aad[32];
    scp_sha256_buf(ev, evlen, aad);
    if (scp_envelope_open(key, aad, 32, ct, ctlen, &pt, &ptlen, err) < 0) {
        scp_err_prefix(err, "the configuration from CAS");
        goto out;
    }
    /* the configuration must be the one asked for */
    json_t *cfg = json_loadb((const char *)pt, ptlen, 0, NULL);
    const char *cs = cfg ? json_string_value(json_object_get(cfg, "session")) : NULL;
    const char *cv = cfg ? json_string_value(json_object_get(cfg, "service")) : NULL;
    int match = cs && cv && strcmp(cs, session) == 0 && strcmp(cv, service) == 0;
    json_decref(cfg);
    if (!match) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "CAS sent a configuration for another session or service");
        goto out;
    }
    *config_json = (char *)pt;
    pt = NULL;
    rc = 0;
out:
    OPENSSL_cleanse(shared, sizeof shared);
    OPENSSL_cleanse(key, sizeof key);
    free(ev);
    free(ev64);
    free(ct);
    if (pt) OPENSSL_clear_free(pt, ptlen);
    EVP_PKEY_free(eph);
    EVP_PKEY_free(peer);
    json_decref(req);
    json_decref(resp);
    return rc;
}

/* tdx/snp: a configfs-tsm report (identity: the platform's hardware identity, for the
 * enrolment hint). */
struct tee_source {
    int backend;
    const uint8_t *m;
    const uint8_t *ik; /* the instance key, or NULL */
    uint8_t identity[32];
};

static int tee_evidence_cb(void *ctx, const uint8_t nonce[32], const uint8_t pub[32], uint8_t **ev, size_t *evlen,
                           scp_err *err) {
    struct tee_source *s = ctx;
    return scp_tsm_evidence_ik(s->backend, nonce, pub, s->m, s->ik, s->identity, ev, evlen, err);
}

int scp_attest_get_config_tee(scp_cas_client *c, const char *session, const char *service, int backend,
                              const char *platform_key_path, const uint8_t measurement[32], char **config_json,
                              scp_err *err) {
    return scp_attest_get_config_ik(c, session, service, backend, platform_key_path, measurement, NULL, config_json,
                                    err);
}

int scp_attest_get_config_ik(scp_cas_client *c, const char *session, const char *service, int backend,
                             const char *platform_key_path, const uint8_t measurement[32], const uint8_t *instance_key,
                             char **config_json, scp_err *err) {
    if (backend == SCP_TEE_SIM) {
        struct sim_source ss = {platform_key_path, measurement, instance_key};
        scp_sim_warn();
        return scp_attest_get_config_ev(c, session, service, sim_evidence_cb, &ss, config_json, err);
    }
    struct tee_source s = {.backend = backend, .m = measurement, .ik = instance_key};
    int r = scp_attest_get_config_ev(c, session, service, tee_evidence_cb, &s, config_json, err);
    if (r < 0 && err && strstr(err->msg, "(403 unknown_platform)")) {
        char hex[65];
        size_t l = strlen(err->msg);
        scp_hex(s.identity, 32, hex);
        snprintf(err->msg + l, sizeof err->msg - l,
                 "; to enroll this machine: scpctl platform enroll --name NAME --backend %s --pubkey %s",
                 backend == SCP_TEE_TDX ? "tdx" : "snp", hex);
    }
    return r;
}

int scp_attest_report_tag(scp_cas_client *c, const char *session, const char *service, const char *volume,
                          const char *tag_hex, const char *token, scp_err *err) {
    json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:s}", "session", session, "service", service, "volume", volume,
                            "tag", tag_hex, "token", token);
    if (!req) return scp_fail(err, SCP_E_INVAL, EINVAL, "bad arguments");
    int status;
    json_t *resp = post_json(c, "/v1/volumes/tag", req, &status, err);
    json_decref(req);
    if (!resp) return -1;
    json_decref(resp);
    return 0;
}
