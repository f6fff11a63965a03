/* attest/hw_x509.h - certificate helpers shared by the hardware verifiers (SNP, TDX/SGX). */
#ifndef SCP_ATTEST_HW_X509_H
#define SCP_ATTEST_HW_X509_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "scp/err.h"

#define HW_CHAIN_MAX 8

/* Certificates from a PEM bundle or from DER certificates back to back (at most HW_CHAIN_MAX).
 * Returns the count (>= 1) with certs[0..n) owned by the caller, or -1 (SCP_E_FORMAT). */
int hw_certs_parse(const uint8_t *buf, size_t len, X509 **certs, scp_err *err);
void hw_certs_free(X509 **certs, int n);

/* One certificate read from a collateral file; a missing file is SCP_E_NOENT with a message
 * that names the file and what it is (what). */
X509 *hw_cert_load(const char *path, const char *what, scp_err *err);

/* cert is signed by issuer's key, names issuer as its issuer, and is valid at now (seconds
 * since the epoch). issuer may equal cert (a self-signed root). SCP_E_INTEGRITY otherwise. */
int hw_cert_check_link(X509 *cert, X509 *issuer, int64_t now, const char *what, scp_err *err);

/* cert is valid at now (seconds since the epoch; 0: the clock). SCP_E_INTEGRITY otherwise. */
int hw_cert_check_time(X509 *cert, int64_t now, const char *what, scp_err *err);

/* SHA-256 of the certificate's DER encoding. */
int hw_cert_sha256(X509 *cert, uint8_t out[32], scp_err *err);

/* The value of extension oid (dotted text) as raw bytes: a pointer into the certificate and
 * its length, or NULL when absent. */
const uint8_t *hw_cert_ext(X509 *cert, const char *oid, size_t *len);

/* Verify a DER or raw-(r||s) ECDSA signature: sig_der (DER) over msg with digest md. */
int hw_ecdsa_verify_der(EVP_PKEY *key, const EVP_MD *md, const uint8_t *msg, size_t msg_len, const uint8_t *sig_der,
                        size_t sig_len, scp_err *err);
/* r and s as big numbers (big- or little-endian byte strings of rs_len bytes each). */
int hw_ecdsa_verify_rs(EVP_PKEY *key, const EVP_MD *md, const uint8_t *msg, size_t msg_len, const uint8_t *r,
                       const uint8_t *s, size_t rs_len, int little_endian, scp_err *err);

/* ---- verified-collateral cache ----------------------------------------------------------
 * Collateral files (CRLs, signed JSON) that were read, parsed and verified, kept per process so
 * that a busy CAS verifies each once, not once per quote. An entry is keyed by the path, the
 * SHA-256 of the file's content (read and hashed on every use: an edited or replaced file
 * misses, whatever its timestamps) and a 32-byte context (the SHA-256 of the certificate whose
 * key verified it, or the pinned root).
 * Checks that depend on the time (validity, next update) stay with the caller, on every use. */
typedef struct hw_file_id {
    uint8_t sha256[32];
} hw_file_id;
typedef struct hw_cache_ops {
    int (*up_ref)(void *v); /* 1 on success */
    void (*release)(void *v);
} hw_cache_ops;

/* 0, or -1 if the file cannot be read (then nothing is cached for it; the caller's own read
 * reports why). */
int hw_file_id_of(const char *path, hw_file_id *id);
/* A new reference to the cached value, or NULL. */
void *hw_cache_get(const char *path, const hw_file_id *id, const uint8_t ctx[32], const hw_cache_ops *ops);
/* Store (a new reference to) v; an older entry for the same path is replaced. */
void hw_cache_put(const char *path, const hw_file_id *id, const uint8_t ctx[32], void *v, const hw_cache_ops *ops);

#endif
