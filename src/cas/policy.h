/* cas/policy.h - session policies: YAML text -> validated struct.
 *
 * The schema (unknown keys are refused; anchors and aliases are refused):
 *   name: NAME                       # [A-Za-z0-9_.-]{1,64}
 *   predecessor: HASH                # required to update: hex SHA-256 of the current version
 *   services:                        # 1..64
 *     - name: NAME
 *       measurements: [HEX64, ...]   # 1..64 allowed measurements
 *       platforms: [HEX64, ...]      # optional: allowed platform ids (default: any enrolled)
 *       command: [ARG, ...]          # optional, <= 256 args
 *       environment: {KEY: VALUE}    # optional, <= 256
 *       cwd: PATH                    # optional
 *       append_args: true|false      # optional, default false: whether `scpctl run ... -- PROG ARGS`
 *                                    # may append ARGS to command (the operator is not trusted with it)
 *       files: [{path: PATH, content: TEXT}]   # optional, <= 64
 *       volumes: [NAME, ...]         # optional: volumes of this session the service mounts
 *       network:                     # optional: the network shield (docs/shield.md "Network")
 *         certificate: NAME          # an x509 secret: the service's certificate and key
 *         listen: [{port: N, protocol: tls|postgres|mysql, client_certificate: required|none, client_ca: service|SECRET}]
 *         peers: [{host: HOST|IP|CIDR, port: N, protocol: tls|postgres|mysql, name: NAME, ca: service|SECRET}]
 *         default: allow|refuse      # other TCP traffic: plaintext, or ECONNREFUSED/EACCES
 *         min_tls: "1.3"|"1.2"       # default 1.3
 *       snp: {measurement: HEX96, host_data: HEX64,                       # optional: accept
 *             min_tcb: {bootloader: N, tee: N, snp: N, microcode: N}}     # AMD SEV-SNP guests
 *       tdx: {mrtd: HEX96, rtmr0: HEX96, ..., rtmr3: HEX96, accept_tcb: [STATUS, ...]}  # Intel TDX
 *       sgx: {mrenclave: HEX64, mrsigner: HEX64, min_isvsvn: N, accept_tcb: [STATUS, ...]}  # SGX
 *                                    # STATUS: Intel's TCB status names (default [UpToDate]);
 *                                    # evidence of a platform without its section is refused
 *       console: {stdin: sealed|plain, stdout: sealed|plain, stderr: sealed|plain}
 *                                    # optional, each default plain: sealed streams are sealed
 *                                    # records (scp/sealed_stream.h) under the service's console key
 *   secrets:                         # optional, <= 256
 *     - name: NAME
 *       kind: random|ascii|explicit|x509|imported
 *       size: N                      # random/ascii: 1..4096 (bytes/characters)
 *       value: TEXT                  # explicit
 *       common_name: CN              # x509
 *       dns: [NAME, ...]  ip: [ADDR, ...]  valid_days: N   # x509, optional
 *       session: NAME  secret: NAME  # imported: a secret that session exports to this one
 *       owner: ID                    # imported, optional: the exporting session's owner (default:
 *                                    # this session's owner)
 *       export: [SESSION | {session: SESSION, owner: ID}, ...]   # optional: who may import it;
 *                                    # SESSION alone: that session of the exporter's own owner
 *   volumes: [{name: NAME, path: PATH}]       # optional, <= 64
 *   network: [{port: N, peer: HOST:PORT, secret: NAME}]  # optional, legacy: accepted and ignored
 *                                    # (the network shield reads each service's `network`)
 *
 * Placeholders $$SCP::NAME$$ (or $$SCP::NAME:crt$$ / :key / :ca (the service CA) for x509 secrets) may
 * appear in command arguments, environment values and file contents; every one must name a
 * secret of the session. */
#ifndef SCP_CAS_POLICY_H
#define SCP_CAS_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"

#define POLICY_MAX_DOC (256 * 1024)

enum cas_secret_kind { SECRET_RANDOM = 1, SECRET_ASCII, SECRET_EXPLICIT, SECRET_X509, SECRET_IMPORTED };

typedef struct cas_strlist {
    char **v;
    size_t n;
} cas_strlist;

typedef struct cas_secret_def {
    char *name;
    enum cas_secret_kind kind;
    size_t size;
    char *value;
    char *common_name;
    cas_strlist dns, ip;
    int valid_days;
    char *import_session, *import_secret;
    char *import_owner; /* the exporting session's owner; NULL: the importer's own owner */
    cas_strlist export_to;    /* sessions that may import it ... */
    cas_strlist export_owner; /* ... each owned by this identity id ("": the exporter's owner) */
} cas_secret_def;

typedef struct cas_file_def {
    char *path, *content;
} cas_file_def;

/* What a service accepts from one hardware platform (snp, tdx or sgx key of a service).
 * Hardware evidence of a platform the service has no section for is refused. */
