/* fuzz/fuzz_volume_open.c - end to end: a tampered volume directory must never crash, hang,
 * leak or show a byte, a name or a size that no commit produced.
 *
 * Once per process, volfix.c builds a small volume with the API and keeps snapshots of its
 * directory after every call and at every commit point (see volfix.h). Each input then
 * describes an attack on one of those snapshots:
 *   byte 0      base snapshot (mod the number of snapshots)
 *   byte 1      bit 0: open with the base snapshot's tag as `expected` (freshness check)
 *               bit 1: also run scp_volume_verify
 *               bit 2: then write: 4 more bytes [file][mode][len][off:u16] follow (see below)
 *               bit 3: first try a wrong key (must be refused)
 *   then ops    [op][file] args..., at most 16, where file is a number in the universe of all
 *               files the volume ever had (header, manifest slots, lock, objects/<id>.d/.t/.j):
 *     0 replace  [len:u16] bytes     3 from snapshot [k]   (replay / roll back one file)
 *     1 delete                        4 patch [off:u16][n] bytes
 *     2 truncate [len:u16]            5 copy from file [g]  (swap / duplicate objects)
 *     6 flip bit [off:u16][bit]    7 make it a FIFO, a directory or a symlink to /dev/zero [k]
 * The directory is written out, opened with the right key, and every path of the state the
 * volume opens at is stat'ed, listed and read in full and across a chunk boundary.
 * Asserts: no memory error, leak or descriptor leak; failures carry an expected error code;
 * the state opened at (its tag) is one that some commit produced, and not older than
 * `expected` (or, when the attack changed the lock file, whose lazy-commit list is
 * bookkeeping and not authenticated, replaced the manifest log, or removed an object of a file
 * that a lazy state created: an older state's content committed again by the open's settling
 * of lazy commits, under a newer generation and a tag of its own, since a tag binds the log's
 * records and not only the content: the newest lazy state, or the durable one when the lazy
 * state's new files lost their objects; its names and bytes are checked as that state's, and
 * that state is not older than the durable one when `expected` was taken); readdir lists
 * exactly that state's names; every successful read returns exactly
 * that state's bytes (never a short read); a failed read leaves only zeros or untouched bytes in
 * the caller's buffer; when verify reports no problem, no read failed; close succeeds.
 * Write phase (bit 2): on the tampered volume, pwrite `len` bytes at `off` (mode bit 0 clear) or
 * truncate to `off` (set) one file of the state, then fsync. If that succeeds, the new state
 * must reopen with its tag as `expected`, and every successful read there must return the old
 * state's bytes with exactly that change: a write never turns tampered bytes into authentic
 * ones, never loses other files' data, never brings back stale bytes past a truncation. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "scp/volume.h"
#include "volfix.h"

static vf_fixture fx;
static char run_dir[512];

static void cleanup(void) { vf_free(&fx); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *base = getenv("SCP_FUZZ_TMP");
    if (!base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    if (vf_build(&fx, base) < 0) {
        fprintf(stderr, "fuzz_volume_open: cannot build the fixture volume (see above)\n");
        abort();
    }
    atexit(cleanup);
    snprintf(run_dir, sizeof run_dir, "%s/run", fx.dir);
    fprintf(stderr, "fuzz_volume_open: fixture with %zu snapshots, %zu states, %zu files\n",
            fx.nsnap, fx.ntruth, fx.nuniv);
    return 0;
}

struct in {
    const uint8_t *p;
    size_t n, off;
};
static unsigned get8(struct in *in) { return in->off < in->n ? in->p[in->off++] : 0; }
static unsigned get16(struct in *in) {
    unsigned hi = get8(in);
    return hi << 8 | get8(in);
}

/* Buffers made by ops in this run (freed at its end). */
static uint8_t *owned[64];
static size_t nowned;
static uint8_t *own(size_t n) {
    uint8_t *b = calloc(1, n ? n : 1);
    FUZZ_CHECK(b != NULL && nowned < 64);
    owned[nowned++] = b;
    return b;
}

/* Did the attack change file i from the base snapshot's? */
static int blob_changed(const vf_blob *a, const vf_blob *b) {
    return a->present != b->present || a->kind != b->kind || a->len != b->len ||
           (a->present && a->len && memcmp(a->data, b->data, a->len) != 0);
}

static int code_ok(scp_code c) {
    return c == SCP_E_INTEGRITY || c == SCP_E_FORMAT || c == SCP_E_KEY || c == SCP_E_ROLLBACK ||
           c == SCP_E_SYS || c == SCP_E_NOTSUP;
}

