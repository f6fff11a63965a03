/* scp/shield.h - the shield runtime: how a launcher hands a configuration to libscp-shield.so.
 *
 * The shield is a shared library preloaded into an unmodified program. Before main() it reads a
 * binary configuration from an inherited file descriptor (a sealed memfd), closes it and removes
 * the variable that named it from the environment, opens the protected volumes, reserves a range
 * of descriptor numbers for protected files and installs a seccomp filter (see docs/shield.md).
 * Keys travel only inside that memfd: never in argv, the environment or a file.
 *
 * Descriptor layout: [fd_base, fd_base + fd_count) is reserved. Its top SCP_SHIELD_OWN_FDS
 * numbers hold descriptors that the shield owns (volume directories, the trace file); all the
 * others are protected-file slots. Every reserved number that is not in use holds a placeholder
 * (/ opened O_PATH), so the kernel never hands these numbers to anybody else and a raw system
 * call on one never reaches a real file. fd_base is SCP_SHIELD_FD_BASE (docs/shield.md,
 * "Reserved descriptors": every fork copies a descriptor table as long as the highest number).
 *
 * The syscall gate: the shield's own system calls on reserved descriptors (and execve) go
 * through one `syscall` instruction on a page mapped at SCP_SHIELD_GATE_ADDR in every shielded
 * image, so the filter inherited across exec recognizes the gate of the new image too.
 */
#ifndef SCP_SHIELD_H
#define SCP_SHIELD_H

#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"
#include "scp/volume.h"

/* Environment variable that names the configuration descriptor (removed before main). */
#define SCP_SHIELD_ENV_FD "SCP_SHIELD_CONFIG_FD"
/* Set (to 1) without a configuration for an image that a supervisor serves but that a shielded
 * image exec'd (and for its descendants, which keep it): the shield library then only takes the
 * traps of the filter that image inherited and lets the kernel carry them out, keeping SIGSYS
 * its handler's (shield/init.c, forward_only). Without it such an image's libc was killed by
 * its first trap: it had no handler. */
#define SCP_SHIELD_ENV_FORWARD "SCP_SHIELD_FORWARD"
/* Environment variable that names a SOCK_SEQPACKET socket (in the shield's own descriptor range)
 * on which the shield sends, after every commit of volume i, a record of 1 + SCP_VOLUME_TAG_LEN
 * bytes: u8 i, then the new tag (MSG_NOSIGNAL: a vanished reader never kills the program).
 * scpctl run's supervisor reads them and reports the tags to CAS. Left in the environment so
 * that shielded children report too. */
#define SCP_SHIELD_ENV_TAG_FD "SCP_SHIELD_TAG_FD"
/* With it (scpctl run --tag-sync): a memfd of one page holding struct scp_shield_tag_sync,
 * mapped shared by the supervisor and every shielded process. After sending a record the
 * commit waits (futex on `acks`) until acked[i] reaches its generation, so an fsync returns
 * only after CAS stored the tag. */
#define SCP_SHIELD_ENV_TAG_SYNC_FD "SCP_SHIELD_TAG_SYNC_FD"
/* Environment variable naming a memfd that holds struct scp_shield_net_renew, mapped shared by
 * the supervisor (scpctl run, the secure image's entry) and every shielded process of a service
 * whose network identity is per instance: before the instance certificate expires the
 * supervisor attests again with the same instance key and publishes the certificate CAS issued,
 * and every TLS connection made after that presents it. A seqlock: `seq` is odd while the
 * supervisor writes, and a reader that sees it change retries. Like the tag pipe, its number
 * stays in the shield's own range across exec. */
