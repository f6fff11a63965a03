/* volume/chunk.c - a file's chunk table, its content root, and chunk encryption.
 *
 * A file is up to four objects in objects/: <id>.d holds chunk i's ciphertext at offset i *
 * chunk size (slot 0); <id>.s, created when a chunk is first overwritten in place, its other
 * slot at the same offset; <id>.t holds chunk i's table entry (subkey salt, nonce whose low bit
 * names the slot, GCM tag) at offset i * 44 (zero = a hole); <id>.j is the journal (commit.c). The manifest entry holds the file's size and content
 * root, a hash over the table, so that no chunk can be modified, moved or replayed without the
 * root changing. This file keeps the table in memory, hashes it, and seals and opens chunks
 * under the per-writer subkeys that the entries name.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "crypto/parallel.h"
#include "volume/internal.h"
#include "volume/vstats.h"

#define ENT SCP_CHUNK_ENTRY_LEN
#define AAD_LEN SCP_CHUNK_AAD_LEN

const uint8_t vol_zero_ent[ENT];

/* ---- per-thread scratch buffer -------------------------------------------------------- */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
struct scratch {
    uint8_t *p[3]; /* vol_scratch's, vol_bulk_scratch's, vol_follow_buf's */
    size_t cap[3];
};
static void scratch_free(void *p) {
    struct scratch *s = p;
    for (int k = 0; k < 3; k++) {
        if (s->p[k]) scp_wipe(s->p[k], s->cap[k]); /* it held plaintext */
        free(s->p[k]);
    }
    free(s);
}
static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

/* The calling thread's buffers (made at its first call); NULL if out of memory. */
static struct scratch *scratch_self(void) {
    pthread_once(&scratch_once, scratch_init);
    struct scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        pthread_setspecific(scratch_key, s);
    }
    return s;
}

static uint8_t *scratch_get(int k, size_t n) {
    struct scratch *s = scratch_self();
    if (!s) return NULL;
    if (s->cap[k] < n) {
        uint8_t *np = malloc(n); /* not realloc: the old buffer is wiped before it is freed */
        if (!np) return NULL;
        if (s->p[k]) scp_wipe(s->p[k], s->cap[k]);
        free(s->p[k]);
        s->p[k] = np;
        s->cap[k] = n;
    }
    return s->p[k];
}

/* A per-thread buffer of at least n bytes (valid until the thread's next call). */
uint8_t *vol_scratch(size_t n) { return scratch_get(0, n); }

/* (kept up to this size; a larger one, a large file's table, is allocated and freed) */
#define BULK_KEEP_MAX (1u << 20)
uint8_t *vol_bulk_scratch(size_t n) { return n > BULK_KEEP_MAX ? malloc(n) : scratch_get(1, n); }

void vol_bulk_release(uint8_t *p, size_t n) {
    if (p && n > BULK_KEEP_MAX) free(p); /* (not wiped: ciphertext and table entries only) */
}

/* (the follows' buffer is kept up to this size; a longer read, a whole log's load, gets its own) */
#define FOLLOW_KEEP_MAX (1u << 20)
#define FOLLOW_KEEP_MIN (64u << 10)

uint8_t *vol_follow_buf(uint8_t *old, size_t used, size_t n, size_t *cap) {
    assert(used <= n && (old || !used));
    struct scratch *s = scratch_self();
    if (!s) return NULL;
    if (n <= s->cap[2]) { /* (the kept one is large enough: old is it, or NULL) */
        assert(!old || old == s->p[2]);
        *cap = s->cap[2];
        return s->p[2];
    }
    /* Grown by doubling, from 64 KiB, so that a follow that reads a little more than the last
     * one does not make a new buffer (fresh pages) every time */
    size_t want = s->cap[2] ? s->cap[2] : FOLLOW_KEEP_MIN;
    while (want < n && want < FOLLOW_KEEP_MAX) want *= 2;
    if (want < n) want = n; /* (past the kept size: this read's own) */
    uint8_t *np = malloc(want);
    if (!np) return NULL;
    if (used) memcpy(np, old, used);
    if (old && old != s->p[2]) free(old); /* (a previous own buffer of this read) */
    if (want <= FOLLOW_KEEP_MAX) {
        free(s->p[2]); /* (not wiped: journal bytes as on disk) */
        s->p[2] = np;
        s->cap[2] = want;
    }
    *cap = want;
    return np;
}

void vol_follow_buf_done(uint8_t *p) {
    if (!p) return;
    struct scratch *s = pthread_getspecific(scratch_key); /* (made: p came from vol_follow_buf) */
    if (!s || p != s->p[2]) free(p);
}

/* ---- table and root -------------------------------------------------------------------- */

/* A table of at least TABLE_MAP_MIN entries (1.4 MB: files from 128 MiB at 4 KiB chunks) lives
 * in a mapping of its own. Its fresh pages read as zeros without being written, and
 * table_zero gives whole pages back instead of writing zeros over them: a sparse 5 GiB file's
 * 57 MB table is then touched only where it has entries (a memset of it was half of an open's
 * time, most of that page faults). Growth moves the mapping (mremap), as realloc would. */
