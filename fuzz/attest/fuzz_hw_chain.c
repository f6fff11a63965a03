/* fuzz/attest/fuzz_hw_chain.c - scp_hw_chain_parse on arbitrary bytes: PEM bundles or DER
 * certificates back to back, AMD's VCEK extensions (product name, TCB components) and the
 * issuer-signature check between neighbours. Asserts: no memory error or leak; a result is a
 * count of 1..8 certificates, or -1 with a format error and a message. */
#include <stdint.h>
#include <string.h>

#include "../fuzz_util.h"
#include "scp/attest_hw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    scp_err err;
    memset(&err, 0, sizeof err);
    int n = scp_hw_chain_parse(data, size, &err);
    if (n < 0)
        FUZZ_CHECK(n == -1 && err.code == SCP_E_FORMAT && err.msg[0] != '\0');
    else
        FUZZ_CHECK(n >= 1 && n <= 8);
    return 0;
}
