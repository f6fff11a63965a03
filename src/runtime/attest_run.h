/* runtime/attest_run.h - scpctl run with CAS: measure what will run from open descriptors,
 * attest, apply the configuration that CAS releases (command, environment, working directory,
 * volumes with their keys and expected tags) and run the program under the shield, while a
 * supervising process reports every volume's new tag to CAS.
 *
 * Processes: scpctl measures and attests, then forks. The child applies the configuration and
 * execs the measured program from the measured descriptor (execveat). The parent stays as the
 * supervisor: it holds the CAS connection and the volume token (never the child), reads the
 * tags that the shield writes to a pipe after each commit (SCP_SHIELD_ENV_TAG_FD), reports them
 * with scp_attest_report_tag (asynchronously: a commit does not wait for CAS; with tag_sync,
 * every commit waits until CAS acknowledged its tag, and if CAS cannot be told within
 * cas_timeout the program is killed rather than let an fsync return), forwards
 * SIGTERM/SIGINT/SIGHUP/SIGUSR1/SIGUSR2 to the child and exits with its status.
 */
#ifndef SCP_RUNTIME_ATTEST_RUN_H
#define SCP_RUNTIME_ATTEST_RUN_H

#include <stdint.h>

#include "runtime/container.h"
#include "runtime/elfdeps.h"
#include "runtime/launch.h"
#include "scp/attest.h"
#include "scp/cas.h"
#include "scp/err.h"
#include "scp/volume.h"

/* The service's configuration: the launch options that change what the program can do, and the
 * trusted-file manifest. Its canonical text (docs/runtime.md "What is measured") is hashed into
 * the measurement, so a policy's measurement names the configuration too. */
struct scp_attest_run_conf {
    int net_none;               /* --net none */
    uint64_t keep_caps;         /* --cap */
    const char *const *trusted; /* --trusted PATH (inside the rootfs) */
    size_t ntrusted;
    int shield_in_root;         /* the shield is a file of the root (a secure image's /scp/lib), not
                                   bound into a container: the manifest names it by its own path */
};

/* What scp_attest_run_measure computes besides the open descriptors. */
struct scp_attest_run_identity {
    uint8_t m[32];           /* the measurement */
    uint8_t config_hash[32]; /* SHA-256 of config */
    char *config;            /* the canonical configuration text (NUL-terminated) */
    size_t config_len;
    char *manifest;          /* the trusted-file manifest for the shield (scp/shield.h) */
    size_t manifest_len;
};
void scp_attest_run_identity_free(struct scp_attest_run_identity *id);

/* Whether prog (resolved as scp_elf_open_prog does) is one the shield starts in: 0 (also when
 * it cannot be opened: the measurement's own open says why), or -1 with err set for a static
 * program or a Go program at a fixed address (scp_notify_image). An attested program gets its
 * arguments, secrets, sealed console, network rules and protected paths from the shield: such
 * a program saw placeholders for its arguments and wrote its output in plaintext through the
 * sealed console's relay. scp_attest_run_measure and an image's measurement ask it first
 * (before the shield's libraries are looked for in a root that has none). */
int scp_attest_program_shielded(int root, const char *prog, const char *search_path, scp_err *err);

/* Open the program (searched in $PATH when it has no '/'), its interpreter, the shield runtime
 * (shield_lib, or where scpctl run finds it; it is preloaded), every library they need
 * (elfdeps.h) and the trusted files of conf, hash each (recording its stamp: device, inode,
 * size, times, which must not change while it is hashed), and build the manifest and the
 * configuration text from them; the measurement is scp_attest_measure_fold over the files in
 * that order and the configuration. *set receives the open descriptors (set->fd[0] is the
 * program). This is what both `scpctl run --cas` and `scpctl platform measure -- PROG`
 * compute. A program the shield does not start in is refused (scp_attest_program_shielded). */
int scp_attest_run_measure(const char *prog, const char *shield_lib, const char *rootfs,
                           const struct scp_attest_run_conf *conf, scp_elf_set *set,
                           struct scp_attest_run_identity *id, scp_err *err);
/* With a rootfs (not NULL), the program (searched in SCP_ATTEST_RUN_ROOTFS_PATH instead of $PATH),
 * its interpreter and libraries are resolved inside it as the program will see them after
 * pivot_root (scp_elf_set_open_in); the shield runtime stays a host file. */
