/* fuzz/fuzz_util.h - shared helpers of the libFuzzer targets. */
#ifndef SCP_FUZZ_UTIL_H
#define SCP_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>

/* A property violation: print where and why, then abort so that libFuzzer saves the input. */
#define FUZZ_CHECK(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
