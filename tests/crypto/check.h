/* tests/crypto/check.h - the crypto tests' CHECK: report a failed condition with its place and
 * count it (atomically: test_random checks from several threads); main returns failures != 0. */
#ifndef SCP_TESTS_CRYPTO_CHECK_H
#define SCP_TESTS_CRYPTO_CHECK_H

#include <stdio.h>

static int failures;
#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);                   \
        }                                                                         \
    } while (0)

#endif
