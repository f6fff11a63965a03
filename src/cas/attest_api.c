/* cas/attest_api.c - attestation endpoints: nonces, evidence verification, configuration
 * release over a channel bound to the runtime's ephemeral key, and volume tag reports.
 *
 * Verifiers are chosen by the evidence's backend. sim: an Ed25519 signature by the enrolled
 * platform key. snp, tdx, sgx: the hardware's signature and certificate chain to AMD's or
 * Intel's root with the collateral cache (scp/attest_hw.h), report data binding nonce, key and
 * measurement, the platform identity equal to the enrolled one; then the service's section for
 * that platform (launch measurement, minimum TCB). The policy decides the rest. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "cas/internal.h"
#include "common/base64.h"
#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"
#include "scp/attest_hw.h"
#include "scp/volume.h"

typedef int (*verifier_fn)(const scp_evidence *ev, const cas_platform_row *plat, scp_err *err);

static int verify_sim(const scp_evidence *ev, const cas_platform_row *plat, scp_err *err) {
    uint8_t pub[32];
    if (strcmp(plat->backend, "sim") != 0 || scp_unhex(plat->pubkey, pub, 32) < 0)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "platform is not a sim platform");
    return scp_sim_verify(ev, pub, err);
}

static verifier_fn verifier_for(uint16_t backend) { return backend == SCP_TEE_SIM ? verify_sim : NULL; }

static const char *backend_name(uint16_t b) {
    return b == SCP_TEE_SIM ? "sim" : b == SCP_TEE_TDX ? "tdx" : b == SCP_TEE_SNP ? "snp" : b == SCP_TEE_SGX ? "sgx" : "?";
}

/* What a hardware verification found, for the service's section and the audit row. */
typedef struct hw_result {
    scp_snp_report snp;
    scp_dcap_quote dcap;
} hw_result;

/* Authenticity of hardware evidence: signature, chain to the vendor's root, debug refused,
 * report data = scp_hw_report_data_ik(nonce, key, measurement, instance key) (so the hardware signed exactly
 * what the sim signature covers), and the platform id derived from the hardware. The
 * service's own limits (launch measurement, minimum TCB) are checked afterwards
 * (check_tee_policy), so that a refusal names what the policy asked for. On failure the
 * response is set. ai->note receives the backend and what the TCB was. */
static int verify_hw(cas_api *api, const scp_evidence *ev, const cas_platform_row *plat, hw_result *hr,
                     cas_audit_info *ai, cas_response *resp) {
    scp_err e = {0};
    uint8_t rd[64], ident[32], id[32];
    char product[16] = "";
    int rc;
    snprintf(ai->note, sizeof ai->note, "tee %s", backend_name(ev->backend));
    /* one Intel machine (one PPID) may run TDX guests and SGX enclaves: either enrolment serves */
    int dcap_pair = (ev->backend == SCP_TEE_TDX || ev->backend == SCP_TEE_SGX) &&
                    (strcmp(plat->backend, "tdx") == 0 || strcmp(plat->backend, "sgx") == 0);
    if (!dcap_pair && strcmp(plat->backend, backend_name(ev->backend)) != 0) {
        cas_deny(resp, 403, "bad_evidence", "platform %s is enrolled as a %s platform, the evidence is %s", plat->id,
                 plat->backend, backend_name(ev->backend));
        return -1;
    }
    if (!api->collateral_dir[0]) { /* cas_api_set_hw was not called: nothing to verify with */
        cas_deny(resp, 403, "missing_collateral", "this CAS has no collateral directory for %s evidence",
                 backend_name(ev->backend));
        return -1;
    }
    if (scp_hw_report_data_ik(ev->nonce, ev->pubkey, ev->measurement, ev->instance_key, rd, &e) < 0) goto fail;
    if (ev->backend == SCP_TEE_SNP) {
        /* everything the policy may refuse is checked by check_tee_policy */
        scp_snp_policy sp = {.report_data = rd, .ark_sha256 = api->has_test_ark ? api->test_ark : NULL};
        rc = scp_snp_verify(ev->quote, ev->quote_len, ev->vcek, ev->vcek_len, api->collateral_dir, &sp, &hr->snp,
                            product, &e);
        if (rc == 0) {
            const scp_snp_tcb *t = &hr->snp.reported_tcb;
            snprintf(ai->note, sizeof ai->note, "tee snp %s, reported TCB bootloader %u tee %u snp %u microcode %u",
                     product, t->bootloader, t->tee, t->snp, t->microcode);
        }
    } else {
        scp_dcap_policy dp = {.report_data = rd,
                              .accept_tcb = ~(1u << SCP_DCAP_TCB_REVOKED),
                              .root_sha256 = api->has_test_intel_root ? api->test_intel_root : NULL};
        rc = scp_dcap_verify(ev->quote, ev->quote_len, api->collateral_dir, &dp, &hr->dcap, &e);
        if (rc == 0)
            snprintf(ai->note, sizeof ai->note, "tee %s, TCB status %s", backend_name(ev->backend),
                     scp_dcap_tcb_status_name(hr->dcap.tcb_status));
        if (rc == 0 && (hr->dcap.tee_type == SCP_DCAP_TEE_TDX) != (ev->backend == SCP_TEE_TDX)) {
            cas_deny(resp, 400, "bad_evidence", "the quote is not a %s quote", backend_name(ev->backend));
            return -1;
        }
    }
    if (rc < 0) goto fail;
    if (ev->backend == SCP_TEE_SNP) {
        scp_hw_platform_identity_snp(hr->snp.chip_id, ident);
    } else if (hr->dcap.has_ppid) {
        scp_hw_platform_identity_ppid(hr->dcap.ppid, ident);
    } else {
        cas_deny(resp, 403, "bad_evidence", "the quote's PCK certificate carries no PPID (no platform identity)");
        return -1;
    }
    scp_sha256_buf(ident, 32, id);
    if (memcmp(id, ev->platform_id, 32) != 0) {
        cas_deny(resp, 403, "bad_evidence", "the evidence's platform id is not the id of the hardware that signed it");
        return -1;
    }
    return 0;
fail:
    switch (e.code) {
    case SCP_E_NOENT: cas_deny(resp, 403, "missing_collateral", "cannot verify %s evidence: %s", backend_name(ev->backend), e.msg); break;
    case SCP_E_POLICY: cas_deny(resp, 403, "tee_policy", "%s evidence refused: %s", backend_name(ev->backend), e.msg); break;
    case SCP_E_FORMAT: cas_deny(resp, 400, "bad_evidence", "malformed %s evidence: %s", backend_name(ev->backend), e.msg); break;
    default: cas_deny(resp, 403, "bad_evidence", "verification failed: %s", e.msg); break;
    }
    return -1;
}

