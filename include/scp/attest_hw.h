/* scp/attest_hw.h - CAS-side verifiers of hardware attestation evidence.
 *
 * AMD SEV-SNP attestation reports (scp_snp_*) and Intel DCAP ECDSA quotes: TDX quote v4 and
 * SGX quote v3 (scp_dcap_*).
 *
 * Report data binding (both platforms give 64 bytes of report data):
 *   report_data = SHA-512("SCP-HW-REPORT-DATA-v1" NUL || nonce (32) || pubkey (32) || measurement (32))
 * where nonce is the CAS nonce, pubkey the runtime's ephemeral X25519 key and measurement the
 * scp_attest_measure() of the program (the platform's launch measurement covers the VM or
 * enclave image, not the program that the runtime starts inside it).
 *
 * Collateral (read-only, usable offline; a missing file fails closed with a message naming it):
 *   DIR/snp/<Product>/ark.pem   AMD root key certificate (self-signed, RSA-PSS), Product =
 *   DIR/snp/<Product>/ask.pem   Milan or Genoa; the ARK must also match the SHA-256 pinned in
 *                               the code for that product (or the policy's test override).
 *   DIR/snp/vcek/<chip_id hex>-<reported_tcb hex>.der
 *                               the VCEK for that chip at that TCB, as AMD's KDS serves it at
 *                               https://kdsintf.amd.com/vcek/v1/<Product>/<chip_id hex>?blSPL=..
 *                               (only when the evidence does not carry the VCEK itself).
 *
 * Errors: a malformed report or certificate: SCP_E_FORMAT; a signature, chain or binding that
 * does not verify (a modified report, a wrong nonce or key): SCP_E_INTEGRITY; a report that is
 * authentic but that the policy refuses (debug allowed, TCB below minimum, measurement or host
 * data different): SCP_E_POLICY; missing collateral: SCP_E_NOENT; a VLEK-signed report or an
 * unknown product: SCP_E_NOTSUP.
 */
#ifndef SCP_ATTEST_HW_H
#define SCP_ATTEST_HW_H

#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"

#define SCP_HW_REPORT_DATA_LABEL "SCP-HW-REPORT-DATA-v1"

/* The 64 bytes of report data that bind a report to one CAS exchange (see above). */
int scp_hw_report_data(const uint8_t nonce[32], const uint8_t pubkey[32], const uint8_t measurement[32],
                       uint8_t out[64], scp_err *err);
/* With an instance key (SCP_INSTANCE_KEY_LEN bytes, scp/attest.h) hashed after the measurement;
 * instance_key NULL gives scp_hw_report_data's value. */
int scp_hw_report_data_ik(const uint8_t nonce[32], const uint8_t pubkey[32], const uint8_t measurement[32],
                          const uint8_t *instance_key, uint8_t out[64], scp_err *err);

/* The platform's hardware identity (32 bytes), from evidence of backend SCP_TEE_SNP, _TDX or
 * _SGX (scp/attest.h): SHA-256(SCP_HW_PLATFORM_LABEL NUL || "snp chip_id" NUL || CHIP_ID) for
 * SEV-SNP, SHA-256(SCP_HW_PLATFORM_LABEL NUL || "sgx ppid" NUL || PPID) for TDX/SGX (the PPID of
 * the PCK certificate in the quote). It plays the sim platform key's part: CAS enrolls it as
 * the platform's "pubkey", and the platform id that evidence carries is its SHA-256. Structure
 * only (the caller verifies the evidence). */
#define SCP_HW_PLATFORM_LABEL "SCP-HW-PLATFORM-v1"
int scp_hw_platform_identity(int backend, const uint8_t *quote, size_t len, uint8_t out[32], scp_err *err);
/* The same from what a verifier returned (scp_snp_report.chip_id, scp_dcap_quote.ppid). */
void scp_hw_platform_identity_snp(const uint8_t chip_id[64], uint8_t out[32]);
void scp_hw_platform_identity_ppid(const uint8_t ppid[16], uint8_t out[32]);

/* ---- AMD SEV-SNP ------------------------------------------------------------------------ */

#define SCP_SNP_REPORT_LEN 0x4a0   /* 1184 bytes */
#define SCP_SNP_SIGNED_LEN 0x2a0   /* the signature covers bytes 0x000..0x29f */
#define SCP_SNP_POLICY_DEBUG (1ull << 19)

/* TCB_VERSION of Milan and Genoa (Turin's layout differs and is not supported yet). */
typedef struct scp_snp_tcb {
    uint8_t bootloader, tee, snp, microcode;
} scp_snp_tcb;

