/* volume/cache.c - the plaintext cache: authenticated chunks kept in process memory, each
 * valid while the table entry it was decrypted under is the file's current one.
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
#include "volume/vstats.h"

#define ENT SCP_CHUNK_ENTRY_LEN

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
static size_t pc_used;  /* bytes held by all files' entries (atomic) */
static size_t pc_limit; /* the budget, set once by pc_init */
static void pc_init(void) {
    const char *s = getenv("SCP_VOLUME_CACHE_MB");
    pc_limit = (size_t)(s && *s ? strtoul(s, NULL, 10) : 64) << 20;
}

void pc_setup(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, pc_init);
}

void pc_free(scp_file *f, struct pchunk *c) {
    size_t sz = sizeof *c + f->vol->cs;
    scp_wipe(c, sz);
    free(c);
    __atomic_sub_fetch(&pc_used, sz, __ATOMIC_RELAXED);
}

/* Copy bytes [in, in + len) of chunk i from the cache if its entry is current; 1 on a hit. */
int pc_get(scp_file *f, uint64_t i, size_t in, size_t len, uint8_t *out) {
    uint64_t v;
    int hit = 0;
    pthread_mutex_lock(&f->pc_mu);
    if (u64map_get(&f->pc, i, &v)) {
        const struct pchunk *c = (const struct pchunk *)(uintptr_t)v;
        if (memcmp(c->ent, ent(f, i), ENT) == 0) {
            if (out) memcpy(out, c->data + in, len);
            hit = 1;
            VSTAT(pc_hit);
            /* (a probe without out is followed by the read that copies: counted there) */
            if (out) __atomic_add_fetch(&f->pc_hits, 1, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&f->pc_mu);
    return hit;
}

/* A new entry within the budget, or NULL. */
static struct pchunk *pc_alloc(scp_file *f) {
    size_t sz = sizeof(struct pchunk) + f->vol->cs;
    if (__atomic_add_fetch(&pc_used, sz, __ATOMIC_RELAXED) <= pc_limit) {
        struct pchunk *c = malloc(sz);
        if (c) return c;
    }
    __atomic_sub_fetch(&pc_used, sz, __ATOMIC_RELAXED);
    return NULL;
}

/* Whether chunks of f are worth caching: a file whose cached chunks are not read again
 * (PostgreSQL keeps its own buffer cache, and reads a page from the file only once it has
 * dropped it: pgbench hit 0.004 times per transaction while filling some nine entries, each a
 * malloc, its page faults as the budget filled, and a copy of the chunk) stops filling
 * entries once PC_JUDGE fills saw fewer than one hit in PC_HIT_MIN, but one take in PC_PROBE
 * still fills, and the counts are halved every PC_DECAY fills, so that a file read again
 * later is cached again. Only a speed matter: a take refused decrypts the chunk, as with the
 * cache off. */
#define PC_JUDGE 512u
#define PC_HIT_MIN 16u
#define PC_PROBE 64u
#define PC_DECAY 4096u
static int pc_useful(scp_file *f) {
    uint32_t fills = __atomic_load_n(&f->pc_fills, __ATOMIC_RELAXED);
    uint32_t hits = __atomic_load_n(&f->pc_hits, __ATOMIC_RELAXED);
    if (fills < PC_JUDGE || (uint64_t)hits * PC_HIT_MIN >= fills) return 1;
    if (__atomic_fetch_add(&f->pc_skips, 1, __ATOMIC_RELAXED) % PC_PROBE == 0) return 1;
    VSTAT(pc_skip);
    return 0;
}

/* An entry of f's was taken to be filled (counted for pc_useful). */
static struct pchunk *pc_filled(scp_file *f, struct pchunk *c) {
    if (!c) return NULL;
    VSTAT(pc_fill);
    if (__atomic_add_fetch(&f->pc_fills, 1, __ATOMIC_RELAXED) >= PC_DECAY) {
        /* (racing threads may halve twice or lose a count: an estimate either way) */
        __atomic_store_n(&f->pc_fills, PC_DECAY / 2, __ATOMIC_RELAXED);
        __atomic_store_n(&f->pc_hits, __atomic_load_n(&f->pc_hits, __ATOMIC_RELAXED) / 2,
                         __ATOMIC_RELAXED);
    }
    return c;
}

/* One of f's own entries taken out of the cache to be filled again, or NULL. */
static struct pchunk *pc_recycle(scp_file *f) {
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

/* An entry to fill for f: a new one within the budget, else one of f's own taken out of the
 * cache; NULL if neither (or the cache is off). The caller passes it to pc_put or
 * pc_free. */
struct pchunk *pc_take(scp_file *f) {
    /* A file larger than a quarter of the budget is streamed, not cached: filling and recycling
     * entries for it costs a third of the read speed (bench/volume: 512 MiB sequential and
     * random reads), and it would push out the small hot files the cache is for. */
    if (!pc_limit || __atomic_load_n(&f->size, __ATOMIC_RELAXED) > pc_limit / 4 || !pc_useful(f))
        return NULL;
    struct pchunk *c = pc_alloc(f);
    return pc_filled(f, c ? c : pc_recycle(f));
}

/* pc_take for a chunk just written back (small write-backs only, commit.c). A file too large
 * to cache keeps a few of its written chunks all the same (PC_WRITTEN_BIG, recycled among
 * themselves): a log appended in pieces smaller than a chunk rewrites the chunk at its end at
 * every commit (InnoDB's redo log, a 96 MiB file written in 512-byte blocks on a volume), and
 * without the entry each commit read and decrypted that chunk again. Streamed reads of the
 * file still cache nothing. */
#define PC_WRITTEN_BIG 4
struct pchunk *pc_take_written(scp_file *f) {
    if (!pc_limit || __atomic_load_n(&f->size, __ATOMIC_RELAXED) <= pc_limit / 4) return pc_take(f);
    if (!pc_useful(f)) return NULL;
    pthread_mutex_lock(&f->pc_mu);
    size_t held = u64map_count(&f->pc);
    pthread_mutex_unlock(&f->pc_mu);
    struct pchunk *c = held < PC_WRITTEN_BIG ? pc_alloc(f) : NULL;
    return pc_filled(f, c ? c : pc_recycle(f));
}

/* Cache c (whose data is chunk i's authenticated plaintext) under chunk i's current entry. */
void pc_put(scp_file *f, uint64_t i, struct pchunk *c) {
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

/* Chunk i was just written back with plaintext pt (under its new entry, already in the table):
 * if the cache holds an entry for i, that entry takes pt and the new entry in place; 1 if so.
 * The commit path's write-back (commit.c, writeback_cache) used to fill a second entry and free
 * the first: a malloc, a wipe of the old plaintext and a free per written chunk, two per sqlite
 * WAL transaction (its frame straddles two chunks, each rewritten by the next frame too).
 * Overwriting the old plaintext in place replaces the wipe: no copy of it is left in freed
 * memory. Not while pins are out (scp_vfile_pin: a reader's iovecs point into entries' data,
 * which must not change under it); then the caller takes the old path, which keeps the pinned
 * entry alive. Under pc_mu, like every reader's comparison of an entry with the table: a
 * reader sees the old plaintext with the old entry or the new with the new, never a mix. */
int pc_refill(scp_file *f, uint64_t i, const uint8_t *pt) {
    uint64_t v;
    int done = 0;
    pthread_mutex_lock(&f->pc_mu);
    if (!f->pc_pins && u64map_get(&f->pc, i, &v)) {
        struct pchunk *c = (struct pchunk *)(uintptr_t)v;
        memcpy(c->data, pt, f->vol->cs);
        memcpy(c->ent, ent(f, i), ENT);
        done = 1;
    }
    pthread_mutex_unlock(&f->pc_mu);
    return done;
}

void pc_drop(scp_file *f) {
    if (u64map_count(&f->pc)) VSTAT(pc_drop);
    size_t pos = 0;
    uint64_t k, v;
    while (u64map_next(&f->pc, &pos, &k, &v)) pc_free(f, (struct pchunk *)(uintptr_t)v);
    u64map_free(&f->pc);
}

