/* cas/store_pg.c - the PostgreSQL implementation of cas/store.h (`cas serve --store URI`).
 *
 * libpq is loaded with dlopen at the store's open, not linked: scpctl-cas also runs inside
 * every secure image (`image entry`), which copies the libraries it links, and libpq brings
 * about twenty (Kerberos, LDAP). Only a CAS told to use PostgreSQL maps it.
 *
 * A pool of up to POOL connections, made as needed: a statement takes a free one for its
 * round trip, a transaction binds one to the calling thread from begin() to its outermost
 * commit() or rollback() (transactions nest; only the outermost sends BEGIN and COMMIT).
 * Concurrent requests so wait for PostgreSQL's flushes together: one connection under a mutex,
 * as store_sqlite.c keeps SQLite's, gave 309 attestations/s at 16 clients against SQLite's
 * 2,004 (bench/cas/store.sh), every commit's flush in turn. Statements are prepared at each
 * connect. Results come in binary: text columns are their bytes, bigint eight bytes in network
 * order, bytea its bytes.
 *
 * A connection that broke (the server restarted, a network cut) is re-made before the next
 * statement outside a transaction, and a statement that finds it broken is retried once on
 * the new one, so a PostgreSQL restart costs the requests in flight at most. Inside a
 * transaction a broken connection is an error: the caller rolls back, and nothing it did
 * there counts (the server aborted it).
 *
 * What the database holds is what cas.db holds: policies and secrets encrypted by CAS, tags
 * with their MACs, the audit rows with their chain. The database server is as untrusted as
 * the disk under cas.db (docs/cas.md). */
#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cas/store.h"
#include "common/bytes.h"

/* ---- libpq, loaded at open ------------------------------------------------------------------ */

static struct pq_api {
    PGconn *(*connectdb)(const char *);
    ConnStatusType (*status)(const PGconn *);
    char *(*error_message)(const PGconn *);
    void (*finish)(PGconn *);
    void (*reset)(PGconn *);
    PGresult *(*exec)(PGconn *, const char *);
    PGresult *(*prepare)(PGconn *, const char *, const char *, int, const Oid *);
    PGresult *(*exec_prepared)(PGconn *, const char *, int, const char *const *, const int *, const int *, int);
    ExecStatusType (*result_status)(const PGresult *);
    char *(*result_error_field)(const PGresult *, int);
    char *(*result_error_message)(const PGresult *);
    int (*ntuples)(const PGresult *);
    char *(*getvalue)(const PGresult *, int, int);
    int (*getlength)(const PGresult *, int, int);
    int (*getisnull)(const PGresult *, int, int);
    char *(*cmd_tuples)(PGresult *);
    char *(*cmd_status)(PGresult *);
    void (*clear)(PGresult *);
    PQconninfoOption *(*conninfo_parse)(const char *, char **);
    void (*conninfo_free)(PQconninfoOption *);
    void (*freemem)(void *);
    PQnoticeProcessor (*set_notice_processor)(PGconn *, PQnoticeProcessor, void *);
} pq;
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static const char *pq_missing; /* NULL once every symbol is found */

static void pq_load(void) {
    static const char *const names[] = {
        "PQconnectdb",   "PQstatus",     "PQerrorMessage",  "PQfinish",        "PQreset",
        "PQexec",        "PQprepare",    "PQexecPrepared",  "PQresultStatus",  "PQresultErrorField",
        "PQresultErrorMessage", "PQntuples", "PQgetvalue",  "PQgetlength",     "PQgetisnull",
        "PQcmdTuples",   "PQcmdStatus",  "PQclear",         "PQconninfoParse", "PQconninfoFree",
        "PQfreemem",     "PQsetNoticeProcessor",
    };
    _Static_assert(sizeof names / sizeof names[0] == sizeof pq / sizeof(void (*)(void)), "one name per pointer");
    void *h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        pq_missing = "libpq.so.5";
        return;
    }
    void (**slot)(void) = (void (**)(void))&pq;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *f = dlsym(h, names[i]);
        if (!f) {
            pq_missing = names[i];
            return;
        }
        memcpy(&slot[i], &f, sizeof f); /* (a data pointer to a function pointer: POSIX allows it) */
    }
}

/* ---- statements ---------------------------------------------------------------------------- */

enum {
    Q_SESSION_GET, Q_SESSION_INSERT, Q_SESSION_REPLACE, Q_SESSION_DELETE, Q_SECRETS_DELETE, Q_VOLUMES_DELETE,
    Q_SESSION_LIST, Q_SESSION_LIST_ALL, Q_SECRET_GET, Q_SECRET_PUT, Q_VOLUME_GET, Q_VOLUME_PUT_KEY, Q_VOLUME_SET_TAG,
    Q_PLATFORM_PUT, Q_PLATFORM_GET, Q_PLATFORM_REVOKE, Q_PLATFORM_LIST, Q_AUDIT_LAST, Q_AUDIT_APPEND, Q_AUDIT_SCAN,
    Q_ENDED_PUT, Q_VOLUME_LIST, Q_OWNER_PUT, Q_OWNER_GET, Q_COUNT
};

