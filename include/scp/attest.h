/* scp/attest.h - attestation evidence, the sim TEE backend, and the runtime's client flow.
 *
 * Evidence (version 1) is a binary structure, big-endian:
 *   "SCPE" | u16 version (1) | u16 backend | u32 body_len | body
 *   body = TLV fields: u16 type | u16 length | value
 *     1 NONCE (32)        the CAS nonce, fresh and single-use
 *     2 PUBKEY (32)       the runtime's ephemeral X25519 public key
 *     3 MEASUREMENT (32)  SHA-256 identity of what runs (see scp_attest_measure)
 *     4 PLATFORM (32)     platform id: SHA-256 of the platform's public key
 *     5 QUOTE (<= 16 KiB) backend-specific report (hardware backends; absent in sim)
 *     0x8001 SNP_VCEK     SEV-SNP: the VCEK (DER) from the guest's certificate table (optional:
 *                         CAS's collateral cache supplies it otherwise)
 *     0x8002 INSTANCE_KEY (65) optional: the instance's P-256 public key (uncompressed point),
 *                         for which CAS issues a per-instance certificate when the service's
 *                         network section says `identity: instance` (docs/cas.md). Bound like
 *                         the channel key: the sim signature covers it, and hardware report data
 *                         include it (scp_hw_report_data_ik)
 *     0x8000..0xfffe      other optional extensions, ignored by version-1 verifiers
 *     0xffff SIGNATURE    last field; sim: Ed25519 (64 bytes) by the platform key over
 *                         "SCP-EVIDENCE-SIM-v1" NUL || every byte before this field
 *   Fields 1-4 are required exactly once; unknown types below 0x8000 are refused; nothing may
 *   follow the signature; the whole evidence is at most SCP_EVIDENCE_MAX bytes. sim evidence
 *   needs the signature; hardware evidence (tdx, snp, sgx) needs QUOTE (the hardware's report,
 *   signed by the hardware) and has no signature field. For those, PLATFORM is the SHA-256 of
 *   scp_hw_platform_identity (scp/attest_hw.h), and the report data of the quote is
 *   scp_hw_report_data(nonce, pubkey, measurement): the same three values the sim signature
 *   covers, bound by the hardware's signature instead.
 *
 * The sim backend: a software TEE for any Linux machine. The "platform key" (Ed25519, a 0600
 * file readable by root only) plays the hardware's quoting key. Memory is NOT protected and
 * root can read the key: every run says so.
 *
 * Errors: see scp/err.h (malformed evidence: SCP_E_FORMAT; bad signature: SCP_E_INTEGRITY).
 */
#ifndef SCP_ATTEST_H
#define SCP_ATTEST_H

#include <stddef.h>
#include <stdint.h>

#include "scp/cas.h"
#include "scp/err.h"

#define SCP_EVIDENCE_VERSION 1
#define SCP_EVIDENCE_MAX 32768
#define SCP_INSTANCE_KEY_LEN 65 /* an uncompressed P-256 point: 0x04 || X || Y */

enum scp_tee_backend { SCP_TEE_SIM = 1, SCP_TEE_TDX = 2, SCP_TEE_SNP = 3, SCP_TEE_SGX = 4 };

enum {
    SCP_EV_NONCE = 1,
    SCP_EV_PUBKEY = 2,
    SCP_EV_MEASUREMENT = 3,
    SCP_EV_PLATFORM = 4,
    SCP_EV_QUOTE = 5,
    SCP_EV_SNP_VCEK = 0x8001,
    SCP_EV_INSTANCE_KEY = 0x8002,
    SCP_EV_SIGNATURE = 0xffff,
};

/* Parsed evidence; pointers point into the buffer given to scp_evidence_parse. */
typedef struct scp_evidence {
    uint16_t version, backend;
    uint8_t nonce[32], pubkey[32], measurement[32], platform_id[32];
    const uint8_t *quote;
    size_t quote_len;
    const uint8_t *vcek; /* SCP_EV_SNP_VCEK, or NULL */
    size_t vcek_len;
    const uint8_t *instance_key; /* SCP_EV_INSTANCE_KEY (SCP_INSTANCE_KEY_LEN bytes), or NULL */
    const uint8_t *signed_part; /* bytes covered by the signature */
    size_t signed_len;
    const uint8_t *signature;
    size_t signature_len;
} scp_evidence;

