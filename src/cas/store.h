/* cas/store.h - the storage interface of CAS.
 *
 * Everything CAS keeps goes through this table of operations, so that a PostgreSQL store can
 * be added beside the SQLite one (store_sqlite.c) without touching the rest. Values that are
 * secret arrive here already encrypted (blobs); the store never sees plaintext secrets.
 *
 * Conventions: functions return 0 on success and -1 on error (with *err); lookups return 1 if
 * found and 0 if not. Every operation is atomic by itself; begin/commit/rollback group several
 * (they nest with the calling thread holding the store, see store_sqlite.c). */
#ifndef SCP_CAS_STORE_H
#define SCP_CAS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"

#define CAS_NAME_MAX 65 /* names are at most 64 characters */

typedef struct cas_session_row {
    char name[CAS_NAME_MAX];
    char owner[65];       /* hex id of the owner's identity */
    char hash[65];        /* hex SHA-256 of the policy document */
    char predecessor[65]; /* hash of the version it replaced, "" for the first */
    uint8_t *policy;      /* the policy document, encrypted (malloc'd in lookups) */
    size_t policy_len;
    int64_t updated;      /* unix seconds */
    /* Made at create, kept by updates: a deleted and re-created session is another incarnation
     * (volume tokens and tag MACs bind to it). 32 hex digits; set by the caller on insert. */
    char incarnation[33];
    /* The store's change counter (one sequence for every create, update and delete) at this
     * version, and at the last deletion of a session of this name (0: never deleted). Filled by
     * lookups; the store assigns seq on insert and replace. */
    int64_t seq, ended_seq;
} cas_session_row;

typedef struct cas_platform_row {
    char id[65];          /* hex SHA-256 of the platform public key */
    char name[CAS_NAME_MAX];
    char backend[16];     /* "sim" */
    char pubkey[65];      /* hex */
    int revoked;
    int64_t created;
} cas_platform_row;

typedef struct cas_audit_row {
    int64_t seq;
    int64_t ts_ms;
    char actor[65];
    char action[32];
    char session[CAS_NAME_MAX];
    char service[CAS_NAME_MAX];
    char measurement[65];
    char platform[65];
    char decision[16];
    char reason[256];
    char hash[65];        /* hex HMAC chaining this row to the previous one */
} cas_audit_row;

typedef struct cas_store cas_store;
typedef int (*cas_session_cb)(void *ctx, const cas_session_row *row);
typedef int (*cas_platform_cb)(void *ctx, const cas_platform_row *row);
typedef int (*cas_audit_cb)(void *ctx, const cas_audit_row *row);
typedef int (*cas_volume_cb)(void *ctx, const char *session, const char *incarnation, const char *name,
                             const char *tag_hex);

typedef struct cas_store_ops {
    void (*close)(cas_store *st);
    int (*begin)(cas_store *st, scp_err *err);
    int (*commit)(cas_store *st, scp_err *err);
    void (*rollback)(cas_store *st);

    int (*session_get)(cas_store *st, const char *name, cas_session_row *out, scp_err *err);
    int (*session_insert)(cas_store *st, const cas_session_row *row, scp_err *err); /* SCP_E_EXIST */
    /* Replace only if the stored hash is expected_hash; returns 1 if replaced, 0 if not. */
    int (*session_replace)(cas_store *st, const cas_session_row *row, const char *expected_hash, scp_err *err);
    /* Delete a session with its secrets and volumes, and record the deletion (ended_seq);
     * returns 1 if it existed. */
    int (*session_delete)(cas_store *st, const char *name, scp_err *err);
    int (*session_list)(cas_store *st, const char *owner, cas_session_cb cb, void *ctx, scp_err *err);

    int (*secret_get)(cas_store *st, const char *session, const char *name, char spec[65], uint8_t **val,
                      size_t *len, scp_err *err);
    int (*secret_put)(cas_store *st, const char *session, const char *name, const char *spec, const uint8_t *val,
                      size_t len, scp_err *err);

    /* tag_hex receives the stored tag (80 hex digits) or "" if none was reported yet, mac_hex
     * the MAC CAS keeps with it (64 hex digits; see cas_tag_mac); the store does not check it. */
    int (*volume_get)(cas_store *st, const char *session, const char *name, uint8_t **key, size_t *keylen,
                      char tag_hex[81], char mac_hex[65], scp_err *err);
    /* A new volume: its key, and the MAC of its empty tag. */
    int (*volume_put_key)(cas_store *st, const char *session, const char *name, const uint8_t *key, size_t keylen,
                          const char *mac_hex, scp_err *err);
    int (*volume_set_tag)(cas_store *st, const char *session, const char *name, const char *tag_hex,
                          const char *mac_hex, scp_err *err);

    int (*platform_put)(cas_store *st, const cas_platform_row *row, scp_err *err); /* SCP_E_EXIST */
    int (*platform_get)(cas_store *st, const char *id, cas_platform_row *out, scp_err *err);
    int (*platform_revoke)(cas_store *st, const char *id, scp_err *err); /* 1 if it existed */
    int (*platform_list)(cas_store *st, cas_platform_cb cb, void *ctx, scp_err *err);

    int (*audit_last)(cas_store *st, int64_t *seq, char hash[65], scp_err *err); /* seq 0, hash "" if empty */
    int (*audit_append)(cas_store *st, const cas_audit_row *row, scp_err *err);
    int (*audit_scan)(cas_store *st, int64_t from_seq, int64_t limit, cas_audit_cb cb, void *ctx, scp_err *err);

    /* Every volume row with its session's incarnation (for the one-time MAC migration). */
    int (*volume_list)(cas_store *st, cas_volume_cb cb, void *ctx, scp_err *err);

    /* Bind the store to one CAS: the first call records owner_hex (a value derived from CAS's
     * master key), later ones compare with it. Returns 0 if the store is owner_hex's, 1 if
     * another CAS recorded another owner, -1 on error. An
     * operator's guard (two CAS on one database, a data directory lost and made anew), not a
     * security boundary: what the store holds is sealed under the master key anyway. */
    int (*bind_owner)(cas_store *st, const char *owner_hex, scp_err *err);
} cas_store_ops;

struct cas_store {
    const cas_store_ops *ops;
    /* set by open when it added the tag MAC column to an older database: the tags found there
     * have no MAC yet and are trusted once, as the upgrade's starting point (docs/cas.md) */
    int tags_need_mac;
};

/* The embedded default: one SQLite file (WAL mode). */
cas_store *cas_store_open_sqlite(const char *path, scp_err *err);

/* A PostgreSQL database (store_pg.c): conninfo is a libpq connection URI (postgresql://...) or
 * key=value string, without a password (refused: it would be in the process arguments; libpq
 * reads it from its password file). Creates the tables if missing. libpq is loaded at the first
 * call (SCP_E_NOTSUP if it is not installed). */
cas_store *cas_store_open_pg(const char *conninfo, scp_err *err);
/* Whether a --store value names a PostgreSQL database (a postgresql:// or postgres:// URI, or a
 * key=value connection string). */
int cas_store_is_pg(const char *uri);

#endif
