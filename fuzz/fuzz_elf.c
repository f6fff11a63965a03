/* fuzz/fuzz_elf.c - scp_elf_parse (runtime/elfdeps.c), the reader of the program and library
 * headers that scpctl run measures, on arbitrary bytes.
 *
 * Input: the file. Asserts: no memory error (the input is a heap copy of exactly its size, so
 * ASan catches any read past it); on success every string is NUL-terminated inside its field,
 * the interpreter (if any) is absolute, DT_NEEDED names are non-empty and at most
 * SCP_ELF_MAX_NEEDED; on failure the error is SCP_E_FORMAT. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime/elfdeps.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf != NULL);
    if (size) memcpy(buf, data, size);
    static scp_elf_info info;
    scp_err err = {0};
    int r = scp_elf_parse(buf, size, &info, &err);
    if (r < 0) {
        FUZZ_CHECK(err.code == SCP_E_FORMAT);
    } else {
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(memchr(info.interp, 0, sizeof info.interp) != NULL);
        FUZZ_CHECK(info.interp[0] == 0 || info.interp[0] == '/');
        FUZZ_CHECK(memchr(info.runpath, 0, sizeof info.runpath) != NULL);
        FUZZ_CHECK(memchr(info.rpath, 0, sizeof info.rpath) != NULL);
        FUZZ_CHECK(info.n_needed <= SCP_ELF_MAX_NEEDED);
        for (size_t i = 0; i < info.n_needed; i++) {
            FUZZ_CHECK(memchr(info.needed[i], 0, SCP_ELF_MAX_NAME) != NULL);
            FUZZ_CHECK(info.needed[i][0] != 0);
        }
    }
    free(buf);
    return 0;
}