#define TABLE_MAP_MIN (1u << 15)

static size_t map_len(uint64_t cap) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (cap * ENT + pg - 1) / pg * pg;
}

/* Move the table to room for cap entries; the new ones are holes. Returns 0 or -1. */
static int table_grow(scp_file *f, uint64_t cap) {
    if (cap < TABLE_MAP_MIN) {
        assert(!f->table_maplen);
        uint8_t *t = realloc(f->table, cap * ENT);
        if (!t) return -1;
        f->table = t;
        memset(t + f->table_cap * ENT, 0, (cap - f->table_cap) * ENT);
        return 0;
    }
    size_t len = map_len(cap);
    void *t;
    if (f->table_maplen) {
        t = mremap(f->table, f->table_maplen, len, MREMAP_MAYMOVE);
    } else {
        t = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (t != MAP_FAILED && f->table) memcpy(t, f->table, f->table_cap * ENT);
    }
    if (t == MAP_FAILED) return -1;
    if (!f->table_maplen) free(f->table);
    f->table = t;
    f->table_maplen = len; /* (the pages past the old size are fresh: zeros) */
    return 0;
}

void table_free(scp_file *f) {
    if (f->table_maplen) munmap(f->table, f->table_maplen);
    else free(f->table);
    f->table = NULL;
    f->table_maplen = 0;
}

/* Zero the table's bytes [a, b): a mapped table's whole pages are given back. */
static void table_zero(scp_file *f, size_t a, size_t b) {
    assert(a <= b && b <= f->table_cap * ENT);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), pa = (a + pg - 1) / pg * pg, pb = b / pg * pg;
    if (!f->table_maplen || pb <= pa || madvise(f->table + pa, pb - pa, MADV_DONTNEED) < 0) {
        memset(f->table + a, 0, b - a);
        return;
    }
    memset(f->table + a, 0, pa - a);
    memset(f->table + pb, 0, b - pb);
}

int table_reserve(scp_file *f, uint64_t n, scp_err *err) {
    if (n <= f->table_cap && f->table) return 0;
    uint64_t cap = f->table_cap ? f->table_cap : 256;
    while (cap < n) cap *= 2;
    uint64_t pages = (cap + SCP_TABLE_PAGE - 1) / SCP_TABLE_PAGE;
    int tok = table_grow(f, cap) == 0;
    uint8_t *c = realloc(f->changed, cap / 8 + 1);
    if (c) f->changed = c;
    uint8_t(*ph)[SCP_HASH_LEN] = realloc(f->page_hash, pages * SCP_HASH_LEN);
    if (ph) f->page_hash = ph;
    uint8_t *pd = realloc(f->page_dirty, pages);
    if (pd) f->page_dirty = pd;
    scp_sha256_mid *pm = realloc(f->page_mid, pages * SCP_PAGE_MIDS * sizeof *pm);
    if (pm) f->page_mid = pm;
    uint8_t *pn = realloc(f->page_mid_n, pages);
    if (pn) f->page_mid_n = pn;
    scp_sha256_mid *rm = realloc(f->root_mid, (pages / SCP_ROOT_SEG + 1) * sizeof *rm);
    if (rm) f->root_mid = rm;
    if (!tok || !c || !ph || !pd || !pm || !pn || !rm)
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory for the chunk table");
    memset(f->page_mid_n + f->page_cap, 0, pages - f->page_cap);
    memset(f->changed + f->table_cap / 8 + (f->table_cap ? 1 : 0), 0,
           cap / 8 + 1 - (f->table_cap / 8 + (f->table_cap ? 1 : 0)));
    memset(f->page_dirty + f->page_cap, 1, pages - f->page_cap);
    f->table_cap = cap;
    f->page_cap = pages;
    return 0;
}

/* ---- pages of holes ---- */

static int all_zero(const uint8_t *p, size_t n) { return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0); }

/* The hash of a whole page of holes (SCP_TABLE_PAGE zero entries), made once. */
static uint8_t zero_page_hash[SCP_HASH_LEN];
static pthread_once_t zero_page_once = PTHREAD_ONCE_INIT;
static void zero_page_init(void) {
    static const uint8_t zeros[SCP_TABLE_PAGE * ENT];
    struct scp_buf part = {zeros, sizeof zeros};
    scp_sha256(&part, 1, zero_page_hash);
}
static const uint8_t *holes_hash(void) {
    pthread_once(&zero_page_once, zero_page_init);
    return zero_page_hash;
}

/* Page p of a table of n entries is whole and all holes (the caller knows: it zeroed it, or
 * it lies past the table's old size): give it their hash without reading or
 * hashing it (its midstates none: a later change rehashes it whole). A changed hash moves
 * the root's midstates back to it, as table_root does for a page it rehashed. */