/* The change counter is a sequence: above every version and deletion recorded, as SQLite's
 * max()+1, and safe for two writers. */
static const char *const SQL[Q_COUNT] = {
    [Q_SESSION_GET] = "SELECT name, owner, hash, predecessor, policy, updated, incarnation, seq, "
                      "coalesce((SELECT seq FROM ended WHERE name = $1), 0) FROM sessions WHERE name = $1",
    [Q_SESSION_INSERT] = "INSERT INTO sessions(name, owner, hash, predecessor, policy, updated, incarnation, seq) "
                         "VALUES($1,$2,$3,$4,$5,$6,$7,nextval('cas_seq'))",
    [Q_SESSION_REPLACE] = "UPDATE sessions SET owner=$2, hash=$3, predecessor=$4, policy=$5, updated=$6, "
                          "seq=nextval('cas_seq') WHERE name=$1 AND hash=$7",
    [Q_ENDED_PUT] = "INSERT INTO ended(name, seq) SELECT $1, nextval('cas_seq') "
                    "WHERE EXISTS(SELECT 1 FROM sessions WHERE name = $1) "
                    "ON CONFLICT(name) DO UPDATE SET seq = EXCLUDED.seq",
    [Q_SESSION_DELETE] = "DELETE FROM sessions WHERE name = $1",
    [Q_SECRETS_DELETE] = "DELETE FROM secrets WHERE session = $1",
    [Q_VOLUMES_DELETE] = "DELETE FROM volumes WHERE session = $1",
    [Q_SESSION_LIST] = "SELECT name, owner, hash, predecessor, NULL, updated, incarnation, seq, 0 FROM sessions "
                       "WHERE owner = $1 ORDER BY name",
    [Q_SESSION_LIST_ALL] = "SELECT name, owner, hash, predecessor, NULL, updated, incarnation, seq, 0 FROM sessions "
                           "ORDER BY name",
    [Q_SECRET_GET] = "SELECT spec, value FROM secrets WHERE session = $1 AND name = $2",
    [Q_SECRET_PUT] = "INSERT INTO secrets(session, name, spec, value) VALUES($1,$2,$3,$4) "
                     "ON CONFLICT(session, name) DO UPDATE SET spec = EXCLUDED.spec, value = EXCLUDED.value",
    [Q_VOLUME_GET] = "SELECT key, tag, mac FROM volumes WHERE session = $1 AND name = $2",
    [Q_VOLUME_PUT_KEY] = "INSERT INTO volumes(session, name, key, tag, mac) VALUES($1,$2,$3,'',$4)",
    [Q_VOLUME_SET_TAG] = "UPDATE volumes SET tag = $3, mac = $4 WHERE session = $1 AND name = $2",
    [Q_VOLUME_LIST] = "SELECT v.session, s.incarnation, v.name, v.tag FROM volumes v JOIN sessions s ON s.name = v.session",
    [Q_PLATFORM_PUT] = "INSERT INTO platforms(id, name, backend, pubkey, revoked, created) VALUES($1,$2,$3,$4,0,$5)",
    [Q_PLATFORM_GET] = "SELECT id, name, backend, pubkey, revoked, created FROM platforms WHERE id = $1",
    [Q_PLATFORM_REVOKE] = "UPDATE platforms SET revoked = 1 WHERE id = $1",
    [Q_PLATFORM_LIST] = "SELECT id, name, backend, pubkey, revoked, created FROM platforms ORDER BY created, id",
    [Q_AUDIT_LAST] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
    [Q_AUDIT_APPEND] = "INSERT INTO audit(seq, ts, actor, action, session, service, measurement, platform, decision, "
                       "reason, hash) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
    [Q_AUDIT_SCAN] = "SELECT seq, ts, actor, action, session, service, measurement, platform, decision, reason, hash "
                     "FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2",
    [Q_OWNER_PUT] = "INSERT INTO meta(k, v) VALUES('owner', $1) ON CONFLICT(k) DO NOTHING",
    [Q_OWNER_GET] = "SELECT v FROM meta WHERE k = 'owner'",
};

/* Made once per database; the advisory lock keeps two CAS starting at once from racing on
 * CREATE ... IF NOT EXISTS (which is not safe against a concurrent create). */
