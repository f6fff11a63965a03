/* attest/hw_evidence.c - what the runtime and CAS both derive from hardware evidence: the
 * platform's hardware identity, and the VCEK in an SEV-SNP certificate table (configfs-tsm's
 * auxblob). Structure only: nothing here verifies a signature. */
#include <errno.h>
#include <string.h>

#include "attest/dcap_tcb.h"
#include "attest/hw_x509.h"
#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"
#include "scp/attest_hw.h"

static void identity_of(const char *what, const uint8_t *id, size_t len, uint8_t out[32]) {
    struct scp_buf parts[3] = {{SCP_HW_PLATFORM_LABEL, sizeof SCP_HW_PLATFORM_LABEL}, {what, strlen(what) + 1},
                               {id, len}};
    scp_sha256(parts, 3, out);
}

void scp_hw_platform_identity_snp(const uint8_t chip_id[64], uint8_t out[32]) {
    identity_of("snp chip_id", chip_id, 64, out);
}

void scp_hw_platform_identity_ppid(const uint8_t ppid[16], uint8_t out[32]) { identity_of("sgx ppid", ppid, 16, out); }

int scp_hw_platform_identity(int backend, const uint8_t *quote, size_t len, uint8_t out[32], scp_err *err) {
    if (backend == SCP_TEE_SNP) {
        scp_snp_report r;
        if (scp_snp_report_parse(quote, len, &r, err) < 0) return -1;
        scp_hw_platform_identity_snp(r.chip_id, out);
        return 0;
    }
    if (backend != SCP_TEE_TDX && backend != SCP_TEE_SGX)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "backend %d has no hardware identity", backend);
    scp_dcap_quote q;
    if (scp_dcap_quote_parse(quote, len, &q, err) < 0) return -1;
    X509 *c[HW_CHAIN_MAX];
    int n = hw_certs_parse(q.pck_chain, q.pck_chain_len, c, err);
    if (n < 0) return -1;
    dcap_pck_info pk;
    int rc = dcap_pck_tcb(c[0], &pk, err);
    hw_certs_free(c, n);
    if (rc < 0) return -1;
    if (!pk.has_ppid) return scp_fail(err, SCP_E_FORMAT, EINVAL, "the PCK certificate carries no PPID");
    scp_hw_platform_identity_ppid(pk.ppid, out);
    return 0;
}

static const uint8_t vcek_guid[16] = {0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45,
                                      0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int scp_snp_certtable_vcek(const uint8_t *buf, size_t len, const uint8_t **vcek, size_t *vcek_len, scp_err *err) {
    *vcek = NULL;
    *vcek_len = 0;
    static const uint8_t zero[24];
    size_t n = 0; /* entries before the terminator */
    for (;; n++) {
        if (len / 24 <= n) return scp_fail(err, SCP_E_FORMAT, EINVAL, "SNP certificate table: no terminating entry");
        if (memcmp(buf + 24 * n, zero, 24) == 0) break;
    }
    size_t table_end = 24 * (n + 1), found = n;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = buf + 24 * i;
        uint32_t off = le32(e + 16), l = le32(e + 20);
        if (off < table_end || off > len || l > len - off)
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "SNP certificate table: entry %zu lies outside the table", i);
        if (memcmp(e, vcek_guid, 16) != 0) continue;
        if (found != n) return scp_fail(err, SCP_E_FORMAT, EINVAL, "SNP certificate table: two VCEK entries");
        if (l == 0) return scp_fail(err, SCP_E_FORMAT, EINVAL, "SNP certificate table: empty VCEK entry");
        found = i;
    }
    if (found < n) { /* only a table that is valid throughout yields its VCEK */
        *vcek = buf + le32(buf + 24 * found + 16);
        *vcek_len = le32(buf + 24 * found + 20);
    }
    return 0;
}
