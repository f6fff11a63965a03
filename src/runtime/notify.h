/* runtime/notify.h - serve a static image's protected files from outside its address space.
 *
 * A static program (busybox-static, Go without cgo) has no loader, so the shield cannot be
 * preloaded into it. Instead, before such an image is exec'd, a supervisor process is forked
 * that holds the volumes, and the image gets a seccomp filter whose path calls (and fsync,
 * close, exec, exit_group) are reported to the supervisor by user notification. The
 * supervisor serves what lies under a mount point (a file opened becomes a memfd injected
 * with SECCOMP_IOCTL_NOTIF_ADDFD that holds its plaintext; it is committed back at fsync,
 * close, exec and exit) and lets everything else continue to the kernel. docs/shield.md,
 * "Static binaries". */
#ifndef SCP_RUNTIME_NOTIFY_H
#define SCP_RUNTIME_NOTIFY_H

#include <stdint.h>

#include "scp/err.h"
#include "scp/shield.h"
#include "scp/volume.h"

struct scp_notify_volume {
    const char *mount; /* normalized, absolute */
    int dirfd;         /* the volume directory (O_PATH) */
    const uint8_t *key;
};

/* Largest file a static image may open on a volume: its plaintext is copied into memory.
 * SCP_STATIC_MAX_MB in the environment sets it (MiB). Bigger files fail with EFBIG. */
#define SCP_NOTIFY_DEFAULT_MAX_MB 256u

/* What serves the executable at fd (scp_notify_image). */
enum {
    SCP_IMAGE_SHIELD = 0,   /* the preloaded shield: it has an interpreter (or is not ELF) */
    SCP_IMAGE_STATIC = 1,   /* the supervisor: no PT_INTERP, no loader to preload into */
    /* A Go program at a fixed address (ET_EXEC with Go's build-ID note: a cgo build, which Go
     * links as neither static nor position independent). Go makes its file calls itself, with
     * `syscall` instructions in its own code, where the shield's code rule cannot trap them
     * (docs/shield.md): the supervisor serves it. Exec'd by a shielded program it gets the
     * forwarding library (SCP_SHIELD_ENV_FORWARD), which takes the traps of the filter it
     * inherits (its libc's SIGSYS handler and signal mask); without volumes, the shield. */
    SCP_IMAGE_GO_FIXED = 2,
};
/* Which of the above; -1 if the ELF header cannot be read. */
int scp_notify_image(int fd);
/* Whether an image of that kind is the supervisor's to serve (given volumes to serve). */
static inline int scp_notify_serves(int kind) { return kind == SCP_IMAGE_STATIC || kind == SCP_IMAGE_GO_FIXED; }

/* A protected file that the exec'ing image holds open at an ordinary number and hands on (a
 * redirection made before the exec: `prog > /mnt/f`, `exec 3>>/mnt/f`, `prog < /mnt/f`). The
 * supervisor serves it as if the new image had opened it (a memfd of its plaintext, committed
 * at the image's close, fsync or exit), and the caller puts the description it gets back at
 * that number before the exec. */
struct scp_notify_file {
    unsigned vol;     /* index into the volumes */
    const char *path; /* volume-relative */
    int flags;        /* O_ACCMODE | O_APPEND */
    int64_t offset;   /* the description's cursor */
    /* the cursor as other processes share it (the shield's region of shared offsets: a shell
     * that writes again after the program), which the supervisor sets at each commit from the
     * description it handed out; NULL when nobody else holds the description */
    int64_t *shared_off;
};

/* What a supervisor is started with, beside its volumes (scp_notify_spawn). */
struct scp_notify_start {
    /* this process's working directory when it lies below a mount point (the shield's view;
     * the kernel's cwd is then the mount point), which the image keeps; NULL otherwise */
    const char *cwd;
    /* 1 when a shielded program's processes hold the volumes too (a shielded image execs the
     * served one): the supervisor then joins their shared mode, as their own processes do, or
     * its commit of a file one of them wrote lazily would fail ("not durable yet"). 0 from the
     * launcher: every process of the run is then the supervisor's (a dynamic program below a
     * served one opens no volume), and private mode spares each commit the catch-up. */
    int family;
    /* the files handed on (scp_notify_file); fds[i] receives the description for files[i]
     * (close-on-exec), or -1 when the supervisor could not serve it (too large, unreadable:
     * the number then keeps what it had) */
    const struct scp_notify_file *files;
    unsigned nfiles;
    int *fds;
};

/* Fork the supervisor (detached: not a child of this process, so the program's wait calls
 * never see it). It opens the volumes and waits for the listener. Returns a socket to hand it
 * over with scp_notify_attach, or -1. */
int scp_notify_spawn(const struct scp_notify_volume *v, unsigned n, const struct scp_notify_start *start, scp_err *err);

/* Install the notification filter in this process and send its listener to the supervisor.
 * Call it right before exec: from here on this process's path calls wait for the supervisor.
 * Closes sock. */
int scp_notify_attach(int sock, scp_err *err);

#endif