static const char SCHEMA[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(7308904541352932167);"
    "CREATE SEQUENCE IF NOT EXISTS cas_seq;"
    "CREATE TABLE IF NOT EXISTS sessions(name text PRIMARY KEY, owner text NOT NULL, hash text NOT NULL,"
    " predecessor text NOT NULL, policy bytea NOT NULL, updated bigint NOT NULL, incarnation text NOT NULL,"
    " seq bigint NOT NULL);"
    "CREATE INDEX IF NOT EXISTS sessions_seq ON sessions(seq);"
    "CREATE TABLE IF NOT EXISTS ended(name text PRIMARY KEY, seq bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS secrets(session text NOT NULL, name text NOT NULL, spec text NOT NULL,"
    " value bytea NOT NULL, PRIMARY KEY(session, name));"
    "CREATE TABLE IF NOT EXISTS volumes(session text NOT NULL, name text NOT NULL, key bytea NOT NULL,"
    " tag text NOT NULL, mac text NOT NULL, PRIMARY KEY(session, name));"
    "CREATE TABLE IF NOT EXISTS platforms(id text PRIMARY KEY, name text NOT NULL, backend text NOT NULL,"
    " pubkey text NOT NULL, revoked integer NOT NULL, created bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit(seq bigint PRIMARY KEY, ts bigint NOT NULL, actor text NOT NULL,"
    " action text NOT NULL, session text NOT NULL, service text NOT NULL, measurement text NOT NULL,"
    " platform text NOT NULL, decision text NOT NULL, reason text NOT NULL, hash text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(k text PRIMARY KEY, v text NOT NULL);"
    "COMMIT;";

/* One connection of the pool: its own statements, in use by one thread at a time. */
typedef struct pg_conn {
    PGconn *c;           /* NULL until first needed */
    int prepared;        /* the statements exist on this connection */
    int busy;            /* taken by a thread; under the store's mu */
} pg_conn;

/* Concurrent requests each take a connection (a commit waits for PostgreSQL's flush, and
 * PostgreSQL flushes the commits that wait together at once): a pool, opened as needed. */
#define POOL 16
typedef struct pg_store {
    cas_store base;
    char *conninfo;
    pthread_mutex_t mu;  /* guards the busy flags */
    pthread_cond_t cv;   /* a connection was given back */
    pg_conn pool[POOL];
} pg_store;

/* The calling thread's transaction: begin() binds a connection to the thread until the
 * outermost commit() or rollback(); the operations in between run on it. */
static _Thread_local struct pg_tx {
    pg_store *s;
    pg_conn *c;
    int depth;  /* begin()s not yet ended */
    int doomed; /* an inner part rolled back */
} tx;

/* Parameters of one statement: text, or binary for bytea. */
#define MAXARGS 11
typedef struct pq_args {
    int n;
    const char *v[MAXARGS];
    int len[MAXARGS], fmt[MAXARGS];
    char num[MAXARGS][24];
} pq_args;

static void a_txt(pq_args *a, const char *t) {
    a->v[a->n] = t;
    a->len[a->n] = 0;
    a->fmt[a->n++] = 0;
}
static void a_bin(pq_args *a, const void *b, size_t n) {
    a->v[a->n] = n ? b : "";
    a->len[a->n] = (int)n;
    a->fmt[a->n++] = 1;
}
static void a_i64(pq_args *a, int64_t x) {
    snprintf(a->num[a->n], sizeof a->num[0], "%lld", (long long)x);
    a_txt(a, a->num[a->n]);
}

static int simple(pg_conn *c, const char *what, const char *sql, const char *want_status, scp_err *err);

static void quiet_notices(void *arg, const char *message) {
    (void)arg; /* ("relation already exists, skipping" and the like: a library prints nothing) */
    (void)message;
}

/* The first line of libpq's message, for an error that stays one line. */
static int pg_fail(scp_err *err, const char *what, const char *msg) {
    int n = (int)strcspn(msg ? msg : "", "\n");
    return scp_fail(err, SCP_E_SYS, EIO, "database error (%s): %.*s", what, n, msg ? msg : "");
}

/* At each connect: a lock held elsewhere fails a statement after 5 s, as SQLite's busy timeout
 * does (a request then gets an error instead of hanging; the audit's 503), and the statements. */
static int prepare_all(pg_conn *c, scp_err *err) {
    if (simple(c, "settings", "SET lock_timeout = '5s'", NULL, err) < 0) return -1;
    for (int i = 0; i < Q_COUNT; i++) {
        char name[8];
        snprintf(name, sizeof name, "q%d", i);
        PGresult *r = pq.prepare(c->c, name, SQL[i], 0, NULL);
        int ok = r && pq.result_status(r) == PGRES_COMMAND_OK;
        if (!ok) pg_fail(err, "prepare", r ? pq.result_error_message(r) : pq.error_message(c->c));
        pq.clear(r);
        if (!ok) return -1;
    }
    c->prepared = 1;
    return 0;
}

/* A new connection of the pool (not yet prepared). */
static int connect_new(pg_store *s, pg_conn *c, scp_err *err) {
    if (!(c->c = pq.connectdb(s->conninfo))) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    pq.set_notice_processor(c->c, quiet_notices, NULL);
    c->prepared = 0;
    return pq.status(c->c) == CONNECTION_OK ? 0 : pg_fail(err, "connect", pq.error_message(c->c));
}

/* A connection ready for statements: made, or made again if it broke (outside a transaction;
 * inside one it is an error: the server aborted the transaction). */
static int ensure_conn(pg_store *s, pg_conn *c, scp_err *err) {
    if (!c->c) {
        return connect_new(s, c, err) < 0 ? -1 : prepare_all(c, err);
    } else if (pq.status(c->c) == CONNECTION_OK && c->prepared) {
        return 0;
    } else if (tx.c == c) {
        return pg_fail(err, "connection", "the connection broke inside a transaction");
    } else if (pq.status(c->c) != CONNECTION_OK) {
        pq.reset(c->c);
    }
    c->prepared = 0;
    if (pq.status(c->c) != CONNECTION_OK) return pg_fail(err, "connect", pq.error_message(c->c));
    return prepare_all(c, err);
}

/* The thread's transaction's connection, or a free one of the pool (waiting for one). */
static pg_conn *take(pg_store *s) {
    if (tx.s == s) return tx.c;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (int i = 0; i < POOL; i++)
            if (!s->pool[i].busy) {
                s->pool[i].busy = 1;
                pthread_mutex_unlock(&s->mu);
                return &s->pool[i];
            }
        pthread_cond_wait(&s->cv, &s->mu);
    }
}

