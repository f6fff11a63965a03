/* runtime/run_int.h - what the files of scpctl run with CAS (attest_run.c and run_*.c) give
 * each other. The flow is attest_run.c's; each function shared here is documented here, at
 * its declaration, and not again at its definition. */
#ifndef SCP_RUNTIME_RUN_INT_H
#define SCP_RUNTIME_RUN_INT_H

#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <time.h>

#include "common/util.h"
#include "runtime/attest_run.h"
#include "scp/shield.h"

/* The name the run logs under. */
#define RUN_WHO(o) ((o)->who ? (o)->who : "scpctl run")

static inline double run_now_s(void) { return (double)scp_now_ns() / 1e9; }

/* A volume of the service, and the last tag reported to CAS for it. */
struct run_volume {
    const char *name;
    char dir[PATH_MAX];
    uint64_t reported_gen;
    char reported[2 * SCP_VOLUME_TAG_LEN + 1];
};

/* The renewal of the instance certificate (run_cas.c, "renewal of the instance certificate"). */
struct run_renewal {
    int fd;                              /* the page's memfd; -1: no renewal */
    struct scp_shield_net_renew *page;
    uint8_t ik_pub[SCP_INSTANCE_KEY_LEN];
    double next;                         /* when to try (run_now_s) */
    time_t expires;                      /* the current certificate's notAfter */
};

/* ---- volumes (run_volumes.c) ---- */

/* Open (or, on first start, create with chunks of chunk bytes, 0 for the library's default, and
 * fill through o->seed) the volume at dir against the tag CAS expects. An existing volume keeps
 * the chunk size it was created with. The tag on disk afterwards goes to *now. */
int run_prepare_volume(const struct scp_attest_run_opts *o, const char *name, const char *dir, const char *mount,
                       const uint8_t key[SCP_VOLUME_KEY_LEN], uint32_t chunk, const uint8_t *seed_key,
                       const char *expected_hex, scp_volume_tag *now, scp_err *err);

/* ---- the configuration's checks (run_policy.c) ---- */

/* The policy's files: absolute normalized paths, each once, none inside (or holding) a volume
 * mount, whose files the volume serves. */
int run_check_files(json_t *files, json_t *vols, const char *service, scp_err *err);

/* Every SCP_SEED_* still in env (a volume this service does not use) goes, its value wiped
 * (run_take_seed_key took the service's own). */
void run_drop_seed_vars(json_t *env);

/* The policy's environment must not steer the loader: what it loads was measured. */
int run_env_name_ok(const char *k);

/* The image's Env beneath the policy's environment in cfg (a name the policy sets keeps the
 * policy's value), so the program gets both through the launch memfd. */
int run_merge_image_env(json_t *cfg, char *const *image_env, scp_err *err);

/* A path of the policy (the working directory, a volume's mount point) as the program will see
 * it inside the rootfs `root`: refused when ".." climbs above "/" or when the part of it that
 * exists goes through a symlink that leaves the rootfs (openat2 RESOLVE_BENEATH: absolute
 * symlinks count as leaving). After pivot_root nothing could escape anyway; the point is to
 * refuse, before anything starts, a policy that names a place the owner did not mean. */
int run_path_in_rootfs(int root, const char *what, const char *path, const char *rootfs, scp_err *err);

/* The policy's SCP_SEED_<volume> (hex key of the files a secure image sealed for that volume),
 * taken out of the environment: it is the entry's, never the program's. */
int run_take_seed_key(json_t *env, const char *vol, uint8_t key[SCP_VOLUME_KEY_LEN], int *found, scp_err *err);

/* ---- the memfds for the shield (run_config.c) ---- */

/* The policy's console section (SCP_SHIELD_ENV_CONSOLE_FD) in a sealed memfd: which streams
 * are sealed and the service's console key; `lines`: records in line form. Returns the
 * descriptor, -1 when nothing is sealed, -2 on error. */
int run_console_memfd(json_t *con, const char *session, const char *service, int lines);

/* The injected files (SCP_SHIELD_ENV_FILES_FD, layout in scp/shield.h) in a sealed memfd that
 * only the shield reads: their content never touches a file system. Mode 0400: the program's
 * own user reads them. Returns the descriptor (inheritable) or -1. */
int run_files_memfd(json_t *files);

/* The launch memfd (SCP_SHIELD_ENV_LAUNCH_FD): the policy's arguments after argv[0] and its
 * environment, which the shield installs before main. Returns the descriptor (inheritable,
 * sealed) or -1. */
int run_launch_memfd(json_t *cmd, size_t first, json_t *env);

/* The network section (SCP_SHIELD_ENV_NET_FD, layout in scp/shield.h) in a sealed memfd: the
 * service's certificate and private key reach the shield only this way. Returns the
 * descriptor (inheritable) or -1. */
int run_net_memfd(json_t *net);

/* ---- CAS (run_cas.c) ---- */

/* The configuration from CAS (scp_attest_get_config, or with o->evidence the evidence checked
 * against m and ik first), retrying what looks like CAS being unreachable (system errors while
 * connecting or talking) with exponential backoff until o->cas_timeout seconds have passed. A
 * pin mismatch (SCP_E_INTEGRITY) or a refusal is final at once. */
int run_attest_retry(scp_cas_client *c, const struct scp_attest_run_opts *o, const uint8_t m[32],
                     const uint8_t *ik, char **cfg, scp_err *err);

/* identity: instance: the certificate CAS sent must be for our key (*expires: its notAfter);
 * the network section then gets the private key in PEM (it has none from CAS). */
int run_instance_key_install(json_t *net, EVP_PKEY *ik, const uint8_t ik_pub[SCP_INSTANCE_KEY_LEN],
                             time_t *expires, scp_err *err);

/* The instance key (docs/cas.md "identity: instance"): a P-256 key made here for every
 * attestation; its public half travels in the evidence, and CAS certifies it when the service's
 * network identity is per instance. The private half goes only to the shield (the network
 * memfd), never to CAS. pub receives the uncompressed point. */
EVP_PKEY *run_instance_key_new(uint8_t pub[SCP_INSTANCE_KEY_LEN], scp_err *err);

/* Make the renewal page (its memfd goes to the shield) and schedule the first renewal of the
 * certificate that expires at `expires`. */
int run_renewal_start(struct run_renewal *rn, time_t expires, const uint8_t ik_pub[SCP_INSTANCE_KEY_LEN],
                      const struct scp_attest_run_opts *o, scp_err *err);

/* One attempt: attest again with the instance key; a certificate CAS issues for it is
 * published on the page; logged either way, and the next attempt scheduled. */
void run_renewal_try(struct run_renewal *rn, scp_cas_client *c, const struct scp_attest_run_opts *o,
                     const uint8_t m[32]);

/* Report one tag record to CAS; keeps the highest generation reported per volume, so a late
 * record of a forked writer never looks like a rollback to CAS. Returns 0 when CAS holds this
 * generation or a newer one. */
int run_report_tag(scp_cas_client *c, const struct scp_attest_run_opts *o, const char *token, struct run_volume *rv,
                   const uint8_t *tag);

#endif