static void page_set_holes(scp_file *f, uint64_t p, uint64_t n) {
    assert((p + 1) * SCP_TABLE_PAGE <= n && p < f->page_cap);
    (void)n;
    f->page_dirty[p] = 0;
    f->page_mid_n[p] = 0;
    if (memcmp(f->page_hash[p], holes_hash(), SCP_HASH_LEN) == 0) return;
    memcpy(f->page_hash[p], holes_hash(), SCP_HASH_LEN);
    if (f->root_mid_ok > p / SCP_ROOT_SEG + 1) f->root_mid_ok = p / SCP_ROOT_SEG + 1;
}

/* Whether page p is whole and all holes by its hash, which is current (not dirty). */
static int page_holes(scp_file *f, uint64_t p) {
    return p < f->page_cap && !f->page_dirty[p] && memcmp(f->page_hash[p], holes_hash(), SCP_HASH_LEN) == 0;
}

/* The whole pages of a table of n entries inside its bytes [a, b), all holes: set as such. */
static void pages_set_holes(scp_file *f, size_t a, size_t b, uint64_t n) {
    const size_t pb = (size_t)SCP_TABLE_PAGE * ENT;
    for (uint64_t p = (a + pb - 1) / pb; (p + 1) * pb <= b && (p + 1) * SCP_TABLE_PAGE <= n; p++)
        page_set_holes(f, p, n);
}

int table_read(scp_file *f, uint64_t n) {
    assert(n <= f->table_cap);
    size_t len = n * ENT;
    memset(f->page_dirty, 1, f->page_cap);
    if (!f->table_maplen) { /* (a small table: one read, as the extents would cost more calls) */
        memset(f->table, 0, f->table_cap * ENT);
        return scp_pread_full(f->fd_t, f->table, len, 0) < 0 ? -1 : 0;
    }
    /* .t's extents of data (SEEK_DATA, SEEK_HOLE) are read; its holes are zeroed, and their
     * whole pages set without hashing. What .t's extents say is not trusted, only used: the
     * root is checked over whatever the table then holds. */
    for (size_t off = 0; off < len;) {
        off_t d = lseek(f->fd_t, (off_t)off, SEEK_DATA);
        if (d < 0 && errno != ENXIO) return -1;
        size_t ds = d < 0 || (size_t)d > len ? len : (size_t)d;
        if (ds < off) ds = off; /* (not before where it was asked from) */
        table_zero(f, off, ds);
        pages_set_holes(f, off, ds, n);
        if (ds == len) break;
        off_t h = lseek(f->fd_t, (off_t)ds, SEEK_HOLE);
        size_t he = h <= (off_t)ds || (size_t)h > len ? len : (size_t)h;
        ssize_t got = scp_pread_full(f->fd_t, f->table + ds, he - ds, (off_t)ds);
        if (got < 0) return -1;
        table_zero(f, ds + (size_t)got, he); /* (short: .t ends there now) */
        off = he;
    }
    table_zero(f, len, f->table_cap * ENT);
    return 0;
}

int table_write(scp_file *f, uint64_t lo, uint64_t hi) {
    assert(lo <= hi && hi <= f->table_cap);
    struct stat st;
    if (hi - lo < 2 * SCP_TABLE_PAGE || scp_fstat_notime(f->fd_t, &st) < 0)
        return scp_pwrite_full(f->fd_t, ent(f, lo), (hi - lo) * ENT, (off_t)(lo * ENT)) < 0 ? -1 : 0;
    /* Pieces of a table page (aligned, so that .t's holes fall on what a load sets whole): one
     * past .t's end and all holes is not written, every other is, one pwrite per run */
    uint64_t eof = ((uint64_t)st.st_size + ENT - 1) / ENT, run = lo, i = lo;
    while (i < hi) {
        uint64_t end = (i / SCP_TABLE_PAGE + 1) * SCP_TABLE_PAGE;
        if (end > hi) end = hi;
        /* (a whole page whose current hash is a page of holes' is one without a look at its
         * entries: scanning a 5 GiB extension's 57 MB cost 40 ms of page faults) */
        int whole = i % SCP_TABLE_PAGE == 0 && end - i == SCP_TABLE_PAGE;
        int skip = i >= eof && ((whole && page_holes(f, i / SCP_TABLE_PAGE)) || all_zero(ent(f, i), (end - i) * ENT));
        if (skip && run < i &&
            scp_pwrite_full(f->fd_t, ent(f, run), (i - run) * ENT, (off_t)(run * ENT)) < 0)
            return -1;
        i = end;
        if (skip) run = i;
    }
    if (run < hi && scp_pwrite_full(f->fd_t, ent(f, run), (hi - run) * ENT, (off_t)(run * ENT)) < 0)
        return -1;
    if (run == hi && (uint64_t)st.st_size < hi * ENT && ftruncate(f->fd_t, (off_t)(hi * ENT)) < 0) return -1;
    return 0;
}

/* Entry i's page hash must be redone from i's segment on (page_dirty: the lowest segment
 * marked since the page was last hashed; the midstates before it stay valid). */
void table_mark_page(scp_file *f, uint64_t i) {
    uint8_t seg = (uint8_t)(1 + i % SCP_TABLE_PAGE / SCP_PAGE_SEG), *pd = &f->page_dirty[i / SCP_TABLE_PAGE];
    if (*pd == 0 || *pd > seg) *pd = seg;
}

