/* cas/internal.h - state shared by the CAS request handlers (api.c, attest_api.c, secrets.c,
 * audit.c, nonce.c). Not a public interface. */
#ifndef SCP_CAS_INTERNAL_H
#define SCP_CAS_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "cas/api.h"
#include "cas/keys.h"
#include "cas/policy.h"
#include "cas/store.h"

#define NONCE_BUCKETS 4096
#define NONCE_WAYS 16
#define NONCE_TTL_MS 60000

typedef struct nonce_slot {
    uint8_t nonce[32];
    int64_t expires_ms; /* 0 = free */
} nonce_slot;

/* What a handler tells the audit log about its request. */
typedef struct cas_audit_info {
    const char *action;
    char session[CAS_NAME_MAX];
    char service[CAS_NAME_MAX];
    char measurement[65];
    char platform[65];
    char actor[65];
    char note[96]; /* what an allowed request touched, for its row's reason (e.g. a secret read) */
} cas_audit_info;

#define POLICY_CACHE 64
typedef struct cached_policy {
    char name[CAS_NAME_MAX];
    char hash[65];
    cas_policy *p;
    int refs, dead;
    uint64_t used;
} cached_policy;

struct cas_api {
    cas_store *st;
    uint8_t k_data[32];  /* encrypts policies, secrets, volume keys (AES-256-GCM) */
    uint8_t k_audit[32]; /* HMAC key of the audit chain */
    uint8_t k_token[32]; /* HMAC key of volume tokens */
    uint8_t k_tag[32];   /* HMAC key of the expected volume tags kept in the store */
    const cas_identity *id;
    char **admins;
    size_t n_admins;
    int nonce_ttl_ms;
    pthread_mutex_t nonce_mu;
    nonce_slot *nonces; /* NONCE_BUCKETS * NONCE_WAYS */
    pthread_mutex_t pc_mu;
    cached_policy pc[POLICY_CACHE];
    uint64_t pc_clock;
    pthread_mutex_t audit_mu;
    int64_t audit_seq;
    char audit_hash[65];
    /* the audit head file: the last (seq, hash) known to be written, MACed, kept beside the
     * database so that removing the newest rows is detected across restarts */
    char head_path[4096];
    int64_t head_written_ms;
    int64_t floor_seq; /* the chain must reach this row ... */
    char floor_hash[65]; /* ... with this hash */
    int head_problem;    /* 1: head file missing or forged */
    int head_frozen;     /* the chain was broken at start: never move the head (keep the evidence) */
    /* hardware verifiers (cas_api_set_hw) */
    char collateral_dir[4096];
    uint8_t test_ark[32], test_intel_root[32]; /* tests only: trusted instead of the pinned roots */
    int has_test_ark, has_test_intel_root;
};

/* sessions: load + decrypt + parse; 1 found, 0 not found (404 set), -1 error (resp set). */
int cas_load_policy(cas_api *api, const char *name, cas_session_row *row, cas_policy **pol, char **yaml,
                    cas_response *resp);

/* policy_cache.c: like cas_load_policy (without the text), sharing parsed policies of the
 * session's current version; release with cas_policy_release. */
int cas_policy_acquire(cas_api *api, const char *name, cas_session_row *row, cas_policy **pol, cas_response *resp);
void cas_policy_release(cas_api *api, cas_policy *pol);
void cas_policy_cache_free(cas_api *api);

/* secrets.c */
int cas_ensure_secrets(cas_api *api, const cas_policy *p, const char *owner, scp_err *err);
/* 0 if no x509 secret of p names CAS itself (CAS_SERVER_NAME) in its common name or DNS
 * names; else -1 with err saying which. */
int cas_check_reserved_names(const cas_policy *p, scp_err *err);
/* The stored value of secret `name` of session p, for its owner (the caller checks ownership):
 * *val is malloc'd and NUL-terminated, *len its length; the caller wipes and frees it. An x509
 * secret yields its certificate only (never the key); an imported one is refused
 * (SCP_E_NOTSUP: its owner reads it in the exporting session); SCP_E_NOENT if undefined. */
/* The console key of service `service` in session `session` (scp_ss_service_key of the
 * session's console key, which CAS creates with the session and never releases). Returns 1,
 * 0 when the session has no console key (created before console sections existed: an update
 * makes one), -1 on error. */