static void give_back(pg_store *s, pg_conn *c) {
    if (tx.c == c) return; /* (the transaction's: its end gives it back) */
    pthread_mutex_lock(&s->mu);
    assert(c->busy);
    c->busy = 0;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Run statement `which`. Returns the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK), which
 * outlives the connection, or NULL with *err (SCP_E_EXIST for a unique violation). */
static PGresult *run(pg_store *s, int which, const pq_args *a, scp_err *err) {
    char name[8];
    snprintf(name, sizeof name, "q%d", which);
    pg_conn *c = take(s);
    PGresult *r = NULL;
    for (int attempt = 0;; attempt++) {
        if (ensure_conn(s, c, err) < 0) break;
        r = pq.exec_prepared(c->c, name, a ? a->n : 0, a ? a->v : NULL, a ? a->len : NULL, a ? a->fmt : NULL, 1);
        ExecStatusType st = r ? pq.result_status(r) : PGRES_FATAL_ERROR;
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) break;
        /* a connection that broke under this statement: once more on a new one, outside a
         * transaction only */
        if (pq.status(c->c) != CONNECTION_OK && tx.c != c && attempt == 0) {
            pq.clear(r);
            r = NULL;
            continue;
        }
        const char *state = r ? pq.result_error_field(r, PG_DIAG_SQLSTATE) : NULL;
        if (state && strcmp(state, "23505") == 0)
            scp_fail(err, SCP_E_EXIST, EEXIST, "already exists");
        else
            pg_fail(err, SQL[which][0] == 'S' ? "read" : "write", r ? pq.result_error_message(r) : pq.error_message(c->c));
        pq.clear(r);
        r = NULL;
        break;
    }
    give_back(s, c);
    return r;
}

/* A statement that returns no rows: the rows it changed, or -1. */
static int run_change(pg_store *s, int which, const pq_args *a, scp_err *err, const char *what) {
    PGresult *r = run(s, which, a, err);
    if (!r) {
        if (err && err->code == SCP_E_EXIST) scp_fail(err, SCP_E_EXIST, EEXIST, "%s: already exists", what);
        return -1;
    }
    int n = (int)strtol(pq.cmd_tuples(r), NULL, 10); /* ("" for a statement that counts no rows: 0) */
    pq.clear(r);
    return n;
}

static void copy_col(const PGresult *r, int row, int col, char *out, size_t outsz) {
    size_t n = pq.getisnull(r, row, col) ? 0 : (size_t)pq.getlength(r, row, col);
    if (n >= outsz) n = outsz - 1;
    if (n) memcpy(out, pq.getvalue(r, row, col), n);
    out[n] = 0;
}

static uint8_t *copy_blob(const PGresult *r, int row, int col, size_t *len) {
    size_t n = pq.getisnull(r, row, col) ? 0 : (size_t)pq.getlength(r, row, col);
    uint8_t *out = malloc(n ? n : 1);
    if (out && n) memcpy(out, pq.getvalue(r, row, col), n);
    *len = n;
    return out;
}

