/* fuzz/fuzz_path.c - scp_path_normalize against a reference normalizer.
 *
 * Input: byte 0 picks the output buffer size (the full SCP_MAX_PATH + 1, or a small one from
 * 1 to 127 bytes); the rest is the path (cut at its first NUL, as a C string would be).
 * Asserts: no memory error (the output buffer is heap-allocated at its exact size); accepted
 * exactly when the reference accepts (components other than "." and "..", each at most
 * SCP_MAX_NAME bytes, joined length at most SCP_MAX_PATH and less than the buffer size); the
 * output equals the components joined by single '/' (no leading, trailing or doubled '/');
 * normalizing is idempotent; errors are SCP_E_INVAL with EINVAL or ENAMETOOLONG. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "volume/format.h"

/* Returns 0 and fills out (malloc'd) with the normalized path, or -1. */
static int ref_normalize(const char *in, size_t out_size, char **out) {
    size_t n = strlen(in);
    char *o = malloc(n + 1);
    FUZZ_CHECK(o != NULL);
    size_t ol = 0;
    const char *p = in;
    while (*p) {
        if (*p == '/') {
            p++;
            continue;
        }
        const char *s = p;
        while (*p && *p != '/') p++;
        size_t cl = (size_t)(p - s);
        if ((cl == 1 && s[0] == '.') || (cl == 2 && s[0] == '.' && s[1] == '.') ||
            cl > SCP_MAX_NAME) {
            free(o);
            return -1;
        }
        if (ol) o[ol++] = '/';
        memcpy(o + ol, s, cl);
        ol += cl;
    }
    o[ol] = '\0';
    if (ol > SCP_MAX_PATH || ol + 1 > out_size) {
        free(o);
        return -1;
    }
    *out = o;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t out_size = data[0] & 0x80 ? (size_t)(data[0] & 0x7f) + 1 : SCP_MAX_PATH + 1;
    char *in = malloc(size);
    FUZZ_CHECK(in != NULL);
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    char *out = malloc(out_size);
    FUZZ_CHECK(out != NULL);
    scp_err err;
    int rc = scp_path_normalize(in, out, out_size, &err);
    char *ref = NULL;
    int rrc = ref_normalize(in, out_size, &ref);
    FUZZ_CHECK(rc == rrc);
    if (rc == 0) {
        FUZZ_CHECK(strcmp(out, ref) == 0);
        size_t ol = strlen(out);
        FUZZ_CHECK(ol < out_size && ol <= SCP_MAX_PATH);
        FUZZ_CHECK(ol == 0 || (out[0] != '/' && out[ol - 1] != '/'));
        FUZZ_CHECK(strstr(out, "//") == NULL);
        char *again = malloc(out_size);
        FUZZ_CHECK(again != NULL);
        FUZZ_CHECK(scp_path_normalize(out, again, out_size, NULL) == 0);
        FUZZ_CHECK(strcmp(again, out) == 0);
        free(again);
    } else {
        FUZZ_CHECK(rc == -1 && err.code == SCP_E_INVAL);
        FUZZ_CHECK(err.sys == EINVAL || err.sys == ENAMETOOLONG);
    }
    free(ref);
    free(out);
    free(in);
    return 0;
}
