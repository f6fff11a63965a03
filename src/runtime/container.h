/* runtime/container.h - the container around a program that `scpctl run` starts.
 *
 * Isolation: new mount, pid, ipc and uts namespaces (and an empty network namespace with only
 * lo, up, when net_none); as root directly, otherwise inside a user namespace that maps the
 * caller's own uid and gid. Inside: the host's root or `rootfs` (pivot_root, old root
 * detached), a fresh /proc of the new pid namespace, a tmpfs /dev with null, zero, full, random,
 * urandom and tty bind-mounted from the host, a devpts at /dev/pts, a tmpfs /dev/shm and a
 * private tmpfs /tmp. The program runs with no_new_privs, with every capability dropped that is
 * not in keep_caps, under a seccomp filter that refuses ptrace and process_vm_readv/writev.
 *
 * Processes: `scpctl run` stays on the host as a relay (it forwards signals and exits with the
 * container's status); the container's pid 1 is a small init (it forwards SIGTERM, SIGINT,
 * SIGHUP, SIGUSR1 and SIGUSR2 to the program, reaps orphans and, when the program ends, kills
 * whatever is left and exits with the program's status: its exit code, or 128+N for signal N);
 * the program is pid 2. Neither the relay nor the init keeps keys: the caller's wipe callback
 * runs in both right after the fork.
 *
 * Order of calls: scp_container_prepare (before any key is in memory), scp_container_start
 * (returns in the process that will become the program), scp_container_seal (right before
 * exec). See docs/runtime.md.
 */
#ifndef SCP_RUNTIME_CONTAINER_H
#define SCP_RUNTIME_CONTAINER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "scp/err.h"

/* Where the shield library is mounted inside a container with its own rootfs. */
#define SCP_CONTAINER_SHIELD_PATH "/dev/.scp/libscp-shield.so"

struct scp_container_opts {
    int enabled;          /* 0: no container (the plain mount namespace of scp_run_isolate) */
    const char *rootfs;   /* NULL: the host's root */
    int net_none;         /* 1: an empty network namespace (only lo); 0: the host's network */
    const char *hostname; /* NULL: "scp" */
    uint64_t keep_caps;   /* bit N set: capability N is kept (bounding, permitted, effective,
                             inheritable, ambient); 0: all dropped */
};

/* The number of a capability from its name ("net_bind_service", "CAP_NET_BIND_SERVICE", any
 * case), or -1 if unknown. */
int scp_container_cap_from_name(const char *name);

/* Create the namespaces (as root directly; otherwise, or when root lacks the privilege, inside a
 * new user namespace that maps the caller's uid and gid), except the pid namespace, which
 * scp_container_start creates right before it forks the container's init: until then the
 * caller's children (any helper it forks, a sanitizer's tracer at exit) stay in its own pid
 * namespace. Call it before any key is in memory: an unprivileged caller must be dumpable for
 * the moment it writes its uid/gid maps. */
int scp_container_prepare(const struct scp_container_opts *c, scp_err *err);

/* For a caller that is not root: enter a new user namespace that maps the caller's uid and gid
 * (nothing else), so that a later scp_container_prepare, also in a child, needs no id maps.
 * Call it before any secret is in memory (writing the maps needs the process dumpable for a
 * moment). Root: does nothing. */
int scp_container_enter_userns(scp_err *err);


/* Fork the container's init, build its file system (rootfs, /proc, /dev, /tmp), hostname and
 * network, and fork the program's process. Returns 0 in the program's process only, with the
 * mounts in place and the signal mask restored; `shield_lib` (a host path, may be NULL) is then
 * visible at the path written to shield_in (SCP_CONTAINER_SHIELD_PATH, bound there with or
 * without a rootfs, since the container's private /tmp may hide the host's path). The relay and the init call wipe(ctx) and never return: they exit with the
 * container's status. Returns -1 with err set when the container cannot be built (in whichever
 * process found it; the relay then exits with that process's exit status). Requires
 * scp_container_prepare first. */
int scp_container_start(const struct scp_container_opts *c, const char *shield_lib, char *shield_in,
                        size_t shield_in_len, void (*wipe)(void *ctx), void *ctx, scp_err *err);

/* 1 once scp_container_start has made the container's pid namespace: from then on every child
 * this process makes lands in it, also when the start failed in this process (the init's fork
 * failed: EAGAIN at the process limit, ENOMEM). Such a caller must end without forking again,
 * with _exit: an exit-time helper that forks (LeakSanitizer's tracer) would be the namespace's
 * pid 1, see no parent and never report back (tests/runtime/early_fail.sh). */
int scp_container_children_moved(void);

/* Right before exec, in the program's process: no_new_privs, drop every capability not in
 * keep_caps (bounding set, ambient, effective, permitted, inheritable), not dumpable, and a
 * seccomp filter that answers ptrace, process_vm_readv and process_vm_writev with EPERM,
 * unless shield_denies_tracing: then the shield's own filter has that rule
 * (SCP_SHIELD_F_NOPTRACE), installed before the program's main(), and this one is left out.
 * The filter and no_new_privs survive exec; dumpability does not (execve resets it), which is
 * why the shield sets it again in the program (SCP_SHIELD_F_NODUMP). */
int scp_container_seal(const struct scp_container_opts *c, int shield_denies_tracing, scp_err *err);

#endif
