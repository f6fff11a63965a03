/* cas/api.h - the CAS request router and its shared state. */
#ifndef SCP_CAS_API_H
#define SCP_CAS_API_H

#include <stddef.h>
#include <stdint.h>

#include "cas/http.h"
#include "cas/keys.h"
#include "cas/response.h"
#include "scp/err.h"

typedef struct cas_api cas_api;


/* audit_flags of cas_api_new */
#define CAS_AUDIT_NEW_KEYSTORE 1u /* the master key was created at this start: no history yet */
#define CAS_AUDIT_ACCEPT_RESET 2u /* the operator accepts a log that lost rows (recorded in it) */

/* Open the state: the store (store: a PostgreSQL connection string, see cas_store_open_pg;
 * NULL: data_dir/cas.db) and the audit head under data_dir. Takes no ownership of id. Fails if
 * the audit log lost rows, unless audit_flags has CAS_AUDIT_ACCEPT_RESET. */
cas_api *cas_api_new(const char *data_dir, const char *store, const uint8_t master[32], const cas_identity *id,
                     const char *const *admins, size_t n_admins, int nonce_ttl_ms, unsigned audit_flags,
                     scp_err *err);
void cas_api_free(cas_api *api);

/* Hardware verifiers: the collateral directory (NULL: DATA_DIR/collateral) and, for tests
 * only, roots trusted instead of the pinned AMD ARK / Intel SGX Root CA (SHA-256 of the
 * certificate's DER; NULL: none). */
int cas_api_set_hw(cas_api *api, const char *data_dir, const char *collateral_dir, const uint8_t *test_ark,
                   const uint8_t *test_intel_root, scp_err *err);

/* Handle one request. client_id is the hex id of the TLS client certificate or NULL.
 * Always fills *resp (JSON, also for errors). */
void cas_api_handle(cas_api *api, const http_request *req, const char *client_id, cas_response *resp);

/* Record a transport-level refusal (malformed request, slow client) in the audit log. */
void cas_api_audit_transport(cas_api *api, const char *client_id, int status, const char *why);

#endif
