/* fuzz/attest/fuzz_hw_evidence.c - what the runtime and CAS read from hardware evidence before
 * or besides verifying it: the SEV-SNP certificate table (configfs-tsm's auxblob,
 * scp_snp_certtable_vcek) and the platform identity (scp_hw_platform_identity) of an SNP report
 * or a DCAP quote. The first byte picks: 0 the table, 1 an SNP report, 2 a TDX/SGX quote.
 * Asserts: a VCEK found lies inside the input and is not empty; refusals are -1 with a message;
 * the identity of an input is the same when computed twice. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz_util.h"
#include "scp/attest.h"
#include "scp/attest_hw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    scp_err err;
    memset(&err, 0, sizeof err);
    if (data[0] == 0) {
        const uint8_t *v = (const uint8_t *)1;
        size_t vl = 1;
        int rc = scp_snp_certtable_vcek(p, n, &v, &vl, &err);
        if (rc < 0) {
            FUZZ_CHECK(rc == -1 && err.code == SCP_E_FORMAT && err.msg[0] && !v && !vl);
        } else {
            FUZZ_CHECK(rc == 0);
            FUZZ_CHECK((!v && !vl) || (v >= p && vl > 0 && vl <= n && (size_t)(v - p) <= n - vl));
        }
        return 0;
    }
    int backend = data[0] == 1 ? SCP_TEE_SNP : data[0] == 2 ? SCP_TEE_TDX : SCP_TEE_SGX;
    uint8_t a[32], b[32];
    int rc = scp_hw_platform_identity(backend, p, n, a, &err);
    if (rc < 0) {
        FUZZ_CHECK(rc == -1 && err.code != SCP_OK && err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(scp_hw_platform_identity(backend, p, n, b, &err) == 0 && memcmp(a, b, 32) == 0);
    return 0;
}