#define SCP_SHIELD_ENV_NET_RENEW_FD "SCP_SHIELD_NET_RENEW_FD"
#define SCP_SHIELD_NET_RENEW_SIZE 16384
struct scp_shield_net_renew {
    uint32_t seq;                                /* even: pem[0..len) is complete */
    uint32_t len;                                /* 0: no renewal yet */
    char pem[SCP_SHIELD_NET_RENEW_SIZE - 8];     /* the certificate, PEM */
};
struct scp_shield_tag_sync {
    uint32_t acks;                      /* bumped (and futex-woken) after every update */
    uint32_t pad;
    uint64_t acked[8];                  /* per volume: highest generation CAS acknowledged */
};
/* Environment variable that names a sealed memfd with the arguments and environment that the
 * program must get without them appearing in /proc/PID/cmdline or /proc/PID/environ (scpctl run
 * --cas passes placeholders there). Layout: "SCPL1\n" | u32 nargs | u32 nenv (little-endian) |
 * nargs + nenv NUL-terminated strings: the values of argv[1..nargs], then "NAME=VALUE" entries.
 * Before main the shield points argv[1..nargs] at the values and adds the environment entries;
 * the variable and the descriptor are gone by then. */
#define SCP_SHIELD_ENV_LAUNCH_FD "SCP_SHIELD_LAUNCH_FD"
#define SCP_SHIELD_LAUNCH_MAX (4u << 20) /* bytes */
/* Environment variable that names a sealed memfd with the files that the shield serves from
 * memory (policy `files`, scpctl run --cas; docs/shield.md "Injected files"). Layout:
 * "SCPF1\n" | u32 nfiles | per file: u32 mode | u32 path length | u32 content length | path |
 * content (little-endian; the path absolute and normalized, its length counting its final NUL). The shield reads it
 * before main, keeps the files in locked memory left out of core dumps, and passes them on to
 * the images that the program executes in the same way. */
#define SCP_SHIELD_ENV_FILES_FD "SCP_SHIELD_FILES_FD"
#define SCP_SHIELD_FILES_MAX 64u
/* Environment variable that names a sealed memfd with the network shield's configuration
 * (policy `network`, scpctl run --cas; docs/shield.md "Network shield"). Text lines after
 * "SCPN1\n": `default allow|refuse`, `min_tls 12|13`, `filtered` (an ancestor image installed the
 * network filter), `listen PORT CA [ID]` (CA: index of a `ca` blob that verifies required client
 * certificates, -1: none), `peer HOST PORT NAME CA [ID]` (ID: SCP_SHIELD_ID_SCHEME); blobs `cert N\n`, `key N\n`, `ca N\n`
 * followed by N bytes of PEM and "\n" (`ca` blobs are numbered from 0 in order); a `proto postgres`
 * line after a `listen` or `peer` line starts its connections with PostgreSQL's SSLRequest, `proto mysql`
 * with MySQL's greeting and SSLRequest (shield/net_start.c). The shield
 * reads it before main and passes it on to the images the program executes. */
#define SCP_SHIELD_ENV_NET_FD "SCP_SHIELD_NET_FD"
/* Environment variable that lists ("N,M,...") the descriptors of the sealed copies of
 * libraries stored in a volume that an exec preloaded (LD_PRELOAD /proc/self/fd/N after the
 * shield; shield/libs.c). The new image's shield closes them and drops both at its start. */
#define SCP_SHIELD_ENV_LIBS "SCP_SHIELD_LIBS"
/* The scheme of the URI SAN by which CAS names, in every certificate it issues for an x509
 * secret, who holds its key: scp://OWNER/SESSION/SECRET (OWNER: the session owner's identity
 * id). A `peer` or `listen` line may end with the identity the peer's certificate must carry:
 * the whole URI, or a prefix ending in '/' (any secret of that session). */
#define SCP_SHIELD_ID_SCHEME "scp://"
/* URI SANs that CAS puts, beside the scp:// identity, in a per-instance certificate (network
 * `identity: instance`, issued at attestation for a key the instance made): the service's
 * name, the measurement and the platform id (64 hex each) that the instance attested. A
 * `peer`/`listen` line may be followed by `want service NAME`, `want measurement HEX` and
 * `want platform HEX` lines, which the peer's certificate must then carry (exactly one of each
 * kind). */