/* A parsed report; the fields are copies, in the report's byte order for arrays. */
typedef struct scp_snp_report {
    uint32_t version, guest_svn, vmpl, sig_algo, flags;
    uint64_t policy;
    uint64_t current_tcb_raw, reported_tcb_raw, committed_tcb_raw, launch_tcb_raw;
    scp_snp_tcb reported_tcb;
    uint8_t family_id[16], image_id[16];
    uint8_t report_data[64];
    uint8_t measurement[48];
    uint8_t host_data[32];
    uint8_t id_key_digest[48], author_key_digest[48];
    uint8_t report_id[32];
    uint8_t chip_id[64];
    uint8_t cpuid_fam, cpuid_mod, cpuid_step; /* version >= 3; 0 otherwise */
    uint8_t sig_r[72], sig_s[72];             /* little-endian, as in the report */
} scp_snp_report;

/* Structure only: exactly SCP_SNP_REPORT_LEN bytes, version 2, 3 or 5, signature algorithm 1
 * (ECDSA P-384 with SHA-384), reserved signing-key encodings refused. */
int scp_snp_report_parse(const uint8_t *buf, size_t len, scp_snp_report *out, scp_err *err);

typedef struct scp_snp_policy {
    const uint8_t *report_data;  /* 64 bytes, required (scp_hw_report_data) */
    const uint8_t *measurement;  /* 48 bytes; NULL: the caller checks it */
    const uint8_t *host_data;    /* 32 bytes; NULL: not checked */
    scp_snp_tcb min_tcb;         /* each component of reported_tcb must be at least this */
    uint32_t max_vmpl;           /* highest VMPL accepted (0: the report must come from VMPL0) */
    int64_t now;                 /* seconds since the epoch for certificate validity; 0: the clock */
    const uint8_t *ark_sha256;   /* tests only: trust this ARK certificate instead of AMD's */
} scp_snp_policy;

/* Verify a report: VCEK (vcek_der, or NULL to read it from the collateral cache) certified by
 * the product's ASK and ARK in collateral_dir (ARK pinned), the VCEK's TCB and hardware id
 * equal to the report's, the ECDSA P-384 signature, then the policy (debug refused, VMPL,
 * minimum TCB, measurement, host data, report data). On success fills *out if not NULL and
 * copies the product name ("Milan", "Genoa") into product (at least 16 bytes) if not NULL. */
int scp_snp_verify(const uint8_t *report, size_t report_len, const uint8_t *vcek_der, size_t vcek_len,
                   const char *collateral_dir, const scp_snp_policy *pol, scp_snp_report *out, char *product,
                   scp_err *err);

/* The VCEK (DER) in an SEV-SNP certificate table, as the kernel's configfs-tsm auxblob and the
 * extended guest request give it: 24-byte entries {GUID, u32 offset, u32 length} (little-
 * endian, offsets from the table's start) up to an all-zero entry, then the certificates.
 * *vcek points into buf (NULL when the table has no VCEK entry: the CAS cache supplies it).
 * A table that runs past buf or an entry outside it: SCP_E_FORMAT. */
int scp_snp_certtable_vcek(const uint8_t *buf, size_t len, const uint8_t **vcek, size_t *vcek_len, scp_err *err);

/* Put one fetched collateral file (content as downloaded) where the verifiers read it in dir,
 * atomically; what it is comes from its content (AMD cert_chain -> snp/<Product>/{ask,ark}.pem,
 * a VCEK -> snp/vcek/<hwID>-<TCB>.der, Intel's TCB-Info-Issuer-Chain -> sgx/tcb-signing-chain.pem,
 * Intel CRLs (DER or PEM) by issuer, TCB info and QE identity JSON by id and FMSPC). Signatures
 * of CRLs and JSON are checked at every verification, not here. dest gets the path written. */
int scp_hw_collateral_import(const char *dir, const uint8_t *buf, size_t len, char *dest, size_t dest_sz,
                             scp_err *err);

/* Parse a certificate chain (PEM bundle, or DER certificates back to back) and, for each
 * certificate that carries them, AMD's VCEK extensions (TCB components, product) and Intel's
 * PCK SGX extension (FMSPC, TCB components).
 * Exposed for the fuzz target; returns the number of certificates (at most 8) or -1. */
int scp_hw_chain_parse(const uint8_t *buf, size_t len, scp_err *err);

