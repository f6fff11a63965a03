/* common/u64map.h - a small open-addressing hash map from uint64_t keys to uint64_t values.
 * Not thread-safe: the owner locks. Used for per-file chunk caches and journal indexes. */
#ifndef SCP_COMMON_U64MAP_H
#define SCP_COMMON_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct u64map {
    uint64_t *keys;
    uint64_t *vals;
    uint8_t *state; /* 0 empty, 1 used, 2 deleted */
    size_t cap, used, tomb;
} u64map;

/* All functions return -1 only on allocation failure. */
void u64map_init(u64map *m);
void u64map_free(u64map *m);
void u64map_clear(u64map *m);
int u64map_get(const u64map *m, uint64_t key, uint64_t *val); /* 1 found, 0 not */
int u64map_put(u64map *m, uint64_t key, uint64_t val);
int u64map_del(u64map *m, uint64_t key, uint64_t *old); /* 1 removed, 0 absent */
/* Iterate: start with *pos = 0; returns 1 and sets key/val while entries remain. Deleting the
 * current key during iteration is allowed. */
int u64map_next(const u64map *m, size_t *pos, uint64_t *key, uint64_t *val);
static inline size_t u64map_count(const u64map *m) { return m->used; }

#endif
