/* cas/tls.h - TLS 1.3 contexts for the CAS server and its clients, and CA pinning. */
#ifndef SCP_CAS_TLS_H
#define SCP_CAS_TLS_H

#include <openssl/ssl.h>

#include "cas/keys.h"
#include "scp/err.h"

/* Server context: TLS 1.3 only, the server certificate with the CA in its chain, and an
 * optional client certificate (any self-signed one: the key is the identity). */
SSL_CTX *cas_tls_server_ctx(const cas_identity *id, scp_err *err);
/* Client context, with the identity file's key and certificate if identity is not NULL. */
SSL_CTX *cas_tls_client_ctx(const char *identity, scp_err *err);
/* After the handshake: check that the server is CAS: its chain holds a certificate whose
 * fingerprint is pin_hex (the root), the leaf was issued by it and is CAS's server
 * certificate (cas_is_server_cert). seen_fp receives the chain's CA fingerprint. */
int cas_tls_check_pin(SSL *ssl, const char *pin_hex, char seen_fp[65], scp_err *err);
/* The id of the client's certificate key on a server connection; 0 if found, -1 if none. */
int cas_tls_peer_id(SSL *ssl, char out[65]);

#endif
