/* fuzz/fuzz_volhdr.c - scp_volhdr_parse on arbitrary bytes.
 *
 * Asserts: no memory error; a header that parses is exactly 80 bytes, has a supported version
 * and a valid chunk size, and encodes back to the very bytes it came from (the MAC covers bytes
 * 0..47, so a parser that accepted two spellings of one header would be a problem); a refusal
 * is -1 with a format or integrity code, errno EIO and a message. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "volume/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    scp_volhdr h;
    scp_err err;
    memset(&h, 0, sizeof h);
    memset(&err, 0, sizeof err);
    int rc = scp_volhdr_parse(data, size, &h, &err);
    if (rc == 0) {
        FUZZ_CHECK(size == SCP_VOLHDR_LEN);
        FUZZ_CHECK(h.version >= SCP_FMT_VERSION_MIN && h.version <= SCP_FMT_VERSION);
        uint32_t cs = h.chunk_size;
        FUZZ_CHECK(cs >= 4096 && cs <= 65536 && (cs & (cs - 1)) == 0);
        uint8_t out[SCP_VOLHDR_LEN];
        scp_volhdr_encode(&h, out);
        FUZZ_CHECK(memcmp(out, data, SCP_VOLHDR_LEN) == 0);
        scp_volhdr h2;
        FUZZ_CHECK(scp_volhdr_parse(out, sizeof out, &h2, NULL) == 0);
        FUZZ_CHECK(memcmp(&h, &h2, sizeof h) == 0);
    } else {
        FUZZ_CHECK(rc == -1);
        FUZZ_CHECK(err.code == SCP_E_FORMAT || err.code == SCP_E_INTEGRITY);
        FUZZ_CHECK(err.sys == EIO);
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL && err.msg[0] != '\0');
    }
    return 0;
}
