/* cas/store_sqlite.c - the SQLite implementation of cas/store.h.
 *
 * One connection, guarded by a recursive mutex: begin() takes it and keeps it until commit()
 * or rollback(), so a transaction's operations run on the calling thread only. WAL mode with
 * synchronous=NORMAL: a commit is atomic and survives a crash of the process; a power cut may
 * lose the last commits but never corrupts the file. Statements are prepared once and cached. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "cas/store.h"

enum {
    Q_SESSION_GET, Q_SESSION_INSERT, Q_SESSION_REPLACE, Q_SESSION_DELETE, Q_SECRETS_DELETE, Q_VOLUMES_DELETE,
    Q_SESSION_LIST, Q_SESSION_LIST_ALL, Q_SECRET_GET, Q_SECRET_PUT, Q_VOLUME_GET, Q_VOLUME_PUT_KEY, Q_VOLUME_SET_TAG,
    Q_PLATFORM_PUT, Q_PLATFORM_GET, Q_PLATFORM_REVOKE, Q_PLATFORM_LIST, Q_AUDIT_LAST, Q_AUDIT_APPEND, Q_AUDIT_SCAN,
    Q_ENDED_PUT, Q_VOLUME_LIST, Q_OWNER_PUT, Q_OWNER_GET, Q_COUNT
};

/* the next value of the change counter: above every version and every deletion recorded */
#define NEXT_SEQ "(SELECT 1 + max(ifnull((SELECT max(seq) FROM sessions), 0), ifnull((SELECT max(seq) FROM ended), 0)))"