/* An integer column in binary: bigint (8 bytes) or integer (4), network order. */
static int64_t col_i64(const PGresult *r, int row, int col) {
    const uint8_t *p = (const uint8_t *)pq.getvalue(r, row, col);
    int n = pq.getisnull(r, row, col) ? 0 : pq.getlength(r, row, col);
    if (n == 8) return (int64_t)scp_get_u64(p);
    if (n == 4) return (int32_t)scp_get_u32(p);
    return 0;
}

/* ---- transactions -------------------------------------------------------------------------- */

/* A statement without parameters (several, for the schema); want_status: the command tag the
 * last must answer (NULL: any). */
static int simple(pg_conn *c, const char *what, const char *sql, const char *want_status, scp_err *err) {
    PGresult *r = pq.exec(c->c, sql);
    int ok = r && pq.result_status(r) == PGRES_COMMAND_OK && (!want_status || strcmp(pq.cmd_status(r), want_status) == 0);
    if (!ok) {
        const char *m = r ? pq.result_error_message(r) : pq.error_message(c->c);
        pg_fail(err, what, m && *m ? m : "the transaction was aborted");
    }
    pq.clear(r);
    return ok ? 0 : -1;
}

static int pg_begin(cas_store *base, scp_err *err) {
    pg_store *s = (pg_store *)base;
    if (tx.s == s) {
        tx.depth++;
        return 0;
    }
    assert(!tx.s); /* (one store per thread's transaction) */
    pg_conn *c = take(s);
    if (ensure_conn(s, c, err) < 0 || simple(c, "begin", "BEGIN", NULL, err) < 0) {
        give_back(s, c);
        return -1;
    }
    tx = (struct pg_tx){s, c, 1, 0};
    return 0;
}

/* The end of the thread's transaction: the connection goes back to the pool. */
static void tx_end(void) {
    pg_store *s = tx.s;
    pg_conn *c = tx.c;
    tx = (struct pg_tx){0};
    give_back(s, c);
}

/* The outermost commit sends COMMIT; an inner one only ends its part. A transaction that an
 * inner part rolled back is rolled back whole at the outermost commit, which fails. */
static int pg_commit(cas_store *base, scp_err *err) {
    assert(tx.s == (pg_store *)base && tx.depth > 0);
    (void)base;
    if (--tx.depth > 0) return 0;
    int r;
    if (tx.doomed) {
        r = scp_fail(err, SCP_E_SYS, EIO, "database error (commit): a part of the transaction failed");
        simple(tx.c, "rollback", "ROLLBACK", NULL, NULL);
    } else if ((r = simple(tx.c, "commit", "COMMIT", "COMMIT", err)) < 0 && pq.status(tx.c->c) == CONNECTION_OK) {
        /* (a COMMIT of an aborted transaction answers ROLLBACK, without an error) */
        simple(tx.c, "rollback", "ROLLBACK", NULL, NULL);
    }
    tx_end();
    return r;
}

static void pg_rollback(cas_store *base) {
    assert(tx.s == (pg_store *)base && tx.depth > 0);
    (void)base;
    if (--tx.depth > 0) {
        tx.doomed = 1;
        return;
    }
    if (pq.status(tx.c->c) == CONNECTION_OK) simple(tx.c, "rollback", "ROLLBACK", NULL, NULL);
    tx_end();
}

/* ---- operations ---------------------------------------------------------------------------- */

static void session_from_row(const PGresult *r, int row, cas_session_row *o, int with_policy) {
    memset(o, 0, sizeof *o);
    copy_col(r, row, 0, o->name, sizeof o->name);
    copy_col(r, row, 1, o->owner, sizeof o->owner);
    copy_col(r, row, 2, o->hash, sizeof o->hash);
    copy_col(r, row, 3, o->predecessor, sizeof o->predecessor);
    if (with_policy) o->policy = copy_blob(r, row, 4, &o->policy_len);
    o->updated = col_i64(r, row, 5);
    copy_col(r, row, 6, o->incarnation, sizeof o->incarnation);
    o->seq = col_i64(r, row, 7);
    o->ended_seq = col_i64(r, row, 8);
}