/* Record that entry i changed. */
void table_mark(scp_file *f, uint64_t i) {
    table_mark_page(f, i);
    if (i < com_n(f)) {
        f->changed[i / 8] |= (uint8_t)(1u << (i % 8));
        if (f->chg_hi == 0) f->chg_lo = i;
        else if (i < f->chg_lo) f->chg_lo = i;
        if (i + 1 > f->chg_hi) f->chg_hi = i + 1;
    }
}

void file_root(const uint8_t id[SCP_FILEID_LEN], uint64_t size, uint64_t npages,
               const uint8_t (*page_hash)[SCP_HASH_LEN], uint8_t out[SCP_HASH_LEN]) {
    uint8_t sz[8];
    scp_put_u64(sz, size);
    struct scp_buf parts[4] = {
        {"scp/v1/root", 11}, {id, SCP_FILEID_LEN}, {sz, 8}, {page_hash, npages * SCP_HASH_LEN}};
    scp_sha256(parts, 4, out);
}

void file_empty_root(const uint8_t id[SCP_FILEID_LEN], uint8_t out[SCP_HASH_LEN]) {
    file_root(id, 0, 0, NULL, out);
}

/* Hash page p of a table of n entries into page_hash[p], from the first segment that may have
 * changed (page_dirty) on: the midstate saved after the segments before it stands for them,
 * since every change to an entry marks its segment (table_mark) or the whole page. Returns 1 if
 * the page's hash changed. */
static int page_rehash(scp_file *f, uint64_t p, uint64_t n) {
    uint64_t first = p * SCP_TABLE_PAGE, cnt = n - first;
    if (cnt > SCP_TABLE_PAGE) cnt = SCP_TABLE_PAGE;
    scp_sha256_mid *mid = f->page_mid + p * SCP_PAGE_MIDS, m;
    uint64_t seg = (uint64_t)f->page_dirty[p] - 1;
    assert(f->page_dirty[p] >= 1 && seg * SCP_PAGE_SEG < SCP_TABLE_PAGE);
    if (seg > f->page_mid_n[p]) seg = f->page_mid_n[p];
    if (seg * SCP_PAGE_SEG > cnt) seg = 0; /* (shrunk below it: table_mark_resize marks 1 anyway) */
    if (seg) m = mid[seg - 1];
    else scp_sha256_mid_init(&m);
    uint64_t at = seg * SCP_PAGE_SEG;
    while (at < cnt) {
        uint64_t end = at + SCP_PAGE_SEG < cnt ? at + SCP_PAGE_SEG : cnt;
        scp_sha256_mid_update(&m, ent(f, first + at), (end - at) * ENT);
        at = end;
        if (at % SCP_PAGE_SEG == 0 && at < SCP_TABLE_PAGE) mid[at / SCP_PAGE_SEG - 1] = m;
    }
    /* valid: one per whole segment before the page's end (its last entry has none) */
    uint64_t nmid = cnt / SCP_PAGE_SEG;
    f->page_mid_n[p] = (uint8_t)(nmid < SCP_PAGE_MIDS ? nmid : SCP_PAGE_MIDS);
    uint8_t h[SCP_HASH_LEN];
    scp_sha256_mid_final(&m, h);
    f->page_dirty[p] = 0;
    if (memcmp(h, f->page_hash[p], SCP_HASH_LEN) == 0) return 0;
    memcpy(f->page_hash[p], h, SCP_HASH_LEN);
    return 1;
}

/* The file's root, file_root's hash over the page hashes, computed from midstates: a page whose
 * hash changed invalidates only the root's midstates after it, and a size change all of them
 * (the size is in the prefix). The same digest as file_root (tests/volume: test_root_mid). */
void table_root(scp_file *f, uint8_t out[SCP_HASH_LEN]) {
    uint64_t n = cur_n(f), npages = (n + SCP_TABLE_PAGE - 1) / SCP_TABLE_PAGE, lo = npages;
    for (uint64_t p = 0; p < npages; p++)
        if (f->page_dirty[p] && page_rehash(f, p, n) && p < lo) lo = p;
    if (!f->root_mid) { /* (no table yet: an empty file) */
        file_root(f->id, f->size, npages, (const uint8_t(*)[SCP_HASH_LEN])f->page_hash, out);
        return;
    }
    /* root_mid[k]: after the prefix and page hashes [0, k * SCP_ROOT_SEG) */
    uint64_t ok = f->root_mid_size == f->size ? f->root_mid_ok : 0;
    if (ok > lo / SCP_ROOT_SEG + 1) ok = lo / SCP_ROOT_SEG + 1;
    scp_sha256_mid m;
    if (ok) {
        m = f->root_mid[ok - 1];
    } else {
        uint8_t sz[8];
        scp_put_u64(sz, f->size);
        scp_sha256_mid_init(&m);
        scp_sha256_mid_update(&m, "scp/v1/root", 11);
        scp_sha256_mid_update(&m, f->id, SCP_FILEID_LEN);
        scp_sha256_mid_update(&m, sz, 8);
        f->root_mid[0] = m;
        ok = 1;
    }
    for (uint64_t at = (ok - 1) * SCP_ROOT_SEG; at < npages;) {
        uint64_t end = at + SCP_ROOT_SEG < npages ? at + SCP_ROOT_SEG : npages;
        scp_sha256_mid_update(&m, f->page_hash[at], (end - at) * SCP_HASH_LEN);
        at = end;
        if (at % SCP_ROOT_SEG == 0) f->root_mid[ok++] = m;
    }
    assert(ok == npages / SCP_ROOT_SEG + 1);
    f->root_mid_ok = ok;
    f->root_mid_size = f->size;
    scp_sha256_mid_final(&m, out);
#ifdef SCP_ROOT_MID_CHECK
    uint8_t flat[SCP_HASH_LEN];
    file_root(f->id, f->size, npages, (const uint8_t(*)[SCP_HASH_LEN])f->page_hash, flat);
    assert(memcmp(flat, out, SCP_HASH_LEN) == 0);
#endif
}

