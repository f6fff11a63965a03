/* tests/volume/workload.h - the random file workload that the kill suite (test_volume_crash)
 * and the power-cut suite (test_volume_powercut) run against a volume, and the plain-memory
 * model of what it leaves in each file.
 *
 * Three files, ops drawn from a seeded PRNG so that a checker can regenerate the exact sequence:
 * pwrite, truncate, fsync, close+reopen, close+reopen with O_TRUNC, and atomic replace (write
 * "c/tmp" whole, rename it over the file, sync the volume as a program fsyncs the directory),
 * also without the sync (the rename is then visible at once but durable only at the next
 * durable commit). Every op but pwrite and truncate commits. Every other close+reopen is cold:
 * the volume's cache of closed files is dropped first, so that the open loads the file from its
 * objects (with a replay of its journal when one is left) as another process would; decided by
 * a count, not the PRNG, so that a run's ops stay what they were.
 * Include after testutil.h. The including file defines WL_MAXSZ (largest file offset written)
 * and may define WL_MARKER (a string that starts every write, for plaintext scans).
 */
#ifndef SCP_TESTS_VOLUME_WORKLOAD_H
#define SCP_TESTS_VOLUME_WORKLOAD_H

#ifndef WL_MAXSZ
#error "define WL_MAXSZ before including workload.h"
#endif

#include "volume/internal.h" /* (file_cache_drop: the cold reopen) */

#define WL_CS 4096u
#define WL_NF 3

static const char *const WL_FILES[WL_NF] = {"c/alpha", "c/beta", "c/gamma"};
enum { OP_WRITE, OP_TRUNC, OP_FSYNC, OP_REOPEN, OP_REPLACE, OP_TRUNCOPEN, OP_REPLACE_NOSYNC };
typedef struct op {
    int type, file;
    uint64_t off, len; /* write: offset/length; trunc: new size in off; replace: length */
} op;

static uint8_t wl_data[WL_MAXSZ]; /* the bytes of the op last generated */

static void wl_fill(tu_rng *r, uint64_t len) {
    tu_fill(r, wl_data, len);
#ifdef WL_MARKER
    memcpy(wl_data, WL_MARKER, len < sizeof WL_MARKER - 1 ? len : sizeof WL_MARKER - 1);
#endif
}

/* Next op from r; for writes and replaces, wl_data[0..len) is filled. */
static void wl_gen(tu_rng *r, op *o) {
    unsigned k = (unsigned)tu_below(r, 100);
    o->file = (int)tu_below(r, WL_NF);
    o->off = o->len = 0;
    if (k < 55) {
        o->type = OP_WRITE;
        unsigned s = (unsigned)tu_below(r, 10);
        o->len = s < 4   ? tu_range(r, 1, 300)
                 : s < 8 ? tu_range(r, 1, 2 * WL_CS)
                         : tu_range(r, 1, 5 * WL_CS);
        o->off = tu_below(r, WL_MAXSZ - o->len);
        if (tu_pct(r, 20)) o->off = o->off / WL_CS * WL_CS;
        wl_fill(r, o->len);
    } else if (k < 63) {
        o->type = OP_TRUNC;
        o->off = tu_below(r, WL_MAXSZ);
    } else if (k < 91) {
        o->type = OP_FSYNC;
    } else if (k < 94) {
        o->type = OP_REOPEN;
    } else if (k < 98) {
        o->type = k < 96 ? OP_REPLACE : OP_REPLACE_NOSYNC;
        o->len = tu_below(r, WL_MAXSZ / 2);
        wl_fill(r, o->len);
    } else {
        o->type = OP_TRUNCOPEN;
    }
}

static inline int wl_is_commit(const op *o) { return o->type >= OP_FSYNC; }

/* Run o against volume v whose files are open in f[]. Returns 0, or -1 with *e filled. */
static int wl_run(scp_volume *v, scp_vfile *f[WL_NF], const op *o, scp_err *e) {
    int rc = 0;
    switch (o->type) {
    case OP_WRITE:
        return scp_vfile_pwrite(f[o->file], wl_data, o->len, o->off, e) == (ssize_t)o->len ? 0 : -1;
    case OP_TRUNC: return scp_vfile_truncate(f[o->file], o->off, e);
    case OP_FSYNC: return scp_vfile_fsync(f[o->file], e);
    case OP_REOPEN:
    case OP_TRUNCOPEN:
        rc = scp_vfile_close(f[o->file], e);
        static unsigned nreopen;
        if (rc == 0 && ++nreopen % 2) {
            pthread_mutex_lock(&v->mu);
            file_cache_drop(v);
            pthread_mutex_unlock(&v->mu);
        }
        if (rc == 0) {
            f[o->file] = scp_vfile_open(v, WL_FILES[o->file],
                                        O_RDWR | (o->type == OP_TRUNCOPEN ? O_TRUNC : 0), 0, e);
            if (!f[o->file]) rc = -1;
        }
        return rc;
    case OP_REPLACE:
    case OP_REPLACE_NOSYNC:
        rc = scp_vfile_close(f[o->file], e);
        if (rc == 0) {
            scp_vfile *t = scp_vfile_open(v, "c/tmp", O_RDWR | O_CREAT | O_TRUNC, 0600, e);
            if (!t) rc = -1;
            if (rc == 0 && o->len && scp_vfile_pwrite(t, wl_data, o->len, 0, e) != (ssize_t)o->len)
                rc = -1;
            if (t && scp_vfile_close(t, rc ? NULL : e) != 0) rc = -1;
        }
        if (rc == 0) rc = scp_volume_rename(v, "c/tmp", WL_FILES[o->file], e);
        if (rc == 0 && o->type == OP_REPLACE) rc = scp_volume_sync(v, e); /* durable now */
        if (rc == 0) {
            f[o->file] = scp_vfile_open(v, WL_FILES[o->file], O_RDWR, 0, e);
            if (!f[o->file]) rc = -1;
        }
        return rc;
    }
    return rc;
}

/* A file's content as the model tracks it (p holds at least WL_MAXSZ + 5 * WL_CS bytes). */
typedef struct fbuf {
    uint8_t *p;
    size_t n;
} fbuf;

/* Apply o (just generated by wl_gen) to the model. */
static void wl_model(fbuf *fs, const op *o) {
    fbuf *b = &fs[o->file];
    if (o->type == OP_WRITE) {
        if (o->off + o->len > b->n) {
            memset(b->p + b->n, 0, o->off + o->len - b->n);
            b->n = o->off + o->len;
        }
        memcpy(b->p + o->off, wl_data, o->len);
    } else if (o->type == OP_TRUNC) {
        if (o->off > b->n) memset(b->p + b->n, 0, o->off - b->n);
        b->n = o->off;
    } else if (o->type == OP_REPLACE || o->type == OP_REPLACE_NOSYNC) {
        memcpy(b->p, wl_data, o->len);
        b->n = o->len;
    } else if (o->type == OP_TRUNCOPEN) {
        b->n = 0;
    }
}

#endif