static int pg_session_get(cas_store *base, const char *name, cas_session_row *out, scp_err *err) {
    pg_store *s = (pg_store *)base;
    pq_args a = {0};
    a_txt(&a, name);
    PGresult *r = run(s, Q_SESSION_GET, &a, err);
    if (!r) return -1;
    int rc = 0;
    if (pq.ntuples(r) > 0) {
        session_from_row(r, 0, out, 1);
        rc = out->policy ? 1 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    pq.clear(r);
    return rc;
}

static void session_args(pq_args *a, const cas_session_row *row) {
    a_txt(a, row->name);
    a_txt(a, row->owner);
    a_txt(a, row->hash);
    a_txt(a, row->predecessor);
    a_bin(a, row->policy, row->policy_len);
    a_i64(a, row->updated);
}

static int pg_session_insert(cas_store *base, const cas_session_row *row, scp_err *err) {
    pq_args a = {0};
    session_args(&a, row);
    a_txt(&a, row->incarnation);
    return run_change((pg_store *)base, Q_SESSION_INSERT, &a, err, "session") < 0 ? -1 : 0;
}

static int pg_session_replace(cas_store *base, const cas_session_row *row, const char *expected, scp_err *err) {
    pq_args a = {0};
    session_args(&a, row);
    a_txt(&a, expected);
    int n = run_change((pg_store *)base, Q_SESSION_REPLACE, &a, err, "session update");
    return n < 0 ? -1 : n > 0;
}

static int pg_session_delete(cas_store *base, const char *name, scp_err *err) {
    if (pg_begin(base, err) < 0) return -1;
    int n = -1;
    const int qs[4] = {Q_SECRETS_DELETE, Q_VOLUMES_DELETE, Q_ENDED_PUT, Q_SESSION_DELETE};
    for (int i = 0; i < 4; i++) {
        pq_args a = {0};
        a_txt(&a, name);
        if ((n = run_change((pg_store *)base, qs[i], &a, err, "session delete")) < 0) {
            pg_rollback(base);
            return -1;
        }
    }
    if (pg_commit(base, err) < 0) return -1;
    return n > 0;
}

static int pg_session_list(cas_store *base, const char *owner, cas_session_cb cb, void *ctx, scp_err *err) {
    pg_store *s = (pg_store *)base;
    pq_args a = {0};
    if (owner) a_txt(&a, owner);
    PGresult *r = run(s, owner ? Q_SESSION_LIST : Q_SESSION_LIST_ALL, &a, err);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; i < pq.ntuples(r) && rc == 0; i++) {
        cas_session_row row;
        session_from_row(r, i, &row, 0);
        rc = cb(ctx, &row);
    }
    pq.clear(r);
    return rc;
}

