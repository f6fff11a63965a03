/* tests/cas/check.h - CHECK for the CAS tests written in C: a condition that does not hold is
 * reported with its place and counted in `failures`, and the test goes on (main returns
 * failures != 0). One test program per file, so the counter is the program's. */
#ifndef SCP_TESTS_CAS_CHECK_H
#define SCP_TESTS_CAS_CHECK_H

#include <stdio.h>

static int failures;
#define CHECK(c, ...)                                                                         \
    do {                                                                                      \
        if (!(c)) {                                                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                              \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

#endif
