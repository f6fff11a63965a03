/* shield/manifest.c - the trusted-file manifest's wire form (scp/shield.h), shared by the
 * launcher, which writes it, and the shield, which reads it. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "scp/shield.h"

#define T_MAGIC "SCPT1\n"
#define T_HEAD 10u                      /* magic + u32 count */
#define T_FIXED (32u + 5u * 8u + 4u)    /* digest, five u64, path length */

static void put(char *p, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[i] = (char)(uint8_t)(v >> (8 * i));
}
static uint64_t get(const char *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = v << 8 | (uint8_t)p[i];
    return v;
}

int scp_shield_trusted_add(char **buf, size_t *len, const scp_shield_trusted *e) {
    const char *given = e->given ? e->given : e->path;
    size_t pl = strlen(e->path) + 1, gl = strlen(given) + 1;
    if (pl > PATH_MAX || gl > PATH_MAX || e->path[0] != '/' || given[0] != '/') return -1;
    size_t head = *len ? 0 : T_HEAD;
    uint32_t n = *len ? (uint32_t)get(*buf + 6, 4) : 0;
    if (n >= SCP_SHIELD_TRUSTED_MAX) return -1;
    char *nb = realloc(*buf, *len + head + T_FIXED + pl + 4 + gl);
    if (!nb) return -1;
    if (head) memcpy(nb, T_MAGIC, 6);
    char *p = nb + *len + head;
    memcpy(p, e->digest, 32);
    put(p + 32, e->size, 8);
    put(p + 40, e->dev, 8);
    put(p + 48, e->ino, 8);
    put(p + 56, (uint64_t)e->mtime_ns, 8);
    put(p + 64, (uint64_t)e->ctime_ns, 8);
    put(p + 72, pl, 4);
    memcpy(p + T_FIXED, e->path, pl);
    put(p + T_FIXED + pl, gl, 4);
    memcpy(p + T_FIXED + pl + 4, given, gl);
    put(nb + 6, n + 1, 4);
    *buf = nb;
    *len += head + T_FIXED + pl + 4 + gl;
    return 0;
}

/* A NUL-terminated absolute path of length-with-NUL l at p (inside the buffer). */
static int good_path(const char *p, uint64_t l) { return l >= 2 && l <= PATH_MAX && p[0] == '/' && memchr(p, 0, l) == p + l - 1; }

long scp_shield_trusted_parse(const char *buf, size_t len, scp_shield_trusted *out, size_t max) {
    if (len < T_HEAD || memcmp(buf, T_MAGIC, 6) != 0) return -1;
    uint64_t n = get(buf + 6, 4);
    if (n > max || n > SCP_SHIELD_TRUSTED_MAX) return -1;
    size_t off = T_HEAD;
    for (uint64_t i = 0; i < n; i++) {
        if (len - off < T_FIXED) return -1;
        const char *p = buf + off;
        uint64_t pl = get(p + 72, 4);
        if (pl > PATH_MAX || len - off - T_FIXED < pl + 4) return -1;
        const char *path = p + T_FIXED;
        uint64_t gl = get(path + pl, 4);
        if (!good_path(path, pl) || gl > PATH_MAX || len - off - T_FIXED - pl - 4 < gl || !good_path(path + pl + 4, gl))
            return -1;
        scp_shield_trusted *e = &out[i];
        memcpy(e->digest, p, 32);
        e->size = get(p + 32, 8);
        e->dev = get(p + 40, 8);
        e->ino = get(p + 48, 8);
        e->mtime_ns = (int64_t)get(p + 56, 8);
        e->ctime_ns = (int64_t)get(p + 64, 8);
        e->path = path;
        e->given = path + pl + 4;
        off += T_FIXED + pl + 4 + gl;
    }
    return off == len ? (long)n : -1;
}