static int pg_secret_get(cas_store *base, const char *session, const char *name, char spec[65], uint8_t **val,
                         size_t *len, scp_err *err) {
    pg_store *s = (pg_store *)base;
    pq_args a = {0};
    a_txt(&a, session);
    a_txt(&a, name);
    PGresult *r = run(s, Q_SECRET_GET, &a, err);
    if (!r) return -1;
    int rc = 0;
    if (pq.ntuples(r) > 0) {
        copy_col(r, 0, 0, spec, 65);
        *val = copy_blob(r, 0, 1, len);
        rc = *val ? 1 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    pq.clear(r);
    return rc;
}

static int pg_secret_put(cas_store *base, const char *session, const char *name, const char *spec, const uint8_t *val,
                         size_t len, scp_err *err) {
    pq_args a = {0};
    a_txt(&a, session);
    a_txt(&a, name);
    a_txt(&a, spec);
    a_bin(&a, val, len);
    return run_change((pg_store *)base, Q_SECRET_PUT, &a, err, "secret") < 0 ? -1 : 0;
}

static int pg_volume_get(cas_store *base, const char *session, const char *name, uint8_t **key, size_t *keylen,
                         char tag_hex[81], char mac_hex[65], scp_err *err) {
    pg_store *s = (pg_store *)base;
    pq_args a = {0};
    a_txt(&a, session);
    a_txt(&a, name);
    PGresult *r = run(s, Q_VOLUME_GET, &a, err);
    if (!r) return -1;
    int rc = 0;
    if (pq.ntuples(r) > 0) {
        *key = copy_blob(r, 0, 0, keylen);
        copy_col(r, 0, 1, tag_hex, 81);
        copy_col(r, 0, 2, mac_hex, 65);
        rc = *key ? 1 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    pq.clear(r);
    return rc;
}

static int pg_volume_put_key(cas_store *base, const char *session, const char *name, const uint8_t *key, size_t keylen,
                             const char *mac_hex, scp_err *err) {
    pq_args a = {0};
    a_txt(&a, session);
    a_txt(&a, name);
    a_bin(&a, key, keylen);
    a_txt(&a, mac_hex);
    return run_change((pg_store *)base, Q_VOLUME_PUT_KEY, &a, err, "volume") < 0 ? -1 : 0;
}

static int pg_volume_set_tag(cas_store *base, const char *session, const char *name, const char *tag_hex,
                             const char *mac_hex, scp_err *err) {
    pq_args a = {0};
    a_txt(&a, session);
    a_txt(&a, name);
    a_txt(&a, tag_hex);
    a_txt(&a, mac_hex);
    int n = run_change((pg_store *)base, Q_VOLUME_SET_TAG, &a, err, "volume tag");
    if (n == 0) return scp_fail(err, SCP_E_NOENT, ENOENT, "no volume '%s' in session '%s'", name, session);
    return n < 0 ? -1 : 0;
}

static int pg_volume_list(cas_store *base, cas_volume_cb cb, void *ctx, scp_err *err) {
    pg_store *s = (pg_store *)base;
    PGresult *r = run(s, Q_VOLUME_LIST, NULL, err);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; i < pq.ntuples(r) && rc == 0; i++) {
        char session[CAS_NAME_MAX], inc[33], name[CAS_NAME_MAX], tag[81];
        copy_col(r, i, 0, session, sizeof session);
        copy_col(r, i, 1, inc, sizeof inc);
        copy_col(r, i, 2, name, sizeof name);
        copy_col(r, i, 3, tag, sizeof tag);
        rc = cb(ctx, session, inc, name, tag);
    }
    pq.clear(r);
    return rc;
}

static void platform_from_row(const PGresult *r, int row, cas_platform_row *o) {
    memset(o, 0, sizeof *o);
    copy_col(r, row, 0, o->id, sizeof o->id);
    copy_col(r, row, 1, o->name, sizeof o->name);
    copy_col(r, row, 2, o->backend, sizeof o->backend);
    copy_col(r, row, 3, o->pubkey, sizeof o->pubkey);
    o->revoked = (int)col_i64(r, row, 4);
    o->created = col_i64(r, row, 5);
}

static int pg_platform_put(cas_store *base, const cas_platform_row *row, scp_err *err) {
    pq_args a = {0};
    a_txt(&a, row->id);
    a_txt(&a, row->name);
    a_txt(&a, row->backend);
    a_txt(&a, row->pubkey);
    a_i64(&a, row->created);
    return run_change((pg_store *)base, Q_PLATFORM_PUT, &a, err, "platform") < 0 ? -1 : 0;
}

static int pg_platform_get(cas_store *base, const char *id, cas_platform_row *out, scp_err *err) {
    pg_store *s = (pg_store *)base;
    pq_args a = {0};
    a_txt(&a, id);
    PGresult *r = run(s, Q_PLATFORM_GET, &a, err);
    if (!r) return -1;
    int rc = pq.ntuples(r) > 0;
    if (rc) platform_from_row(r, 0, out);
    pq.clear(r);
    return rc;
}

static int pg_platform_revoke(cas_store *base, const char *id, scp_err *err) {
    pq_args a = {0};
    a_txt(&a, id);
    int n = run_change((pg_store *)base, Q_PLATFORM_REVOKE, &a, err, "platform revoke");
    return n < 0 ? -1 : n > 0;
}

static int pg_platform_list(cas_store *base, cas_platform_cb cb, void *ctx, scp_err *err) {
    pg_store *s = (pg_store *)base;
    PGresult *r = run(s, Q_PLATFORM_LIST, NULL, err);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; i < pq.ntuples(r) && rc == 0; i++) {
        cas_platform_row row;
        platform_from_row(r, i, &row);
        rc = cb(ctx, &row);
    }
    pq.clear(r);
    return rc;
}

static int pg_audit_last(cas_store *base, int64_t *seq, char hash[65], scp_err *err) {
    pg_store *s = (pg_store *)base;
    *seq = 0;
    hash[0] = 0;
    PGresult *r = run(s, Q_AUDIT_LAST, NULL, err);
    if (!r) return -1;
    if (pq.ntuples(r) > 0) {
        *seq = col_i64(r, 0, 0);
        copy_col(r, 0, 1, hash, 65);
    }
    pq.clear(r);
    return 0;
}

static int pg_audit_append(cas_store *base, const cas_audit_row *w, scp_err *err) {
    pq_args a = {0};
    a_i64(&a, w->seq);
    a_i64(&a, w->ts_ms);
    a_txt(&a, w->actor);
    a_txt(&a, w->action);
    a_txt(&a, w->session);
    a_txt(&a, w->service);
    a_txt(&a, w->measurement);
    a_txt(&a, w->platform);
    a_txt(&a, w->decision);
    a_txt(&a, w->reason);
    a_txt(&a, w->hash);
    return run_change((pg_store *)base, Q_AUDIT_APPEND, &a, err, "audit") < 0 ? -1 : 0;
}

