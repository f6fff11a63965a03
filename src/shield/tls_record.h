/* shield/tls_record.h - a lean TLS 1.3 record layer (RFC 8446 5.1-5.5, 7.1-7.3) for the network
 * shield, used after OpenSSL's handshake (net_tls.c, docs/network.md "The lean record layer").
 *
 * OpenSSL 3.0 spends most of a small record's CPU outside the cipher (parameter lookups by name,
 * the record layer's general cases, the error queue). This file seals and opens TLS 1.3 records
 * itself with one EVP_CIPHER_CTX per direction that keeps its key: per record only the nonce
 * (the static IV xor the sequence number, RFC 8446 5.3) changes. It knows nothing of sockets or
 * connections: the caller gives it whole records (tls_hdr tells how long one is) and takes the
 * plaintext, the inner content type and the handshake messages it must act on (KeyUpdate).
 *
 * Secrets: a direction keeps its current traffic secret (for KeyUpdate's "traffic upd", 7.2)
 * and its IV; the key lives only inside the cipher context. tls_dir_free wipes both.
 */
#ifndef SCP_SHIELD_TLS_RECORD_H
#define SCP_SHIELD_TLS_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <openssl/evp.h>

#define TLS_PT_MAX 16384                /* a record's plaintext, at most (2^14, 5.1) */
#define TLS_CT_MAX (TLS_PT_MAX + 256)   /* a record's protected body, at most (5.2) */
#define TLS_TAG 16
#define TLS_OVERHEAD (5 + 1 + TLS_TAG) /* header, inner content type, tag: what seal adds */

enum { TLS_CT_CCS = 20, TLS_CT_ALERT = 21, TLS_CT_HANDSHAKE = 22, TLS_CT_APPDATA = 23 };
enum { TLS_HS_NEW_SESSION_TICKET = 4, TLS_HS_KEY_UPDATE = 24 };
/* Alert descriptions the layer sends (6.2). */
enum {
    TLS_AL_CLOSE_NOTIFY = 0,
    TLS_AL_UNEXPECTED_MESSAGE = 10,
    TLS_AL_BAD_RECORD_MAC = 20,
    TLS_AL_RECORD_OVERFLOW = 22,
    TLS_AL_DECODE_ERROR = 50,
    TLS_AL_USER_CANCELED = 90,
};

/* Records a direction may protect with one key before it must change it: AES-GCM's limit of
 * 2^24.5 records (5.5), rounded down; the writer sends a KeyUpdate when it reaches it. */
#define TLS_KEY_RECORDS (1ull << 24)

/* A cipher suite the layer takes (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
 * TLS_CHACHA20_POLY1305_SHA256). */
struct tls_suite {
    const EVP_CIPHER *cipher;
    const EVP_MD *md;
    size_t keylen, hashlen;
};

struct tls_dir {
    EVP_CIPHER_CTX *ctx; /* initialised with the key; only the nonce changes per record */
    unsigned char secret[48];
    unsigned char iv[12];
    uint64_t seq; /* the next record's sequence number */
    int enc;
};

/* The suite of an IANA cipher suite id (0x1301-0x1303): 0, or -1 (not one the layer takes). */
int tls_suite_for(unsigned id, struct tls_suite *s);

/* Derive the key and IV from d->secret (hashlen bytes, set by the caller) and set up the
 * context; seq starts at 0. 0, or -1 (out of memory, OpenSSL refused). */
int tls_dir_start(struct tls_dir *d, const struct tls_suite *s, int enc);
/* KeyUpdate: the next traffic secret (7.2), its key and IV; seq starts at 0 again. 0 or -1. */
int tls_dir_next(struct tls_dir *d, const struct tls_suite *s);
void tls_dir_free(struct tls_dir *d);

/* The body length of the record whose 5-byte header is h: 0..TLS_CT_MAX, or -(the alert to
 * send): TLS_AL_UNEXPECTED_MESSAGE when the outer type is not application_data (after the
 * handshake every TLS 1.3 record is protected, 5.2; the version field is ignored, 5.1),
 * TLS_AL_RECORD_OVERFLOW when the length passes 2^14 + 256. */
long tls_hdr(const unsigned char h[5]);

/* Seal n (<= TLS_PT_MAX) bytes of content type `type` into out (n + TLS_OVERHEAD bytes; out
 * and pt do not overlap). Returns the record's length, or 0 when it cannot: the sequence number
 * would wrap, or OpenSSL failed. */
size_t tls_seal(struct tls_dir *d, int type, const void *pt, size_t n, unsigned char *out);
/* tls_seal of the n bytes that the nv pieces v hold in order (their lengths sum to n), sealed
 * from where they lie: a record that spans pieces (a sendfile's 4 KiB cache chunks) is not
 * gathered into one buffer first. The same record as tls_seal of their concatenation. */
size_t tls_sealv(struct tls_dir *d, int type, const struct iovec *v, int nv, size_t n, unsigned char *out);

/* Open the record at rec (5-byte header, then len - 5 bytes of body, len - 5 == tls_hdr(rec))
 * in place: on success the plaintext is at rec + 5, its length returned and its inner content
 * type in *type (padding removed). Failure: -(the alert to send): TLS_AL_BAD_RECORD_MAC (the
 * record does not open: forged, corrupt, or a wrong key or sequence number),
 * TLS_AL_RECORD_OVERFLOW, TLS_AL_UNEXPECTED_MESSAGE (all padding, no content type). The
 * sequence number moves on only when a record opened. */
long tls_open(struct tls_dir *d, unsigned char *rec, size_t len, int *type);

/* The post-handshake messages in one record's plaintext (RFC 8446 4.6), for an end that is a
 * server or a client: 0 when the layer takes them all (a client ignores NewSessionTicket) and
 * *key_update is -1 (none), 0 (KeyUpdate, update_not_requested) or 1 (update_requested); else
 * -(the alert to send) and *why says what was wrong. A message must lie whole in the record
 * (one split across records is not taken: the connection fails closed), a KeyUpdate last. */
long tls_post_handshake(const unsigned char *p, size_t n, int server, int *key_update, const char **why);

#endif