static const char *const SQL[Q_COUNT] = {
    [Q_SESSION_GET] = "SELECT name, owner, hash, predecessor, policy, updated, incarnation, seq, "
                      "ifnull((SELECT seq FROM ended WHERE name = ?1), 0) FROM sessions WHERE name = ?1",
    [Q_SESSION_INSERT] = "INSERT INTO sessions(name, owner, hash, predecessor, policy, updated, incarnation, seq) "
                         "VALUES(?1,?2,?3,?4,?5,?6,?7," NEXT_SEQ ")",
    [Q_SESSION_REPLACE] = "UPDATE sessions SET owner=?2, hash=?3, predecessor=?4, policy=?5, updated=?6, seq=" NEXT_SEQ
                          " WHERE name=?1 AND hash=?7",
    [Q_ENDED_PUT] = "INSERT OR REPLACE INTO ended(name, seq) SELECT ?1, " NEXT_SEQ
                    " WHERE EXISTS(SELECT 1 FROM sessions WHERE name = ?1)",
    [Q_SESSION_DELETE] = "DELETE FROM sessions WHERE name = ?1",
    [Q_SECRETS_DELETE] = "DELETE FROM secrets WHERE session = ?1",
    [Q_VOLUMES_DELETE] = "DELETE FROM volumes WHERE session = ?1",
    [Q_SESSION_LIST] = "SELECT name, owner, hash, predecessor, NULL, updated, incarnation, seq, 0 FROM sessions "
                       "WHERE owner = ?1 ORDER BY name",
    [Q_SESSION_LIST_ALL] = "SELECT name, owner, hash, predecessor, NULL, updated, incarnation, seq, 0 FROM sessions "
                           "ORDER BY name",
    [Q_SECRET_GET] = "SELECT spec, value FROM secrets WHERE session = ?1 AND name = ?2",
    [Q_SECRET_PUT] = "INSERT OR REPLACE INTO secrets(session, name, spec, value) VALUES(?1,?2,?3,?4)",
    [Q_VOLUME_GET] = "SELECT key, tag, mac FROM volumes WHERE session = ?1 AND name = ?2",
    [Q_VOLUME_PUT_KEY] = "INSERT INTO volumes(session, name, key, tag, mac) VALUES(?1,?2,?3,'',?4)",
    [Q_VOLUME_SET_TAG] = "UPDATE volumes SET tag = ?3, mac = ?4 WHERE session = ?1 AND name = ?2",
    [Q_VOLUME_LIST] = "SELECT v.session, s.incarnation, v.name, v.tag FROM volumes v JOIN sessions s ON s.name = v.session",
    [Q_PLATFORM_PUT] = "INSERT INTO platforms(id, name, backend, pubkey, revoked, created) VALUES(?1,?2,?3,?4,0,?5)",
    [Q_PLATFORM_GET] = "SELECT id, name, backend, pubkey, revoked, created FROM platforms WHERE id = ?1",
    [Q_PLATFORM_REVOKE] = "UPDATE platforms SET revoked = 1 WHERE id = ?1",
    [Q_PLATFORM_LIST] = "SELECT id, name, backend, pubkey, revoked, created FROM platforms ORDER BY created, id",
    [Q_AUDIT_LAST] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
    [Q_AUDIT_APPEND] = "INSERT INTO audit(seq, ts, actor, action, session, service, measurement, platform, decision, "
                       "reason, hash) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
    [Q_AUDIT_SCAN] = "SELECT seq, ts, actor, action, session, service, measurement, platform, decision, reason, hash "
                     "FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
    [Q_OWNER_PUT] = "INSERT OR IGNORE INTO meta(k, v) VALUES('owner', ?1)",
    [Q_OWNER_GET] = "SELECT v FROM meta WHERE k = 'owner'",
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS sessions(name TEXT PRIMARY KEY, owner TEXT NOT NULL, hash TEXT NOT NULL,"
    " predecessor TEXT NOT NULL, policy BLOB NOT NULL, updated INTEGER NOT NULL,"
    " incarnation TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS ended(name TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS secrets(session TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL,"
    " value BLOB NOT NULL, PRIMARY KEY(session, name));"
    "CREATE TABLE IF NOT EXISTS volumes(session TEXT NOT NULL, name TEXT NOT NULL, key BLOB NOT NULL,"
    " tag TEXT NOT NULL, mac TEXT NOT NULL DEFAULT '', PRIMARY KEY(session, name));"
    "CREATE TABLE IF NOT EXISTS platforms(id TEXT PRIMARY KEY, name TEXT NOT NULL, backend TEXT NOT NULL,"
    " pubkey TEXT NOT NULL, revoked INTEGER NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, actor TEXT NOT NULL,"
    " action TEXT NOT NULL, session TEXT NOT NULL, service TEXT NOT NULL, measurement TEXT NOT NULL,"
    " platform TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);";

typedef struct sq_store {
    cas_store base;
    sqlite3 *db;
    pthread_mutex_t mu;
    sqlite3_stmt *stmts[Q_COUNT];
    /* WAL checkpoints (which fsync) run on their own connection and thread, so that no
     * request waits for one */
    sqlite3 *ckpt_db;
    pthread_t ckpt_thread;
    int ckpt_running;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    int ckpt_stop;
} sq_store;

static void *checkpointer(void *arg) {
    sq_store *s = arg;
    pthread_mutex_lock(&s->ckpt_mu);
    while (!s->ckpt_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 500 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->ckpt_cv, &s->ckpt_mu, &ts);
        if (s->ckpt_stop) break;
        pthread_mutex_unlock(&s->ckpt_mu);
        sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&s->ckpt_mu);
    }
    pthread_mutex_unlock(&s->ckpt_mu);
    return NULL;
}

static int db_fail(sq_store *s, scp_err *err, const char *what) {
    return scp_fail(err, SCP_E_SYS, EIO, "database error (%s): %s", what, sqlite3_errmsg(s->db));
}

/* Lock and get a reset cached statement; NULL on error (unlocked then). */
static sqlite3_stmt *q(sq_store *s, int which, scp_err *err) {
    pthread_mutex_lock(&s->mu);
    if (!s->stmts[which] && sqlite3_prepare_v3(s->db, SQL[which], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[which], NULL) !=
                                SQLITE_OK) {
        db_fail(s, err, "prepare");
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    return s->stmts[which];
}

static void done(sq_store *s, sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->mu);
}

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t outsz) {
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
    if (n >= outsz) n = outsz - 1;
    if (n) memcpy(out, t, n);
    out[n] = 0;
}

static uint8_t *copy_blob(sqlite3_stmt *st, int col, size_t *len) {
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    const void *b = sqlite3_column_blob(st, col);
    uint8_t *out = malloc(n ? n : 1);
    if (out && n) memcpy(out, b, n);
    *len = n;
    return out;
}

#define TXT(st, i, v) sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC)

