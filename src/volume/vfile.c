/* volume/vfile.c - file contents: chunks, the chunk table, write-back, commit and recovery.
 *
 * A file is three objects in objects/: <id>.d holds chunk i's ciphertext at offset i * chunk
 * size; <id>.t holds chunk i's table entry (subkey salt, nonce, GCM tag) at offset i * 44 (zero =
 * a hole); <id>.j is the journal. The manifest entry holds the file's size and content root, a hash over the table, so
 * that no chunk can be modified, moved or replayed without the root changing.
 *
 * Crash safety (docs/volume-format.md has the full argument): chunks and table entries beyond
 * the committed chunk count are "fresh" and written in place at any time, since no committed
 * state refers to them. Any change below the committed count goes to the journal first. A
 * commit makes the journal durable, then writes the manifest (the commit point), then applies
 * the journal in place. Recovery on load replays a journal whose target root is the manifest's.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "crypto/parallel.h"
#include "volume/internal.h"

#define AAD_LEN (SCP_VOLID_LEN + SCP_FILEID_LEN + 8)
#define ENT SCP_CHUNK_ENTRY_LEN
#define WRITE_BATCH_BYTES (4u << 20) /* bytes sealed and written in place per batch */

static const uint8_t zero_ent[ENT];

/* ---- per-thread scratch buffer -------------------------------------------------------- */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
struct scratch {
    uint8_t *p;
    size_t cap;
};
static void scratch_free(void *p) {
    struct scratch *s = p;
    if (s->p) scp_wipe(s->p, s->cap); /* it held plaintext */
    free(s->p);
    free(s);
}
static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

/* A per-thread buffer of at least n bytes (valid until the thread's next call). */
static uint8_t *scratch(size_t n) {
    pthread_once(&scratch_once, scratch_init);
    struct scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        pthread_setspecific(scratch_key, s);
    }
    if (s->cap < n) {
        uint8_t *np = malloc(n); /* not realloc: the old buffer is wiped before it is freed */
        if (!np) return NULL;
        if (s->p) scp_wipe(s->p, s->cap);
        free(s->p);
        s->p = np;
        s->cap = n;
    }
    return s->p;
}

/* ---- table and root -------------------------------------------------------------------- */

static inline uint8_t *ent(scp_file *f, uint64_t i) { return f->table + i * ENT; }
static inline int is_hole(const uint8_t *e) { return memcmp(e, zero_ent, ENT) == 0; }
static inline uint64_t cur_n(scp_file *f) { return nchunks_of(f->size, f->vol->cs); }
static inline uint64_t com_n(scp_file *f) { return nchunks_of(f->c_size, f->vol->cs); }
static inline int changed_get(scp_file *f, uint64_t i) { return f->changed[i / 8] >> (i % 8) & 1; }

static int table_reserve(scp_file *f, uint64_t n, scp_err *err) {
    if (n <= f->table_cap && f->table) return 0;
    uint64_t cap = f->table_cap ? f->table_cap : 256;
    while (cap < n) cap *= 2;
    uint64_t pages = (cap + SCP_TABLE_PAGE - 1) / SCP_TABLE_PAGE;
    uint8_t *t = realloc(f->table, cap * ENT);
    if (t) f->table = t;
    uint8_t *c = realloc(f->changed, cap / 8 + 1);
    if (c) f->changed = c;
    uint8_t(*ph)[SCP_HASH_LEN] = realloc(f->page_hash, pages * SCP_HASH_LEN);
    if (ph) f->page_hash = ph;
    uint8_t *pd = realloc(f->page_dirty, pages);
    if (pd) f->page_dirty = pd;
    if (!t || !c || !ph || !pd)
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory for the chunk table");
    memset(f->table + f->table_cap * ENT, 0, (cap - f->table_cap) * ENT);
    memset(f->changed + f->table_cap / 8 + (f->table_cap ? 1 : 0), 0,
           cap / 8 + 1 - (f->table_cap / 8 + (f->table_cap ? 1 : 0)));
    memset(f->page_dirty + f->page_cap, 1, pages - f->page_cap);
    f->table_cap = cap;
    f->page_cap = pages;
    return 0;
}

