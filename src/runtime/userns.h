/* runtime/userns.h - the id maps of a user namespace a process has just entered.
 *
 * Used by scpctl run (runtime/launch.c, an ordinary user's mount namespace), the container
 * (runtime/container.c) and the static-image supervisor's helper (runtime/notify.c, its
 * directory views' tmpfs), which the shield library links too.
 */
#ifndef SCP_RUNTIME_USERNS_H
#define SCP_RUNTIME_USERNS_H

#include <sys/types.h>

#include "scp/err.h"

/* Write the uid/gid maps of the user namespace this process just entered: the caller's own
 * ids (uid and gid from before the unshare), nothing else; setgroups is denied. The process is
 * dumpable for the moment it writes them (the map files belong to root otherwise), so call it
 * before any key is in memory. */
int scp_userns_map_self(uid_t uid, gid_t gid, scp_err *err);

#endif
