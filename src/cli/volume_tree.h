/* cli/volume_tree.h - copying between plain files and a volume for `scpctl volume`: one file
 * (put, cat) or a whole tree (import, export).
 *
 * A tree goes across as `cp -a` (or tar with --numeric-owner) takes it: directories, regular
 * files, symbolic links, FIFOs, sockets and device nodes, hard links as links, and each
 * entry's permission bits, numeric owner and access and modification times; the top
 * directory's attributes go to the volume root and back. Export sets owners only when run as
 * root and makes device nodes only as root (as tar does); it skips sockets, which a plain
 * directory cannot hold (a warning names each). Errors follow include/scp/err.h. */
#ifndef SCP_CLI_VOLUME_TREE_H
#define SCP_CLI_VOLUME_TREE_H

#include <stdint.h>

#include "cli/progress.h"
#include "scp/err.h"
#include "scp/volume.h"

/* The longest path a tree copy or listing builds, with its NUL; longer ones fail with
 * ENAMETOOLONG, never truncate. */
#define VT_PATH 8192
/* "dir/name", or "name" under the root's empty path, into out: 0, or -1 (ENAMETOOLONG). */
int vt_join(char out[VT_PATH], const char *dir, const char *name, scp_err *err);

/* Copy from a plain fd into the volume file path (created with mode, truncated if it exists;
 * committed at its close). done counts the bytes; pg may be NULL. */
int vt_copy_in(scp_volume *v, int fd, const char *path, uint32_t mode, progress *pg,
               uint64_t *done, scp_err *err);
/* Copy the volume file path to a plain fd. */
int vt_copy_out(scp_volume *v, const char *path, int fd, progress *pg, uint64_t *done,
                scp_err *err);

/* The bytes of regular files under dir (for the progress bar; unreadable parts count 0). */
uint64_t vt_tree_size(const char *dir);

/* Import the plain tree under src into the volume's root (names that exist are replaced, as
 * cp does; an existing directory is merged). nfiles counts regular files. An entry that cannot
 * be imported for a reason of its own (unreadable, or a name of another kind in its way) is
 * named on stderr and left out, as cp -a does, and the walk goes on; the import then fails
 * (SCP_E_SYS) with their count, the rest imported. A failure of the volume ends it. It turns the
 * volume's lazy close on: the import is durable at the caller's scp_volume_close, whose error
 * counts as the import's. */
int vt_import(scp_volume *v, const char *src, progress *pg, uint64_t *done, long *nfiles,
              scp_err *err);
/* Export the whole volume into the directory out (created 0700 if missing). */
int vt_export(scp_volume *v, const char *out, progress *pg, uint64_t *done, scp_err *err);

#endif
