/* fuzz/fuzz_tls_record.c - the network shield's lean TLS 1.3 record layer
 * (src/shield/tls_record.c, compiled into this harness) against a hostile peer.
 *
 * Input: byte 0 picks the suite (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305) and the end
 * (server or client, for the post-handshake messages); the rest is a list of operations, each
 * an opcode byte, a length (two bytes) and that many bytes:
 *   raw      the bytes as a record from the wire: header check, then open (a forgery: it must
 *            fail to open and leave the sequence number where it was)
 *   sealed   the bytes sealed by a writer with the same traffic secret as the reader, with the
 *            content type and a number of zero padding bytes taken from the input, one bit
 *            flipped when the opcode asks: unflipped, it must open to exactly what was sealed
 *            (type, length, bytes); flipped, it must not open; opcode bit 2: sealed from four
 *            pieces of the plaintext (tls_sealv) instead of one buffer
 * A record that opens as handshake goes to the post-handshake parser; a KeyUpdate it accepts
 * moves both ends to the next secret (so later records test the updated keys). Asserts: no
 * memory error, no plaintext beyond 2^14 bytes, round trips exact, forgeries refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "../src/shield/tls_record.c"

static const unsigned ids[3] = {0x1301, 0x1302, 0x1303};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    struct tls_suite s;
    FUZZ_CHECK(tls_suite_for(ids[data[0] % 3], &s) == 0);
    int server = (data[0] >> 2) & 1;
    struct tls_dir rd, wr;
    memset(&rd, 0, sizeof rd);
    memset(&wr, 0, sizeof wr);
    for (size_t i = 0; i < s.hashlen; i++) rd.secret[i] = wr.secret[i] = (unsigned char)(0x5a ^ i);
    FUZZ_CHECK(tls_dir_start(&rd, &s, 0) == 0 && tls_dir_start(&wr, &s, 1) == 0);
    static unsigned char rec[5 + TLS_CT_MAX + 64], pt[TLS_PT_MAX + 1];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    while (n >= 3) {
        unsigned op = p[0];
        size_t len = (size_t)p[1] << 8 | p[2];
        p += 3, n -= 3;
        if (len > n) len = n;
        const uint8_t *arg = p;
        p += len, n -= len;
        int type = 0;
        long r;
        if (op % 2 == 0) { /* raw */
            if (len < 5) continue;
            if (len > sizeof rec) len = sizeof rec;
            memcpy(rec, arg, len);
            long bl = tls_hdr(rec);
            if (bl < 0) {
                FUZZ_CHECK(bl == -TLS_AL_UNEXPECTED_MESSAGE || bl == -TLS_AL_RECORD_OVERFLOW);
                continue;
            }
            if ((size_t)bl + 5 > len) continue; /* not whole: the caller waits for more */
            uint64_t seq = rd.seq;
            r = tls_open(&rd, rec, 5 + (size_t)bl, &type);
            /* a forgery opens only with negligible probability; when it fails, the sequence
             * number stays */
            if (r < 0) FUZZ_CHECK(rd.seq == seq);
            else FUZZ_CHECK(rd.seq == seq + 1 && r <= TLS_PT_MAX);
            if (r >= 0) wr.seq = rd.seq;
        } else { /* sealed: arg = type, padding, content */
            if (len < 2) continue;
            int want_type = arg[0] % 25;
            size_t pad = arg[1], clen = len - 2;
            if (clen + 1 + pad > TLS_PT_MAX) continue;
            /* content || type || zeros, sealed with content type 0: the padding of 5.4 */
            memcpy(pt, arg + 2, clen);
            pt[clen] = (unsigned char)want_type;
            memset(pt + clen + 1, 0, pad);
            size_t inner = clen + 1 + pad; /* tls_seal appends one more zero */
            size_t w;
            if ((op >> 2) & 1) { /* the same plaintext in four pieces (some empty), sealed where they lie */
                struct iovec v[4];
                size_t at = 0;
                for (unsigned k = 0; k < 4; k++) {
                    size_t m = k == 3 ? inner - at : (inner - at) * ((arg[0] * (k + 3u)) % 8) / 8;
                    v[k] = (struct iovec){pt + at, m};
                    at += m;
                }
                w = tls_sealv(&wr, 0, v, 4, inner, rec);
            } else {
                w = tls_seal(&wr, 0, pt, inner, rec);
            }
            FUZZ_CHECK(w == inner + TLS_OVERHEAD && (long)(w - 5) == tls_hdr(rec));
            int flip = (op >> 1) & 1;
            if (flip) rec[5 + (arg[0] + clen) % (w - 5)] ^= (unsigned char)(1u << (op >> 5));
            uint64_t seq = rd.seq;
            r = tls_open(&rd, rec, w, &type);
            if (flip) {
                FUZZ_CHECK(r == -TLS_AL_BAD_RECORD_MAC && rd.seq == seq);
                rd.seq = wr.seq; /* the writer moved on: keep the two in step */
                continue;
            }
            if (want_type == 0) { /* the content's own last non-zero byte is the type */
                size_t k = clen;
                while (k && arg[2 + k - 1] == 0) k--;
                if (!k) {
                    FUZZ_CHECK(r == -TLS_AL_UNEXPECTED_MESSAGE);
                    continue;
                }
                FUZZ_CHECK(r == (long)(k - 1) && type == arg[2 + k - 1] && !memcmp(rec + 5, arg + 2, k - 1));
            } else {
                FUZZ_CHECK(r == (long)clen && type == want_type && !memcmp(rec + 5, arg + 2, clen));
            }
        }
        if (r >= 0 && type == TLS_CT_HANDSHAKE) {
            int ku = -2;
            const char *why = NULL;
            long h = tls_post_handshake(rec + 5, (size_t)r, server, &ku, &why);
            if (h < 0) {
                FUZZ_CHECK(why != NULL && (h == -TLS_AL_UNEXPECTED_MESSAGE || h == -TLS_AL_DECODE_ERROR));
            } else {
                FUZZ_CHECK(h == 0 && ku >= -1 && ku <= 1);
                if (ku >= 0) {
                    FUZZ_CHECK(tls_dir_next(&rd, &s) == 0 && tls_dir_next(&wr, &s) == 0);
                    FUZZ_CHECK(!memcmp(rd.secret, wr.secret, s.hashlen) && !memcmp(rd.iv, wr.iv, 12));
                }
            }
        }
    }
    tls_dir_free(&rd);
    tls_dir_free(&wr);
    return 0;
}
