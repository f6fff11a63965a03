/* cas/keys.h - the CAS master key (sealing seam), the CA and server identity, X.509 issuance.
 *
 * Files under the data directory:
 *   master.key   32 random bytes, mode 0600 (sim keystore; see cas_keystore below)
 *   ca.crt       the CA certificate (public; its SHA-256 is the fingerprint clients pin)
 *   ca.key.enc   the CA private key, PKCS#8 DER encrypted with AES-256-GCM under the master key
 *   server.crt   the TLS server certificate issued by the CA
 *   server.key.enc  its private key, encrypted like ca.key.enc
 */
#ifndef SCP_CAS_KEYS_H
#define SCP_CAS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "scp/err.h"

/* The master-key seam: a keystore unseals (or creates on first start) the 32-byte master key.
 * "sim" keeps it in a 0600 file; a hardware backend would seal it to CAS's own TEE
 * measurement instead, without changes elsewhere. */
typedef struct cas_keystore {
    const char *name;
    int (*load_or_create)(const char *data_dir, uint8_t key[32], int *created, scp_err *err);
} cas_keystore;
extern const cas_keystore cas_keystore_sim_file;

typedef struct cas_identity {
    X509 *ca_cert;
    EVP_PKEY *ca_key;
    X509 *server_cert;
    EVP_PKEY *server_key;
    char ca_fp[65]; /* hex SHA-256 of the CA certificate (DER) */
} cas_identity;

/* Load the identity, or create it (CA + server certificate) on first start. *created = 1 then. */
int cas_identity_load_or_create(const char *data_dir, const uint8_t master[32], cas_identity *id, int *created,
                                scp_err *err);
void cas_identity_free(cas_identity *id);

/* Hex SHA-256 of a certificate's DER encoding. */
void cas_cert_fingerprint(X509 *cert, char out[65]);
/* Hex SHA-256 of a public key's SubjectPublicKeyInfo (DER): the identity of a client. */
int cas_pubkey_id(EVP_PKEY *key, char out[65]);

/* Issue a certificate for pub signed by issuer_key (self-signed when issuer_cert is NULL).
 * sans: comma-separated "DNS:x,IP:1.2.3.4" or NULL. */
X509 *cas_x509_issue(EVP_PKEY *pub, const char *cn, const char *sans, int days, int is_ca, EVP_PKEY *issuer_key,
                     X509 *issuer_cert, scp_err *err);

/* PEM helpers; return malloc'd NUL-terminated strings. */
char *cas_cert_pem(X509 *cert);
char *cas_key_pem(EVP_PKEY *key);

#endif
