/* scp/image.h - secure images: read a container image, write one that runs under SCP.
 *
 * Input (any of):
 *   - a `docker save` archive (a tar with manifest.json, the form of every Docker release;
 *     Docker 25+ puts an OCI layout beside it in the same tar),
 *   - an OCI image layout directory (oci-layout, index.json, blobs/sha256/...) or a tar of one,
 *   - an image of the local Docker engine, by name (through its API socket,
 *     $DOCKER_HOST=unix://PATH or /var/run/docker.sock).
 * The input is untrusted in form: every JSON document is checked for the fields we use, every
 * blob against its sha256 digest, every layer path against escaping the staging root.
 *
 * Build: the layers are applied in order (OCI whiteouts honoured) to a private staging
 * directory on disk (streamed through libarchive, never held whole in memory); there the paths
 * to protect are checked to exist, the trusted-files manifest is made (one line per regular file
 * outside the protected paths: "sha256 size mode path", sorted by path), and the measurement is
 * computed exactly as `scpctl run --rootfs STAGING` computes it for the entrypoint. The output
 * image is the input's layers unchanged plus one layer under /scp (scpctl and the libraries it
 * needs, the shield runtime, image.json, trusted-files), with a configuration whose entrypoint
 * is `/scp/entry` (the original entrypoint and command are in /scp/image.json). Every
 * timestamp, owner and order in what we write is fixed, so the same inputs give the same bytes.
 *
 * Output: one tar that is both a `docker load` archive (manifest.json, repositories) and an
 * OCI image layout (oci-layout, index.json, blobs/sha256), or loaded straight into the engine.
 */
#ifndef SCP_IMAGE_H
#define SCP_IMAGE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"

#define SCP_IMAGE_MAX_PATHS 64 /* --protect and --trusted, each */

/* The policy environment variable that carries the key of a protected path's sealed files to
 * the entry (suffixed with the volume's name; the entry removes it before the program runs). */
#define SCP_IMAGE_SEED_ENV "SCP_SEED_"

typedef struct scp_image_build_opts {
    const char *from;       /* input: archive path, OCI directory, or engine image name */
    const char *tag;        /* NAME:TAG of the output */
    const char *session;    /* the CAS session and service the image attests as */
    const char *service;
    const char *protect[SCP_IMAGE_MAX_PATHS]; /* absolute paths inside the image */
    size_t n_protect;
    /* paths (files or directories) that must be in the trusted-files manifest: each must exist in
     * the image by its real path (no symlink on the way), outside every protected path; the build
     * fails otherwise. Every other regular file is listed too: these only make it a checked
     * promise, and image.json names them ("trusted_paths"). */
    const char *trust[SCP_IMAGE_MAX_PATHS];
    size_t n_trust;
    const char *output;     /* a tar file to write, "-" for stdout, NULL: load into the engine */
    const char *entry;      /* scp-entry, the image's runtime (copied into /scp/bin with its libraries) */
    const char *shield_lib; /* libscp-shield.so to add */
    const char *tmpdir;     /* where the staging directory goes (NULL: $TMPDIR or /var/tmp) */
    void (*progress)(const char *line); /* NULL, or called with one line per step */
    void (*bar)(uint64_t done, uint64_t total); /* NULL, or called as the layers are applied
                                                   (bytes of their blobs read, of total) */
} scp_image_build_opts;

typedef struct scp_image_result {
    uint8_t measurement[32];   /* what CAS's policy must list for the service */
    char image_id[72];         /* "sha256:<hex>" of the output configuration */
    size_t n_trusted;          /* files in the trusted-files manifest */
    char entry[4096];          /* the original entrypoint + command, space-separated, for humans */
    char *session_template;    /* malloc'd YAML: a session that admits this image */
} scp_image_result;

/* Check what the caller names before anything is read: the tag (Docker's reference grammar,
 * lower-case NAME[:TAG]), the session and service (names CAS accepts) and the --protect paths.
 * 0, or -1 with SCP_E_INVAL and a message saying what is wrong (a command line's usage error).
 * scp_image_build makes the same check first. */
int scp_image_build_check(const scp_image_build_opts *opts, scp_err *err);

/* Build a secure image from opts->from. On success fills *res (free res->session_template). */
int scp_image_build(const scp_image_build_opts *opts, scp_image_result *res, scp_err *err);

/* What a secure image says about itself (from its /scp/image.json and trusted-files). */
typedef struct scp_image_info {
    char *image_json; /* malloc'd: the image.json document */
    size_t n_trusted;
    char image_id[72];
} scp_image_info;

/* Read a secure image (any input form) and return its image.json; SCP_E_FORMAT if it is not a
 * secure image. */
int scp_image_inspect(const char *from, const char *tmpdir, scp_image_info *info, scp_err *err);

/* Recompute the trusted-files manifest and the measurement of a secure image from its layers and
 * compare with what it claims: 0 when they match, -1 with SCP_E_INTEGRITY naming the first
 * difference. `shield_lib` and `scpctl` are not needed: the copies inside the image are used. */
int scp_image_verify(const char *from, const char *tmpdir, scp_image_info *info, scp_err *err);

void scp_image_info_free(scp_image_info *info);

/* ---- the local attestation service (image/attest_service.c) ------------------------------ */

/* Serve evidence requests on the UNIX socket at socket_path (mode 0666: containers connect)
 * until *stop, signing with the sim platform key at platform_key. Each caller must be the
 * runtime (/scp/bin/scp-entry and /scp/lib of its own image, checked by the hashes of its
 * executable mappings); its image is measured by the service from the caller's root. `log`
 * (may be NULL) gets one line per request. */
int scp_image_attest_serve(const char *socket_path, const char *platform_key, const volatile sig_atomic_t *stop,
                           void (*log)(const char *line), scp_err *err);

/* Ask the service for evidence binding nonce and pub (the runtime's ephemeral X25519 key) and,
 * when instance_key is not NULL, the instance's P-256 public key (SCP_INSTANCE_KEY_LEN bytes,
 * scp/attest.h). *ev is malloc'd. A refusal is SCP_E_POLICY with the service's reason. */
int scp_image_attest_request(const char *socket_path, const uint8_t nonce[32], const uint8_t pub[32],
                             const uint8_t *instance_key, uint8_t **ev, size_t *evlen, scp_err *err);

/* `scpctl image entry [ARGS]`, the entrypoint of a secure image under Docker (docs/image.md):
 * attest through the local attestation service, get the configuration from CAS ($SCP_CAS,
 * $SCP_CAS_PIN) and run the program of /scp/image.json under the shield. Returns its exit status,
 * or -1 with err set (a refusal carries CAS's reason). */
int scp_image_entry(int argc, char *const *argv, scp_err *err);

#endif