/* Record that entry i changed. */
static void mark(scp_file *f, uint64_t i) {
    f->page_dirty[i / SCP_TABLE_PAGE] = 1;
    if (i < com_n(f)) f->changed[i / 8] |= (uint8_t)(1u << (i % 8));
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

static void compute_root(scp_file *f, uint8_t out[SCP_HASH_LEN]) {
    uint64_t n = cur_n(f), npages = (n + SCP_TABLE_PAGE - 1) / SCP_TABLE_PAGE;
    for (uint64_t p = 0; p < npages; p++) {
        if (!f->page_dirty[p]) continue;
        uint64_t first = p * SCP_TABLE_PAGE, cnt = n - first;
        if (cnt > SCP_TABLE_PAGE) cnt = SCP_TABLE_PAGE;
        struct scp_buf b = {ent(f, first), cnt * ENT};
        scp_sha256(&b, 1, f->page_hash[p]);
        f->page_dirty[p] = 0;
    }
    file_root(f->id, f->size, npages, (const uint8_t(*)[SCP_HASH_LEN])f->page_hash, out);
}

/* The size changed from oldn to newn chunks: the pages at the boundary hash differently. */
static void mark_resize(scp_file *f, uint64_t oldn, uint64_t newn) {
    uint64_t lo = oldn < newn ? oldn : newn, hi = oldn < newn ? newn : oldn;
    uint64_t p0 = lo ? (lo - 1) / SCP_TABLE_PAGE : 0, p1 = hi ? (hi - 1) / SCP_TABLE_PAGE : 0;
    for (uint64_t p = p0; p <= p1 && p < f->page_cap; p++) f->page_dirty[p] = 1;
}

/* ---- chunk crypto ---------------------------------------------------------------------- */

static void aad_of(scp_file *f, uint64_t i, uint8_t aad[AAD_LEN]) {
    memcpy(aad, f->vol->volid, SCP_VOLID_LEN);
    memcpy(aad + SCP_VOLID_LEN, f->id, SCP_FILEID_LEN);
    scp_put_u64(aad + SCP_VOLID_LEN + SCP_FILEID_LEN, i);
}

static int integrity_fail(scp_file *f, uint64_t i, const char *what, scp_err *err) {
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
    unsigned s = f->sk_next;
    memcpy(f->sk[s].salt, salt, SCP_SALT_LEN);
    memcpy(f->sk[s].key, key, 32);
    f->sk_next = (s + 1) % SCP_SUBKEY_CACHE;
    if (f->sk_n < SCP_SUBKEY_CACHE) f->sk_n++;
    f->sk_last = s;
}

/* The subkey that table entry e was sealed under. */
static int chunk_key(scp_file *f, const uint8_t *e, uint8_t key[32], scp_err *err) {
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
static int wkey_reserve(scp_file *f, size_t n, scp_err *err) {
    assert(n <= SCP_SUBKEY_MAX_USES);
    if (f->w_have && f->w_uses + n <= SCP_SUBKEY_MAX_USES) {
        f->w_uses += (uint32_t)n;
        return 0;
    }
    f->w_have = 0;
    if (scp_random(f->w_salt, SCP_SALT_LEN, err) < 0 ||
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
 * fresh random nonce, and record salt||nonce||tag in the table. */
/* Encrypt without recording the change (safe from several threads on distinct chunks). */
static int seal_raw(scp_file *f, uint64_t i, const uint8_t *pt, uint8_t *ct,
                    const uint8_t nonce[SCP_NONCE_LEN], scp_err *err) {
    uint8_t aad[AAD_LEN];
    aad_of(f, i, aad);
    uint8_t *e = ent(f, i);
    assert(f->w_have);
    memcpy(e, f->w_salt, SCP_SALT_LEN);
    memcpy(e + SCP_ENT_NONCE_OFF, nonce, SCP_NONCE_LEN);
    return scp_aead_seal(f->w_key, nonce, aad, AAD_LEN, pt, f->vol->cs, ct, e + SCP_ENT_TAG_OFF,
                         err);
}

static int seal_chunk(scp_file *f, uint64_t i, const uint8_t *pt, uint8_t *ct,
                      const uint8_t nonce[SCP_NONCE_LEN], scp_err *err) {
    if (seal_raw(f, i, pt, ct, nonce, err) < 0) return -1;
    mark(f, i);
    return 0;
}

/* A run of whole chunks sealed on several cores (crypto/parallel.h). */
struct seal_job {
    scp_file *f;
    uint64_t first;
    const uint8_t *src, *nonces;
    uint8_t *ct;
    int write_errno; /* set by a part whose pwrite failed (any one of them) */
};

/* Seal a part and write it in place: each part writes its own range, so the kernel's copy
 * runs in parallel too. */
static int seal_range(void *ctx, size_t b, size_t e) {
    struct seal_job *j = ctx;
    size_t cs = j->f->vol->cs;
    for (size_t k = b; k < e; k++)
        if (seal_raw(j->f, j->first + k, j->src + k * cs, j->ct + k * cs,
                     j->nonces + k * SCP_NONCE_LEN, NULL) < 0)
            return -1;
    if (scp_pwrite_full(j->f->fd_d, j->ct + b * cs, (e - b) * cs, (j->first + b) * cs) < 0) {
        __atomic_store_n(&j->write_errno, errno ? errno : EIO, __ATOMIC_RELAXED);
        return -1;
    }
    return 0;
}

/* ---- plaintext cache ------------------------------------------------------------------------ */

/* Servers read the same files again and again (nginx sends a file per request, sqlite rereads
 * pages its own cache dropped), and decrypting them each time costs more than the rest of the
 * request. So a chunk that was read and authenticated keeps its plaintext in process memory
 * (never in a kernel object), with the table entry (nonce and tag) it was decrypted under, and
 * is served from there only while that entry is still the file's current one. The entry is
 * bound to the content root that the manifest authenticates, and a nonce and tag name one
 * ciphertext under the file's key and the chunk's index, so a hit returns exactly what reading
 * and authenticating the chunk again would. Any change to a chunk (a write-back here, another
 * process's commit, a reload) changes its entry: nothing needs invalidating. Dirty chunks are
 * looked up first. The budget is per process (SCP_VOLUME_CACHE_MB, default 64, 0 = off);
 * beyond it a file recycles its own entries; files over a quarter of it are not cached. A process that writes a file caches it too:
 * its reads of chunks it has not changed since are as frequent (sqlite), and stale entries cost
 * only memory within the budget. */
struct pchunk {
    uint8_t ent[ENT];
    uint8_t data[];
};
static size_t pc_used;  /* bytes held by all files' entries (atomic) */
static size_t pc_limit; /* the budget, set once by pc_init */
static pthread_once_t pc_once = PTHREAD_ONCE_INIT;
static void pc_init(void) {
    const char *s = getenv("SCP_VOLUME_CACHE_MB");
    pc_limit = (size_t)(s && *s ? strtoul(s, NULL, 10) : 64) << 20;
}

static void pc_free(scp_file *f, struct pchunk *c) {
    size_t sz = sizeof *c + f->vol->cs;
    scp_wipe(c, sz);
    free(c);
    __atomic_sub_fetch(&pc_used, sz, __ATOMIC_RELAXED);
}

/* Copy bytes [in, in + len) of chunk i from the cache if its entry is current; 1 on a hit. */
static int pc_get(scp_file *f, uint64_t i, size_t in, size_t len, uint8_t *out) {
    uint64_t v;
    int hit = 0;
    pthread_mutex_lock(&f->pc_mu);
    if (u64map_get(&f->pc, i, &v)) {
        const struct pchunk *c = (const struct pchunk *)(uintptr_t)v;
        if (memcmp(c->ent, ent(f, i), ENT) == 0) {
            if (out) memcpy(out, c->data + in, len);
            hit = 1;
        }
    }
    pthread_mutex_unlock(&f->pc_mu);
    return hit;
}

/* An entry to fill for f: a new one within the budget, else one of f's own taken out of the
 * cache; NULL if neither (or the cache is off). The caller passes it to pc_put or
 * pc_free. */
static struct pchunk *pc_take(scp_file *f) {
    /* A file larger than a quarter of the budget is streamed, not cached: filling and recycling
     * entries for it costs a third of the read speed (bench/volume: 512 MiB sequential and
     * random reads), and it would push out the small hot files the cache is for. */
    if (!pc_limit || __atomic_load_n(&f->size, __ATOMIC_RELAXED) > pc_limit / 4) return NULL;
    size_t sz = sizeof(struct pchunk) + f->vol->cs;
    if (__atomic_add_fetch(&pc_used, sz, __ATOMIC_RELAXED) <= pc_limit) {
        struct pchunk *c = malloc(sz);
        if (c) return c;
    }
    __atomic_sub_fetch(&pc_used, sz, __ATOMIC_RELAXED);
    struct pchunk *c = NULL;
    uint64_t k, v;
    pthread_mutex_lock(&f->pc_mu);
    if (u64map_count(&f->pc) && !f->pc_pins) {
        if (!u64map_next(&f->pc, &f->pc_scan, &k, &v)) {
            f->pc_scan = 0;
            u64map_next(&f->pc, &f->pc_scan, &k, &v);
        }
        u64map_del(&f->pc, k, NULL);
        c = (struct pchunk *)(uintptr_t)v;
    }
    pthread_mutex_unlock(&f->pc_mu);
    return c;
}

/* Cache c (whose data is chunk i's authenticated plaintext) under chunk i's current entry. */
static void pc_put(scp_file *f, uint64_t i, struct pchunk *c) {
    memcpy(c->ent, ent(f, i), ENT);
    uint64_t old = 0;
    pthread_mutex_lock(&f->pc_mu);
    int had = u64map_get(&f->pc, i, &old);
    if (had && f->pc_pins) {
        old = (uintptr_t)c; /* the old entry may be in use by a pin holder: keep it, drop c */
    } else if (u64map_put(&f->pc, i, (uintptr_t)c) < 0) {
        had = 1; /* out of memory: drop c instead */
        old = (uintptr_t)c;
    }
    pthread_mutex_unlock(&f->pc_mu);
    if (had) pc_free(f, (struct pchunk *)(uintptr_t)old);
}

static void pc_drop(scp_file *f) {
    size_t pos = 0;
    uint64_t k, v;
    while (u64map_next(&f->pc, &pos, &k, &v)) pc_free(f, (struct pchunk *)(uintptr_t)v);
    u64map_free(&f->pc);
}

/* A run of whole chunks read from the data object straight into the caller's buffer and
 * decrypted in place, split among several cores (each part reads and decrypts its own range,
 * so the kernel's copy runs in parallel too). */
struct read_job {
    scp_file *f;
    uint64_t first; /* chunk index of dst[0] */
    uint8_t *dst;
    pthread_mutex_t mu;
    uint64_t bad;   /* smallest chunk that failed, UINT64_MAX if none */
    int bad_kind;   /* 1 missing, 2 fails authentication, 3 read error (errno in bad_errno) */
    int bad_errno;
};

static void read_job_fail(struct read_job *j, uint64_t i, int kind, int e) {
    pthread_mutex_lock(&j->mu);
    if (i < j->bad) {
        j->bad = i;
        j->bad_kind = kind;
        j->bad_errno = e;
    }
    pthread_mutex_unlock(&j->mu);
}

static int read_range(void *ctx, size_t b, size_t e) {
    struct read_job *j = ctx;
    size_t cs = j->f->vol->cs;
    uint8_t *p = j->dst + b * cs;
    ssize_t got = scp_pread_full(j->f->fd_d, p, (e - b) * cs, (j->first + b) * cs);
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
        struct pchunk *c = pc_take(j->f);
        uint8_t *pt = c ? c->data : p;
        /* Neighbouring chunks were mostly written by one writer: look its subkey up once. */
        if (!have_key || memcmp(salt, en, SCP_SALT_LEN) != 0) {
            have_key = chunk_key(j->f, en, key, NULL) == 0;
            memcpy(salt, en, SCP_SALT_LEN);
        }
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

/* Chunks per batch below which the work stays on one core. */
#define PARALLEL_MIN 64

static int open_chunk(scp_file *f, uint64_t i, const uint8_t *ct, uint8_t *pt, scp_err *err) {
    uint8_t aad[AAD_LEN];
    aad_of(f, i, aad);
    const uint8_t *e = ent(f, i);
    uint8_t key[32];
    if (chunk_key(f, e, key, err) < 0) return -1;
    int rc = scp_aead_open(key, e + SCP_ENT_NONCE_OFF, aad, AAD_LEN, ct, f->vol->cs,
                           e + SCP_ENT_TAG_OFF, pt, err);
    scp_wipe(key, sizeof key);
    if (rc < 0) return integrity_fail(f, i, "fails authentication", err);
    return 0;
}

/* Read the ciphertext of chunk i (not dirty, not a hole) into ct. */
static int fetch_ct(scp_file *f, uint64_t i, uint8_t *ct, scp_err *err) {
    uint32_t cs = f->vol->cs;
    uint64_t joff;
    ssize_t r;
    if (u64map_get(&f->jmap, i, &joff))
        r = scp_pread_full(f->fd_j, ct, cs, joff + SCP_JREC_HDR_LEN);
    else
        r = scp_pread_full(f->fd_d, ct, cs, i * cs);
    if (r < 0) return scp_fail_errno(err, "cannot read '%s'", f->path ? f->path : "file");
    if ((size_t)r != cs) return integrity_fail(f, i, "is missing", err);
    return 0;
}

/* Plaintext of chunk i into pt (cs bytes). */
static int load_chunk(scp_file *f, uint64_t i, uint8_t *pt, scp_err *err) {
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
    uint8_t *ct = malloc(cs);
    if (!ct) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int rc = fetch_ct(f, i, ct, err);
    if (rc == 0) rc = open_chunk(f, i, ct, pt, err);
    free(ct);
    return rc;
}

/* ---- loading and recovery ---------------------------------------------------------------- */

static int open_obj(scp_file *f, const char *ext, int flags, scp_err *err) {
    char name[48];
    vol_object_name(f->id, ext, name);
    /* O_NOFOLLOW and O_NONBLOCK: the disk is the attacker's, and a symlink to a device or a
     * FIFO must fail here, not hang or alias another file. */
    int fd = openat(f->vol->objfd, name, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) {
        if (errno == ENOENT)
            return scp_fail(err, SCP_E_INTEGRITY, EIO,
                            "'%s': its data object is missing from the volume directory",
                            f->path ? f->path : "file");
        if (errno == ELOOP)
            return scp_fail(err, SCP_E_INTEGRITY, EIO,
                            "'%s': an object of it was replaced by a symbolic link", f->path);
        return scp_fail_errno(err, "cannot open an object of '%s'", f->path ? f->path : "file");
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': an object of it is not a regular file", f->path ? f->path : "file");
    }
    return fd;
}

/* The most bytes a journal can legitimately hold for a file of `size` bytes (after the
 * commit macros, below); anything longer is refused, not read. */
static uint64_t journal_replay_max(uint64_t size, uint32_t cs);

struct replay {
    scp_file *f;
    uint64_t nchunks; /* of the target state: records beyond it are dead and skipped */
    scp_err *err;
};

static int replay_chunk(void *ctx, uint64_t index, const uint8_t *ct) {
    struct replay *r = ctx;
    if (index >= r->nchunks) return 0;
    if (scp_pwrite_full(r->f->fd_d, ct, r->f->vol->cs, index * r->f->vol->cs) < 0)
        return scp_fail_errno(r->err, "cannot replay the journal of '%s'", r->f->path);
    return 0;
}

static int replay_entry(void *ctx, uint64_t index, const uint8_t *e) {
    struct replay *r = ctx;
    scp_file *f = r->f;
    if (index >= r->nchunks) return 0;
    memcpy(ent(f, index), e, ENT);
    f->page_dirty[index / SCP_TABLE_PAGE] = 1;
    if (scp_pwrite_full(f->fd_t, e, ENT, index * ENT) < 0)
        return scp_fail_errno(r->err, "cannot replay the journal of '%s'", f->path);
    return 0;
}

/* Take the writer lock without waiting (byte 1 of the data object; see acquire_writer).
 * Returns 1 if taken, 0 if another process holds it. */
static int try_writer_lock(scp_file *f) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
    return fcntl(f->fd_d, F_OFD_SETLK, &fl) == 0;
}

static void writer_unlock(scp_file *f) {
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
    (void)fcntl(f->fd_d, F_OFD_SETLK, &fl);
}

/* Redo the journal's commits up to the one that names the manifest's root (format.h), make
 * the result durable and empty the journal. Only a process that can take the writer lock does
 * this: a live writer's journal is its own (it appends to it), and its commits are applied in
 * the page cache that we read, so there is nothing to redo while it lives. Returns 1 if
 * replayed, 0 if there was nothing to do, -1 on error. Caller holds f->rw for writing. */
static int try_replay(scp_file *f, const scp_mentry *e, scp_err *err) {
    struct stat st;
    /* A writer with a log open appends to it: that log is its own. A writer that has none (it
     * has just taken the lock, see writer_refresh) replays what the previous writer left. */
    int own = f->writer;
    if (own && f->j_end) return 0;
    if (f->fd_j < 0) {
        char name[48];
        vol_object_name(f->id, ".j", name);
        f->fd_j = openat(f->vol->objfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (f->fd_j < 0) return 0;
    }
    if (fstat(f->fd_j, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < SCP_JRN_HDR_LEN) return 0;
    if (!own && !try_writer_lock(f)) return 0;
    size_t len = (size_t)st.st_size;
    uint8_t *buf = NULL;
    int rc = 0;
    /* Read whole into memory, so the host must not choose how much: beyond what a writer can
     * produce for this (authenticated) size, the journal was inflated on purpose. */
    if ((uint64_t)st.st_size > journal_replay_max(e->size, f->vol->cs)) {
        rc = scp_fail(err, SCP_E_INTEGRITY, EIO,
                      "'%s': its journal (%llu bytes) is longer than any writer makes it; the "
                      "volume was modified",
                      e->path, (unsigned long long)st.st_size);
        goto out;
    }
    buf = malloc(len);
    if (!buf) {
        rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory replaying a journal");
        goto out;
    }
    scp_journal_view jv;
    if (scp_pread_full(f->fd_j, buf, len, 0) != (ssize_t)len ||
        scp_journal_find(buf, len, f->vol->cs, f->key, f->id, e->root, e->size, &jv) != 1)
        goto out;
    struct replay r = {f, nchunks_of(e->size, f->vol->cs), err};
    rc = scp_journal_replay(buf, &jv, f->vol->cs, f->id, replay_chunk, replay_entry, &r, err);
    scp_wipe(&jv, sizeof jv);
    if (rc < 0) goto out;
    if (fdatasync(f->fd_d) < 0 || fdatasync(f->fd_t) < 0) {
        rc = scp_fail_errno(err, "cannot sync '%s' after journal replay", e->path);
        goto out;
    }
    /* Harmless if it fails: replay is idempotent. */
    if (ftruncate(f->fd_j, 0) < 0) {
    }
    rc = 1;
out:
    free(buf);
    if (!own) writer_unlock(f);
    return rc;
}

/* (Re)load the committed state of f from its objects and manifest entry e. */
static int file_load(scp_file *f, const scp_mentry *e, scp_err *err) {
    uint32_t cs = f->vol->cs;
    uint64_t n = nchunks_of(e->size, cs);
    if (table_reserve(f, n, err) < 0) return -1;
    /* Until the root checks out, the table is whatever the disk holds: an attacker's mix of
     * old entries would otherwise be served (each old chunk still authenticates on its own). */
    f->unloaded = 1;
    memset(f->table, 0, f->table_cap * ENT);
    memset(f->changed, 0, f->table_cap / 8 + 1);
    memset(f->page_dirty, 1, f->page_cap);
    ssize_t r = scp_pread_full(f->fd_t, f->table, n * ENT, 0);
    if (r < 0) return scp_fail_errno(err, "cannot read the chunk table of '%s'", e->path);
    f->size = f->c_size = e->size;
    /* A journal that leads to the manifest's root means a commit whose apply may not have
     * reached the disk whole (the table may already match while data chunks do not): redo it.
     * Replay is idempotent. Any other journal is stale. */
    int rc = try_replay(f, e, err);
    if (rc < 0) return -1;
    uint8_t root[SCP_HASH_LEN];
    compute_root(f, root);
    if (memcmp(root, e->root, SCP_HASH_LEN) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest (the file was "
                        "modified, truncated, replaced or rolled back)",
                        e->path);
    memcpy(f->c_root, e->root, SCP_HASH_LEN);
    /* Whatever journal is on disk belongs to whoever writes next, who starts from a checkpoint. */
    f->j_end = 0;
    f->j_clean = 0;
    f->unloaded = 0;
    return 0;
}

/* Free a dirty chunk's buffer: it holds plaintext. */
static void dirty_free(scp_file *f, uint64_t v) {
    scp_wipe((void *)(uintptr_t)v, f->vol->cs);
    free((void *)(uintptr_t)v);
}

static void file_free(scp_file *f) {
    size_t pos = 0;
    uint64_t k, v;
    while (u64map_next(&f->dirty, &pos, &k, &v)) dirty_free(f, v);
    u64map_free(&f->dirty);
    u64map_free(&f->jmap);
    if (f->fd_d >= 0) close(f->fd_d);
    if (f->fd_t >= 0) close(f->fd_t);
    if (f->fd_j >= 0) close(f->fd_j);
    free(f->table);
    free(f->changed);
    free(f->page_hash);
    free(f->page_dirty);
    free(f->path);
    pthread_rwlock_destroy(&f->rw);
    pc_drop(f);
    pthread_mutex_destroy(&f->pc_mu);
    scp_secure_free(f, sizeof *f);
}

static void discard_uncommitted(scp_file *f) {
    size_t pos = 0;
    uint64_t k, v;
    while (u64map_next(&f->dirty, &pos, &k, &v)) dirty_free(f, v);
    u64map_clear(&f->dirty);
    u64map_clear(&f->jmap);
    f->j_end = 0; /* the records after the last commit are dead; the next commit checkpoints */
    f->j_clean = 0;
    f->modified = 0;
}

/* A file created without a durable commit after it may come back from a power cut in the
 * scratch manifest while its objects, whose directory was not synced, did not. Only an empty
 * file can (any content commit syncs the directory first), and its content is known: recreate
 * its objects. Returns -1 with errno if that fails. */
static int empty_lost_objects(scp_volume *v, const scp_mentry *e) {
    uint8_t root[SCP_HASH_LEN];
    if (e->size != 0) return 0;
    file_empty_root(e->id, root);
    if (memcmp(root, e->root, SCP_HASH_LEN) != 0) return 0;
    for (int k = 0; k < 2; k++) { /* data and table; a missing journal is made when needed */
        char name[48];
        vol_object_name(e->id, vol_object_ext[k], name);
        if (faccessat(v->objfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) continue;
        if (errno != ENOENT) return 0; /* open_obj reports it */
        int fd = openat(v->objfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) return -1;
        close(fd);
        if (fsync(v->objfd) < 0) return -1;
    }
    return 0;
}

scp_file *file_get(scp_volume *v, const scp_mentry *e, scp_err *err) {
    for (scp_file *f = v->files; f; f = f->next) {
        if (memcmp(f->id, e->id, SCP_FILEID_LEN) != 0) continue;
        /* Close-to-open consistency: pick up another process's commit if we hold no changes. */
        /* trywrlock: we hold the volume lock, and the lock order is file before volume. If
         * the file is busy, its reader will refresh it on its own (see file_refresh). */
        if (memcmp(f->c_root, e->root, SCP_HASH_LEN) != 0 && !f->modified && !f->writer &&
            pthread_rwlock_trywrlock(&f->rw) == 0) {
            int rc = f->modified ? 0 : file_load(f, e, err);
            pthread_rwlock_unlock(&f->rw);
            if (rc < 0) return NULL;
        }
        f->refs++;
        return f;
    }
    scp_file *f = scp_secure_alloc(sizeof *f); /* holds the file key */
    if (!f) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    f->vol = v;
    f->fd_d = f->fd_t = f->fd_j = -1;
    pthread_rwlock_init(&f->rw, NULL);
    pthread_mutex_init(&f->pc_mu, NULL);
    pthread_once(&pc_once, pc_init);
    u64map_init(&f->dirty);
    u64map_init(&f->jmap);
    u64map_init(&f->pc);
    memcpy(f->id, e->id, SCP_FILEID_LEN);
    f->path = strdup(e->path);
    if (f->path && empty_lost_objects(v, e) < 0) {
        scp_fail_errno(err, "cannot recreate the objects of empty file '%s'", e->path);
        file_free(f);
        return NULL;
    }
    if (!f->path || vol_file_key(v, f->id, f->key, err) < 0 ||
        (f->fd_d = open_obj(f, ".d", O_RDWR, err)) < 0 ||
        (f->fd_t = open_obj(f, ".t", O_RDWR, err)) < 0 || file_load(f, e, err) < 0) {
        if (!f->path) scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        file_free(f);
        return NULL;
    }
    f->refs = 1;
    f->next = v->files;
    v->files = f;
    return f;
}

void file_unlist_free(scp_volume *v, scp_file *f) {
    for (scp_file **pp = &v->files; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    if (!f->path) vol_doom_objects(v, f->id); /* unlinked while open: the last close */
    file_free(f);
}

void file_put(scp_volume *v, scp_file *f) {
    if (--f->refs > 0) return;
    if (!f->path || f->modified || f->writer) {
        file_unlist_free(v, f);
        return;
    }
    /* Keep the closed file's state (descriptors, table) for the next open: servers such as
     * nginx open a file per request. Beyond FILE_CACHE closed files, drop the one that was
     * loaded earliest (the list grows at its head). */
    scp_file *oldest = NULL;
    size_t cached = 0;
    for (scp_file *g = v->files; g; g = g->next)
        if (g->refs == 0) {
            cached++;
            oldest = g;
        }
    if (cached > FILE_CACHE) file_unlist_free(v, oldest);
}

void file_cache_drop(scp_volume *v) {
    for (scp_file *f = v->files, *next; f; f = next) {
        next = f->next;
        if (f->refs == 0) file_unlist_free(v, f);
    }
}

/* A handle joins or leaves the volume's list (caller holds v->mu): a fork child re-initializes
 * every handle's cursor mutex (volume.c). */
static void handle_link(scp_volume *v, scp_vfile *h) {
    h->hprev = NULL;
    h->hnext = v->handles;
    if (v->handles) v->handles->hprev = h;
    v->handles = h;
    v->nhandles++;
}
static void handle_unlink(scp_volume *v, scp_vfile *h) {
    if (h->hprev) h->hprev->hnext = h->hnext;
    else v->handles = h->hnext;
    if (h->hnext) h->hnext->hprev = h->hprev;
    v->nhandles--;
}

/* The open fast path: an existing file whose state this process holds and that no other
 * process has changed (the generation hint is ours, see vol_fresh) needs no lock, no system
 * call and no allocation. Returns the file with a new reference (h joins the volume's handles),
 * or NULL to take the full path. */
static scp_file *file_get_cached(scp_volume *v, const char *path, scp_vfile *h) {
    pthread_mutex_lock(&v->mu);
    scp_file *hit = NULL;
    if (vol_fresh(v)) {
        long i = man_find(&v->man, path);
        if (i >= 0 && v->man.e[i].type == 1)
            for (scp_file *f = v->files; f; f = f->next)
                if (memcmp(f->id, v->man.e[i].id, SCP_FILEID_LEN) == 0) {
                    if (memcmp(f->c_root, v->man.e[i].root, SCP_HASH_LEN) == 0) {
                        f->refs++;
                        handle_link(v, h);
                        hit = f;
                    }
                    break;
                }
    }
    pthread_mutex_unlock(&v->mu);
    return hit;
}

int file_after_fork(scp_file *f, scp_err *err) {
    /* The descriptors are shared with the parent, and so is its writer lock: take our own. */
    if (f->fd_j >= 0) close(f->fd_j);
    f->fd_j = -1;
    f->writer = 0;
    f->w_have = 0; /* our own chunk subkey: the parent's budget count is the parent's */
    f->j_end = 0; /* the parent's journal log is the parent's */
    f->j_clean = 0;
    if (!f->path) return 0;
    int d = open_obj(f, ".d", O_RDWR, err);
    int t = d >= 0 ? open_obj(f, ".t", O_RDWR, err) : -1;
    if (t < 0) {
        if (d >= 0) close(d);
        return -1;
    }
    close(f->fd_d);
    close(f->fd_t);
    f->fd_d = d;
    f->fd_t = t;
    if (f->modified) { /* the parent owns its uncommitted writes; we restart from the commit */
        discard_uncommitted(f);
        long i = man_find(&f->vol->man, f->path);
        if (i >= 0) return file_load(f, &f->vol->man.e[i], err);
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------------------------- */

/* Just became the writer: bring the state up to the newest commit before writing on top of it.
 * Another process may have committed since this one loaded the file (it held the writer lock
 * then and released it at its close), and the generation hint that let an open skip the
 * reload is not authenticated. So read the manifest under the volume lock (vol_lock reloads it
 * whenever a slot header claims a newer generation; a header lowered by the host only makes
 * the newest slot fail authentication, a rollback that the volume tag reports) and reload the
 * file when its root moved. Writes start only after this, and no other process can commit the
 * file while we hold the writer lock, so every write lands on top of every earlier commit.
 * Caller holds f->rw for writing (lock order: file, then volume). */
static int writer_refresh(scp_file *f, scp_err *err) {
    scp_volume *v = f->vol;
    if (vol_lock(v, err) < 0) return -1;
    int rc = 0;
    long i = f->path ? man_find(&v->man, f->path) : -1; /* vol_lock renames or unlists f */
    const scp_mentry *e = i >= 0 ? &v->man.e[i] : NULL;
    if (e && memcmp(e->id, f->id, SCP_FILEID_LEN) == 0 &&
        memcmp(e->root, f->c_root, SCP_HASH_LEN) != 0) {
        /* Only a writer changes a file, and we were not one: nothing here is uncommitted,
         * unless the host brought back a manifest entry of a file unlinked here (then refuse
         * rather than guess which content wins). */
        if (f->modified)
            rc = scp_fail(err, SCP_E_INTEGRITY, EIO,
                          "'%s' changed on disk while this process held uncommitted writes to "
                          "it; not written",
                          f->path);
        else
            rc = file_load(f, e, err);
    }
    vol_unlock(v);
    return rc;
}

static int acquire_writer(scp_file *f, scp_err *err) {
    if (f->writer) return 0;
    if (!f->path)
        return 0; /* unlinked: nobody else can reach it through the namespace */
    /* Byte 1 only: the volume lock is byte 0 of its own file, so even if the untrusted disk
     * aliases the two files (a hard link), the locks cannot conflict and self-deadlock. */
    if (!try_writer_lock(f)) {
        if (errno == EAGAIN || errno == EACCES)
            return scp_fail(err, SCP_E_BUSY, EBUSY,
                            "'%s' is being written by another process; retry when it closes the "
                            "file",
                            f->path);
        return scp_fail_errno(err, "cannot lock '%s' for writing", f->path);
    }
    f->writer = 1;
    if (writer_refresh(f, err) < 0) {
        writer_unlock(f);
        f->writer = 0;
        return -1;
    }
    return 0;
}

/* Make every commit this file has ever had durable in place: the data and table objects are
 * synced whatever this process wrote, since the last writer's in-place applies may still sit in
 * the page cache. After it the journal holds nothing that is needed. */
static int checkpoint(scp_file *f, scp_err *err) {
    if (fdatasync(f->fd_d) < 0 || fdatasync(f->fd_t) < 0)
        return scp_fail_errno(err, "cannot sync '%s'", f->path ? f->path : "file");
    f->d_unsynced = f->t_unsynced = 0;
    f->j_clean = 1;
    return 0;
}

/* Make sure a journal log is open for appending (format.h): a new log starts from a
 * checkpoint, because its header ends the old log's chain. */
static int journal_begin(scp_file *f, scp_err *err) {
    if (f->fd_j < 0) {
        /* Every file is created with its journal object; a volume from elsewhere may lack it,
         * and then its directory entry must be durable before the journal is relied on. */
        int fd = open_obj(f, ".j", O_RDWR, NULL);
        if (fd < 0) {
            fd = open_obj(f, ".j", O_RDWR | O_CREAT, err);
            if (fd < 0) return -1;
            if (fsync(f->vol->objfd) < 0) {
                close(fd);
                return scp_fail_errno(err, "cannot sync the objects directory");
            }
        }
        f->fd_j = fd;
    }
    if (f->j_end != 0) return 0;
    if (!f->j_clean && checkpoint(f, err) < 0) return -1;
    /* Also when clean: the tail of a longer older log would count against the next replay's
     * bound (journal_replay_max), which this file's size may have shrunk since. */
    if (ftruncate(f->fd_j, 0) < 0)
        return scp_fail_errno(err, "cannot reset the journal of '%s'", f->path);
    uint8_t salt[SCP_HASH_LEN], hdr[SCP_JRN_HDR_LEN];
    if (scp_random(salt, sizeof salt, err) < 0) return -1;
    scp_journal_start(hdr, salt, f->j_chain);
    if (scp_journal_key(f->key, hdr, f->j_key, err) < 0) return -1;
    if (scp_pwrite_full(f->fd_j, hdr, sizeof hdr, 0) < 0)
        return scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
    f->j_end = SCP_JRN_HDR_LEN;
    f->j_clean = 0;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Encrypt every dirty chunk and write it out: fresh chunks in place, others to the journal. */
static int writeback(scp_file *f, scp_err *err) {
    size_t n = u64map_count(&f->dirty);
    if (n == 0) return 0;
    uint32_t cs = f->vol->cs;
    uint64_t *idx = malloc(n * sizeof *idx);
    uint8_t *nonces = malloc(n * SCP_NONCE_LEN);
    uint8_t *buf = malloc(n * (SCP_JREC_HDR_LEN + (size_t)cs));
    int rc = 0;
    if (!idx || !nonces || !buf) {
        rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory writing back '%s'", f->path);
        goto out;
    }
    size_t pos = 0, k = 0;
    uint64_t key, val;
    while (u64map_next(&f->dirty, &pos, &key, &val)) idx[k++] = key;
    qsort(idx, n, sizeof *idx, cmp_u64);
    if (wkey_reserve(f, n, err) < 0 || scp_random(nonces, n * SCP_NONCE_LEN, err) < 0) {
        rc = -1;
        goto out;
    }
    uint64_t cn = com_n(f), limit = cur_n(f);
    /* Fresh chunks: contiguous runs, one pwrite each. */
    size_t run_start = 0, run_len = 0;
    uint8_t *jbuf = buf; /* journal records are built after the fresh runs, in the same buffer */
    size_t jlen = 0;
    for (k = 0; k <= n && rc == 0; k++) {
        int fresh = k < n && idx[k] >= cn && idx[k] < limit;
        if (run_len && (!fresh || idx[k] != idx[run_start] + run_len)) {
            if (scp_pwrite_full(f->fd_d, buf, run_len * cs, idx[run_start] * cs) < 0)
                rc = scp_fail_errno(err, "cannot write '%s'", f->path);
            f->d_unsynced = 1;
            run_len = 0;
        }
        if (!fresh) continue;
        if (!run_len) run_start = k;
        u64map_get(&f->dirty, idx[k], &val);
        rc = seal_chunk(f, idx[k], (const uint8_t *)(uintptr_t)val, buf + run_len * cs,
                        nonces + k * SCP_NONCE_LEN, err);
        run_len++;
    }
    for (k = 0; k < n && rc == 0; k++) {
        if (idx[k] >= cn || idx[k] >= limit) continue;
        if (jlen == 0 && journal_begin(f, err) < 0) {
            rc = -1;
            break;
        }
        uint8_t *r = jbuf + jlen;
        scp_put_u32(r, SCP_JREC_CHUNK);
        scp_put_u32(r + 4, 0);
        scp_put_u64(r + 8, idx[k]);
        u64map_get(&f->dirty, idx[k], &val);
        rc = seal_chunk(f, idx[k], (const uint8_t *)(uintptr_t)val, r + SCP_JREC_HDR_LEN,
                        nonces + k * SCP_NONCE_LEN, err);
        if (rc == 0) scp_journal_chain(f->j_chain, r, SCP_JREC_HDR_LEN + (size_t)cs);
        if (rc == 0 && u64map_put(&f->jmap, idx[k], f->j_end + jlen) < 0)
            rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        jlen += SCP_JREC_HDR_LEN + cs;
    }
    if (rc == 0 && jlen) {
        if (scp_pwrite_full(f->fd_j, jbuf, jlen, f->j_end) < 0)
            rc = scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
        else
            f->j_end += jlen;
    }
    if (rc == 0) {
        for (k = 0; k < n; k++)
            if (u64map_del(&f->dirty, idx[k], &val)) dirty_free(f, val);
    }
out:
    free(idx);
    free(nonces);
    free(buf);
    return rc;
}

/* The dirty buffer for chunk i, created (with the chunk's current content unless `whole`)
 * if needed. */
static uint8_t *dirty_chunk(scp_file *f, uint64_t i, int whole, scp_err *err) {
    uint64_t v;
    if (u64map_get(&f->dirty, i, &v)) return (uint8_t *)(uintptr_t)v;
    uint8_t *b = malloc(f->vol->cs);
    if (!b) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    if (!whole && load_chunk(f, i, b, err) < 0) {
        dirty_free(f, (uintptr_t)b);
        return NULL;
    }
    if (u64map_put(&f->dirty, i, (uint64_t)(uintptr_t)b) < 0) {
        dirty_free(f, (uintptr_t)b);
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    return b;
}

/* Grow or shrink to `size` (caller holds the write lock and writer status). */
static int set_size(scp_file *f, uint64_t size, scp_err *err) {
    uint32_t cs = f->vol->cs;
    uint64_t oldn = cur_n(f), newn = nchunks_of(size, cs);
    if (size == f->size) return 0;
    if (table_reserve(f, newn, err) < 0) return -1;
    if (size < f->size) {
        /* Zero the tail of the new last chunk so that a later extension reads zeros. */
        if (size % cs) {
            uint64_t last = size / cs;
            if (!is_hole(ent(f, last)) || u64map_get(&f->dirty, last, NULL)) {
                uint8_t *b = dirty_chunk(f, last, 0, err);
                if (!b) return -1;
                memset(b + size % cs, 0, cs - size % cs);
            }
        }
        for (uint64_t i = newn; i < oldn; i++) {
            uint64_t v;
            if (u64map_del(&f->dirty, i, &v)) dirty_free(f, v);
            u64map_del(&f->jmap, i, NULL);
            if (!is_hole(ent(f, i))) {
                memset(ent(f, i), 0, ENT);
                mark(f, i);
            }
        }
    }
    mark_resize(f, oldn, newn);
    __atomic_store_n(&f->size, size, __ATOMIC_RELAXED);
    f->modified = 1;
    return 0;
}

/* Long sequential writes: start the disk's writeback every few MiB (without waiting), so the
 * final fdatasync of a commit does not begin from a cold start while encryption sat idle. */
#define KICK_BYTES (8u << 20)
static void kick_writeback(scp_file *f, size_t n) {
    f->kick_pending += n;
    if (f->kick_pending < KICK_BYTES) return;
    (void)sync_file_range(f->fd_d, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint: errors surface at fsync */
    f->kick_pending = 0;
}

/* An uncommitted change whose journal log passes this many bytes is committed by the write that
 * passed it (as the kernel may write a file's dirty pages back at any time): so the log stays
 * within journal_replay_max, however much a program rewrites without an fsync. */
#ifndef SCP_JOURNAL_PENDING_MAX
#define SCP_JOURNAL_PENDING_MAX (32u << 20)
#endif
static int commit(scp_file *f, scp_err *err);

static ssize_t do_pwrite(scp_file *f, const uint8_t *src, size_t n, uint64_t off, scp_err *err) {
    uint32_t cs = f->vol->cs;
    if (off + n < off || off + n > (UINT64_C(1) << 50))
        return scp_fail(err, SCP_E_INVAL, EFBIG, "write beyond the maximum file size");
    if (n == 0) return 0;
    if (f->unloaded)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest; not written",
                        f->path ? f->path : "file");
    if (acquire_writer(f, err) < 0) return -1;
    if (off + n > f->size && set_size(f, off + n, err) < 0) return -1;
    f->modified = 1;
    uint64_t cn = com_n(f);
    size_t done = 0;
    while (done < n) {
        uint64_t pos = off + done, i = pos / cs;
        size_t in = (size_t)(pos % cs), len = cs - in;
        if (len > n - done) len = n - done;
        /* A run of whole fresh chunks is encrypted straight from the caller's buffer and
         * written in place: no copy, no cache. */
        if (in == 0 && len == cs && i >= cn) {
            size_t run = 1, max_run = WRITE_BATCH_BYTES / cs;
            while (run < max_run && done + (run + 1) * cs <= n) run++;
            uint8_t *ct = scratch(run * cs);
            uint8_t nonces[(WRITE_BATCH_BYTES / SCP_VOLUME_MIN_CHUNK) * SCP_NONCE_LEN];
            if (!ct) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
            if (wkey_reserve(f, run, err) < 0 || scp_random(nonces, run * SCP_NONCE_LEN, err) < 0)
                return -1;
            for (size_t k = 0; k < run; k++) {
                uint64_t v;
                if (u64map_del(&f->dirty, i + k, &v)) dirty_free(f, v);
            }
            struct seal_job job = {f, i, src + done, nonces, ct, 0};
            f->d_unsynced = 1;
            if (scp_parallel_for(run, PARALLEL_MIN, seal_range, &job) < 0) {
                if (job.write_errno) {
                    errno = job.write_errno;
                    return scp_fail_errno(err, "cannot write '%s'", f->path);
                }
                return scp_fail(err, SCP_E_CRYPTO, EIO, "AES-256-GCM encryption failed");
            }
            for (size_t k = 0; k < run; k++) mark(f, i + k);
            kick_writeback(f, run * cs);
            done += run * cs;
            continue;
        }
        uint8_t *b = dirty_chunk(f, i, len == cs, err);
        if (!b) return -1;
        memcpy(b + in, src + done, len);
        done += len;
    }
    if (u64map_count(&f->dirty) * cs > SCP_DIRTY_LIMIT && writeback(f, err) < 0) return -1;
    if (f->j_end > SCP_JOURNAL_PENDING_MAX && commit(f, err) < 0) return -1;
    return (ssize_t)n;
}

/* ---- commit ------------------------------------------------------------------------------- */

static int sync_fd(int fd, int *flag, const char *path, scp_err *err) {
    if (!*flag) return 0;
    if (fdatasync(fd) < 0) return scp_fail_errno(err, "cannot sync '%s'", path);
    *flag = 0;
    return 0;
}

/* A commit whose fresh chunks come to at most this many bytes copies them into the journal, so
 * that it syncs one object instead of three (sqlite's and redis's small appends). */
#ifndef SCP_FRESH_JOURNAL_BYTES
#define SCP_FRESH_JOURNAL_BYTES (256u << 10)
#endif
/* A journal log longer than this is closed after the commit; the next one checkpoints. */
#ifndef SCP_JOURNAL_MAX
#define SCP_JOURNAL_MAX (8u << 20)
#endif
/* A log longer than this is checkpointed when its writer closes the file. */
#ifndef SCP_CHECKPOINT_AT_CLOSE
#define SCP_CHECKPOINT_AT_CLOSE (1u << 20)
#endif

/* A log holds at most SCP_JOURNAL_MAX bytes of earlier commits (a longer one is closed after
 * its commit), then the commit that recovery redoes, then what a writer that died had written
 * for its next one. Each of the last two: chunk records up to SCP_JOURNAL_PENDING_MAX plus one
 * write-back batch (SCP_DIRTY_LIMIT) past it, the copies of a small append's fresh chunks, and
 * a commit record with at most an entry per chunk of the committed size plus the fresh ones
 * (journal_begin truncates, so no older log's tail adds to it). Not covered: a writer whose
 * manifest writes keep failing while it keeps committing (each failed commit's record stays). */
static uint64_t journal_replay_max(uint64_t size, uint32_t cs) {
    uint64_t rec = SCP_JREC_HDR_LEN + (uint64_t)cs, fresh = SCP_FRESH_JOURNAL_BYTES / cs + 1;
    uint64_t one = SCP_JOURNAL_PENDING_MAX + (SCP_DIRTY_LIMIT / cs + 1) * rec + fresh * rec +
                   SCP_JCOMMIT_LEN(nchunks_of(size, cs) + fresh);
    return SCP_JRN_HDR_LEN + SCP_JOURNAL_MAX + 2 * one;
}

/* Apply the journal's newest commit in place after the commit point, without syncing: until a
 * checkpoint the journal can redo it (caller holds the volume lock). */
static int apply_journal(scp_file *f, uint64_t lim, scp_err *err) {
    uint32_t cs = f->vol->cs;
    uint8_t *ct = malloc(cs);
    if (!ct) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    size_t pos = 0;
    uint64_t i, off;
    int rc = 0;
    while (rc == 0 && u64map_next(&f->jmap, &pos, &i, &off)) {
        if (scp_pread_full(f->fd_j, ct, cs, off + SCP_JREC_HDR_LEN) != (ssize_t)cs ||
            scp_pwrite_full(f->fd_d, ct, cs, i * cs) < 0)
            rc = scp_fail_errno(err, "cannot apply the journal of '%s'", f->path);
        f->d_unsynced = 1;
    }
    free(ct);
    for (i = 0; rc == 0 && i < lim; i++) {
        if (!changed_get(f, i)) continue;
        if (scp_pwrite_full(f->fd_t, ent(f, i), ENT, i * ENT) < 0)
            rc = scp_fail_errno(err, "cannot apply the journal of '%s'", f->path);
        f->t_unsynced = 1;
    }
    return rc;
}

/* Append copies of the fresh chunks [from, to), read back from the page cache where they were
 * just written in place. */
static int journal_fresh(scp_file *f, uint64_t from, uint64_t to, scp_err *err) {
    uint32_t cs = f->vol->cs;
    size_t cnt = 0, rl = SCP_JREC_HDR_LEN + (size_t)cs;
    for (uint64_t i = from; i < to; i++) cnt += !is_hole(ent(f, i));
    if (cnt == 0) return 0;
    uint8_t *buf = malloc(cnt * rl), *r = buf;
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int rc = 0;
    for (uint64_t i = from; i < to && rc == 0; i++) {
        if (is_hole(ent(f, i))) continue;
        scp_put_u32(r, SCP_JREC_CHUNK);
        scp_put_u32(r + 4, 0);
        scp_put_u64(r + 8, i);
        if (scp_pread_full(f->fd_d, r + SCP_JREC_HDR_LEN, cs, i * cs) != (ssize_t)cs)
            rc = scp_fail_errno(err, "cannot read back '%s'", f->path);
        scp_journal_chain(f->j_chain, r, rl);
        r += rl;
    }
    if (rc == 0 && scp_pwrite_full(f->fd_j, buf, cnt * rl, f->j_end) < 0)
        rc = scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
    if (rc == 0) f->j_end += cnt * rl;
    free(buf);
    return rc;
}

/* Append the commit record (the changed entries below lim and every entry in [from, to)), and
 * make the journal durable. */
static int journal_seal(scp_file *f, uint64_t lim, uint64_t from, uint64_t to,
                        const uint8_t root[SCP_HASH_LEN], scp_err *err) {
    if (journal_begin(f, err) < 0) return -1;
    uint64_t count = to - from;
    for (uint64_t i = 0; i < lim; i++) count += (uint64_t)changed_get(f, i);
    /* The payload (size, entries, root) is encrypted: the disk shows how many entries changed,
     * never the file's exact size (format.h). */
    size_t rlen = SCP_JCOMMIT_LEN(count), ptlen = SCP_JCOMMIT_PT_LEN(count);
    uint8_t *rec = malloc(rlen + ptlen);
    if (!rec) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    uint8_t *pt = rec + rlen;
    scp_put_u64(pt, f->size);
    uint8_t *p = pt + 8;
    for (uint64_t i = 0; i < to; i++) {
        if (i < lim ? !changed_get(f, i) : i < from) continue;
        scp_put_u64(p, i);
        memcpy(p + 8, ent(f, i), ENT);
        p += SCP_JENTRY_LEN;
    }
    memcpy(p, root, SCP_HASH_LEN);
    uint8_t chain[SCP_HASH_LEN];
    memcpy(chain, f->j_chain, SCP_HASH_LEN);
    int rc = scp_journal_commit_seal(f->j_key, f->id, f->j_end, count, pt, chain, rec, err);
    scp_wipe(pt, ptlen);
    if (rc == 0 && (scp_pwrite_full(f->fd_j, rec, rlen, f->j_end) < 0 || fdatasync(f->fd_j) < 0))
        rc = scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
    if (rc == 0) {
        memcpy(f->j_chain, chain, SCP_HASH_LEN);
        f->j_end += rlen;
    }
    free(rec);
    return rc;
}

static int any_changed(scp_file *f, uint64_t lim) {
    for (uint64_t i = 0; i < lim; i += 8)
        if (f->changed[i / 8]) return 1;
    return 0;
}

/* Make f's state durable and advance the volume tag. Caller holds f->rw for writing.
 *
 * Two ways (docs/volume-format.md): through the journal (overwrites, small appends, and any
 * commit while a journal log is open: its commits must stay reachable from the manifest), which
 * syncs the journal and the manifest and applies in place without syncing; or in place (large
 * appends with nothing to redo), which syncs data and table before the manifest and leaves
 * nothing in the journal. */
static int commit(scp_file *f, scp_err *err) {
    if (!f->modified || !f->path) return 0;
    if (f->unloaded) /* checked again here, under the write lock (check_handle is outside it) */
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest; not committed", f->path);
    scp_volume *v = f->vol;
    uint32_t cs = v->cs;
    if (writeback(f, err) < 0) return -1;
    uint64_t n = cur_n(f), cn = com_n(f), lim = n < cn ? n : cn;
    uint64_t nfresh = n > cn ? n - cn : 0;
    int small = nfresh <= SCP_FRESH_JOURNAL_BYTES / cs;
    int redo = u64map_count(&f->jmap) > 0 || any_changed(f, lim);
    int journal = redo || (small && nfresh) || f->j_end;
    if (!small && !redo) journal = 0; /* syncing in place anyway: that also closes the log */
    uint8_t root[SCP_HASH_LEN];
    compute_root(f, root);
    /* 1. Everything durable except the commit point. */
    if ((!journal || !small) && n > cn) {
        if (scp_pwrite_full(f->fd_t, ent(f, cn), (n - cn) * ENT, cn * ENT) < 0)
            return scp_fail_errno(err, "cannot write the chunk table of '%s'", f->path);
        f->t_unsynced = 1;
    }
    if (journal) {
        if (journal_begin(f, err) < 0 || (small && journal_fresh(f, cn, n, err) < 0) ||
            journal_seal(f, lim, small && n > cn ? cn : n, n, root, err) < 0)
            return -1;
        if (!small && (sync_fd(f->fd_d, &f->d_unsynced, f->path, err) < 0 ||
                       sync_fd(f->fd_t, &f->t_unsynced, f->path, err) < 0))
            return -1;
    } else if (!f->j_clean ? checkpoint(f, err) < 0
                           : sync_fd(f->fd_d, &f->d_unsynced, f->path, err) < 0 ||
                                 sync_fd(f->fd_t, &f->t_unsynced, f->path, err) < 0) {
        return -1;
    }
    /* 2. The commit point: the manifest names the new root. */
    if (vol_lock(v, err) < 0) return -1;
    int rc = 0;
    long mi = f->path ? man_find(&v->man, f->path) : -1;
    if (mi < 0 || memcmp(v->man.e[mi].id, f->id, SCP_FILEID_LEN) != 0) {
        vol_unlock(v); /* unlinked or replaced meanwhile by another process: nothing to name */
        return 0;
    }
    scp_mentry *e = &v->man.e[mi], saved = *e;
    /* The new state was built on c_root (writer_refresh made that the newest commit, and the
     * writer lock kept every other process from committing the file since). An entry that
     * names another root means that exclusion failed: the host aliased the objects so that two
     * processes hold "the" writer lock, or brought back an older manifest. Replacing the entry
     * would silently drop the other commit: refuse instead. */
    if (memcmp(e->root, f->c_root, SCP_HASH_LEN) != 0) {
        vol_unlock(v);
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': another process committed it while this one was writing it (the "
                        "volume directory was tampered with); not committed",
                        f->path);
    }
    e->size = f->size;
    memcpy(e->root, root, SCP_HASH_LEN);
    e->mtime_ns = scp_now_ns();
    if (vol_commit_manifest(v, 1, err) < 0) {
        *e = saved;
        vol_unlock(v);
        return -1;
    }
    /* 3. Apply in place, unsynced: the journal redoes it until the next checkpoint. */
    if (journal) rc = apply_journal(f, lim, err);
    if (rc == 0 && journal && small && n > cn) {
        if (scp_pwrite_full(f->fd_t, ent(f, cn), (n - cn) * ENT, cn * ENT) < 0)
            rc = scp_fail_errno(err, "cannot write the chunk table of '%s'", f->path);
        f->t_unsynced = 1;
    }
    if (rc == 0 && n < cn &&
        (ftruncate(f->fd_d, (off_t)(n * cs)) < 0 || ftruncate(f->fd_t, (off_t)(n * ENT)) < 0))
        rc = scp_fail_errno(err, "cannot shrink '%s'", f->path);
    vol_unlock(v);
    if (rc < 0) return -1;
    u64map_clear(&f->jmap);
    /* Close the log after a shrink (a later append writes in place where the log may hold older
     * records of the same chunk; the next journaled commit checkpoints) or when it is long
     * (checkpointed here, so that whoever loads the file next has little to redo). */
    if (!journal || n < cn) {
        f->j_end = 0;
    } else if (f->j_end > SCP_JOURNAL_MAX) {
        f->j_end = 0; /* checkpoint now, or (if that fails) at the start of the next log */
        if (checkpoint(f, NULL) == 0 && ftruncate(f->fd_j, 0) < 0) f->j_clean = 0;
    }
    f->c_size = f->size;
    memcpy(f->c_root, root, SCP_HASH_LEN);
    memset(f->changed, 0, f->table_cap / 8 + 1);
    f->modified = 0;
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A chunk that takes the one-by-one path: dirty, a hole, journaled, or partly requested. */
static int read_one(scp_file *f, uint64_t i, size_t in, size_t len, uint8_t *out, uint8_t *tmp,
                    scp_err *err) {
    uint32_t cs = f->vol->cs;
    uint64_t v;
    if (u64map_get(&f->dirty, i, &v)) {
        memcpy(out, (const uint8_t *)(uintptr_t)v + in, len);
        return 0;
    }
    if (is_hole(ent(f, i))) {
        memset(out, 0, len);
        return 0;
    }
    struct pchunk *c = pc_take(f); /* (do_pread looked in the cache already) */
    uint8_t *pt = c ? c->data : tmp;
    if (fetch_ct(f, i, tmp + cs, err) < 0 || open_chunk(f, i, tmp + cs, pt, err) < 0) {
        if (c) pc_free(f, c);
        return -1;
    }
    memcpy(out, pt + in, len);
    if (c) pc_put(f, i, c);
    return 0;
}

/* Whole chunks that can be read straight from the data object. */
static inline int is_direct(scp_file *f, uint64_t i) {
    return !u64map_get(&f->dirty, i, NULL) && !is_hole(ent(f, i)) &&
           !u64map_get(&f->jmap, i, NULL);
}

static ssize_t do_pread(scp_file *f, uint8_t *dst, size_t n, uint64_t off, scp_err *err) {
    uint32_t cs = f->vol->cs;
    if (f->unloaded)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest (the file was "
                        "modified, truncated, replaced or rolled back)",
                        f->path ? f->path : "(unlinked file)");
    if (off >= f->size) return 0;
    if (n > f->size - off) n = (size_t)(f->size - off);
    uint8_t *tmp = scratch(2 * (size_t)cs);
    if (!tmp) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    size_t done = 0;
    while (done < n) {
        uint64_t i = (off + done) / cs;
        size_t in = (size_t)((off + done) % cs), len = cs - in;
        if (len > n - done) len = n - done;
        if (!u64map_get(&f->dirty, i, NULL) && pc_get(f, i, in, len, dst + done)) {
            done += len;
            continue;
        }
        if (len < cs || !is_direct(f, i)) {
            if (read_one(f, i, in, len, dst + done, tmp, err) < 0) goto fail;
            done += len;
            continue;
        }
        size_t run = 1;
        while (done + (run + 1) * cs <= n && is_direct(f, i + run) && !pc_get(f, i + run, 0, 0, NULL))
            run++;
        struct read_job job = {f, i, dst + done, PTHREAD_MUTEX_INITIALIZER, UINT64_MAX, 0, 0};
        int rc = scp_parallel_for(run, PARALLEL_MIN, read_range, &job);
        pthread_mutex_destroy(&job.mu);
        if (rc < 0) {
            if (job.bad_kind == 3) {
                errno = job.bad_errno;
                scp_fail_errno(err, "cannot read '%s'", f->path);
            } else {
                integrity_fail(f, job.bad, job.bad_kind == 1 ? "is missing" : "fails authentication",
                               err);
            }
            goto fail;
        }
        done += run * cs;
    }
    return (ssize_t)n;
fail:
    scp_wipe(dst, n); /* no unauthenticated byte leaves, nor a partial read */
    return -1;
}

/* ---- public file API ---------------------------------------------------------------------- */

static int check_handle(scp_vfile *h, int want_write, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    vol_after_fork_check(h->f->vol);
    if (want_write && __atomic_load_n(&h->f->unloaded, __ATOMIC_RELAXED))
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest; not written",
                        h->f->path ? h->f->path : "file");
    int acc = h->flags & O_ACCMODE;
    if (want_write && acc == O_RDONLY)
        return scp_fail(err, SCP_E_INVAL, EBADF, "'%s' was opened read-only",
                        h->f->path ? h->f->path : "file");
    if (!want_write && acc == O_WRONLY)
        return scp_fail(err, SCP_E_INVAL, EBADF, "'%s' was opened write-only",
                        h->f->path ? h->f->path : "file");
    return 0;
}

static int create_objects(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], scp_err *err) {
    for (int k = 0; k < 3; k++) {
        char name[48];
        vol_object_name(id, vol_object_ext[k], name);
        int fd = openat(v->objfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) return scp_fail_errno(err, "cannot create a file object");
        close(fd);
    }
    /* The directory is synced by the next durable commit (of any process: the lock file
     * carries the flag), before a manifest that a power cut cannot lose names the objects. */
    v->objdir_dirty = 1;
    vol_lockbyte_set(v, VOL_LOCKBYTE_OBJDIR, 1);
    return 0;
}

scp_vfile *scp_vfile_open(scp_volume *v, const char *path, int flags, uint32_t mode,
                          scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (scp_path_normalize(path, p, sizeof p, err) < 0) return NULL;
    if (!p[0]) {
        scp_fail(err, SCP_E_ISDIR, EISDIR, "the volume root is a directory");
        return NULL;
    }
    scp_vfile *h = calloc(1, sizeof *h);
    if (!h) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    h->flags = flags;
    pthread_mutex_init(&h->cur_mu, NULL);
    if (!(flags & (O_TRUNC | O_EXCL)) && (h->f = file_get_cached(v, p, h))) return h;
    if (vol_lock(v, err) < 0) {
        free(h);
        return NULL;
    }
    long i = man_find(&v->man, p);
    int rc = 0;
    if (i >= 0 && (flags & O_CREAT) && (flags & O_EXCL))
        rc = scp_fail(err, SCP_E_EXIST, EEXIST, "'%s' already exists in the volume", p);
    else if (i >= 0 && v->man.e[i].type == 2)
        rc = scp_fail(err, SCP_E_ISDIR, EISDIR, "'%s' is a directory", p);
    else if (i < 0 && !(flags & O_CREAT))
        rc = scp_fail(err, SCP_E_NOENT, ENOENT, "'%s' does not exist in the volume", p);
    if (rc == 0 && i < 0) {
        /* Create: objects first, then the manifest entry (the commit point). */
        const char *slash = strrchr(p, '/');
        if (slash) {
            char parent[SCP_MAX_PATH + 1];
            memcpy(parent, p, (size_t)(slash - p));
            parent[slash - p] = '\0';
            long pi = man_find(&v->man, parent);
            if (pi < 0)
                rc = scp_fail(err, SCP_E_NOENT, ENOENT, "directory '%s' does not exist", parent);
            else if (v->man.e[pi].type != 2)
                rc = scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", parent);
        }
        scp_mentry e = {.type = 1, .mode = mode & 07777, .mtime_ns = scp_now_ns(),
                        .uid = (uint32_t)geteuid(), .gid = (uint32_t)getegid()};
        if (rc == 0) rc = scp_random(e.id, SCP_FILEID_LEN, err);
        if (rc == 0) rc = create_objects(v, e.id, err);
        if (rc == 0) {
            file_empty_root(e.id, e.root);
            e.path = strdup(p);
            if (!e.path || man_insert(&v->man, &e, err) < 0) {
                free(e.path);
                rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
            } else if (vol_commit_manifest(v, 0, err) < 0) {
                man_remove(&v->man, (size_t)man_find(&v->man, p));
                rc = -1;
            }
        }
    }
    int created = i < 0;
    i = man_find(&v->man, p);
    if (rc == 0 && !(h->f = file_get(v, &v->man.e[i], err))) rc = -1;
    /* The committed size: file_get may have left a busy file's state stale (acquire_writer
     * below refreshes it), and an O_TRUNC must not skip a file that only looks empty. */
    uint64_t msize = rc == 0 ? v->man.e[i].size : 0;
    /* Fresh objects: nothing in them needs a checkpoint before the file's first journal log. */
    if (rc == 0 && created && h->f->refs == 1) h->f->j_clean = 1;
    if (rc == 0) handle_link(v, h);
    vol_unlock(v);
    if (rc == 0 && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
        pthread_rwlock_wrlock(&h->f->rw);
        if (h->f->size != 0 || h->f->c_size != 0 || msize != 0) {
            rc = acquire_writer(h->f, err);
            if (rc == 0) rc = set_size(h->f, 0, err);
            if (rc == 0) rc = commit(h->f, err);
        }
        pthread_rwlock_unlock(&h->f->rw);
        if (rc < 0) {
            scp_vfile_close(h, NULL);
            return NULL;
        }
    }
    if (rc < 0) {
        pthread_mutex_destroy(&h->cur_mu);
        free(h);
        return NULL;
    }
    return h;
}

int scp_vfile_close(scp_vfile *h, scp_err *err) {
    if (!h) return 0;
    vol_after_fork_check(h->f->vol);
    scp_file *f = h->f;
    scp_volume *v = f->vol;
    int rc = 0;
    if ((h->flags & O_ACCMODE) != O_RDONLY) {
        pthread_rwlock_wrlock(&f->rw);
        rc = commit(f, err);
        /* The last writer's handle: a long log would make the next process that loads the
         * file redo all of it; checkpoint now instead (a short one is cheaper to redo than
         * two syncs, and sqlite closes its journal file after every transaction). refs is
         * read without the volume mutex: a wrong guess only moves the checkpoint. */
        if (rc == 0 && f->writer && f->refs == 1 && f->j_end > SCP_CHECKPOINT_AT_CLOSE &&
            checkpoint(f, err) == 0 && ftruncate(f->fd_j, 0) == 0)
            f->j_end = 0;
        pthread_rwlock_unlock(&f->rw);
    }
    pthread_mutex_lock(&v->mu);
    if (f->refs == 1 && f->writer) {
        writer_unlock(f);
        f->writer = 0;
        /* Another process may write next and start its own journal log over ours. */
        f->j_end = 0;
        f->j_clean = 0;
    }
    file_put(v, f);
    handle_unlink(v, h);
    pthread_mutex_unlock(&v->mu);
    pthread_mutex_destroy(&h->cur_mu);
    free(h);
    return rc;
}

/* After an integrity failure in a process that holds no changes to the file: another process
 * may have committed (and applied in place) since we loaded it. Reload if the manifest moved.
 * Returns 1 if the state was reloaded (the read is worth retrying). */
static int file_refresh(scp_file *f) {
    int reloaded = 0;
    pthread_rwlock_wrlock(&f->rw);
    if (!f->modified && !f->writer && f->path && vol_lock(f->vol, NULL) == 0) {
        long i = man_find(&f->vol->man, f->path);
        if (i >= 0 && memcmp(f->vol->man.e[i].id, f->id, SCP_FILEID_LEN) == 0 &&
            memcmp(f->vol->man.e[i].root, f->c_root, SCP_HASH_LEN) != 0)
            reloaded = file_load(f, &f->vol->man.e[i], NULL) == 0;
        vol_unlock(f->vol);
    }
    pthread_rwlock_unlock(&f->rw);
    return reloaded;
}

static ssize_t locked_pread(scp_file *f, void *buf, size_t n, uint64_t off, scp_err *err) {
    scp_err local;
    if (!err) err = &local;
    pthread_rwlock_rdlock(&f->rw);
    ssize_t r = do_pread(f, buf, n, off, err);
    pthread_rwlock_unlock(&f->rw);
    /* Each retry needs the manifest to have moved on, so this ends unless another process
     * keeps committing; then give up after a few rounds rather than starve. */
    for (int tries = 0; r < 0 && err->code == SCP_E_INTEGRITY && tries < 16 && file_refresh(f);
         tries++) {
        pthread_rwlock_rdlock(&f->rw);
        r = do_pread(f, buf, n, off, err);
        pthread_rwlock_unlock(&f->rw);
    }
    return r;
}

ssize_t scp_vfile_pread(scp_vfile *h, void *buf, size_t n, uint64_t off, scp_err *err) {
    if (check_handle(h, 0, err) < 0) return -1;
    return locked_pread(h->f, buf, n, off, err);
}

ssize_t scp_vfile_pin(scp_vfile *h, uint64_t off, size_t n, struct iovec *iov, int maxiov,
                      int *niov, scp_err *err) {
    *niov = 0;
    if (check_handle(h, 0, err) < 0) return -1;
    scp_file *f = h->f;
    uint32_t cs = f->vol->cs;
    size_t got = 0;
    int k = 0;
    pthread_rwlock_rdlock(&f->rw);
    n = off < f->size && !f->unloaded ? (n < f->size - off ? n : (size_t)(f->size - off)) : 0;
    pthread_mutex_lock(&f->pc_mu);
    while (got < n && k < maxiov) {
        uint64_t i = (off + got) / cs, v;
        size_t in = (size_t)((off + got) % cs), len = cs - in;
        if (len > n - got) len = n - got;
        if (u64map_get(&f->dirty, i, NULL) || !u64map_get(&f->pc, i, &v)) break;
        struct pchunk *c = (struct pchunk *)(uintptr_t)v;
        if (memcmp(c->ent, ent(f, i), ENT) != 0) break;
        iov[k].iov_base = c->data + in;
        iov[k++].iov_len = len;
        got += len;
    }
    if (k) f->pc_pins++;
    pthread_mutex_unlock(&f->pc_mu);
    pthread_rwlock_unlock(&f->rw);
    *niov = k;
    return (ssize_t)got;
}

void scp_vfile_unpin(scp_vfile *h) {
    pthread_mutex_lock(&h->f->pc_mu);
    h->f->pc_pins--;
    pthread_mutex_unlock(&h->f->pc_mu);
}

ssize_t scp_vfile_pwrite(scp_vfile *h, const void *buf, size_t n, uint64_t off, scp_err *err) {
    if (check_handle(h, 1, err) < 0) return -1;
    pthread_rwlock_wrlock(&h->f->rw);
    /* The end of the file is known only once the writer's state is the newest. */
    if ((h->flags & O_APPEND) && n && acquire_writer(h->f, err) < 0) {
        pthread_rwlock_unlock(&h->f->rw);
        return -1;
    }
    if (h->flags & O_APPEND) off = h->f->size;
    ssize_t r = do_pwrite(h->f, buf, n, off, err);
    pthread_rwlock_unlock(&h->f->rw);
    return r;
}

ssize_t scp_vfile_read(scp_vfile *h, void *buf, size_t n, scp_err *err) {
    if (check_handle(h, 0, err) < 0) return -1;
    pthread_mutex_lock(&h->cur_mu);
    ssize_t r = locked_pread(h->f, buf, n, h->cursor, err);
    if (r > 0) h->cursor += (uint64_t)r;
    pthread_mutex_unlock(&h->cur_mu);
    return r;
}

ssize_t scp_vfile_write(scp_vfile *h, const void *buf, size_t n, scp_err *err) {
    if (check_handle(h, 1, err) < 0) return -1;
    pthread_mutex_lock(&h->cur_mu);
    pthread_rwlock_wrlock(&h->f->rw);
    ssize_t r = (h->flags & O_APPEND) && n ? acquire_writer(h->f, err) : 0;
    if ((h->flags & O_APPEND) && n && r == 0) h->cursor = h->f->size;
    if (r == 0) r = do_pwrite(h->f, buf, n, h->cursor, err);
    /* under rw, which a fork waits for: a child sees the bytes and the cursor move together */
    if (r > 0) h->cursor += (uint64_t)r;
    pthread_rwlock_unlock(&h->f->rw);
    pthread_mutex_unlock(&h->cur_mu);
    return r;
}

int64_t scp_vfile_seek(scp_vfile *h, int64_t off, int whence, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    pthread_mutex_lock(&h->cur_mu);
    int64_t base = whence == SEEK_SET   ? 0
                   : whence == SEEK_CUR ? (int64_t)h->cursor
                   : whence == SEEK_END ? (int64_t)scp_vfile_size(h)
                                        : -1;
    int64_t r;
    if (base < 0 || (off < 0 && -off > base) || (off > 0 && base > INT64_MAX - off)) {
        r = scp_fail(err, SCP_E_INVAL, EINVAL, "invalid seek");
    } else {
        h->cursor = (uint64_t)(base + off);
        r = (int64_t)h->cursor;
    }
    pthread_mutex_unlock(&h->cur_mu);
    return r;
}

int scp_vfile_truncate(scp_vfile *h, uint64_t size, scp_err *err) {
    if (check_handle(h, 1, err) < 0) return -1;
    if (size > (UINT64_C(1) << 50))
        return scp_fail(err, SCP_E_INVAL, EFBIG, "size beyond the maximum file size");
    pthread_rwlock_wrlock(&h->f->rw);
    int rc = acquire_writer(h->f, err);
    if (rc == 0) rc = set_size(h->f, size, err);
    pthread_rwlock_unlock(&h->f->rw);
    return rc;
}

uint64_t scp_vfile_size(scp_vfile *h) { return __atomic_load_n(&h->f->size, __ATOMIC_RELAXED); }

int scp_vfile_stat(scp_vfile *h, scp_vstat *st, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    vol_after_fork_check(h->f->vol);
    scp_volume *v = h->f->vol;
    if (vol_lock_read(v, err) < 0) return -1;
    memset(st, 0, sizeof *st);
    long i = h->f->path ? man_find(&v->man, h->f->path) : -1;
    if (i >= 0) {
        st->mode = v->man.e[i].mode;
        st->uid = v->man.e[i].uid;
        st->gid = v->man.e[i].gid;
        st->mtime_ns = v->man.e[i].mtime_ns;
    }
    vol_unlock(v);
    st->type = SCP_VTYPE_FILE;
    st->size = scp_vfile_size(h);
    st->ino = scp_get_u64(h->f->id) >> 1;
    return 0;
}

int scp_vfile_fsync(scp_vfile *h, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    vol_after_fork_check(h->f->vol);
    pthread_rwlock_wrlock(&h->f->rw);
    int rc = commit(h->f, err);
    pthread_rwlock_unlock(&h->f->rw);
    return rc;
}

/* ---- verification ------------------------------------------------------------------------- */

long file_verify(scp_file *f, scp_verify_problem_cb cb, void *ctx, uint64_t *done,
                 scp_verify_progress_cb pcb, uint64_t total) {
    uint32_t cs = f->vol->cs;
    long problems = 0;
    uint8_t *pt = malloc(cs), *ct = malloc(cs);
    if (!pt || !ct) {
        free(pt);
        free(ct);
        return -1;
    }
    pthread_rwlock_rdlock(&f->rw);
    uint64_t n = nchunks_of(f->c_size, cs);
    for (uint64_t i = 0; i < n; i++) {
        scp_err e;
        if (!is_hole(ent(f, i)) && !u64map_get(&f->jmap, i, NULL)) {
            ssize_t r = scp_pread_full(f->fd_d, ct, cs, i * cs);
            if (r != (ssize_t)cs) {
                integrity_fail(f, i, "is missing", &e);
                if (cb) cb(ctx, f->path, (int64_t)(i * cs), e.msg);
                problems++;
            } else if (open_chunk(f, i, ct, pt, &e) < 0) {
                if (cb) cb(ctx, f->path, (int64_t)(i * cs), e.msg);
                problems++;
            }
        }
        *done += cs;
        if (pcb && (i & 255) == 0) pcb(ctx, *done, total);
    }
    pthread_rwlock_unlock(&f->rw);
    scp_wipe(pt, cs);
    free(pt);
    free(ct);
    return problems;
}