/* A log dropped by another process's checkpoint sends every process that holds the file to
 * .t again (file_load_follow), and a PostgreSQL WAL segment's table is 4,096 entries: hashing
 * all of it again at every such reload was a third of the reload's CPU, where the pages that
 * changed since this process last looked are the few the WAL was written into. The hash of a
 * page is a function of its entries and their count alone, so a page that reads as it was
 * keeps it; what .t says is never trusted, only compared. */
int table_reload(scp_file *f, uint64_t old_n, uint64_t n) {
    assert(n <= f->table_cap);
    uint8_t *buf = old_n ? vol_bulk_scratch(n * ENT + 1) : NULL; /* (kept: no fresh pages) */
    uint64_t npages = (n + SCP_TABLE_PAGE - 1) / SCP_TABLE_PAGE;
    if (!buf) return table_read(f, n); /* (the whole table read in place, every page marked) */
    ssize_t got = scp_pread_full(f->fd_t, buf, n * ENT, 0);
    if (got < 0) {
        int e = errno;
        vol_bulk_release(buf, n * ENT + 1);
        memset(f->page_dirty, 1, f->page_cap);
        errno = e;
        return -1;
    }
    memset(buf + got, 0, n * ENT - (size_t)got); /* (a short .t: holes, as the zeroed table) */
    for (uint64_t p = 0; p < npages; p++) {
        uint64_t first = p * SCP_TABLE_PAGE;
        uint64_t cnt = n - first < SCP_TABLE_PAGE ? n - first : SCP_TABLE_PAGE;
        uint64_t cnt_old = first < old_n ? (old_n - first < SCP_TABLE_PAGE ? old_n - first : SCP_TABLE_PAGE) : 0;
        uint64_t same = 0, lim = cnt < cnt_old ? cnt : cnt_old;
        /* (the first differing segment; with the same count and no difference, none) */
        while (same < lim) {
            uint64_t end = same + SCP_PAGE_SEG < lim ? same + SCP_PAGE_SEG : lim;
            if (memcmp(f->table + (first + same) * ENT, buf + (first + same) * ENT, (end - same) * ENT) != 0) break;
            same = end;
        }
        VSTAT(load_pages);
        if (same == lim && cnt == cnt_old && f->page_dirty[p] == 0) VSTAT(load_pages_kept);
        if (same < lim || cnt != cnt_old) {
            uint8_t seg = (uint8_t)(1 + same / SCP_PAGE_SEG);
            if (cnt_old == 0) seg = 1;
            if (f->page_dirty[p] == 0 || f->page_dirty[p] > seg) f->page_dirty[p] = seg;
            memcpy(f->table + (first + same) * ENT, buf + (first + same) * ENT, (cnt - same) * ENT);
        }
    }
    for (uint64_t p = npages; p < f->page_cap; p++) f->page_dirty[p] = 1;
    memset(f->table + n * ENT, 0, (f->table_cap - n) * ENT);
    vol_bulk_release(buf, n * ENT + 1);
    return 0;
}

/* The size changed from oldn to newn chunks: the pages at the boundary hash differently. */
void table_mark_resize(scp_file *f, uint64_t oldn, uint64_t newn) {
    if (oldn < newn) {
        /* Growing: a page hashes its entries up to the table's end, so only the pages that
         * gain entries change: the old last page from the segment of entry oldn on (the
         * midstates of its whole segments before it stand; none if oldn starts a page) and
         * the new pages whole. The old last page, when full, is as it was: marking it whole
         * rehashed 11 KiB at every append of whole pages (a 1 MiB sequential write's commit,
         * once per write in shared mode). */
        for (uint64_t p = oldn / SCP_TABLE_PAGE; p <= (newn - 1) / SCP_TABLE_PAGE && p < f->page_cap; p++) {
            /* (a whole new page is holes, the table past its size being zero: an extending
             * truncate or fallocate of gigabytes hashed its tens of megabytes of zeros) */
            if (p * SCP_TABLE_PAGE >= oldn && (p + 1) * SCP_TABLE_PAGE <= newn) {
                /* (checked on the first few: all of a 5 GiB extension's 57 MB cost 40 ms of
                 * page faults, in builds that keep asserts) */
                assert(p > oldn / SCP_TABLE_PAGE + 4 || all_zero(ent(f, p * SCP_TABLE_PAGE), SCP_TABLE_PAGE * ENT));
                page_set_holes(f, p, newn);
            } else table_mark_page(f, p == oldn / SCP_TABLE_PAGE ? oldn : p * SCP_TABLE_PAGE);
        }
        return;
    }
    uint64_t lo = oldn < newn ? oldn : newn, hi = oldn < newn ? newn : oldn;
    uint64_t p0 = lo ? (lo - 1) / SCP_TABLE_PAGE : 0, p1 = hi ? (hi - 1) / SCP_TABLE_PAGE : 0;
    for (uint64_t p = p0; p <= p1 && p < f->page_cap; p++) f->page_dirty[p] = 1;
}