#define SCP_SHIELD_SERVICE_URI "scp-service:"
#define SCP_SHIELD_MEASUREMENT_URI "scp-measurement:"
#define SCP_SHIELD_PLATFORM_URI "scp-platform:"
#define SCP_SHIELD_NET_MAX (1u << 20)
/* Environment variable that names a sealed memfd with the trusted-file manifest (scpctl run
 * --cas; docs/runtime.md "Trusted files"): the files that were measured (program, loader,
 * libraries, shield runtime, --trusted files), each with the hash the measurement used.
 * Layout (little-endian): "SCPT1\n" | u32 n | per file: digest[32] | u64 size | u64 dev |
 * u64 ino | i64 mtime_ns | i64 ctime_ns | u32 path length (with its NUL) | path (absolute, as
 * the program sees it, symlinks resolved) | u32 length | the path as given (--trusted PATH, or
 * as the loader's search found it). dev, ino and the times are the file's stamp when it
 * was measured: a file that still has it needs no hashing. The shield passes the manifest on
 * to every image that the program executes. Without it no file is checked. */
#define SCP_SHIELD_ENV_TRUSTED_FD "SCP_SHIELD_TRUSTED_FD"
/* "FIRST:COUNT": descriptors FIRST..FIRST+COUNT-1 are the files that scpctl run measured (open
 * since then, not close-on-exec). The shield of the first image checks what the kernel and the
 * loader mapped against them (same inode, stamp unchanged, else hashed through them) and closes
 * them; images executed later have none and check by path. */
#define SCP_SHIELD_ENV_MEASURED_FDS "SCP_SHIELD_MEASURED_FDS"
/* In the container: links to the measured libraries, the loader's first search directory for
 * the first image (LD_LIBRARY_PATH, removed by the shield before main). */
#define SCP_SHIELD_MEASURED_LIB_DIR "/dev/.scp/lib"
/* The libraries the shield loads at its first use of OpenSSL (dlopen, shield/openssl_lazy.c),
 * not at start: a measurement counts them with the shield's own (runtime/elfdeps.c), so that
 * they are trusted files when it loads them. */
#define SCP_SHIELD_LIBSSL "libssl.so.3"
#define SCP_SHIELD_LIBCRYPTO "libcrypto.so.3"
/* a secure image lists every file of the image (its /scp/trusted): a Debian base has thousands */
#define SCP_SHIELD_TRUSTED_MAX 65536u
typedef struct scp_shield_trusted {
    uint8_t digest[32];
    uint64_t size, dev, ino;
    int64_t mtime_ns, ctime_ns;
    const char *path;  /* real path; NUL-terminated; points into the buffer that was parsed */
    const char *given; /* the path as given (NULL when adding: the real path) */
} scp_shield_trusted;
/* Append one entry to a serialized manifest in *buf (malloc'ed, grown; *len its length; an
 * empty *buf starts one). Returns 0 or -1 (out of memory, too many entries, path too long). */
int scp_shield_trusted_add(char **buf, size_t *len, const scp_shield_trusted *e);
/* Parse buf[0, len) into at most max entries (paths point into buf). Returns the count or -1. */
long scp_shield_trusted_parse(const char *buf, size_t len, scp_shield_trusted *out, size_t max);

/* SCP_RUN_TIMING: the launcher's clock (scp_now_ns) right before exec; the shield
 * prints the time from there to the end of its start-up (exec, loader, shield) and removes it. */
#define SCP_SHIELD_ENV_TIMING "SCP_SHIELD_TIMING"

/* Environment variable that names a sealed memfd holding one struct scp_shield_console (the
 * policy's `console` section with the service's console key; docs/shield.md "Console"). The
 * shield reads it before main and closes it; at exec it hands the next image a fresh one that
 * also says which program descriptors are console streams and which stream ids continue. */
#define SCP_SHIELD_ENV_CONSOLE_FD "SCP_SHIELD_CONSOLE_FD"
#define SCP_SHIELD_CONSOLE_MAGIC "SCPCON1"
enum {
    SCP_SHIELD_CON_STDIN = 1u,  /* stdin accepted only as sealed records */
    SCP_SHIELD_CON_STDOUT = 2u, /* stdout leaves as sealed records */
    SCP_SHIELD_CON_STDERR = 4u, /* stderr leaves as sealed records */
    SCP_SHIELD_CON_EXEC = 8u,   /* written by a shielded image at exec (not by the launcher) */
    SCP_SHIELD_CON_LINES = 16u  /* records in line form (scp/sealed_stream.h): a text channel */
};
typedef struct scp_shield_console {
    char magic[8];
    uint32_t flags;
    uint8_t key[32]; /* the service's console key (scp_ss_service_key) */
    char session[65], service[65];
    struct {
        uint8_t live, relation;  /* exec: the stream continues as `id` (relation to parent) */
        uint8_t id[16], parent[16];
        uint64_t parent_seq;
    } s[3];                      /* stdin, stdout, stderr */
    uint8_t fd_stream[1024]; /* exec: program number (< SCP_SHIELD_MAX_ALIAS_FD) -> stream + 1 */
} scp_shield_console;

