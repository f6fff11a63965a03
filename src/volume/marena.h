/* volume/marena.h - memory for a large manifest's entries and their strings.
 *
 * A manifest parsed or copied whole was an allocation per entry and one per path: on a volume
 * of 30,000 entries about 60,000 allocations and 1,300 pages, each page faulted in on its own
 * (about 2.5 us each here), twice per load (the manifest and the on-disk copy the next delta is
 * computed against). That was most of what an exec'd image pays at its first volume call. An
 * arena is one mapping, populated in one call (MAP_POPULATE), from which those pieces are cut
 * in order.
 *
 * Each piece stays freeable on its own, since the manifest code frees and replaces entries and
 * paths one at a time: marena_free of a pointer inside a live arena counts the piece off, and
 * the arena is unmapped when its last piece and its holder are gone; of any other pointer it
 * is free(). So whatever frees an entry, path or target that a manifest holds calls
 * marena_free (or the manifest helpers that do: scp_manifest_free, man_remove,
 * man_entry_clear), never free; one made with malloc or strdup and not yet in a manifest
 * (a new name whose insert failed) is free()'s.
 *
 * Threads and fork: the registry of live arenas takes no lock (marena.c says why and how); a
 * piece is freed by whoever holds it, as with malloc. An arena is filled only by the thread
 * that made it, before the manifest that holds it is shared.
 */
#ifndef SCP_VOLUME_MARENA_H
#define SCP_VOLUME_MARENA_H

#include <stddef.h>

typedef struct marena marena;

/* Manifests of fewer entries are allocated piece by piece, as before: an arena's mapping and
 * registry cost more than their page faults. */
#define MARENA_MIN_ENTRIES 512

/* An arena of at least bytes, populated; NULL when it cannot be made or the registry is full
 * (the caller then uses malloc). The caller holds it: it lives at least until the hold is
 * dropped (marena_drop). */
marena *marena_new(size_t bytes);
/* What a piece of n bytes takes of an arena: n rounded up to MARENA_ALIGN (to size one). */
#define MARENA_ALIGN 8 /* (entries hold 64-bit fields and pointers; strings need none) */
static inline size_t marena_piece(size_t n) {
    return (n + MARENA_ALIGN - 1) & ~(size_t)(MARENA_ALIGN - 1);
}
/* n bytes from a (MARENA_ALIGN-aligned, zeroed), or NULL when a is NULL or has no room left:
 * the caller then uses malloc or calloc. Only the thread that holds a fills it. */
void *marena_alloc(marena *a, size_t n);
/* Is p one of a's pieces? (no lock: a's bounds do not change while it is held) */
int marena_owns(const marena *a, const void *p);
/* Drop the holder's hold and count off `pieces` of a's pieces that the holder freed without
 * marena_free (a manifest's bulk free); a is unmapped when no piece and no hold is left. NULL:
 * no-op. */
void marena_drop(marena *a, size_t pieces);
/* Free p: a piece of a live arena, or memory from malloc (free). NULL: no-op. */
void marena_free(void *p);

#endif