/* Parse (structure only, no signature check). */
int scp_evidence_parse(const uint8_t *buf, size_t len, scp_evidence *out, scp_err *err);

/* ---- sim backend ------------------------------------------------------------------------ */

/* Create a sim platform key (Ed25519, PEM, mode 0600) at path; refuses to overwrite. */
int scp_sim_platform_create(const char *path, scp_err *err);
/* The platform's public key (32 bytes) and id (SHA-256 of the public key) from its key file.
 * The key file must not be readable by group or others. */
int scp_sim_platform_pubkey(const char *path, uint8_t pub[32], uint8_t id[32], scp_err *err);
/* Produce sim evidence: *out is malloc'd. */
int scp_sim_evidence(const char *platform_key_path, const uint8_t nonce[32], const uint8_t pubkey[32],
                     const uint8_t measurement[32], uint8_t **out, size_t *out_len, scp_err *err);
/* The same carrying an instance key (SCP_INSTANCE_KEY_LEN bytes; NULL: none) under the signature. */
int scp_sim_evidence_ik(const char *platform_key_path, const uint8_t nonce[32], const uint8_t pubkey[32],
                        const uint8_t measurement[32], const uint8_t *instance_key, uint8_t **out, size_t *out_len,
                        scp_err *err);
/* Verify sim evidence's signature against an enrolled platform public key (and that the
 * platform id matches it). */
int scp_sim_verify(const scp_evidence *ev, const uint8_t platform_pub[32], scp_err *err);

/* The measurement: SHA-256 over, for each file in order (the program image, its loader and
 * libraries, the shield runtime), "file" || u64 size || SHA-256(content), then "config" ||
 * u64 len || SHA-256(config). Paths are not measured, contents are. */
int scp_attest_measure(const char *const *files, size_t n_files, const void *config, size_t config_len,
                       uint8_t out[32], scp_err *err);
/* The same over open descriptors (read with pread from offset 0, so their positions are left
 * alone): what scpctl run measures and then executes. scp_attest_measure opens its paths and
 * calls this. */
int scp_attest_measure_fds(const int *fds, size_t n_fds, const void *config, size_t config_len, uint8_t out[32],
                           scp_err *err);
/* Its two halves: the per-file hashes (digest[i], size[i]; on several cores), and the fold of
 * such hashes and the configuration into the measurement. scpctl run needs the hashes for the
 * trusted-file manifest, which is part of the configuration. */
int scp_attest_hash_fds(const int *fds, size_t n_fds, uint8_t (*digest)[32], uint64_t *size, scp_err *err);
int scp_attest_measure_fold(const uint8_t (*digest)[32], const uint64_t *size, size_t n, const void *config,
                            size_t config_len, uint8_t out[32], scp_err *err);

/* Print, once per process, the sim-mode warning (memory is not protected) to stderr. */
void scp_sim_warn(void);

/* ---- tdx and snp backends: configfs-tsm (src/attest/tsm.c) ------------------------------ */

/* The TEE this machine's configfs-tsm offers: SCP_TEE_TDX, SCP_TEE_SNP, or 0 when there is no
 * configfs-tsm or its provider is unknown (provider receives its name, "" if none). */
int scp_tsm_detect(char provider[32], scp_err *err);
/* Evidence of backend SCP_TEE_TDX or SCP_TEE_SNP from a configfs-tsm report whose report data
 * is scp_hw_report_data(nonce, pubkey, measurement); SNP evidence carries the VCEK from the
 * auxblob's certificate table when there is one. identity receives the platform's hardware
 * identity (scp_hw_platform_identity), which an administrator enrolls. *ev_out is malloc'd.
 * Another process writing the same report entry meanwhile: SCP_E_BUSY (try again); the
 * machine's provider is another TEE: SCP_E_NOTSUP; no configfs-tsm: SCP_E_NOENT. */