/* Run a statement that returns no rows; returns changes() or -1. */
static int exec_stmt(sq_store *s, sqlite3_stmt *st, scp_err *err, const char *what) {
    int r = sqlite3_step(st);
    int ch = sqlite3_changes(s->db);
    if (r != SQLITE_DONE) {
        int ext = sqlite3_extended_errcode(s->db);
        if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
            scp_fail(err, SCP_E_EXIST, EEXIST, "%s: already exists", what);
        else
            db_fail(s, err, what);
        done(s, st);
        return -1;
    }
    done(s, st);
    return ch;
}

static void sq_close(cas_store *base) {
    sq_store *s = (sq_store *)base;
    if (s->ckpt_running) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_stop = 1;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
        pthread_join(s->ckpt_thread, NULL);
    }
    if (s->ckpt_db) {
        sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(s->ckpt_db);
    }
    pthread_mutex_destroy(&s->ckpt_mu);
    pthread_cond_destroy(&s->ckpt_cv);
    for (int i = 0; i < Q_COUNT; i++) sqlite3_finalize(s->stmts[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int sq_exec(sq_store *s, const char *sql, scp_err *err) {
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) return db_fail(s, err, sql);
    return 0;
}

static int sq_begin(cas_store *base, scp_err *err) {
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    if (sq_exec(s, "BEGIN IMMEDIATE", err) < 0) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    return 0;
}

static int sq_commit(cas_store *base, scp_err *err) {
    sq_store *s = (sq_store *)base;
    int r = sq_exec(s, "COMMIT", err);
    if (r < 0) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->mu);
    return r;
}

static void sq_rollback(cas_store *base) {
    sq_store *s = (sq_store *)base;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->mu);
}

static void session_from_row(sqlite3_stmt *st, cas_session_row *r, int with_policy) {
    memset(r, 0, sizeof *r);
    copy_col(st, 0, r->name, sizeof r->name);
    copy_col(st, 1, r->owner, sizeof r->owner);
    copy_col(st, 2, r->hash, sizeof r->hash);
    copy_col(st, 3, r->predecessor, sizeof r->predecessor);
    if (with_policy) r->policy = copy_blob(st, 4, &r->policy_len);
    r->updated = sqlite3_column_int64(st, 5);
    copy_col(st, 6, r->incarnation, sizeof r->incarnation);
    r->seq = sqlite3_column_int64(st, 7);
    r->ended_seq = sqlite3_column_int64(st, 8);
}

static int sq_session_get(cas_store *base, const char *name, cas_session_row *out, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_SESSION_GET, err);
    if (!st) return -1;
    TXT(st, 1, name);
    int r = sqlite3_step(st), rc = 0;
    if (r == SQLITE_ROW) {
        session_from_row(st, out, 1);
        rc = out->policy ? 1 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    } else if (r != SQLITE_DONE) {
        rc = db_fail(s, err, "session_get");
    }
    done(s, st);
    return rc;
}

static void bind_session(sqlite3_stmt *st, const cas_session_row *row) {
    TXT(st, 1, row->name);
    TXT(st, 2, row->owner);
    TXT(st, 3, row->hash);
    TXT(st, 4, row->predecessor);
    sqlite3_bind_blob(st, 5, row->policy, (int)row->policy_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, row->updated);
}

static int sq_session_insert(cas_store *base, const cas_session_row *row, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_SESSION_INSERT, err);
    if (!st) return -1;
    bind_session(st, row);
    TXT(st, 7, row->incarnation);
    return exec_stmt(s, st, err, "session") < 0 ? -1 : 0;
}

static int sq_session_replace(cas_store *base, const cas_session_row *row, const char *expected, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_SESSION_REPLACE, err);
    if (!st) return -1;
    bind_session(st, row);
    TXT(st, 7, expected);
    int n = exec_stmt(s, st, err, "session update");
    return n < 0 ? -1 : n > 0;
}

static int sq_session_delete(cas_store *base, const char *name, scp_err *err) {
    sq_store *s = (sq_store *)base;
    if (sq_begin(base, err) < 0) return -1;
    int n = -1;
    const int qs[4] = {Q_SECRETS_DELETE, Q_VOLUMES_DELETE, Q_ENDED_PUT, Q_SESSION_DELETE};
    for (int i = 0; i < 4; i++) {
        sqlite3_stmt *st = q(s, qs[i], err);
        if (!st) goto fail;
        TXT(st, 1, name);
        n = exec_stmt(s, st, err, "session delete");
        if (n < 0) goto fail;
    }
    if (sq_commit(base, err) < 0) return -1;
    return n > 0;
fail:
    sq_rollback(base);
    return -1;
}