#define SCP_ATTEST_RUN_ROOTFS_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct scp_attest_run_opts {
    const char *session, *service;
    int tee;                  /* SCP_TEE_SIM (default when 0), SCP_TEE_TDX or SCP_TEE_SNP (scp_tee_select) */
    const char *platform_key; /* the sim platform key file */
    const char *volume_dir;   /* NULL: scp_attest_run_default_volume_dir() */
    const char *shield_lib;   /* NULL: next to scpctl or $SCP_SHIELD_LIB */
    double cas_timeout;       /* seconds to keep retrying an unreachable CAS */
    double renew_interval;    /* identity: instance: seconds between renewals of the instance
                                 certificate (0: at half its remaining validity) */
    int trace;
    int tag_sync;             /* an fsync returns only after CAS acknowledged the new tag */
    struct scp_container_opts container; /* enabled: the program runs in a container (the
                                            default of scpctl run --cas); hostname NULL: the service */
    const char *const *trusted; /* --trusted PATH... (in the measurement and the manifest) */
    size_t ntrusted;
    char *const *argv;        /* PROG [ARGS...] from the command line */
    int argc;
    /* A secure image's entry under Docker (docs/image.md "Running under Docker"): */
    /* non-NULL: evidence from here (not platform_key), binding nonce, pub and the instance key
     * (scp/attest.h; SCP_INSTANCE_KEY_LEN bytes); it must carry the measurement computed here
     * and that key, else refused */
    int (*evidence)(void *ctx, const uint8_t nonce[32], const uint8_t pub[32], const uint8_t *instance_key,
                    uint8_t **ev, size_t *evlen, scp_err *err);
    void *evidence_ctx;
    const char *image_json;   /* non-NULL: the image's measurement (img_measure): argv[0] resolved
                                 in "/", its loader and libraries, the shield, and this document */
    int console_lines;        /* a sealed console's records in line form (SCP_SHIELD_CON_LINES) */
    int no_mount;             /* Docker is the container: no namespace, no mount; the shield alone
                                 serves the volumes' mount points */
    const struct scp_run_user *user; /* non-NULL: the program runs as this user (the image's USER) */
    /* non-NULL: called on a volume's first start, before it is used, with the fresh volume
     * (mounted at `mount`) and the key the policy's environment gives as SCP_SEED_<volume name>
     * (hex; NULL when none); it fills the volume (a secure image's files sealed at build). Every
     * SCP_SEED_* variable is taken out of the program's environment. */
    int (*seed)(void *ctx, const char *mount, const uint8_t *key, scp_volume *fresh, scp_err *err);
    void *seed_ctx;
    /* NULL-terminated NAME=VALUE: a secure image's Env (its image.json, so in the measurement),
     * the program's environment beneath the policy's, which wins for a name both set */
    char *const *image_env;
    const scp_shield_trusted *more_trusted; /* added to the shield's trusted-file manifest (the
                                 image's /scp/trusted): files not measured here, checked by digest */
    size_t n_more_trusted;
    const char *who;          /* the name on its log lines (scp_log); NULL: "scpctl run" */
};

/* One entry of a secure image's Env: 0 when it is NAME=VALUE with a name the program may get;
 * else -1 with err (a name that steers the loader or the shield, LD_*, GLIBC_TUNABLES,
 * SCP_SHIELD*, or the entry's own SCP_SEED_*: what the loader runs was measured without it). */
int scp_attest_run_image_env_check(const char *entry, scp_err *err);

/* The default volume directory: /var/lib/scp/volumes for root, else
 * $XDG_DATA_HOME/scp/volumes or ~/.local/share/scp/volumes. Static storage. */
const char *scp_attest_run_default_volume_dir(void);

/* Measure, attest (retrying connection failures with backoff up to cas_timeout), prepare the
 * volumes, run and supervise. Returns the program's exit status (128+N for signal N) or -1
 * with err set: SCP_E_ROLLBACK for a rolled-back volume, SCP_E_INTEGRITY for a wrong pin,
 * SCP_E_NOENT for a missing program, SCP_E_INVAL for a refusal (with CAS's reason). */
int scp_attest_run(scp_cas_client *c, const struct scp_attest_run_opts *o, scp_err *err);

#endif