int scp_tsm_evidence(int backend, const uint8_t nonce[32], const uint8_t pubkey[32], const uint8_t measurement[32],
                     uint8_t identity[32], uint8_t **ev_out, size_t *ev_len, scp_err *err);

/* The same carrying an instance key (NULL: none), which the report data then bind too. */
int scp_tsm_evidence_ik(int backend, const uint8_t nonce[32], const uint8_t pubkey[32], const uint8_t measurement[32],
                        const uint8_t *instance_key, uint8_t identity[32], uint8_t **ev_out, size_t *ev_len,
                        scp_err *err);

/* `--tee NAME`: "sim", "tdx", "snp" (this machine must offer it), "auto" (what configfs-tsm
 * offers, else sim; said receives the sentence to show), "sgx" (not implemented at runtime:
 * SCP_E_NOTSUP). Returns the backend, or -1 with a message saying what the machine has. */
int scp_tee_select(const char *name, char *said, size_t said_len, scp_err *err);

/* ---- runtime client flow ---------------------------------------------------------------- */

/* Ask CAS for a nonce, build sim evidence binding it, an ephemeral X25519 key and the
 * measurement, send it with the session and service names, and decrypt the answer, which
 * CAS encrypted to the ephemeral key. On success *config_json is the service's configuration
 * (malloc'd JSON text: command, environment, cwd, files, volumes with keys and expected tags,
 * volume_token); the caller must wipe and free it. A refusal returns -1 with CAS's message. */
int scp_attest_get_config(scp_cas_client *c, const char *session, const char *service, const char *platform_key_path,
                          const uint8_t measurement[32], char **config_json, scp_err *err);
/* The same with evidence of the given backend: SCP_TEE_SIM (platform_key_path), SCP_TEE_TDX or
 * SCP_TEE_SNP (configfs-tsm; platform_key_path unused). A hardware platform CAS does not know
 * gets a refusal that names the identity to enroll. */
int scp_attest_get_config_tee(scp_cas_client *c, const char *session, const char *service, int backend,
                              const char *platform_key_path, const uint8_t measurement[32], char **config_json,
                              scp_err *err);

/* The same (backend as scp_attest_get_config_tee) with evidence that also carries the
 * instance's public key (SCP_INSTANCE_KEY_LEN bytes, uncompressed P-256; NULL: none): a
 * service whose network identity is `instance` then gets a certificate for that key. */
int scp_attest_get_config_ik(scp_cas_client *c, const char *session, const char *service, int backend,
                             const char *platform_key_path, const uint8_t measurement[32], const uint8_t *instance_key,
                             char **config_json, scp_err *err);

/* The same with the evidence from elsewhere (the local attestation service of a secure image,
 * docs/image.md): get_ev makes evidence binding nonce and pub (*ev malloc'd). */
typedef int (*scp_attest_evidence_fn)(void *ctx, const uint8_t nonce[32], const uint8_t pub[32], uint8_t **ev,
                                      size_t *evlen, scp_err *err);
int scp_attest_get_config_ev(scp_cas_client *c, const char *session, const char *service, scp_attest_evidence_fn get_ev,
                             void *ctx, char **config_json, scp_err *err);

/* Report a volume's new tag (80 hex digits) after a durable commit; token is the
 * volume_token of the configuration. */
int scp_attest_report_tag(scp_cas_client *c, const char *session, const char *service, const char *volume,
                          const char *tag_hex, const char *token, scp_err *err);

/* Config channel: derive the AES-256-GCM key from an X25519 shared secret (used by CAS and
 * the client): HKDF-SHA256(ikm = shared, salt = nonce, info = "scp cas config v1" ||
 * runtime pubkey || CAS pubkey). */
int scp_attest_channel_key(const uint8_t shared[32], const uint8_t nonce[32], const uint8_t runtime_pub[32],
                           const uint8_t cas_pub[32], uint8_t key[32], scp_err *err);

#endif