/* Environment variable that overrides where scpctl finds libscp-shield.so. */
#define SCP_SHIELD_ENV_LIB "SCP_SHIELD_LIB"

#define SCP_SHIELD_GATE_ADDR 0x2c5c00000000ul /* fixed page for the syscall gate */
#define SCP_SHIELD_FD_COUNT 1024u             /* reserved descriptor numbers */
/* The range's first number: low, so that the table every fork copies is 3072 entries long
 * (below the hard limit it was 65536 in a container), and above the numbers a program that
 * counts its free descriptors by dup() probes (PostgreSQL: up to max_files_per_process, 1000,
 * and it counts every number below its highest as in use). Numbers above the range stay the
 * program's. docs/shield.md "Reserved descriptors". */
#define SCP_SHIELD_FD_BASE 2048u
#define SCP_SHIELD_OWN_FDS 16u                /* of which the top ones are the shield's own */
#define SCP_SHIELD_MAX_VOLUMES 8u
#define SCP_SHIELD_MAX_MOUNT 1024u

enum {
    SCP_SHIELD_F_TRACE = 1u,           /* log intercepted calls (never keys or contents) */
    SCP_SHIELD_F_FILTER_INSTALLED = 2u, /* an ancestor image already installed the filter */
    SCP_SHIELD_F_NODUMP = 4u,           /* every image is made not dumpable (container) */
    SCP_SHIELD_F_SHARED = 8u,           /* an ancestor forked: volumes in shared mode (init.c) */
    SCP_SHIELD_F_OFD = 16u,             /* the shared offsets' region is open (core.c, "shared
                                         * open file descriptions") */
    SCP_SHIELD_F_NOPTRACE = 32u,        /* the first image's filter answers ptrace and
                                         * process_vm_readv/writev with EPERM (a container whose
                                         * launcher leaves that rule to the shield: launch.c) */
    SCP_SHIELD_F_OPEN_CHECK = 64u       /* the launcher did not open the volumes: the first image
                                         * opens each before main, and one that fails to open
                                         * stops it with the launcher's message and exit status
                                         * (check_who, check_dir; docs/runtime.md) */
};
#define SCP_SHIELD_OFD_SLOTS 16384u   /* open file descriptions the region can share */
#define SCP_SHIELD_MAX_OFD_DROP 64u   /* references an exec hands back (descriptions not inherited) */

typedef struct scp_shield_volume {
    int dirfd;                         /* directory of the volume (O_PATH), inherited */
    char mount[SCP_SHIELD_MAX_MOUNT];  /* absolute, normalized mount point in the program's view */
    uint8_t key[SCP_VOLUME_KEY_LEN];
    /* the newest state of the volume this run is known to have reached (the launcher's open,
     * the exec'ing image's last commit): the shield opens the volume only when the program
     * first uses it, and refuses an older state then (a rollback on the host meanwhile) */
    uint8_t have_seen;
    scp_volume_tag seen;
} scp_shield_volume;

#define SCP_SHIELD_MAX_INHERIT 16u
#define SCP_SHIELD_MAX_ALIAS_FD 1024u /* ordinary numbers that may refer to protected files */

/* A protected file open across exec (not close-on-exec): the new image reopens it. */
typedef struct scp_shield_inherit {
    int fd;
    int share; /* index of an earlier entry with the same open file description, or -1 */
    int vol;
    int flags;  /* O_ACCMODE | O_APPEND */
    int64_t offset;
    int32_t ofd;     /* its slot in the shared offsets' region (the new image takes over this
                      * image's reference), or -1: a cursor of its own from `offset` */
    char path[1024]; /* volume-relative */
} scp_shield_inherit;