static int pg_audit_scan(cas_store *base, int64_t from, int64_t limit, cas_audit_cb cb, void *ctx, scp_err *err) {
    pg_store *s = (pg_store *)base;
    pq_args a = {0};
    a_i64(&a, from);
    a_i64(&a, limit);
    PGresult *r = run(s, Q_AUDIT_SCAN, &a, err);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; i < pq.ntuples(r) && rc == 0; i++) {
        cas_audit_row w;
        memset(&w, 0, sizeof w);
        w.seq = col_i64(r, i, 0);
        w.ts_ms = col_i64(r, i, 1);
        copy_col(r, i, 2, w.actor, sizeof w.actor);
        copy_col(r, i, 3, w.action, sizeof w.action);
        copy_col(r, i, 4, w.session, sizeof w.session);
        copy_col(r, i, 5, w.service, sizeof w.service);
        copy_col(r, i, 6, w.measurement, sizeof w.measurement);
        copy_col(r, i, 7, w.platform, sizeof w.platform);
        copy_col(r, i, 8, w.decision, sizeof w.decision);
        copy_col(r, i, 9, w.reason, sizeof w.reason);
        copy_col(r, i, 10, w.hash, sizeof w.hash);
        rc = cb(ctx, &w);
    }
    pq.clear(r);
    return rc;
}

static int pg_bind_owner(cas_store *base, const char *owner_hex, scp_err *err) {
    pg_store *s = (pg_store *)base;
    pq_args a = {0};
    a_txt(&a, owner_hex);
    if (run_change(s, Q_OWNER_PUT, &a, err, "owner") < 0) return -1;
    PGresult *r = run(s, Q_OWNER_GET, NULL, err);
    if (!r) return -1;
    char got[80] = "";
    int rc = pq.ntuples(r) > 0 ? 0 : pg_fail(err, "owner", "no owner row after its insert");
    if (rc == 0) {
        copy_col(r, 0, 0, got, sizeof got);
        if (strcmp(got, owner_hex) != 0) rc = 1;
    }
    pq.clear(r);
    return rc;
}

/* ---- open and close ------------------------------------------------------------------------ */

static void pg_close(cas_store *base) {
    pg_store *s = (pg_store *)base;
    for (int i = 0; i < POOL; i++) {
        assert(!s->pool[i].busy);
        if (s->pool[i].c) pq.finish(s->pool[i].c);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->conninfo);
    free(s);
}

static const cas_store_ops PG_OPS = {
    pg_close,          pg_begin,           pg_commit,         pg_rollback,       pg_session_get,
    pg_session_insert, pg_session_replace, pg_session_delete, pg_session_list,   pg_secret_get,
    pg_secret_put,     pg_volume_get,      pg_volume_put_key, pg_volume_set_tag, pg_platform_put,
    pg_platform_get,   pg_platform_revoke, pg_platform_list,  pg_audit_last,     pg_audit_append,
    pg_audit_scan,     pg_volume_list,     pg_bind_owner,
};

/* A password in the connection string would stand in the process arguments (ps shows them to
 * every user) and in shell histories: refused, with where to put it instead. */
static int check_conninfo(const char *conninfo, scp_err *err) {
    char *msg = NULL;
    PQconninfoOption *opts = pq.conninfo_parse(conninfo, &msg);
    if (!opts) {
        int n = msg ? (int)strcspn(msg, "\n") : 0;
        scp_fail(err, SCP_E_INVAL, EINVAL, "bad PostgreSQL connection string: %.*s", n,
                 msg ? msg : "out of memory");
        pq.freemem(msg);
        return -1;
    }
    int has_password = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0]) has_password = 1;
    pq.conninfo_free(opts);
    if (has_password)
        return scp_fail(err, SCP_E_INVAL, EINVAL,
                        "the PostgreSQL connection string holds a password, which every user of this machine can "
                        "read in the process list: put it in a password file instead (passfile=FILE in the "
                        "string, or PGPASSFILE, or ~/.pgpass; mode 0600)");
    return 0;
}

int cas_store_is_pg(const char *uri) {
    return uri && (strncmp(uri, "postgresql://", 13) == 0 || strncmp(uri, "postgres://", 11) == 0 ||
                   strchr(uri, '=') != NULL);
}

cas_store *cas_store_open_pg(const char *conninfo, scp_err *err) {
    pthread_once(&pq_once, pq_load);
    if (pq_missing) {
        scp_fail(err, SCP_E_NOTSUP, ENOSYS,
                 "a PostgreSQL store needs libpq (%s not found: apt-get install libpq5)", pq_missing);
        return NULL;
    }
    if (check_conninfo(conninfo, err) < 0) return NULL;
    pg_store *s = calloc(1, sizeof *s);
    if (!s) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    s->base.ops = &PG_OPS;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!(s->conninfo = strdup(conninfo))) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        pg_close(&s->base);
        return NULL;
    }
    /* the first connection now: a database that cannot be reached is an error at the start */
    pg_conn *c = &s->pool[0];
    if (connect_new(s, c, err) < 0) {
        pg_close(&s->base);
        return NULL;
    }
    if (simple(c, "schema", SCHEMA, "COMMIT", err) < 0 || prepare_all(c, err) < 0) {
        pg_close(&s->base);
        return NULL;
    }
    return &s->base;
}
