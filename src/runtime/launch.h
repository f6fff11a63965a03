/* runtime/launch.h - start a program under the shield (the entry point that the container
 * launcher with attestation will extend). */
#ifndef SCP_RUNTIME_LAUNCH_H
#define SCP_RUNTIME_LAUNCH_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "runtime/container.h"
#include "scp/err.h"
#include "scp/shield.h"

struct scp_run_volume {
    const char *hostdir; /* the volume directory on the host */
    const char *mount;   /* where the program sees it (absolute) */
    uint8_t key[SCP_VOLUME_KEY_LEN];
    /* set: the caller opened the volume already (against the tag CAS expects: attest_run.c)
     * and this is the state it found; scp_run_exec then opens it no more, and the shield
     * refuses anything older */
    int have_seen;
    scp_volume_tag seen;
};

/* The user the program runs as (a secure image's USER), set right before exec. */
struct scp_run_user {
    uid_t uid;
    gid_t gid;
    size_t ngroups; /* supplementary groups */
    gid_t groups[64];
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
    int exec_fd;             /* > 0: execveat this descriptor (the one that was measured) instead of
                                searching argv[0] in PATH */
    int tag_fd;              /* > 0: one end of a SOCK_SEQPACKET pair on which the shield reports
                                every volume's new tag after each commit (SCP_SHIELD_ENV_TAG_FD) */
    const char *cwd;         /* NULL: keep; else the working directory, entered after the mount points
                                are covered so that it may be a volume's mount point */
    const int *measured_fds; /* the descriptors that were measured (SCP_SHIELD_ENV_MEASURED_FDS) */
    const char (*measured_paths)[PATH_MAX]; /* their paths as resolved: [0] the program, then the
                                loader and the libraries under the names the program needs */
    size_t n_measured;
    const char *measured_interp; /* the program's PT_INTERP (measured_fds[1]) or NULL */
    int64_t timing_ns;       /* SCP_RUN_TIMING: when the launch began (scp_now_ns); before exec the
                                setup time since then is printed, and the shield prints its start */
    int no_mount;            /* no namespace, no tmpfs over the mount points: the shield alone serves
                                them (a secure image under Docker, which is the container) */
    int tag_sync_fd;         /* > 0: a memfd holding struct scp_shield_tag_sync: each commit waits
                                until CAS acknowledged its tag (SCP_SHIELD_ENV_TAG_SYNC_FD) */
    int net_renew_fd;        /* > 0: a memfd holding struct scp_shield_net_renew: the renewed
                                instance certificate (SCP_SHIELD_ENV_NET_RENEW_FD) */
    const struct scp_run_user *user; /* non-NULL, and run by root: the volumes' backing store is
                                handed to this user, then the process becomes it, right before exec */
    const char *who;         /* the name that starts the caller's error lines (NULL: "scpctl"): a
                                volume that the shield opens in the launcher's place fails with
                                the message and exit status scpctl's own open would give */
    int in_container;        /* out: set when scp_run_exec returns in a process that
                                scp_container_start forked (the program's, or the init's when it
                                could not build the container): a forked child, whose exit status
                                the relay passes on; end it with _exit, not exit. Past the seal its
                                seccomp rule refuses ptrace to it too, so an exit-time leak check
                                (LeakSanitizer's tracer) cannot work there. Also set in the caller
                                itself when the init's fork failed after the pid namespace was made
                                (scp_container_children_moved): a child it forks at exit would land
                                in that namespace. */
};

/* Enter a private mount namespace (in a user namespace when not root). scp_run_exec does it
 * too; call it first, before any key is in memory, because an unprivileged caller must be
 * dumpable for the moment it writes its uid/gid maps. */
int scp_run_isolate(scp_err *err);

/* Where scp_run_exec finds libscp-shield.so: `given`, else $SCP_SHIELD_LIB, else next to this
 * executable (or ../lib/scp/); the real path goes to out. */
int scp_run_find_shield(const char *given, char *out, size_t n, scp_err *err);

/* Check the volumes and keys, isolate the mount points (a private mount namespace with an
 * empty read-only tmpfs on each, so that no raw path access reaches the host there), hand the
 * configuration over in a memfd and exec the program. Returns only on failure (-1). Wipes the
 * keys in opts before exec. A volume whose have_seen the caller set is not opened here; one
 * that the shield certainly opens before the program's main (a dynamic ELF program) is checked
 * there, and one that fails stops the program with this function's message (prefixed with
 * opts->who) and cli_fail's exit status (scp_err_exit_status); any other is opened here. */
int scp_run_exec(struct scp_run_opts *opts, scp_err *err);

#endif