/* ---- Intel DCAP quotes (TDX v4, SGX v3) --------------------------------------------------
 *
 * Checked: header (version 3 with an SGX body, or 4 with a TDX body; attestation key type 2 =
 * ECDSA P-256; Intel's QE vendor id), the ECDSA P-256 signature by the attestation key over
 * header and body, the QE report's signature by the PCK key, QE report data = SHA-256(attestation
 * key || QE auth data) || 32 zero bytes, the PCK certificate chain (in the quote) to Intel's SGX
 * Root CA (pinned by SHA-256), the PCK and intermediate CA against the CRLs (DER, current) in
 * the collateral directory, all required:
 *   DIR/sgx/rootcrl.der              the root CA's CRL (revokes intermediate CAs)
 *   DIR/sgx/pckcrl-platform.der      the PCK CRL of the Platform CA, and/or
 *   DIR/sgx/pckcrl-processor.der     that of the Processor CA (whichever issued the PCK)
 * then the policy: debug refused, MRTD (TDX) or MRENCLAVE/MRSIGNER/ISVSVN (SGX), report data,
 * and the TCB status from Intel's signed TCB info (for the PCK's FMSPC) and QE identity:
 *   DIR/sgx/tcbinfo-{tdx,sgx}-<fmspc hex>.json, DIR/sgx/qeidentity-{tdx,sgx}.json  (PCS v4
 *   bodies as served), DIR/sgx/tcb-signing-chain.pem (their TCB-Info-Issuer-Chain header).
 * The status is the worse of the platform's and the QE's; the policy lists the statuses it
 * accepts (default: UpToDate only; Revoked never). */

enum {
    SCP_DCAP_TCB_UP_TO_DATE = 0,
    SCP_DCAP_TCB_SW_HARDENING_NEEDED,
    SCP_DCAP_TCB_CONFIGURATION_NEEDED,
    SCP_DCAP_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED,
    SCP_DCAP_TCB_OUT_OF_DATE,
    SCP_DCAP_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED,
    SCP_DCAP_TCB_REVOKED,
    SCP_DCAP_TCB_UNEVALUATED = -1,
};
/* Intel's name of a status ("UpToDate"...), "unevaluated" for -1. */
const char *scp_dcap_tcb_status_name(int status);

#define SCP_DCAP_TEE_SGX 0x00000000u
#define SCP_DCAP_TEE_TDX 0x00000081u

/* A parsed quote. Pointers point into the buffer given to scp_dcap_quote_parse. */
typedef struct scp_dcap_quote {
    uint16_t version, att_key_type;
    uint32_t tee_type;
    uint16_t qe_svn, pce_svn;
    uint8_t qe_vendor_id[16];
    /* TDX TD report body (tee_type 0x81) */
    uint8_t tee_tcb_svn[16], mrseam[48], mrsignerseam[48], seam_attributes[8], td_attributes[8], xfam[8];
    uint8_t mrtd[48], mrconfigid[48], mrowner[48], mrownerconfig[48], rtmr[4][48];
    /* SGX enclave report body (tee_type 0) */
    uint8_t cpusvn[16], sgx_attributes[16], mrenclave[32], mrsigner[32];
    uint16_t isvprodid, isvsvn;
    uint8_t report_data[64];
    const uint8_t *signed_part; /* header || body */
    size_t signed_len;
    const uint8_t *signature, *attest_key; /* 64 bytes each: r || s, x || y (big-endian) */
    const uint8_t *qe_report;              /* 384-byte SGX report body of the quoting enclave */
    const uint8_t *qe_signature;           /* 64 bytes, by the PCK key */
    const uint8_t *qe_auth;
    size_t qe_auth_len;
    const uint8_t *pck_chain; /* PEM: PCK, intermediate CA, root CA */
    size_t pck_chain_len;
    int tcb_status; /* set by scp_dcap_verify: SCP_DCAP_TCB_* */
    uint8_t ppid[16]; /* set by scp_dcap_verify: the PCK certificate's PPID, when has_ppid */
    int has_ppid;
} scp_dcap_quote;

int scp_dcap_quote_parse(const uint8_t *buf, size_t len, scp_dcap_quote *out, scp_err *err);

typedef struct scp_dcap_policy {
    const uint8_t *report_data;  /* 64 bytes, required (scp_hw_report_data) */
    const uint8_t *mrtd;         /* TDX, 48 bytes; NULL: the caller checks it */
    const uint8_t *mrenclave;    /* SGX, 32 bytes; NULL: not checked */
    const uint8_t *mrsigner;     /* SGX, 32 bytes; NULL: not checked */
    uint16_t min_isvsvn;         /* SGX */
    unsigned accept_tcb;         /* bit (1 << SCP_DCAP_TCB_x) per accepted status; 0: UpToDate only */
    int allow_unevaluated_tcb;   /* skip TCB info / QE identity (tests, or collateral-less setups) */
    int64_t now;                 /* seconds since the epoch (certificates, CRLs); 0: the clock */
    const uint8_t *root_sha256;  /* tests only: trust this root instead of Intel's */
} scp_dcap_policy;

int scp_dcap_verify(const uint8_t *quote, size_t len, const char *collateral_dir, const scp_dcap_policy *pol,
                    scp_dcap_quote *out, scp_err *err);

#endif
