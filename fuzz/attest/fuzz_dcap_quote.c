/* fuzz/attest/fuzz_dcap_quote.c - scp_dcap_quote_parse and scp_dcap_verify on arbitrary bytes.
 *
 * Inputs that parse are verified against the collateral of the TDX quote recorded on a real
 * machine (tests/attest/data), at a time inside its CRLs' validity. Asserts: no memory error
 * or leak; every pointer of a parsed quote lies inside the input; a refusal is -1 with a
 * message; an accepted quote has the recorded quote's signed header and body. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz_util.h"
#include "common/util.h"
#include "scp/attest_hw.h"

static uint8_t *rec;
static size_t rec_len;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    scp_err e;
    if (scp_read_file(AT_FDCWD, SCP_ATTEST_DATA "/tdx/gtg-spr-quote-v4.dat", 65536, &rec, &rec_len, &e) < 0) {
        fprintf(stderr, "fuzz_dcap_quote: %s\n", e.msg);
        abort();
    }
    return 0;
}

static int inside(const uint8_t *p, size_t n, const uint8_t *data, size_t size) {
    return p >= data && n <= size && (size_t)(p - data) <= size - n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    scp_dcap_quote q;
    scp_err err;
    memset(&err, 0, sizeof err);
    int rc = scp_dcap_quote_parse(data, size, &q, &err);
    if (rc < 0) {
        FUZZ_CHECK(rc == -1 && err.code == SCP_E_FORMAT && err.msg[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(q.version == 3 || q.version == 4);
    FUZZ_CHECK(inside(q.signed_part, q.signed_len, data, size) && inside(q.signature, 64, data, size) &&
               inside(q.attest_key, 64, data, size) && inside(q.qe_report, 384, data, size) &&
               inside(q.qe_signature, 64, data, size) && inside(q.qe_auth, q.qe_auth_len, data, size) &&
               inside(q.pck_chain, q.pck_chain_len, data, size));
    scp_dcap_policy pol = {.report_data = q.report_data, .allow_unevaluated_tcb = 1, .now = 1687219200};
    memset(&err, 0, sizeof err);
    rc = scp_dcap_verify(data, size, SCP_ATTEST_DATA "/collateral", &pol, NULL, &err);
    if (rc == 0)
        FUZZ_CHECK(q.signed_len <= rec_len && memcmp(data, rec, q.signed_len) == 0);
    else
        FUZZ_CHECK(rc == -1 && err.code != SCP_OK && err.msg[0] != '\0');
    return 0;
}
