/* cas/keys.h - the CAS master key (sealing seam), CAS's identity (root, server certificate),
 * the service CA, X.509 issuance.
 *
 * Files under the data directory:
 *   master.key   32 random bytes, mode 0600 (sim keystore; see cas_keystore below)
 *   ca.crt       the CAS root (public; its SHA-256 is the fingerprint clients pin). It certifies
 *                CAS's server certificate and nothing else.
 *   ca.key.enc   the root's private key, PKCS#8 DER encrypted with AES-256-GCM under the master key
 *   server.crt   the TLS server certificate issued by the root, marked with CAS_SERVER_EKU_OID
 *   server.key.enc  its private key, encrypted like ca.key.enc
 *   service-ca.crt  the service CA: self-signed, independent of the root; it issues every
 *                session X.509 secret, never with CAS's marker
 *   service-ca.key.enc  its private key, encrypted like ca.key.enc
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

/* CAS's own name: the CN (and a DNS name) of its server certificate. No session certificate
 * may carry it (cas_x509_name_reserved). */
#define CAS_SERVER_NAME "scp-cas"
/* The extended key usage that marks CAS's server certificate, a UUID OID (ITU-T X.667). Only
 * the root puts it into a certificate, only into CAS's server certificate; clients require it. */
#define CAS_SERVER_EKU_OID "2.25.25278868328406106895184340165727908207"

typedef struct cas_identity {
    X509 *ca_cert; /* the root: certifies only server_cert */
    EVP_PKEY *ca_key;
    X509 *server_cert;
    EVP_PKEY *server_key;
    X509 *service_ca_cert; /* issues session certificates */
    EVP_PKEY *service_ca_key;
    char ca_fp[65];         /* hex SHA-256 of the root certificate (DER): the pin */
    char service_ca_fp[65]; /* hex SHA-256 of the service CA certificate (DER) */
    unsigned migrated;      /* CAS_MIGRATED_* bits: what loading an older data directory added */
} cas_identity;

#define CAS_MIGRATED_SERVICE_CA 1u /* the data directory had no service CA: one was created */
#define CAS_MIGRATED_SERVER_CERT 2u /* server.crt lacked CAS's marker: reissued (same key) */

/* Load the identity, or create it (root, server certificate, service CA) on first start;
 * *created = 1 then. A data directory from before the service CA is migrated (id->migrated). */
int cas_identity_load_or_create(const char *data_dir, const uint8_t master[32], cas_identity *id, int *created,
                                scp_err *err);
void cas_identity_free(cas_identity *id);

/* A first start that failed before CAS served anything (its store could not be opened: a
 * database not up yet): remove the master key it made, and the identity files if it made
 * them too, so that the next start is a first start again. Left, the master key would make
 * the next start take the empty audit log for a log that lost its rows (cas_audit_init). */
void cas_first_start_undo(const char *data_dir, int identity_too);

/* Hex SHA-256 of a certificate's DER encoding. */
void cas_cert_fingerprint(X509 *cert, char out[65]);
/* Hex SHA-256 of a public key's SubjectPublicKeyInfo (DER): the identity of a client. */
int cas_pubkey_id(EVP_PKEY *key, char out[65]);

/* Issue a certificate for pub signed by issuer_key (self-signed when issuer_cert is NULL).
 * sans: comma-separated "DNS:x,IP:1.2.3.4" or NULL. A leaf gets the usages serverAuth and
 * clientAuth; this function never issues CAS's marker (CAS_SERVER_EKU_OID). */
X509 *cas_x509_issue(EVP_PKEY *pub, const char *cn, const char *sans, int days, int is_ca, EVP_PKEY *issuer_key,
                     X509 *issuer_cert, scp_err *err);
/* A session's certificate for pub, issued by the service CA; refuses CAS's names. */
X509 *cas_service_cert_issue(const cas_identity *id, EVP_PKEY *pub, const char *cn, const char *sans, int days,
                             scp_err *err);
/* 1 if name (a CN or DNS name, any case, with or without a trailing dot, or a wildcard that
 * covers it) is CAS's own: session certificates may not carry it. */
int cas_x509_name_reserved(const char *name);
/* 1 if cert is marked as CAS's server certificate: CAS_SERVER_EKU_OID and serverAuth in its
 * extended key usage, and not a CA. (That the root issued it is the caller's check.) */
int cas_is_server_cert(X509 *cert);

/* PEM helpers; return malloc'd NUL-terminated strings. */
char *cas_cert_pem(X509 *cert);
char *cas_key_pem(EVP_PKEY *key);

#endif
