/* fuzz/attest/fuzz_snp_report.c - scp_snp_report_parse and scp_snp_verify on arbitrary bytes.
 *
 * Every input that parses is also verified against the VCEK and AMD collateral of the report
 * recorded on a real Milan machine (tests/attest/data). Asserts: no memory error; a parsed
 * report is exactly 1184 bytes of a supported version; a refusal is -1 with a message; an
 * accepted report has the recorded report's signed bytes (ECDSA lets the signature itself have
 * two spellings, which the verifier tolerates, but never other signed content). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz_util.h"
#include "common/util.h"
#include "scp/attest_hw.h"

static uint8_t *rec, *vcek;
static size_t rec_len, vcek_len;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    scp_err e;
    if (scp_read_file(AT_FDCWD, SCP_ATTEST_DATA "/snp/virtee-milan-report.bin", 4096, &rec, &rec_len, &e) < 0 ||
        scp_read_file(AT_FDCWD, SCP_ATTEST_DATA "/snp/virtee-milan-vcek.der", 8192, &vcek, &vcek_len, &e) < 0) {
        fprintf(stderr, "fuzz_snp_report: %s\n", e.msg);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    scp_snp_report r;
    scp_err err;
    memset(&err, 0, sizeof err);
    int rc = scp_snp_report_parse(data, size, &r, &err);
    if (rc < 0) {
        FUZZ_CHECK(rc == -1 && err.code == SCP_E_FORMAT && err.msg[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(size == SCP_SNP_REPORT_LEN);
    FUZZ_CHECK(r.version == 2 || r.version == 3 || r.version == 5);
    scp_snp_policy pol = {.report_data = r.report_data};
    memset(&err, 0, sizeof err);
    rc = scp_snp_verify(data, size, vcek, vcek_len, SCP_ATTEST_DATA "/collateral", &pol, NULL, NULL, &err);
    if (rc == 0)
        FUZZ_CHECK(memcmp(data, rec, SCP_SNP_SIGNED_LEN) == 0);
    else
        FUZZ_CHECK(rc == -1 && err.code != SCP_OK && err.msg[0] != '\0');
    return 0;
}