struct names {
    char n[32][64];
    size_t count;
};
static int collect(void *ctx, const char *name, const scp_vstat *st) {
    (void)st;
    struct names *ns = ctx;
    FUZZ_CHECK(ns->count < 32 && strlen(name) < 64);
    strcpy(ns->n[ns->count++], name);
    return 0;
}

static void no_problem_cb(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)path;
    (void)off;
    (void)msg;
    ++*(long *)ctx;
}

/* Read [off, off+n) of a file whose true content is want/wlen; returns 1 if read, 0 if refused. */
static int check_read(scp_vfile *f, const uint8_t *want, size_t wlen, uint64_t off, size_t n) {
    uint8_t *buf = malloc(n + 1);
    FUZZ_CHECK(buf != NULL);
    memset(buf, 0xA5, n + 1);
    scp_err err;
    ssize_t r = scp_vfile_pread(f, buf, n, off, &err);
    size_t exp = off >= wlen ? 0 : (wlen - off < n ? wlen - off : n);
    int ok;
    if (r >= 0) {
        FUZZ_CHECK((size_t)r == exp); /* never a short read */
        FUZZ_CHECK(exp == 0 || memcmp(buf, want + off, exp) == 0);
        FUZZ_CHECK(buf[n] == 0xA5);
        for (size_t i = exp; i < n; i++) FUZZ_CHECK(buf[i] == 0xA5);
        ok = 1;
    } else {
        FUZZ_CHECK(code_ok(err.code) || err.code == SCP_E_NOMEM);
        for (size_t i = 0; i <= n; i++) FUZZ_CHECK(buf[i] == 0 || buf[i] == 0xA5);
        ok = 0;
    }
    free(buf);
    return ok;
}

/* Did the attack remove a .d or .t object, or make it something other than a regular file?
 * (What a settling open takes for a created file whose directory entry a power cut lost.) */
static int object_gone(const vf_blob *set, const vf_blob *was) {
    for (size_t i = 0; i < fx.nuniv; i++) {
        size_t l = strlen(fx.univ[i]);
        if (l < 2 || fx.univ[i][l - 2] != '.' || (fx.univ[i][l - 1] != 'd' && fx.univ[i][l - 1] != 't'))
            continue;
        if (was[i].present && was[i].kind == VF_REG && (!set[i].present || set[i].kind != VF_REG))
            return 1;
    }
    return 0;
}

/* Could v be showing truth t? Names, types and sizes must be t's, and every read that succeeds
 * must return t's bytes; refusals (tampered objects) say nothing either way. Never aborts. */
static int state_matches(scp_volume *v, const scp_volume_info *info, const vf_truth *t) {
    uint64_t files = 0, dirs = 0, bytes = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->e[i].type == SCP_VTYPE_DIR) {
            dirs++;
        } else {
            files++;
            bytes += t->e[i].len;
        }
    }
    if (info->file_count != files || info->dir_count != dirs || info->total_bytes != bytes)
        return 0;
    int ok = 1;
    for (size_t i = 0; i <= t->n && ok; i++) {
        const char *path = i < t->n ? t->e[i].path : ""; /* i == t->n: the root */
        int type = i < t->n ? t->e[i].type : SCP_VTYPE_DIR;
        scp_err err;
        if (i < t->n) {
            scp_vstat st;
            if (scp_volume_stat(v, path, &st, &err) < 0) {
                if (!code_ok(err.code)) ok = 0;
                continue;
            }
            if ((int)st.type != type || (type == SCP_VTYPE_FILE && st.size != t->e[i].len)) ok = 0;
        }
        if (!ok) break;
        if (type == SCP_VTYPE_DIR) {
            struct names ns = {.count = 0};
            if (scp_volume_readdir(v, path, collect, &ns, &err) < 0) continue;
            size_t plen = strlen(path), want = 0;
            for (size_t j = 0; j < t->n && ok; j++) {
                const char *c = t->e[j].path;
                if (plen && (strncmp(c, path, plen) != 0 || c[plen] != '/')) continue;
                const char *rest = c + plen + (plen ? 1 : 0);
                if (strchr(rest, '/')) continue;
                ok = want < ns.count && strcmp(ns.n[want], rest) == 0;
                want++;
            }
            if (want != ns.count) ok = 0;
            continue;
        }
        scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, &err);
        if (!f) continue;
        size_t len = t->e[i].len;
        uint8_t *buf = malloc(len + 1);
        FUZZ_CHECK(buf != NULL);
        ssize_t r = scp_vfile_pread(f, buf, len + 1, 0, &err);
        if (r >= 0 && ((size_t)r != len || (len && memcmp(buf, t->e[i].data, len) != 0))) ok = 0;
        free(buf);
        FUZZ_CHECK(scp_vfile_close(f, &err) == 0);
    }
    return ok;
}

