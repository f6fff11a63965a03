/* volume/marena.c - memory for a large manifest's entries and their strings (marena.h).
 *
 * An arena is one anonymous mapping: a header (struct marena), then the pieces, cut in order
 * and never reused. `live` counts the pieces handed out and not freed, plus one for the hold
 * (the arena's maker, then the manifest it is handed to). The registry lists the live arenas
 * so that marena_free can tell a piece from malloc'd memory; it holds at most REG_MAX, and
 * past that marena_new says no and the caller uses malloc, as it does for a small manifest.
 */
#include "volume/marena.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

struct marena {
    uintptr_t lo, hi;   /* the pieces' span: [lo, hi), fixed while the arena lives */
    size_t used;        /* bytes cut from lo so far (only the holder's thread cuts) */
    size_t map_len;     /* the whole mapping, header included */
    atomic_long live;   /* pieces not freed + the hold */
    int slot;           /* its registry slot */
};

#define REG_MAX 16

/* The registry, without a lock: marena_free runs wherever a manifest is freed, also in fork
 * handlers (the volume's and the shield's, in an order this file does not choose), so a lock
 * held by another thread across a fork, or taken twice by a handler, would hang the process.
 * A slot is claimed by a compare-and-swap of its arena pointer; its span is published under a
 * sequence word (a seqlock: odd while written). A reader takes a slot's span only from an even,
 * unchanged word, and skips an odd slot: a slot is written only while its arena has no piece
 * out (being registered, before marena_new returns it, or taken out, when its count reached
 * zero), so no live piece lies in it. A fork in the middle of a write leaves the child that
 * slot odd for good: a leaked slot, never a wrong answer. */
static struct {
    _Atomic(marena *) a;
    atomic_uint seq;
    _Atomic uintptr_t lo, hi;
} reg[REG_MAX];

static void slot_publish(int i, uintptr_t lo, uintptr_t hi) {
    atomic_fetch_add(&reg[i].seq, 1); /* odd */
    atomic_store(&reg[i].lo, lo);
    atomic_store(&reg[i].hi, hi);
    atomic_fetch_add(&reg[i].seq, 1); /* even */
}

marena *marena_new(size_t bytes) {
    size_t hdr = (sizeof(marena) + 63) & ~(size_t)63;
    if (bytes > SIZE_MAX / 2) return NULL;
    size_t len = hdr + bytes;
    /* (populated in one call: the point of the arena; the zero pages are what calloc gave) */
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p == MAP_FAILED) return NULL;
    marena *a = p;
    a->lo = (uintptr_t)p + hdr;
    a->hi = (uintptr_t)p + len;
    a->used = 0;
    a->map_len = len;
    atomic_init(&a->live, 1);
    a->slot = -1;
    for (int i = 0; i < REG_MAX && a->slot < 0; i++) {
        marena *none = NULL;
        if (atomic_compare_exchange_strong(&reg[i].a, &none, a)) a->slot = i;
    }
    if (a->slot < 0) {
        munmap(p, len);
        return NULL;
    }
    slot_publish(a->slot, a->lo, a->hi);
    return a;
}

void *marena_alloc(marena *a, size_t n) {
    if (!a) return NULL;
    size_t need = marena_piece(n);
    if (need < n || need > a->hi - a->lo - a->used) return NULL;
    void *p = (void *)(a->lo + a->used);
    a->used += need;
    atomic_fetch_add_explicit(&a->live, 1, memory_order_relaxed);
    return p;
}

int marena_owns(const marena *a, const void *p) {
    return a && (uintptr_t)p >= a->lo && (uintptr_t)p < a->hi;
}

/* Count n off a; at zero take it out of the registry and unmap it. */
static void count_off(marena *a, long n) {
    long before = atomic_fetch_sub_explicit(&a->live, n, memory_order_acq_rel);
    assert(before >= n);
    if (before != n) return;
    int i = a->slot;
    slot_publish(i, 0, 0);
    atomic_store(&reg[i].a, NULL);
    munmap(a, a->map_len);
}

void marena_drop(marena *a, size_t pieces) {
    if (a) count_off(a, (long)pieces + 1);
}

/* The live arena p is a piece of, or NULL (see the registry above). */
static marena *owner_of(const void *p) {
    uintptr_t x = (uintptr_t)p;
    for (int i = 0; i < REG_MAX; i++) {
        unsigned s1 = atomic_load(&reg[i].seq);
        if (s1 & 1) continue;
        uintptr_t lo = atomic_load(&reg[i].lo), hi = atomic_load(&reg[i].hi);
        marena *a = atomic_load(&reg[i].a);
        if (atomic_load(&reg[i].seq) != s1) {
            i--; /* (written meanwhile: read it again) */
            continue;
        }
        if (x >= lo && x < hi) return a;
    }
    return NULL;
}

void marena_free(void *p) {
    if (!p) return;
    marena *a = owner_of(p);
    if (a) count_off(a, 1);
    else free(p);
}