/* ---- chunk crypto ---------------------------------------------------------------------- */

static void aad_of(scp_file *f, uint64_t i, uint8_t aad[AAD_LEN]) {
    scp_chunk_aad(f->vol->volid, f->id, i, aad);
}

void (*vol_test_chunk_failed)(scp_file *f, uint64_t i);

int chunk_integrity_fail(scp_file *f, uint64_t i, const char *what, scp_err *err) {
    if (vol_test_chunk_failed) vol_test_chunk_failed(f, i);
    return scp_fail(err, SCP_E_INTEGRITY, EIO,
                    "'%s': chunk at offset %llu %s (the volume was modified, truncated or "
                    "rolled back)",
                    f->path ? f->path : "(unlinked file)",
                    (unsigned long long)i * f->vol->cs, what);
}

/* Chunk subkeys. A file's key is never a GCM key: each chunk is sealed under a subkey derived
 * from it and a random 128-bit salt that the table entry stores (format.h). A writer draws a
 * salt and derives its subkey once, and draws a new one after SCP_SUBKEY_MAX_USES seals, so that
 * no GCM key ever sees more than 2^20 random nonces however long the file lives
 * (docs/volume-format.md has the budget). Readers keep the subkeys of the last salts they met. */

/* Remember the subkey of salt (caller holds pc_mu). */
static void sk_insert(scp_file *f, const uint8_t salt[SCP_SALT_LEN], const uint8_t key[32]) {
    assert(scp_mutex_held(&f->pc_mu));
    unsigned s = f->sk_next;
    memcpy(f->sk[s].salt, salt, SCP_SALT_LEN);
    memcpy(f->sk[s].key, key, 32);
    f->sk_next = (s + 1) % SCP_SUBKEY_CACHE;
    if (f->sk_n < SCP_SUBKEY_CACHE) f->sk_n++;
    f->sk_last = s;
}

/* The subkey that table entry e was sealed under. */
int chunk_key(scp_file *f, const uint8_t *e, uint8_t key[32], scp_err *err) {
    pthread_mutex_lock(&f->pc_mu);
    for (unsigned k = 0; k < f->sk_n; k++) {
        unsigned s = (f->sk_last + k) % f->sk_n;
        if (memcmp(f->sk[s].salt, e, SCP_SALT_LEN) == 0) {
            memcpy(key, f->sk[s].key, 32);
            f->sk_last = s;
            pthread_mutex_unlock(&f->pc_mu);
            return 0;
        }
    }
    pthread_mutex_unlock(&f->pc_mu);
    if (scp_derive_key(f->key, SCP_LABEL_CHUNK, e, SCP_SALT_LEN, key, err) < 0) return -1;
    pthread_mutex_lock(&f->pc_mu);
    sk_insert(f, e, key);
    pthread_mutex_unlock(&f->pc_mu);
    return 0;
}

/* Make the writer's subkey good for n more seals (caller holds f->rw for writing). */
int chunk_wkey_reserve(scp_file *f, size_t n, scp_err *err) {
    assert(FILE_WR_HELD(f));
    assert(n <= SCP_SUBKEY_MAX_USES);
    if (f->w_have && f->w_uses + n <= SCP_SUBKEY_MAX_USES) {
        f->w_uses += (uint32_t)n;
        return 0;
    }
    f->w_have = 0;
    /* (the salt is public, in every entry sealed under the subkey; what the subkey needs is
     * a salt never used before under this file key, which the DRBG's output handed out once
     * gives as RAND_bytes does: scp_random_public, without a RAND_bytes call per new writer,
     * sqlite's rollback journal in DELETE mode being a new file per transaction) */
    if (scp_random_public(f->w_salt, SCP_SALT_LEN, err) < 0 ||
        scp_derive_key(f->key, SCP_LABEL_CHUNK, f->w_salt, SCP_SALT_LEN, f->w_key, err) < 0)
        return -1;
    f->w_have = 1;
    f->w_uses = (uint32_t)n;
    pthread_mutex_lock(&f->pc_mu);
    sk_insert(f, f->w_salt, f->w_key);
    pthread_mutex_unlock(&f->pc_mu);
    return 0;
}