static int hex_is(const uint8_t *got, const uint8_t *want, size_t n, char *got_hex) {
    scp_hex(got, n, got_hex);
    return memcmp(got, want, n) == 0;
}

/* The service's section for the evidence's platform: its launch measurement (SNP MEASUREMENT,
 * HOST_DATA; TDX MRTD, RTMRs; SGX MRENCLAVE, MRSIGNER) and minimum TCB. */
static int check_tee_policy(const scp_evidence *ev, const cas_service_def *svc, const hw_result *hr,
                            cas_response *resp) {
    const char *b = backend_name(ev->backend);
    const cas_tee_policy *t = ev->backend == SCP_TEE_SNP ? &svc->snp : ev->backend == SCP_TEE_TDX ? &svc->tdx : &svc->sgx;
    char got[97];
    if (!t->present) {
        cas_deny(resp, 403, "tee_not_allowed", "service '%s' accepts no %s platform (its policy has no '%s' section)",
                 svc->name, b, b);
        return -1;
    }
    if (ev->backend == SCP_TEE_SNP) {
        const scp_snp_report *r = &hr->snp;
        if (!hex_is(r->measurement, t->measurement, 48, got)) goto wrong_measurement;
        if (t->has_host_data && !hex_is(r->host_data, t->host_data, 32, got)) {
            cas_deny(resp, 403, "wrong_measurement", "snp HOST_DATA %s is not the one service '%s' allows", got, svc->name);
            return -1;
        }
        const uint8_t have[4] = {r->reported_tcb.bootloader, r->reported_tcb.tee, r->reported_tcb.snp,
                                 r->reported_tcb.microcode};
        static const char *const comp[4] = {"bootloader", "tee", "snp", "microcode"};
        for (int i = 0; i < 4; i++)
            if (have[i] < t->min_tcb[i]) {
                cas_deny(resp, 403, "tcb_too_low", "snp reported TCB %s %u is below the minimum %u of service '%s'",
                         comp[i], have[i], t->min_tcb[i], svc->name);
                return -1;
            }
        return 0;
    }
    const scp_dcap_quote *q = &hr->dcap;
    if (ev->backend == SCP_TEE_TDX) {
        if (!hex_is(q->mrtd, t->measurement, 48, got)) goto wrong_measurement;
        for (int i = 0; i < 4; i++)
            if ((t->rtmr_set & 1u << i) && !hex_is(q->rtmr[i], t->rtmr[i], 48, got)) {
                cas_deny(resp, 403, "wrong_measurement", "tdx RTMR%d %s is not the one service '%s' allows", i, got,
                         svc->name);
                return -1;
            }
    } else {
        if ((t->has_mrenclave && !hex_is(q->mrenclave, t->mrenclave, 32, got)) ||
            (t->has_mrsigner && !hex_is(q->mrsigner, t->mrsigner, 32, got))) {
            cas_deny(resp, 403, "wrong_measurement", "sgx %s %s is not the one service '%s' allows",
                     t->has_mrenclave && memcmp(q->mrenclave, t->mrenclave, 32) != 0 ? "MRENCLAVE" : "MRSIGNER", got,
                     svc->name);
            return -1;
        }
        if (q->isvsvn < t->min_isvsvn) {
            cas_deny(resp, 403, "tcb_too_low", "sgx ISVSVN %u is below the minimum %u of service '%s'", q->isvsvn,
                     t->min_isvsvn, svc->name);
            return -1;
        }
    }
    unsigned accept = t->accept_tcb ? t->accept_tcb : 1u << SCP_DCAP_TCB_UP_TO_DATE;
    if (q->tcb_status < 0 || !(accept & 1u << q->tcb_status)) {
        cas_deny(resp, 403, "tcb_too_low", "%s TCB status %s is not accepted by service '%s'", b,
                 scp_dcap_tcb_status_name(q->tcb_status), svc->name);
        return -1;
    }
    return 0;
wrong_measurement:
    cas_deny(resp, 403, "wrong_measurement", "%s %s %s is not the one service '%s' allows", b,
             ev->backend == SCP_TEE_SNP ? "MEASUREMENT" : "MRTD", got, svc->name);
    return -1;
}

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
    if (scp_envelope_seal(key, aad, 32, cfg, strlen(cfg), &ct, &ctlen, err) < 0) goto out;
    char phex[65];
    scp_hex(pub, 32, phex);
    char *c64 = scp_b64enc(ct, ctlen);
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
    if (strlen(ev64) > 2 * SCP_EVIDENCE_MAX || !(evbuf = scp_b64dec(ev64, &evlen))) {
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
    hw_result hr;
    if (ev.backend != SCP_TEE_SIM) {
        if (verify_hw(api, &ev, &plat, &hr, ai, resp) < 0) goto out;
    } else {
        verifier_fn vf = verifier_for(ev.backend);
        if (!vf) {
            cas_deny(resp, 400, "unsupported_backend", "no verifier for TEE backend %u", ev.backend);
            goto out;
        }
        if (vf(&ev, &plat, &e) < 0) {
            cas_deny(resp, 403, "bad_evidence", "verification failed: %s", e.msg);
            goto out;
        }
    }
    r = cas_policy_acquire(api, session, &row, &pol, resp);
    if (r <= 0) goto out;
    const cas_service_def *svc = cas_policy_service(pol, service);
    if (!svc) {
        cas_deny(resp, 404, "unknown_service", "session '%s' has no service '%s'", session, service);
        goto out;
    }
    if (ev.backend != SCP_TEE_SIM && check_tee_policy(&ev, svc, &hr, resp) < 0) goto out;
    /* a service that names a hardware platform is not for the sim, whose memory nothing protects */
    if (ev.backend == SCP_TEE_SIM && (svc->snp.present || svc->tdx.present || svc->sgx.present)) {
        cas_deny(resp, 403, "tee_not_allowed", "service '%s' accepts hardware evidence only (its policy names %s%s%s)",
                 service, svc->snp.present ? "snp " : "", svc->tdx.present ? "tdx " : "", svc->sgx.present ? "sgx" : "");
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
    if (svc->net.instance && !ev.instance_key) {
        cas_deny(resp, 403, "no_instance_key",
                 "service '%s' has a per-instance network identity, and the evidence carries no instance key "
                 "(a runtime that makes none: an scpctl older than the policy, or platform attest without --instance-pubkey)", service);
        goto out;
    }
    json_t *cfg = cas_render_config(api, &row, pol, svc, resp);
    if (!cfg) goto out;
    if (svc->net.instance) {
        char fp[65] = "";
        char *pem = cas_instance_cert(api, &row, pol, svc, ev.instance_key, ai->measurement, ai->platform, fp, resp);
        size_t nl = strlen(ai->note); /* the audit row names the certificate (hardware: after the TCB) */
        if (pem) snprintf(ai->note + nl, sizeof ai->note - nl, "%sinstance certificate %.32s", nl ? "; " : "", fp);
        json_t *net = json_object_get(cfg, "network");
        if (!pem || json_object_set_new(net, "cert", json_string(pem)) < 0) {
            if (pem) cas_deny(resp, 500, "internal", "out of memory");
            free(pem);
            json_decref(cfg);
            goto out;
        }
        free(pem);
    }
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