static int sq_session_list(cas_store *base, const char *owner, cas_session_cb cb, void *ctx, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, owner ? Q_SESSION_LIST : Q_SESSION_LIST_ALL, err);
    if (!st) return -1;
    if (owner) TXT(st, 1, owner);
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        cas_session_row row;
        session_from_row(st, &row, 0);
        if ((rc = cb(ctx, &row)) != 0) break;
    }
    if (rc == 0 && r != SQLITE_DONE) rc = db_fail(s, err, "session_list");
    done(s, st);
    return rc;
}

static int sq_secret_get(cas_store *base, const char *session, const char *name, char spec[65], uint8_t **val,
                         size_t *len, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_SECRET_GET, err);
    if (!st) return -1;
    TXT(st, 1, session);
    TXT(st, 2, name);
    int r = sqlite3_step(st), rc = 0;
    if (r == SQLITE_ROW) {
        copy_col(st, 0, spec, 65);
        *val = copy_blob(st, 1, len);
        rc = *val ? 1 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    } else if (r != SQLITE_DONE) {
        rc = db_fail(s, err, "secret_get");
    }
    done(s, st);
    return rc;
}

static int sq_secret_put(cas_store *base, const char *session, const char *name, const char *spec, const uint8_t *val,
                         size_t len, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_SECRET_PUT, err);
    if (!st) return -1;
    TXT(st, 1, session);
    TXT(st, 2, name);
    TXT(st, 3, spec);
    sqlite3_bind_blob(st, 4, val, (int)len, SQLITE_STATIC);
    return exec_stmt(s, st, err, "secret") < 0 ? -1 : 0;
}

static int sq_volume_get(cas_store *base, const char *session, const char *name, uint8_t **key, size_t *keylen,
                         char tag_hex[81], char mac_hex[65], scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_VOLUME_GET, err);
    if (!st) return -1;
    TXT(st, 1, session);
    TXT(st, 2, name);
    int r = sqlite3_step(st), rc = 0;
    if (r == SQLITE_ROW) {
        *key = copy_blob(st, 0, keylen);
        copy_col(st, 1, tag_hex, 81);
        copy_col(st, 2, mac_hex, 65);
        rc = *key ? 1 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    } else if (r != SQLITE_DONE) {
        rc = db_fail(s, err, "volume_get");
    }
    done(s, st);
    return rc;
}

static int sq_volume_put_key(cas_store *base, const char *session, const char *name, const uint8_t *key, size_t keylen,
                             const char *mac_hex, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_VOLUME_PUT_KEY, err);
    if (!st) return -1;
    TXT(st, 1, session);
    TXT(st, 2, name);
    sqlite3_bind_blob(st, 3, key, (int)keylen, SQLITE_STATIC);
    TXT(st, 4, mac_hex);
    return exec_stmt(s, st, err, "volume") < 0 ? -1 : 0;
}

static int sq_volume_set_tag(cas_store *base, const char *session, const char *name, const char *tag_hex,
                             const char *mac_hex, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_VOLUME_SET_TAG, err);
    if (!st) return -1;
    TXT(st, 1, session);
    TXT(st, 2, name);
    TXT(st, 3, tag_hex);
    TXT(st, 4, mac_hex);
    int n = exec_stmt(s, st, err, "volume tag");
    if (n == 0) return scp_fail(err, SCP_E_NOENT, ENOENT, "no volume '%s' in session '%s'", name, session);
    return n < 0 ? -1 : 0;
}

static int sq_volume_list(cas_store *base, cas_volume_cb cb, void *ctx, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_VOLUME_LIST, err);
    if (!st) return -1;
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        char session[CAS_NAME_MAX], inc[33], name[CAS_NAME_MAX], tag[81];
        copy_col(st, 0, session, sizeof session);
        copy_col(st, 1, inc, sizeof inc);
        copy_col(st, 2, name, sizeof name);
        copy_col(st, 3, tag, sizeof tag);
        if ((rc = cb(ctx, session, inc, name, tag)) != 0) break;
    }
    if (rc == 0 && r != SQLITE_DONE) rc = db_fail(s, err, "volume_list");
    done(s, st);
    return rc;
}