typedef struct scp_shield_config {
    uint32_t flags;
    uint32_t fd_base;  /* first reserved descriptor number */
    int trace_fd;      /* where trace lines go (-1: none) */
    uint32_t nvol;
    scp_shield_volume vol[SCP_SHIELD_MAX_VOLUMES];
    /* set by a shielded image when it execs (zero from the launcher) */
    uint8_t filtered[SCP_SHIELD_MAX_ALIAS_FD / 8]; /* numbers with a filter of their own */
    uint32_t ninherit;
    scp_shield_inherit inherit[SCP_SHIELD_MAX_INHERIT];
    /* slots of the shared offsets' region whose reference the exec'ing image held and does not
     * hand on (close-on-exec descriptions): the new image drops them */
    uint32_t nofd_drop;
    int32_t ofd_drop[SCP_SHIELD_MAX_OFD_DROP];
    /* the program's working directory when it lies inside a protected mount ("" if not): the
     * kernel's is the mount point, so the next image could not find it by getcwd */
    char vcwd[4096];
    /* SCP_SHIELD_F_OPEN_CHECK (from the launcher; an exec'ing image clears the flag): the name
     * that starts the launcher's error lines ("scpctl") and each volume's host directory as its
     * messages name it */
    char check_who[32];
    char check_dir[SCP_SHIELD_MAX_VOLUMES][SCP_SHIELD_MAX_MOUNT];
} scp_shield_config;

/* Serialize the configuration into a new memfd (not close-on-exec, sealed against writes).
 * Returns the descriptor or -1. Async-signal-safe (no allocation): the shield also calls it
 * when it re-shields an exec. */
int scp_shield_config_to_memfd(const scp_shield_config *cfg, scp_err *err);

/* len bytes of buf in a new memfd named name (not close-on-exec, sealed against writes, offset
 * 0): how the launcher hands the shield what must never touch a file system (the policy's
 * arguments and environment, injected files). Returns the descriptor or -1. */
int scp_shield_sealed_memfd(const char *name, const void *buf, size_t len, scp_err *err);

/* Read the configuration from fd (from its start). Does not close fd. */
int scp_shield_config_read(int fd, scp_shield_config *cfg, scp_err *err);
/* Size of the serialized form, and parsing it from memory. */
size_t scp_shield_config_size(void);
int scp_shield_config_parse(const void *buf, size_t len, scp_shield_config *cfg, scp_err *err);

/* Normalize an absolute path lexically ("//", "." and ".." resolved, no trailing '/').
 * Returns -1 if it is not absolute or does not fit in out_size. */
int scp_shield_path_normalize(const char *path, char *out, size_t out_size);

/* The device numbers that the names in protected volumes and the injected files show (stat's
 * st_dev), the same under the shield (fileops.c) and from the static programs' supervisor
 * (runtime/notify.c), so that a static and a dynamic program of one run agree:
 * SCP_SHIELD_DEV_MAJOR with the injected files' minor or a volume's. */
#define SCP_SHIELD_DEV_MAJOR 0x5c5u
#define SCP_SHIELD_DEV_MINOR_MASK 0xfffffu /* the 20 bits the kernel's own device numbers have */
#define SCP_SHIELD_DEV_MINOR_INJECTED 0xffu

/* The device minor of the volume whose host directory has the identity (host_dev, host_ino),
 * given the minors taken[0..ntaken) of the volumes before it in the same configuration: a mix
 * of the identity, moved on past the injected files' minor and the taken ones. It was the
 * volume's index, so two programs on two volumes, each its first, saw the same device, and
 * names at the same place in each (the roots) the same (st_dev, st_ino): PostgreSQL keys its
 * System V shared memory by the data directory's inode and takes a segment whose header names
 * its (st_dev, st_ino) as its own, so a second server refused to start while the first ran.
 * The minor is the same in every process of a run and after an exec (the same directory), and
 * across runs while the directory stays where it is; two volumes of two runs share one with a
 * chance of 2^-20. No system call: the caller stats the directory (its own way). */
unsigned scp_shield_volume_minor(uint64_t host_dev, uint64_t host_ino, const unsigned *taken,
                                 unsigned ntaken);

#endif
