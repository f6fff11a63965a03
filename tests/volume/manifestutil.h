/* tests/volume/manifestutil.h - manifests made by hand for the parser's tests (links, marena). */
#ifndef SCP_TESTS_VOLUME_MANIFESTUTIL_H
#define SCP_TESTS_VOLUME_MANIFESTUTIL_H

#include "testutil.h"
#include "volume/format.h"

static inline int tu_cmp_entp(const void *a, const void *b) {
    return strcmp((*(scp_mentry *const *)a)->path, (*(scp_mentry *const *)b)->path);
}

/* ep[i] = &ent[i] for the n entries (paths set by the caller), each given a distinct id (i in
 * its bytes 3-10), then ep sorted by path, as a manifest keeps its entries. */
static inline void tu_entries_sorted(scp_mentry *ent, scp_mentry **ep, size_t n) {
    for (size_t i = 0; i < n; i++) {
        memcpy(ent[i].id + 3, &i, sizeof i);
        ep[i] = &ent[i];
    }
    qsort(ep, n, sizeof *ep, tu_cmp_entp);
}

/* Encode the manifest of the n sorted entries ep and parse the body into *out: the parse's
 * result (0, or -1 with *e set and *out empty). */
static inline int tu_reparse(scp_mentry **ep, size_t n, scp_manifest *out, scp_err *e) {
    scp_manifest m = {.e = ep, .n = n, .cap = n};
    uint8_t *body;
    size_t len;
    REQUIRE_OK(scp_manifest_encode(&m, &body, &len, e), *e);
    int rc = scp_manifest_parse(body, len, out, e);
    free(body);
    return rc;
}

#endif
