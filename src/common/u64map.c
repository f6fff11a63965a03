/* common/u64map.c - see u64map.h. Linear probing, power-of-two capacity, max load 1/2. */
#include "common/u64map.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_of(uint64_t k, size_t cap) {
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

void u64map_init(u64map *m) { memset(m, 0, sizeof *m); }

void u64map_free(u64map *m) {
    free(m->keys);
    free(m->vals);
    free(m->state);
    memset(m, 0, sizeof *m);
}

void u64map_clear(u64map *m) {
    if (m->state) memset(m->state, 0, m->cap);
    m->used = m->tomb = 0;
}

static int find(const u64map *m, uint64_t key, size_t *at) {
    if (!m->cap) return 0;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->state[i] == 0) return 0;
        if (m->state[i] == 1 && m->keys[i] == key) {
            *at = i;
            return 1;
        }
    }
}

int u64map_get(const u64map *m, uint64_t key, uint64_t *val) {
    size_t i;
    if (!find(m, key, &i)) return 0;
    if (val) *val = m->vals[i];
    return 1;
}

static int grow(u64map *m) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    if ((m->used + 1) * 4 < m->cap) ncap = m->cap; /* only tombstones to clean */
    u64map n = {calloc(ncap, 8), calloc(ncap, 8), calloc(ncap, 1), ncap, 0, 0};
    if (!n.keys || !n.vals || !n.state) {
        u64map_free(&n);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->state[i] == 1) {
            size_t j = slot_of(m->keys[i], ncap);
            while (n.state[j]) j = (j + 1) & (ncap - 1);
            n.state[j] = 1;
            n.keys[j] = m->keys[i];
            n.vals[j] = m->vals[i];
            n.used++;
        }
    u64map_free(m);
    *m = n;
    return 0;
}

int u64map_put(u64map *m, uint64_t key, uint64_t val) {
    size_t i;
    if (find(m, key, &i)) {
        m->vals[i] = val;
        return 0;
    }
    if ((m->used + m->tomb + 1) * 2 > m->cap && grow(m) < 0) return -1;
    for (i = slot_of(key, m->cap); m->state[i] == 1; i = (i + 1) & (m->cap - 1)) {
    }
    if (m->state[i] == 2) m->tomb--;
    m->state[i] = 1;
    m->keys[i] = key;
    m->vals[i] = val;
    m->used++;
    return 0;
}

int u64map_del(u64map *m, uint64_t key, uint64_t *old) {
    size_t i;
    if (!find(m, key, &i)) return 0;
    if (old) *old = m->vals[i];
    m->state[i] = 2;
    m->used--;
    m->tomb++;
    return 1;
}

int u64map_next(const u64map *m, size_t *pos, uint64_t *key, uint64_t *val) {
    for (; *pos < m->cap; (*pos)++)
        if (m->state[*pos] == 1) {
            *key = m->keys[*pos];
            if (val) *val = m->vals[*pos];
            (*pos)++;
            return 1;
        }
    return 0;
}