/* No descriptor into the fixture's directory may outlive scp_volume_close. (Other descriptors
 * come and go with libFuzzer itself, e.g. the symbolizer's pipes.) */
static void check_no_fd_leak(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    size_t dl = strlen(fx.dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        char l[300], target[512];
        snprintf(l, sizeof l, "/proc/self/fd/%s", de->d_name);
        ssize_t r = readlink(l, target, sizeof target - 1);
        if (r <= 0) continue;
        target[r] = '\0';
        if (strncmp(target, fx.dir, dl) == 0) {
            fprintf(stderr, "fuzz_volume_open: descriptor %s still open: %s\n", de->d_name, target);
            FUZZ_CHECK(!"a descriptor of the volume outlived scp_volume_close");
        }
    }
    closedir(d);
}

struct wparams {
    unsigned file, mode, len, off;
};

/* Read every file of truth t in v; the one at index `changed` must read as (exp, elen). */
static void check_files(scp_volume *v, const vf_truth *t, size_t changed, const uint8_t *exp,
                        size_t elen) {
    for (size_t i = 0; i < t->n; i++) {
        if (t->e[i].type != SCP_VTYPE_FILE) continue;
        scp_err err;
        scp_vfile *f = scp_vfile_open(v, t->e[i].path, O_RDONLY, 0, &err);
        if (!f) {
            FUZZ_CHECK(code_ok(err.code));
            continue;
        }
        const uint8_t *want = i == changed ? exp : t->e[i].data;
        size_t wlen = i == changed ? elen : t->e[i].len;
        FUZZ_CHECK(scp_vfile_size(f) == wlen);
        check_read(f, want, wlen, 0, wlen + 7);
        FUZZ_CHECK(scp_vfile_close(f, &err) == 0);
    }
}