static void platform_from_row(sqlite3_stmt *st, cas_platform_row *r) {
    memset(r, 0, sizeof *r);
    copy_col(st, 0, r->id, sizeof r->id);
    copy_col(st, 1, r->name, sizeof r->name);
    copy_col(st, 2, r->backend, sizeof r->backend);
    copy_col(st, 3, r->pubkey, sizeof r->pubkey);
    r->revoked = sqlite3_column_int(st, 4);
    r->created = sqlite3_column_int64(st, 5);
}

static int sq_platform_put(cas_store *base, const cas_platform_row *row, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_PLATFORM_PUT, err);
    if (!st) return -1;
    TXT(st, 1, row->id);
    TXT(st, 2, row->name);
    TXT(st, 3, row->backend);
    TXT(st, 4, row->pubkey);
    sqlite3_bind_int64(st, 5, row->created);
    return exec_stmt(s, st, err, "platform") < 0 ? -1 : 0;
}

static int sq_platform_get(cas_store *base, const char *id, cas_platform_row *out, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_PLATFORM_GET, err);
    if (!st) return -1;
    TXT(st, 1, id);
    int r = sqlite3_step(st), rc = 0;
    if (r == SQLITE_ROW) {
        platform_from_row(st, out);
        rc = 1;
    } else if (r != SQLITE_DONE) {
        rc = db_fail(s, err, "platform_get");
    }
    done(s, st);
    return rc;
}

static int sq_platform_revoke(cas_store *base, const char *id, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_PLATFORM_REVOKE, err);
    if (!st) return -1;
    TXT(st, 1, id);
    int n = exec_stmt(s, st, err, "platform revoke");
    return n < 0 ? -1 : n > 0;
}

static int sq_platform_list(cas_store *base, cas_platform_cb cb, void *ctx, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_PLATFORM_LIST, err);
    if (!st) return -1;
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        cas_platform_row row;
        platform_from_row(st, &row);
        if ((rc = cb(ctx, &row)) != 0) break;
    }
    if (rc == 0 && r != SQLITE_DONE) rc = db_fail(s, err, "platform_list");
    done(s, st);
    return rc;
}

static int sq_audit_last(cas_store *base, int64_t *seq, char hash[65], scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_AUDIT_LAST, err);
    if (!st) return -1;
    int r = sqlite3_step(st), rc = 0;
    *seq = 0;
    hash[0] = 0;
    if (r == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        copy_col(st, 1, hash, 65);
    } else if (r != SQLITE_DONE) {
        rc = db_fail(s, err, "audit_last");
    }
    done(s, st);
    return rc;
}

static int sq_audit_append(cas_store *base, const cas_audit_row *a, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_AUDIT_APPEND, err);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, a->seq);
    sqlite3_bind_int64(st, 2, a->ts_ms);
    TXT(st, 3, a->actor);
    TXT(st, 4, a->action);
    TXT(st, 5, a->session);
    TXT(st, 6, a->service);
    TXT(st, 7, a->measurement);
    TXT(st, 8, a->platform);
    TXT(st, 9, a->decision);
    TXT(st, 10, a->reason);
    TXT(st, 11, a->hash);
    return exec_stmt(s, st, err, "audit") < 0 ? -1 : 0;
}

static int sq_audit_scan(cas_store *base, int64_t from, int64_t limit, cas_audit_cb cb, void *ctx, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_AUDIT_SCAN, err);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, limit);
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        cas_audit_row a;
        memset(&a, 0, sizeof a);
        a.seq = sqlite3_column_int64(st, 0);
        a.ts_ms = sqlite3_column_int64(st, 1);
        copy_col(st, 2, a.actor, sizeof a.actor);
        copy_col(st, 3, a.action, sizeof a.action);
        copy_col(st, 4, a.session, sizeof a.session);
        copy_col(st, 5, a.service, sizeof a.service);
        copy_col(st, 6, a.measurement, sizeof a.measurement);
        copy_col(st, 7, a.platform, sizeof a.platform);
        copy_col(st, 8, a.decision, sizeof a.decision);
        copy_col(st, 9, a.reason, sizeof a.reason);
        copy_col(st, 10, a.hash, sizeof a.hash);
        if ((rc = cb(ctx, &a)) != 0) break;
    }
    if (rc == 0 && r != SQLITE_DONE) rc = db_fail(s, err, "audit_scan");
    done(s, st);
    return rc;
}

