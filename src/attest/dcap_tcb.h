/* attest/dcap_tcb.h - Intel TCB info and QE identity evaluation (internal to the DCAP verifier). */
#ifndef SCP_ATTEST_DCAP_TCB_H
#define SCP_ATTEST_DCAP_TCB_H

#include <stdint.h>

#include <openssl/x509.h>

#include "scp/attest_hw.h"

typedef struct dcap_pck_info {
    uint8_t comp[16]; /* SGX TCB components 1..16 */
    uint16_t pcesvn;
    uint8_t fmspc[6], pceid[2];
    uint8_t ppid[16]; /* the platform provisioning id (encrypted PPID as Intel issues it) */
    int has_ppid;
} dcap_pck_info;

/* The PCK certificate's SGX extension. SCP_E_FORMAT if absent or malformed. */
int dcap_pck_tcb(X509 *pck, dcap_pck_info *out, scp_err *err);

/* Status (SCP_DCAP_TCB_*) of the platform and quoting enclave, from the signed TCB info and QE
 * identity in dir (see dcap_tcb.c), the TCB signing chain ending at the root pinned by
 * root_pin. Missing collateral: SCP_E_NOENT naming the file. */
int dcap_tcb_evaluate(const scp_dcap_quote *q, X509 *pck, const char *dir, const uint8_t root_pin[32], int64_t now,
                      int *status, scp_err *err);

const char *dcap_tcb_status_name(int status);

#endif