/* See the header. Closes *pv (and sets it to NULL) when the write went through. */
static void write_phase(scp_volume **pv, const vf_truth *t, const struct wparams *wp) {
    size_t nf = 0, k;
    for (size_t i = 0; i < t->n; i++) nf += t->e[i].type == SCP_VTYPE_FILE;
    if (nf == 0) return;
    size_t pick = wp->file % nf;
    for (k = 0; k < t->n; k++)
        if (t->e[k].type == SCP_VTYPE_FILE && pick-- == 0) break;
    const vf_entry *e = &t->e[k];
    int trunc = wp->mode & 1;
    size_t elen = trunc ? wp->off : (e->len > wp->off + wp->len ? e->len : wp->off + wp->len);
    if (!trunc && wp->len == 0) elen = e->len;
    uint8_t *exp = calloc(1, elen + 1), wbuf[256];
    FUZZ_CHECK(exp != NULL);
    memcpy(exp, e->data, e->len < elen ? e->len : elen);
    for (unsigned i = 0; i < wp->len; i++) wbuf[i] = (uint8_t)('a' + (i + wp->mode) % 26);
    if (!trunc) memcpy(exp + wp->off, wbuf, wp->len);

    scp_err err;
    scp_vfile *f = scp_vfile_open(*pv, e->path, O_RDWR, 0, &err);
    if (!f) {
        FUZZ_CHECK(code_ok(err.code));
        free(exp);
        return;
    }
    int ok = trunc ? scp_vfile_truncate(f, wp->off, &err) == 0
                   : scp_vfile_pwrite(f, wbuf, wp->len, wp->off, &err) == (ssize_t)wp->len;
    if (ok) ok = scp_vfile_fsync(f, &err) == 0;
    if (!ok) FUZZ_CHECK(code_ok(err.code));
    if (ok) check_read(f, exp, elen, 0, elen + 7); /* may fail on other tampered chunks */
    int c = scp_vfile_close(f, &err);
    if (!ok) {
        free(exp);
        return;
    }
    FUZZ_CHECK(c == 0);
    scp_volume_tag tag;
    scp_volume_tag_get(*pv, &tag);
    FUZZ_CHECK(scp_volume_close(*pv, &err) == 0);
    *pv = NULL;
    scp_volume *v = scp_volume_open(run_dir, fx.key, &tag, &err);
    if (!v) fprintf(stderr, "fuzz_volume_open: reopen after the write: %s\n", err.msg);
    FUZZ_CHECK(v != NULL); /* our own commit */
    check_files(v, t, k, exp, elen);
    FUZZ_CHECK(scp_volume_close(v, &err) == 0);
    free(exp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct in in = {data, size, 0};
    size_t base = get8(&in) % fx.nsnap;
    unsigned flags = get8(&in);
    struct wparams wp = {0, 0, 0, 0};
    if (flags & 4) {
        wp.file = get8(&in);
        wp.mode = get8(&in);
        wp.len = get8(&in);
        wp.off = get16(&in);
    }
    vf_blob *set = calloc(fx.nuniv, sizeof *set);
    FUZZ_CHECK(set != NULL);
    memcpy(set, fx.snap[base].f, fx.nuniv * sizeof *set);
    nowned = 0;
    for (int k = 0; k < 16 && in.off < in.n; k++) {
        unsigned op = get8(&in) % 8;
        vf_blob *b = &set[get8(&in) % fx.nuniv];
        switch (op) {
        case 0: { /* replace */
            size_t n = get16(&in);
            if (n > in.n - in.off) n = in.n - in.off;
            uint8_t *d = own(n);
            memcpy(d, in.p + in.off, n);
            in.off += n;
            *b = (vf_blob){1, d, n, VF_REG};
            break;
        }
        case 1:
            b->present = 0;
            break;
        case 2: { /* truncate (or extend with zeros) */
            size_t n = get16(&in);
            uint8_t *d = own(n);
            if (b->present && b->kind == VF_REG) memcpy(d, b->data, n < b->len ? n : b->len);
            *b = (vf_blob){1, d, n, VF_REG};
            break;
        }
        case 3: /* the same file from another snapshot */
            *b = fx.snap[get8(&in) % fx.nsnap].f[b - set];
            break;
        case 4: { /* patch */
            size_t o = get16(&in), n = get8(&in);
            if (n > in.n - in.off) n = in.n - in.off;
            int reg = b->present && b->kind == VF_REG;
            size_t len = reg && b->len > o + n ? b->len : o + n;
            uint8_t *d = own(len);
            if (reg) memcpy(d, b->data, b->len);
            memcpy(d + o, in.p + in.off, n);
            in.off += n;
            *b = (vf_blob){1, d, len, VF_REG};
            break;
        }
        case 5: /* copy another file over this one */
            *b = set[get8(&in) % fx.nuniv];
            break;
        case 6: { /* flip one bit */
            size_t o = get16(&in);
            unsigned bit = get8(&in) % 8;
            if (!b->present || b->len == 0 || b->kind != VF_REG) break;
            uint8_t *d = own(b->len);
            memcpy(d, b->data, b->len);
            d[o % b->len] ^= (uint8_t)(1u << bit);
            b->data = d;
            break;
        }
        case 7: /* not a regular file at all */
            *b = (vf_blob){1, NULL, 0, VF_FIFO + (int)(get8(&in) % 3)};
            break;
        }
    }
    FUZZ_CHECK(vf_materialize(&fx, set, run_dir) == 0);

    scp_err err;
    if (flags & 8) { /* any state, tampered or not, refuses a wrong key */
        uint8_t bad[SCP_VOLUME_KEY_LEN];
        memcpy(bad, fx.key, sizeof bad);
        bad[flags % SCP_VOLUME_KEY_LEN] ^= (uint8_t)(1u << (flags >> 5));
        scp_volume *w = scp_volume_open(run_dir, bad, NULL, &err);
        FUZZ_CHECK(w == NULL);
        FUZZ_CHECK(code_ok(err.code));
    }
    const scp_volume_tag *expected = (flags & 1) ? &fx.snap[base].tag : NULL;
    scp_volume *v = scp_volume_open(run_dir, fx.key, expected, &err);
    if (!v) {
        FUZZ_CHECK(code_ok(err.code));
        goto out;
    }
    scp_volume_info info;
    FUZZ_CHECK(scp_volume_info_get(v, &info, &err) == 0);
    const vf_truth *t = vf_truth_of(&fx, &info.tag);
    if (!t) { /* only an open that settled lazy commits on the lock file's word commits */
        size_t lk = 0;
        while (lk < fx.nuniv && strcmp(fx.univ[lk], "lock") != 0) lk++;
        long ml = vf_find(&fx, "manifest.log");
        FUZZ_CHECK((lk < fx.nuniv && blob_changed(&set[lk], &fx.snap[base].f[lk])) ||
                   (ml >= 0 && blob_changed(&set[ml], &fx.snap[base].f[ml])) ||
                   object_gone(set, fx.snap[base].f));
        /* It commits either the newest (lazy) state again, or, when that state names a created
         * file whose objects are gone, an older state that was durable: lazy commits are not
         * promised to survive a crash, and to the library a deleted object is what a power cut
         * leaves (docs/volume-format.md, "Shared mode"). Either way the content is that of a
         * state some commit produced, older than the generation it now has; the newest such
         * state whose names, sizes and readable bytes match is the one checked below. */
        for (uint64_t g = info.generation; g-- > 0 && !t;)
            for (size_t i = 0; i < fx.ntruth && !t; i++)
                if (fx.truth[i].gen == g && state_matches(v, &info, &fx.truth[i]))
                    t = &fx.truth[i];
        FUZZ_CHECK(t != NULL); /* a state that no commit produced */
    } else {
        FUZZ_CHECK(info.generation == t->gen);
    }
    if (expected) {
        uint64_t eg = 0;
        for (int i = 0; i < 8; i++) eg = eg << 8 | expected->bytes[i];
        FUZZ_CHECK(info.generation >= eg);
        /* a settled open's content: never older than the durable state a freshness service
         * would hold (expected may name a namespace step's state, not yet durable) */
        FUZZ_CHECK(t->gen >= fx.snap[base].dur_gen);
        if (info.generation == eg) FUZZ_CHECK(memcmp(info.tag.bytes, expected->bytes, 40) == 0);
    }
    long failed_reads = 0;
    uint64_t files = 0, dirs = 0, bytes = 0;
    for (size_t i = 0; i <= t->n; i++) {
        /* i == t->n stands for the root directory. */
        const char *path = i < t->n ? t->e[i].path : "";
        int type = i < t->n ? t->e[i].type : SCP_VTYPE_DIR;
        if (i < t->n) {
            scp_vstat st;
            if (scp_volume_stat(v, path, &st, &err) == 0) {
                FUZZ_CHECK((int)st.type == type);
                if (type == SCP_VTYPE_FILE) FUZZ_CHECK(st.size == t->e[i].len);
            } else {
                FUZZ_CHECK(code_ok(err.code));
            }
        }
        if (type == SCP_VTYPE_DIR) {
            dirs += i < t->n;
            struct names ns = {.count = 0};
            if (scp_volume_readdir(v, path, collect, &ns, &err) < 0) {
                FUZZ_CHECK(code_ok(err.code));
                continue;
            }
            size_t plen = strlen(path), want = 0;
            for (size_t j = 0; j < t->n; j++) { /* children of path in the truth */
                const char *c = t->e[j].path;
                if (plen && (strncmp(c, path, plen) != 0 || c[plen] != '/')) continue;
                const char *rest = c + plen + (plen ? 1 : 0);
                if (strchr(rest, '/')) continue;
                FUZZ_CHECK(want < ns.count && strcmp(ns.n[want], rest) == 0);
                want++;
            }
            FUZZ_CHECK(want == ns.count);
            continue;
        }
        files++;
        bytes += t->e[i].len;
        scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, &err);
        if (!f) {
            FUZZ_CHECK(code_ok(err.code));
            failed_reads++;
            continue;
        }
        FUZZ_CHECK(scp_vfile_size(f) == t->e[i].len);
        int ok = check_read(f, t->e[i].data, t->e[i].len, 0, t->e[i].len + 7);
        if (t->e[i].len > 4090) ok &= check_read(f, t->e[i].data, t->e[i].len, 4090, 20);
        if (!ok) failed_reads++;
        FUZZ_CHECK(scp_vfile_close(f, &err) == 0);
    }
    FUZZ_CHECK(info.file_count == files && info.dir_count == dirs && info.total_bytes == bytes);
    if (flags & 2) {
        long problems = 0;
        long p = scp_volume_verify(v, no_problem_cb, NULL, &problems, &err);
        if (p >= 0) {
            FUZZ_CHECK(p == problems);
            if (p == 0) FUZZ_CHECK(failed_reads == 0);
        } else {
            FUZZ_CHECK(code_ok(err.code));
        }
    }
    if (flags & 4) write_phase(&v, t, &wp);
    if (v) FUZZ_CHECK(scp_volume_close(v, &err) == 0);
out:
    for (size_t i = 0; i < nowned; i++) free(owned[i]);
    free(set);
    check_no_fd_leak();
    return 0;
}