typedef struct cas_tee_policy {
    int present;
    uint8_t measurement[48];   /* SNP MEASUREMENT or TDX MRTD (required) */
    uint8_t host_data[32];     /* SNP, when has_host_data */
    uint8_t rtmr[4][48];       /* TDX, each when bit i of rtmr_set */
    uint8_t mrenclave[32], mrsigner[32]; /* SGX, when has_mrenclave / has_mrsigner (one at least) */
    int has_host_data, has_mrenclave, has_mrsigner;
    unsigned rtmr_set;
    unsigned min_isvsvn;       /* SGX */
    uint8_t min_tcb[4];        /* SNP: bootloader, tee, snp, microcode */
    unsigned accept_tcb;       /* TDX/SGX: bit (1 << SCP_DCAP_TCB_x) per accepted status; 0: UpToDate */
} cas_tee_policy;

/* A service's network shield section. A CA is "service" (CAS's service CA) or the name of a
 * secret whose value is a PEM certificate (explicit or imported). */
/* How a connection of a listen or peer rule starts (`protocol`): TLS from the first byte, or
 * a protocol's own request for TLS: PostgreSQL's SSLRequest, MySQL's greeting and SSLRequest
 * (docs/shield.md). */
enum { CAS_NET_PROTO_TLS = 0, CAS_NET_PROTO_POSTGRES = 1, CAS_NET_PROTO_MYSQL = 2 };

typedef struct cas_net_listen {
    long port;
    int proto;       /* CAS_NET_PROTO_* */
    int client_cert; /* require a client certificate, verified against client_ca */
    char *client_ca;
    char *client_session, *client_owner; /* the identity the client's certificate must carry (NULL: any) */
    /* what a per-instance client certificate must carry (NULL: not checked): the service of
     * client_session, the measurement (64 hex) the client attested, the platform id (64 hex)
     * it attested on */
    char *client_service, *client_measurement, *client_platform;
} cas_net_listen;

typedef struct cas_net_peer {
    char *host; /* DNS name, IPv4/IPv6 address, or CIDR (a.b.c.d/n) */
    long port;
    int proto;  /* CAS_NET_PROTO_* */
    char *name; /* the name the peer's certificate must carry (default: host unless a CIDR) */
    char *ca;
    /* the CAS identity the peer's certificate must carry, scp://OWNER/SESSION/CERTIFICATE
     * (session NULL: not checked; owner NULL: this session's owner; certificate NULL: any) */
    char *session, *owner, *certificate;
    /* what a per-instance certificate must carry (NULL: not checked; docs/cas.md): the service
     * (of `session`), the measurement (64 hex) the server attested and its platform id (64 hex) */
    char *service, *measurement, *platform;
} cas_net_peer;

typedef struct cas_service_net {
    int present;
    char *certificate;
    cas_net_listen *listen;
    size_t n_listen;
    cas_net_peer *peers;
    size_t n_peers;
    int refuse;  /* default for other TCP traffic: 0 plaintext allowed, 1 refused */
    int min_tls; /* 12 or 13 */
    int instance; /* identity: instance: a certificate per attested instance, for a key it made */
} cas_service_net;

typedef struct cas_service_def {
    char *name;
    cas_strlist measurements, platforms, command, env_keys, env_values, volumes;
    char *cwd;
    cas_file_def *files;
    size_t n_files;
    int append_args; /* the runtime may append the operator's ARGS to command (default: no) */
    cas_tee_policy snp, tdx, sgx; /* hardware platforms this service accepts (none: sim only) */
    int console_set, console_stdin, console_stdout, console_stderr; /* 1: sealed */
    cas_service_net net;
} cas_service_def;

typedef struct cas_volume_def {
    char *name, *path;
    long chunk_size; /* the chunk size the volume is created with (a power of two from 4096 to
                      * 65536), 0 for the library's default; an existing volume keeps its own */
} cas_volume_def;

typedef struct cas_net_rule {
    long port;
    char *peer, *secret;
} cas_net_rule;

typedef struct cas_policy {
    char *name, *predecessor;
    cas_service_def *services;
    size_t n_services;
    cas_secret_def *secrets;
    size_t n_secrets;
    cas_volume_def *volumes;
    size_t n_volumes;
    cas_net_rule *network;
    size_t n_network;
} cas_policy;

/* Parse and validate. On failure returns NULL with SCP_E_INVAL and a message that names the
 * offending key or line. */
cas_policy *cas_policy_parse(const char *text, size_t len, scp_err *err);
void cas_policy_free(cas_policy *p);

const cas_service_def *cas_policy_service(const cas_policy *p, const char *name);
const cas_secret_def *cas_policy_secret(const cas_policy *p, const char *name);
const cas_volume_def *cas_policy_volume(const cas_policy *p, const char *name);

/* A short fingerprint of a secret's definition (kind and parameters) to know whether a stored
 * value still fits it after an update: hex SHA-256, 64 chars. */
void cas_secret_spec(const cas_secret_def *s, char out[65]);

/* Valid NAME: [A-Za-z0-9_.-]{1,64}, not starting with '.'. */
int cas_name_ok(const char *s);

#endif