/* Encrypt plaintext chunk i into ct under the writer's subkey (reserved by the caller) with a
 * fresh random nonce whose low bit is set to `slot` (format.h: the nonce names the chunk's
 * slot), and record salt||nonce||tag in the table. Without marking the change: safe from
 * several threads on distinct chunks. */
static int seal_raw(scp_file *f, uint64_t i, const uint8_t *pt, uint8_t *ct,
                    const uint8_t nonce_in[SCP_NONCE_LEN], int slot, scp_err *err) {
    uint8_t aad[AAD_LEN], nonce[SCP_NONCE_LEN];
    aad_of(f, i, aad);
    memcpy(nonce, nonce_in, SCP_NONCE_LEN);
    nonce[0] = (uint8_t)((nonce[0] & ~1u) | (unsigned)slot);
    uint8_t *e = ent(f, i);
    assert(f->w_have && (slot == 0 || slot == 1));
    memcpy(e, f->w_salt, SCP_SALT_LEN);
    memcpy(e + SCP_ENT_NONCE_OFF, nonce, SCP_NONCE_LEN);
    VSTAT(chunk_seal);
    return scp_aead_seal(f->w_key, nonce, aad, AAD_LEN, pt, f->vol->cs, ct, e + SCP_ENT_TAG_OFF,
                         err);
}

int chunk_seal(scp_file *f, uint64_t i, const uint8_t *pt, uint8_t *ct,
               const uint8_t nonce[SCP_NONCE_LEN], int slot, scp_err *err) {
    if (seal_raw(f, i, pt, ct, nonce, slot, err) < 0) return -1;
    table_mark(f, i);
    return 0;
}

/* Piece k of the run is sealed: write out what is sealed in order from the first piece not
 * written yet, unless another thread is doing that (it takes this piece too before it stops).
 * So the writes of one file, which the kernel serializes, go out from one thread at a time in
 * as few calls as the sealing allows, while the other threads go on sealing. */
static void seal_piece_done(struct seal_job *j, size_t k) {
    size_t cs = j->f->vol->cs, npieces = (j->n + j->per - 1) / j->per;
    pthread_mutex_lock(&j->mu);
    j->sealed |= UINT64_C(1) << k;
    if (j->writing) {
        pthread_mutex_unlock(&j->mu);
        return;
    }
    j->writing = 1;
    for (;;) {
        size_t w = j->written, e = w;
        while (e < npieces && (j->sealed >> e & 1)) e++;
        if (e == w) break;
        pthread_mutex_unlock(&j->mu);
        size_t b = w * j->per, end = e * j->per < j->n ? e * j->per : j->n;
        int rc = scp_pwrite_full(chunk_slot_fd(j->f, j->slot), j->ct + b * cs, (end - b) * cs,
                                 (j->first + b) * cs) < 0 ? (errno ? errno : EIO) : 0;
        pthread_mutex_lock(&j->mu);
        if (rc && !j->write_errno) j->write_errno = rc;
        if (rc) j->failed |= (e < 64 ? UINT64_C(1) << e : 0) - (UINT64_C(1) << w);
        j->written = e;
    }
    j->writing = 0;
    pthread_mutex_unlock(&j->mu);
}

/* Seal chunks [b, e) of the run (whole pieces: the parts are pieces, or the whole run when
 * one thread does it all), each piece handed to seal_piece_done when sealed. */
int chunk_seal_range(void *ctx, size_t b, size_t e) {
    struct seal_job *j = ctx;
    size_t cs = j->f->vol->cs;
    assert(b % j->per == 0 && (e % j->per == 0 || e == j->n));
    for (size_t p = b; p < e; p += j->per) {
        size_t q = e - p > j->per ? p + j->per : e;
        for (size_t k = p; k < q; k++)
            if (seal_raw(j->f, j->first + k, j->src + k * cs, j->ct + k * cs,
                         j->nonces + k * SCP_NONCE_LEN, j->slot, NULL) < 0)
                return -1; /* this piece is never written: the write fails as a whole */
        seal_piece_done(j, p / j->per);
    }
    return 0;
}

static void read_job_fail(struct read_job *j, uint64_t i, int kind, int e) {
    pthread_mutex_lock(&j->mu);
    if (i < j->bad) {
        j->bad = i;
        j->bad_kind = kind;
        j->bad_errno = e;
    }
    pthread_mutex_unlock(&j->mu);
}

