/* runtime/elfdeps.h - what the loader will map for a program: the resolution of its
 * interpreter and libraries (their ELF headers read by common/elf.h)
 * as glibc's ld.so would find them, so that scpctl run can measure them from open descriptors.
 *
 * Resolution (a documented subset of ld.so(8)): PT_INTERP as written (absolute paths only);
 * each DT_NEEDED name containing '/' as a path, else searched in the object's DT_RPATH (only
 * when it has no DT_RUNPATH; the executable's DT_RPATH too, as ld.so does), DT_RUNPATH, then
 * the default directories SCP_ELF_DEFAULT_DIRS. $ORIGIN is expanded. LD_LIBRARY_PATH is not
 * consulted (scpctl run refuses a policy environment that sets it or LD_PRELOAD) and
 * /etc/ld.so.cache is not read: a library that is only reachable through a directory listed in
 * /etc/ld.so.conf outside the default directories is not found, and the run refuses to start.
 * A candidate of another ELF class or machine is skipped, as ld.so does.
 */
#ifndef SCP_RUNTIME_ELFDEPS_H
#define SCP_RUNTIME_ELFDEPS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/elf.h"
#include "scp/err.h"

#define SCP_ELF_MAX_OBJECTS 256u /* program + interpreter + libraries */
#define SCP_ELF_MAX_FILE (1u << 30) /* larger files are refused */
#define SCP_ELF_DEFAULT_DIRS \
    "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu:" \
    "/lib64:/usr/lib64:/lib:/usr/lib"

/* The objects a program consists of, each open (O_RDONLY | O_CLOEXEC) in loading order:
 * [0] the program, [1] its interpreter (if any), then the preloaded library (if any), then the
 * libraries that all of them need, breadth-first without duplicates (same device and inode).
 * The preloaded library is the shield, which also loads OpenSSL at its first use: it counts as
 * needing SCP_SHIELD_LIBSSL and SCP_SHIELD_LIBCRYPTO (scp/shield.h). */
typedef struct scp_elf_set {
    size_t n;
    int has_interp; /* [1] is the program's interpreter (PT_INTERP) */
    int fd[SCP_ELF_MAX_OBJECTS];
    char path[SCP_ELF_MAX_OBJECTS][PATH_MAX];
} scp_elf_set;

/* Resolve `prog` (with '/': as given; otherwise searched in `search_path`, e.g. $PATH, for an
 * executable regular file) and open it, `preload` (a path, or NULL: as LD_PRELOAD) and
 * everything they load into *set. Fails with SCP_E_NOENT naming what is missing. On failure
 * nothing stays open. */
int scp_elf_set_open(const char *prog, const char *search_path, const char *preload, scp_elf_set *set, scp_err *err);
/* The same, with the program, its interpreter and its libraries resolved inside the directory
 * `root` (a descriptor; -1: the host's root) as the program will see them after pivot_root:
 * absolute paths and "..", also in symlinks, stay inside root (openat2 RESOLVE_IN_ROOT), and
 * set->path holds the paths as seen inside. `preload` is a host path (it is bind-mounted into
 * the container). */
int scp_elf_set_open_in(int root, const char *prog, const char *search_path, const char *preload, scp_elf_set *set,
                        scp_err *err);
/* The same, followed by `extra` files (absolute paths inside root: trusted files the operator
 * lists, such as data, scripts, programs the program runs or libraries it dlopens), each a
 * regular file; an ELF one brings its loader and libraries into the set as well. */
int scp_elf_set_open_with(int root, const char *prog, const char *search_path, const char *preload,
                          const char *const *extra, size_t nextra, scp_elf_set *set, scp_err *err);
/* Only the program, resolved and opened as scp_elf_set_open_in does (the path it was found
 * at in found[fsz]): a descriptor, or -1 with err set. */
int scp_elf_open_prog(int root, const char *prog, const char *search_path, char *found, size_t fsz, scp_err *err);
/* Close every descriptor of the set except `keep` (-1: none). */
void scp_elf_set_close(scp_elf_set *set, int keep);

#endif
