/* scp/cas.h - the configuration and attestation service (CAS): daemon and client.
 *
 * CAS is an HTTP/1.1 JSON API over TLS 1.3. On first start it creates a master key, a
 * certificate authority and a server certificate in its data directory, and prints the CA
 * fingerprint (hex SHA-256 of the CA certificate) that clients pin. Clients authenticate with a
 * self-made client certificate ("identity"); the identity's id (hex SHA-256 of its public key)
 * is the owner of the sessions it creates. Attestation requests need no identity.
 * The API is described in docs/cas.md.
 *
 * Errors: see scp/err.h.
 */
#ifndef SCP_CAS_H
#define SCP_CAS_H

#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"

/* ---- daemon ------------------------------------------------------------------------------ */

typedef struct scp_cas_server_opts {
    const char *data_dir;   /* created (0700) if missing; holds cas.db, keys, certificates */
    const char *store;      /* NULL: data_dir/cas.db (SQLite); else a PostgreSQL connection string
                             * (postgresql://... or key=value, no password: docs/cas.md) */
    const char *listen;     /* "ADDR:PORT"; port 0 picks a free port */
    const char *port_file;  /* if not NULL, the bound port is written there once listening */
    int workers;            /* worker threads; 0 = default (64) */
    const char *const *admins; /* identity ids (hex) allowed to manage platforms and read the audit log */
    size_t n_admins;
    int read_timeout_ms;    /* a request must arrive completely within this; 0 = default (10 s) */
    int nonce_ttl_ms;       /* attestation nonces expire after this; 0 = default (60 s) */
    int accept_audit_reset; /* start even if audit rows were removed; the reset becomes a row */
    const char *collateral_dir; /* AMD/Intel collateral for hardware evidence; NULL: DATA_DIR/collateral */
    const char *test_snp_ark;   /* tests only (hex SHA-256): trust this AMD ARK instead of AMD's */
    const char *test_sgx_root;  /* tests only (hex SHA-256): trust this root instead of Intel's */
    /* What the daemon says once it listens, a line at a time (no newline), for the operator:
     * the CA fingerprint to pin ("... fingerprint (pin this): HEX"), the service CA, a
     * migration of the data directory, the address and port. NULL: the lines go to scp_log
     * (level INFO, "scp-cas"). */
    void (*announce)(void *ctx, const char *line);
    void *announce_ctx;
} scp_cas_server_opts;

/* Run the daemon until SIGTERM or SIGINT (then in-flight requests finish and it returns 0).
 * Tells opts->announce the CA fingerprint and the listening address, and scp_log the
 * warnings (the sim mode does not protect memory; a data directory open to others). Returns
 * -1 if it cannot start. */
int scp_cas_serve(const scp_cas_server_opts *opts, scp_err *err);

/* ---- client identities ------------------------------------------------------------------- */

/* Create a client identity (Ed25519 key + self-signed certificate, PEM, mode 0600) at path,
 * refusing to overwrite; id_hex receives its id. */
int scp_cas_identity_create(const char *path, char id_hex[65], scp_err *err);
/* The id of an existing identity file. */
int scp_cas_identity_id(const char *path, char id_hex[65], scp_err *err);

/* ---- client ------------------------------------------------------------------------------ */

typedef struct scp_cas_client scp_cas_client;

/* A client for the CAS at addr ("HOST:PORT"). pin_hex is the CA fingerprint (64 hex digits)
 * that the server's certificate chain must contain; identity is an identity file or NULL
 * (anonymous). Connects lazily; keeps the connection alive between requests. */
scp_cas_client *scp_cas_client_new(const char *addr, const char *pin_hex, const char *identity, scp_err *err);
void scp_cas_client_free(scp_cas_client *c);

/* One request. body may be NULL. On success returns the HTTP status (including 4xx/5xx) and
 * *resp (malloc'd, NUL-terminated, caller frees) holds the response body. Returns -1 if no
 * response was obtained (connection, TLS or pin failure: SCP_E_INTEGRITY if the pin did not
 * match). */
int scp_cas_request(scp_cas_client *c, const char *method, const char *path, const char *ctype, const void *body,
                    size_t body_len, char **resp, size_t *resp_len, scp_err *err);

/* The CA fingerprint actually presented by the server in the last connection (hex), or "". */
const char *scp_cas_client_seen_fp(const scp_cas_client *c);

#endif