int chunk_read_range(void *ctx, size_t b, size_t e) {
    struct read_job *j = ctx;
    size_t cs = j->f->vol->cs;
    uint8_t *p = j->dst + b * cs;
    ssize_t got = scp_pread_full(chunk_slot_fd(j->f, j->slot), p, (e - b) * cs, (j->first + b) * cs);
    if (got < 0) {
        read_job_fail(j, j->first + b, 3, errno);
        return -1;
    }
    uint8_t aad[AAD_LEN], key[32], salt[SCP_SALT_LEN];
    int rc = 0, have_key = 0;
    for (size_t k = b; k < e; k++, p += cs) {
        uint64_t i = j->first + k;
        if ((size_t)got < (k - b + 1) * cs) {
            read_job_fail(j, i, 1, 0);
            rc = -1;
            break;
        }
        const uint8_t *en = ent(j->f, i);
        aad_of(j->f, i, aad);
        /* With a cache entry: decrypt into it (out of place, so that what is cached is exactly
         * what authenticated, whatever else touches dst), then copy to the caller. */
        struct pchunk *c = j->fill ? pc_take(j->f) : NULL;
        uint8_t *pt = c ? c->data : p;
        /* Neighbouring chunks were mostly written by one writer: look its subkey up once. */
        if (!have_key || memcmp(salt, en, SCP_SALT_LEN) != 0) {
            have_key = chunk_key(j->f, en, key, NULL) == 0;
            memcpy(salt, en, SCP_SALT_LEN);
        }
        VSTAT(chunk_decrypt);
        if (!have_key || scp_aead_open(key, en + SCP_ENT_NONCE_OFF, aad, AAD_LEN, p, cs,
                                       en + SCP_ENT_TAG_OFF, pt, NULL) < 0) {
            read_job_fail(j, i, 2, 0);
            rc = -1;
            if (c) pc_free(j->f, c);
        } else if (c) {
            memcpy(p, c->data, cs);
            pc_put(j->f, i, c);
        }
    }
    scp_wipe(key, sizeof key);
    return rc;
}

int chunk_open(scp_file *f, uint64_t i, const uint8_t *ct, uint8_t *pt, scp_err *err) {
    uint8_t aad[AAD_LEN];
    aad_of(f, i, aad);
    const uint8_t *e = ent(f, i);
    uint8_t key[32];
    if (chunk_key(f, e, key, err) < 0) return -1;
    VSTAT(chunk_decrypt);
    int rc = scp_aead_open(key, e + SCP_ENT_NONCE_OFF, aad, AAD_LEN, ct, f->vol->cs,
                           e + SCP_ENT_TAG_OFF, pt, err);
    scp_wipe(key, sizeof key);
    if (rc < 0) return chunk_integrity_fail(f, i, "fails authentication", err);
    return 0;
}

/* Read the ciphertext of chunk i (not dirty, not a hole) into ct. */
int chunk_fetch_ct(scp_file *f, uint64_t i, uint8_t *ct, scp_err *err) {
    uint32_t cs = f->vol->cs;
    uint64_t joff;
    ssize_t r;
    /* (the log: an uncommitted record, or the sole holder's committed one not yet in .d, when
     * the entry still names slot 0: after a large overwrite in place it names slot 1) */
    if (u64map_get(&f->jmap, i, &joff) ||
        (SCP_ENT_SLOT(ent(f, i)) == 0 && u64map_get(&f->dapply, i, &joff))) {
        /* A record still in the queue (commit.c, journal_drain: kept after a failed drain, for
         * the next one to write at these offsets) is not on disk yet: its bytes are the
         * queue's. Read from the journal, a chunk that the plaintext cache no longer held
         * failed as "missing" (test_volume_pcfail with SCP_VOLUME_CACHE_MB=0). Records are
         * queued whole, so one lies wholly in the queue or wholly before it. */
        uint64_t qs = f->j_end - f->jq_len;
        if (f->jq_len && joff >= qs) {
            assert(joff + SCP_JCHUNK_HDR_LEN + cs <= f->j_end);
            memcpy(ct, f->jq + (joff - qs) + SCP_JCHUNK_HDR_LEN, cs);
            r = (ssize_t)cs;
        } else {
            r = scp_pread_full(f->fd_j, ct, cs, joff + SCP_JCHUNK_HDR_LEN);
        }
    } else if (chunk_slot_fd(f, SCP_ENT_SLOT(ent(f, i))) < 0)
        return chunk_integrity_fail(f, i, "is missing (its slot object is)", err);
    else
        r = scp_pread_full(chunk_slot_fd(f, SCP_ENT_SLOT(ent(f, i))), ct, cs, i * cs);
    if (r < 0) return scp_fail_errno(err, "cannot read '%s'", f->path ? f->path : "file");
    if ((size_t)r != cs) return chunk_integrity_fail(f, i, "is missing", err);
    return 0;
}

/* Plaintext of chunk i into pt (cs bytes). */
int chunk_load(scp_file *f, uint64_t i, uint8_t *pt, scp_err *err) {
    uint64_t v;
    uint32_t cs = f->vol->cs;
    if (u64map_get(&f->dirty, i, &v)) {
        memcpy(pt, (const void *)(uintptr_t)v, cs);
        return 0;
    }
    if (i >= cur_n(f) || is_hole(ent(f, i))) {
        memset(pt, 0, cs);
        return 0;
    }
    /* A partial write of a chunk written just before (sqlite's WAL frames straddle chunks)
     * finds it here, put by file_writeback, instead of reading and decrypting it again. */
    if (pc_get(f, i, 0, cs, pt)) return 0;
    uint8_t *ct = malloc(cs);
    if (!ct) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int rc = chunk_fetch_ct(f, i, ct, err);
    if (rc == 0) rc = chunk_open(f, i, ct, pt, err);
    free(ct);
    return rc;
}

