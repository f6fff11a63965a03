/* fuzz/attest/fuzz_collateral_import.c - scp_hw_collateral_import on arbitrary bytes (what
 * `scpctl cas collateral import` does with a downloaded file), into a scratch directory.
 * Asserts: no memory error or leak; a success names a file inside the scratch directory; a
 * refusal is -1 with a message. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz_util.h"
#include "scp/attest_hw.h"

static char scratch[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}
static void rm_scratch(void) { nftw(scratch, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(scratch, sizeof scratch, "/tmp/fuzz_collateral.XXXXXX");
    if (!mkdtemp(scratch)) abort();
    atexit(rm_scratch);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dest[4096];
    scp_err err;
    memset(&err, 0, sizeof err);
    int rc = scp_hw_collateral_import(scratch, data, size, dest, sizeof dest, &err);
    if (rc == 0)
        FUZZ_CHECK(strncmp(dest, scratch, strlen(scratch)) == 0 && strstr(dest, "/../") == NULL);
    else
        FUZZ_CHECK(rc == -1 && err.code != SCP_OK && err.msg[0] != '\0');
    return 0;
}