int cas_console_key(cas_api *api, const char *session, const char *service, uint8_t out[32], scp_err *err);
int cas_secret_owner_read(cas_api *api, const cas_policy *p, const char *name, char **val, size_t *len,
                          scp_err *err);
int cas_ensure_volumes(cas_api *api, const cas_policy *p, const char *incarnation, scp_err *err);
/* Render the service's configuration (JSON object) with placeholders replaced; row is the
 * session's current row (its owner, incarnation and change counters). */
json_t *cas_render_config(cas_api *api, const cas_session_row *row, const cas_policy *p, const cas_service_def *svc,
                          cas_response *resp);
/* The certificate of an attested instance whose network identity is `instance` (docs/cas.md):
 * for its P-256 key ik (65 bytes, uncompressed), valid CAS_INSTANCE_CERT_DAYS; PEM (malloc'd)
 * and the certificate's SHA-256 fingerprint, or NULL with resp set. */
#define CAS_INSTANCE_CERT_DAYS 1
char *cas_instance_cert(cas_api *api, const cas_session_row *row, const cas_policy *p, const cas_service_def *svc,
                        const uint8_t ik[65], const char *measurement, const char *platform, char fingerprint[65],
                        cas_response *resp);
/* The capability a service uses to report tags: an HMAC over session, incarnation and service,
 * so it dies with the session's incarnation. */
void cas_volume_token(cas_api *api, const char *session, const char *incarnation, const char *service, char out[65]);
/* The expected tag of a volume is kept with HMAC(k_tag, session, incarnation, volume, tag).
 * cas_volume_read returns 1 with the key's ciphertext and the verified tag ("" = none yet), 0 if
 * there is no row, -1 on error: SCP_E_INTEGRITY if the tag or its MAC was changed outside CAS. */
void cas_tag_mac(cas_api *api, const char *session, const char *incarnation, const char *volume, const char *tag_hex,
                 char out[65]);
int cas_volume_read(cas_api *api, const char *session, const char *incarnation, const char *volume, uint8_t **key_ct,
                    size_t *ctlen, char tag_hex[81], scp_err *err);
int cas_volume_write_tag(cas_api *api, const char *session, const char *incarnation, const char *volume,
                         const char *tag_hex, scp_err *err);
int cas_seal(cas_api *api, const char *kind, const char *a, const char *b, const void *pt, size_t len, uint8_t **out,
             size_t *outlen, scp_err *err);
int cas_unseal(cas_api *api, const char *kind, const char *a, const char *b, const uint8_t *ct, size_t len,
               uint8_t **out, size_t *outlen, scp_err *err);

/* nonce.c */
int cas_nonce_issue(cas_api *api, uint8_t nonce[32]); /* -1 if the table is full */
int cas_nonce_take(cas_api *api, const uint8_t nonce[32]); /* 1 if it was valid (and is now used) */

/* audit.c */
/* flags: CAS_AUDIT_NEW_KEYSTORE, CAS_AUDIT_ACCEPT_RESET (api.h). Fails (SCP_E_INTEGRITY) when
 * rows were removed and the reset is not accepted. */
int cas_audit_init(cas_api *api, const char *data_dir, unsigned flags, scp_err *err);
/* Write the head file now (at shutdown). */
void cas_audit_close(cas_api *api);
/* Append one row; -1 if it could not be stored (then nothing may be granted). */
int cas_audit_append(cas_api *api, const cas_audit_info *ai, const char *decision, const char *reason);
/* Verify the whole chain: returns 0 if intact, else the first bad seq (>0) and a sentence in
 * problem; -1 on error. *reset_at (if not NULL): the last row recording an accepted reset, or 0. */
int64_t cas_audit_verify(cas_api *api, int64_t *count, int64_t *reset_at, char problem[200], scp_err *err);
void cas_audit_row_hash(const uint8_t key[32], const char *prev_hash, const cas_audit_row *r, char out[65]);

/* handlers */
void cas_handle_attest_nonce(cas_api *api, const http_request *req, cas_audit_info *ai, cas_response *resp);
void cas_handle_attest(cas_api *api, const http_request *req, cas_audit_info *ai, cas_response *resp);
void cas_handle_volume_tag(cas_api *api, const http_request *req, cas_audit_info *ai, cas_response *resp);

#endif