static int sq_bind_owner(cas_store *base, const char *owner_hex, scp_err *err) {
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = q(s, Q_OWNER_PUT, err);
    if (!st) return -1;
    TXT(st, 1, owner_hex);
    if (exec_stmt(s, st, err, "owner") < 0 || !(st = q(s, Q_OWNER_GET, err))) return -1;
    int r = sqlite3_step(st), rc = 0;
    if (r != SQLITE_ROW) rc = db_fail(s, err, "owner");
    else if (strcmp((const char *)sqlite3_column_text(st, 0), owner_hex) != 0) rc = 1;
    done(s, st);
    return rc;
}

static int has_column(sq_store *s, const char *table, const char *col) {
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s LIMIT 0", col, table);
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    return ok;
}

/* Databases made before session incarnations and tag MACs: give every session a random
 * incarnation, and mark the tags as needing their first MAC (tags_need_mac). Only when the
 * columns are missing: a host that blanks them later gets integrity errors, not a migration. */
static int migrate(sq_store *s, scp_err *err) {
    int add_inc = !has_column(s, "sessions", "incarnation"), add_mac = !has_column(s, "volumes", "mac");
    if (!add_inc && !add_mac) return 0;
    if (sq_exec(s, "BEGIN IMMEDIATE", err) < 0) return -1;
    if ((add_inc && (sq_exec(s, "ALTER TABLE sessions ADD COLUMN incarnation TEXT NOT NULL DEFAULT ''", err) < 0 ||
                     sq_exec(s, "ALTER TABLE sessions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0", err) < 0 ||
                     sq_exec(s, "UPDATE sessions SET incarnation = lower(hex(randomblob(16)))", err) < 0)) ||
        (add_mac && sq_exec(s, "ALTER TABLE volumes ADD COLUMN mac TEXT NOT NULL DEFAULT ''", err) < 0) ||
        sq_exec(s, "COMMIT", err) < 0) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    s->base.tags_need_mac = add_mac;
    return 0;
}

static const cas_store_ops SQLITE_OPS = {
    sq_close,          sq_begin,         sq_commit,          sq_rollback,       sq_session_get,
    sq_session_insert, sq_session_replace, sq_session_delete, sq_session_list,  sq_secret_get,
    sq_secret_put,     sq_volume_get,    sq_volume_put_key,  sq_volume_set_tag, sq_platform_put,
    sq_platform_get,   sq_platform_revoke, sq_platform_list, sq_audit_last,     sq_audit_append,
    sq_audit_scan,     sq_volume_list,    sq_bind_owner,
};

cas_store *cas_store_open_sqlite(const char *path, scp_err *err) {
    sq_store *s = calloc(1, sizeof *s);
    if (!s) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    s->base.ops = &SQLITE_OPS;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->mu, &a);
    pthread_mutexattr_destroy(&a);
    pthread_mutex_init(&s->ckpt_mu, NULL);
    pthread_cond_init(&s->ckpt_cv, NULL);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        scp_fail(err, SCP_E_SYS, EIO, "cannot open database '%s': %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->ckpt_mu);
        pthread_cond_destroy(&s->ckpt_cv);
        free(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (sq_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA secure_delete=ON;", err) < 0 ||
        sq_exec(s, SCHEMA, err) < 0 || migrate(s, err) < 0 ||
        sq_exec(s, "CREATE INDEX IF NOT EXISTS sessions_seq ON sessions(seq)", err) < 0) {
        sq_close(&s->base);
        return NULL;
    }
    if (sqlite3_open_v2(path, &s->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(s->ckpt_db, 1000);
        sqlite3_wal_autocheckpoint(s->db, 0);
        s->ckpt_running = pthread_create(&s->ckpt_thread, NULL, checkpointer, s) == 0;
        if (!s->ckpt_running) sqlite3_wal_autocheckpoint(s->db, 1000);
    } else {
        sqlite3_close(s->ckpt_db);
        s->ckpt_db = NULL;
    }
    return &s->base;
}
