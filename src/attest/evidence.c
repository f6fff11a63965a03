/* attest/evidence.c - the versioned binary evidence format (scp/attest.h). */
#include <errno.h>
#include <string.h>

#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"

static int bad(scp_err *err, const char *why) {
    return scp_fail(err, SCP_E_FORMAT, EINVAL, "malformed evidence: %s", why);
}

int scp_evidence_parse(const uint8_t *buf, size_t len, scp_evidence *ev, scp_err *err) {
    memset(ev, 0, sizeof *ev);
    if (!buf || len < 12) return bad(err, "too short");
    if (len > SCP_EVIDENCE_MAX) return bad(err, "too long");
    if (memcmp(buf, "SCPE", 4) != 0) return bad(err, "wrong magic");
    ev->version = scp_get_u16(buf + 4);
    ev->backend = scp_get_u16(buf + 6);
    if (ev->version != SCP_EVIDENCE_VERSION) return bad(err, "unsupported version");
    if (ev->backend < SCP_TEE_SIM || ev->backend > SCP_TEE_SGX) return bad(err, "unknown backend");
    uint32_t body = scp_get_u32(buf + 8);
    if ((size_t)body != len - 12) return bad(err, "length does not match");
    size_t off = 12;
    unsigned seen = 0;
    while (off < len) {
        if (len - off < 4) return bad(err, "truncated field header");
        uint16_t type = scp_get_u16(buf + off), flen = scp_get_u16(buf + off + 2);
        size_t voff = off + 4;
        if (len - voff < flen) return bad(err, "truncated field");
        const uint8_t *v = buf + voff;
        uint8_t *dst = NULL;
        switch (type) {
        case SCP_EV_NONCE: dst = ev->nonce; break;
        case SCP_EV_PUBKEY: dst = ev->pubkey; break;
        case SCP_EV_MEASUREMENT: dst = ev->measurement; break;
        case SCP_EV_PLATFORM: dst = ev->platform_id; break;
        case SCP_EV_QUOTE:
            if (seen & (1u << 5)) return bad(err, "duplicate quote");
            if (flen > 16384) return bad(err, "quote too long");
            seen |= 1u << 5;
            ev->quote = v;
            ev->quote_len = flen;
            break;
        case SCP_EV_SNP_VCEK:
            if (ev->vcek) return bad(err, "duplicate VCEK");
            if (flen == 0) return bad(err, "empty VCEK");
            ev->vcek = v;
            ev->vcek_len = flen;
            break;
        case SCP_EV_INSTANCE_KEY:
            if (ev->instance_key) return bad(err, "duplicate instance key");
            if (flen != SCP_INSTANCE_KEY_LEN || v[0] != 4) return bad(err, "the instance key is not an uncompressed P-256 point");
            ev->instance_key = v;
            break;
        case SCP_EV_SIGNATURE:
            if (voff + flen != len) return bad(err, "data after the signature");
            if (flen == 0) return bad(err, "empty signature");
            ev->signed_part = buf;
            ev->signed_len = off;
            ev->signature = v;
            ev->signature_len = flen;
            break;
        default:
            if (type < 0x8000) return bad(err, "unknown required field");
            break;
        }
        if (dst) {
            if (flen != 32) return bad(err, "field has the wrong length");
            if (seen & (1u << type)) return bad(err, "duplicate field");
            seen |= 1u << type;
            memcpy(dst, v, 32);
        }
        off = voff + flen;
    }
    if ((seen & 0x1e) != 0x1e) return bad(err, "a required field is missing");
    if (ev->backend == SCP_TEE_SIM) {
        if (!ev->signature) return bad(err, "no signature");
        if (ev->quote) return bad(err, "sim evidence carries no quote");
    } else {
        /* the hardware signs the quote; a signature field would be a second, unchecked claim */
        if (!ev->quote) return bad(err, "hardware evidence without a quote");
        if (ev->signature) return bad(err, "hardware evidence carries no signature field");
    }
    if (ev->vcek && ev->backend != SCP_TEE_SNP) return bad(err, "a VCEK in evidence that is not SEV-SNP");
    return 0;
}
