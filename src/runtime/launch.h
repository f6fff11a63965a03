/* runtime/launch.h - start a program under the shield (the entry point that the container
 * launcher with attestation will extend). */
#ifndef SCP_RUNTIME_LAUNCH_H
#define SCP_RUNTIME_LAUNCH_H

#include <stdint.h>

#include "runtime/container.h"
#include "scp/err.h"
#include "scp/shield.h"

struct scp_run_volume {
    const char *hostdir; /* the volume directory on the host */
    const char *mount;   /* where the program sees it (absolute) */
    uint8_t key[SCP_VOLUME_KEY_LEN];
};

struct scp_run_opts {
    struct scp_run_volume vol[SCP_SHIELD_MAX_VOLUMES];
    unsigned nvol;
    int trace;               /* log intercepted calls */
    const char *trace_file;  /* NULL: standard error */
    const char *shield_lib;  /* NULL: find libscp-shield.so next to this executable */
    char *const *argv;       /* program and its arguments */
    struct scp_container_opts container; /* enabled: run inside a container (container.h);
                                            the caller calls scp_container_prepare first */
};

/* Enter a private mount namespace (in a user namespace when not root). scp_run_exec does it
 * too; call it first, before any key is in memory, because an unprivileged caller must be
 * dumpable for the moment it writes its uid/gid maps. */
int scp_run_isolate(scp_err *err);

/* Check the volumes and keys, isolate the mount points (a private mount namespace with an
 * empty read-only tmpfs on each, so that no raw path access reaches the host there), hand the
 * configuration over in a memfd and exec the program. Returns only on failure (-1). Wipes the
 * keys in opts before exec. */
int scp_run_exec(struct scp_run_opts *opts, scp_err *err);

#endif
