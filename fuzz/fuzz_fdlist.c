/* fuzz/fuzz_fdlist.c - the shield's filter of a descriptor-directory listing
 * (src/shield/fdlist.c, compiled into this harness) over getdents64 records from the host
 * kernel, which the threat model does not trust.
 *
 * Input: byte 0 picks which slots hold a protected file (bit i: slot i of the first eight,
 * numbers 2048-2055); the rest is the buffer as getdents64 returned it, well formed or not.
 * Asserts, against a reference walk of the same buffer: no memory error; the result is at most
 * the input's length; it is exactly the input's records, in order, up to the first one that is
 * not well formed (length below 20 or past the buffer, or a name without its NUL), less those
 * whose name is a number (decimal, no leading zero) of the volume library's zone (1536-2047) or of the reserved range
 * (2048-3071) that is not a slot holding a file; every record kept is byte for byte the input's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "../src/shield/fdlist.c"

/* what fdlist.c uses of the rest of the shield */
struct sh_state sh;
long sh_gate(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    (void)nr, (void)a1, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6;
    return -1;
}
int sh_is_prot(long fd) { return fd >= sh.lo && fd < sh.hi; }

static pfile *slots[1008];
static pfile one;

/* the reference: is `name` (NUL-terminated) hidden? */
static int ref_hidden(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 9 || (name[0] == '0' && n > 1)) return 0;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        v = v * 10 + (name[i] - '0');
    }
    if (v < 1536 || v >= 3072) return 0;
    if (v >= 2048 && v < 2048 + 1008) return slots[v - 2048] == NULL;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    sh.active = 1;
    sh.lo = sh.base = 2048;
    sh.hi = 3072;
    sh.nslots = 1008;
    sh.slot = slots;
    for (int i = 0; i < 8; i++) slots[i] = (data[0] >> i) & 1 ? &one : NULL;
    size_t len = size - 1;
    uint8_t *in = malloc(len ? len : 1), *buf = malloc(len ? len : 1);
    FUZZ_CHECK(in && buf);
    memcpy(in, data + 1, len);
    memcpy(buf, data + 1, len);
    size_t got = sh_fdlist_filter(buf, len);
    FUZZ_CHECK(got <= len);
    size_t at = 0, out = 0;
    while (at + 20 <= len) {
        unsigned short rl;
        memcpy(&rl, in + at + 16, sizeof rl);
        if (rl < 20 || rl > len - at || !memchr(in + at + 19, 0, rl - 19u)) break;
        if (!ref_hidden((const char *)in + at + 19)) {
            FUZZ_CHECK(out + rl <= got);
            FUZZ_CHECK(memcmp(buf + out, in + at, rl) == 0);
            out += rl;
        }
        at += rl;
    }
    FUZZ_CHECK(out == got);
    free(in);
    free(buf);
    return 0;
}
