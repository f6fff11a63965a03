/* fuzz/journal_sum.h - the journal's commit checksum, computed from the layout in format.h.
 *
 * The checksum gained a chain over the chunk records (SHA-256(header || chain || commit record),
 * chain c0 = 0^32, c(k+1) = SHA-256(c(k) || chunk record k)); the library announces that form
 * by exporting scp_journal_chain. The harnesses follow whichever form the library they are
 * linked with has, computing it themselves (the function is only used as a marker). */
#ifndef SCP_FUZZ_JOURNAL_SUM_H
#define SCP_FUZZ_JOURNAL_SUM_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "volume/format.h"

void scp_journal_chain(uint8_t chain[SCP_HASH_LEN], const uint8_t *rec, size_t len)
    __attribute__((weak));

/* Checksum of a journal whose commit record starts at commit_off and whose sum is at sum_off. */
static inline void fz_journal_sum(const uint8_t *buf, size_t commit_off, size_t sum_off,
                                  uint32_t cs, uint8_t out[SCP_HASH_LEN]) {
    if (scp_journal_chain) {
        uint8_t chain[SCP_HASH_LEN] = {0};
        for (size_t off = SCP_JRN_HDR_LEN; off < commit_off; off += SCP_JREC_HDR_LEN + cs) {
            struct scp_buf p[2] = {{chain, SCP_HASH_LEN}, {buf + off, SCP_JREC_HDR_LEN + cs}};
            scp_sha256(p, 2, chain);
        }
        struct scp_buf parts[3] = {
            {buf, SCP_JRN_HDR_LEN}, {chain, SCP_HASH_LEN}, {buf + commit_off, sum_off - commit_off}};
        scp_sha256(parts, 3, out);
    } else {
        struct scp_buf parts[2] = {{buf, SCP_JRN_HDR_LEN}, {buf + commit_off, sum_off - commit_off}};
        scp_sha256(parts, 2, out);
    }
}

#endif
