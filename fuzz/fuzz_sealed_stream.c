/* fuzz/fuzz_sealed_stream.c - the sealed record stream reader (crypto/sealed_stream.c), which
 * `scpctl logs` and the console shield's stdin run on bytes the host controls.
 *
 * Input: byte 0 picks how the rest is split into feeds (1 to 256 bytes each), byte 1 whether
 * the reader expects a kind; the rest is the stream. The key is fixed (all 7s, service "svc",
 * session "sess": the seeds in fuzz/corpus/fuzz_sealed_stream were written with it by
 * `test_sealed_stream --seed DIR`), so mutations of authentic frames reach the ordering logic.
 * Asserts: no memory error; every data event is at most SCP_SS_MAX_DATA bytes and comes from an
 * authenticated record; the counters never exceed the records seen plus gaps; a clean verdict
 * means no problem event was reported; an unsealed line (line form) is no longer than a record
 * line. Both forms: binary frames, and lines ("SCR1:" Base64), the seed clean-lines. */
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "scp/sealed_stream.h"

struct seen {
    uint64_t data, problems;
};

static int on_event(void *arg, const scp_ss_event *ev) {
    struct seen *s = arg;
    if (ev->type == SCP_SS_EV_DATA) {
        FUZZ_CHECK(ev->len >= 1 && ev->len <= SCP_SS_MAX_DATA && ev->stream != NULL);
        s->data++;
    } else if (ev->type == SCP_SS_EV_UNSEALED) {
        FUZZ_CHECK(ev->len < SCP_SS_MAX_LINE && ev->stream == NULL);
    } else if (ev->type == SCP_SS_EV_PROBLEM) {
        FUZZ_CHECK(ev->msg && ev->msg[0]);
        s->problems++;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 2) return 0;
    static uint8_t key[32];
    static int init;
    if (!init) {
        uint8_t sk[32];
        memset(sk, 7, sizeof sk);
        FUZZ_CHECK(scp_ss_service_key(sk, "svc", key, NULL) == 0);
        init = 1;
    }
    size_t chunk = (size_t)data[0] + 1;
    scp_err e;
    scp_ss_reader *r = scp_ss_reader_new(key, "sess", "svc", &e);
    FUZZ_CHECK(r != NULL);
    if (data[1] & 1) scp_ss_reader_expect_kind(r, data[1] >> 1 & 3);
    struct seen s = {0, 0};
    int rc = 0;
    for (size_t off = 2; off < size && rc == 0; off += chunk)
        rc = scp_ss_reader_feed(r, data + off, size - off < chunk ? size - off : chunk, on_event, &s, &e);
    if (rc == 0) rc = scp_ss_reader_finish(r, on_event, &s, &e);
    if (rc == 0 && scp_ss_reader_clean(r)) FUZZ_CHECK(s.problems == 0);
    FUZZ_CHECK(s.data <= scp_ss_reader_records(r));
    scp_ss_reader_free(r);
    return 0;
}
