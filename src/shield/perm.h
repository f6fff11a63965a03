/* shield/perm.h - the kernel's permission rules inside a protected volume, for given
 * credentials. One copy for both servers of volume calls: the preloaded shield (creds.c, the
 * program's own credentials) and the static-image supervisor (runtime/notify.c, the
 * credentials of the thread whose call it serves, read from /proc). */
#ifndef SCP_SHIELD_PERM_H
#define SCP_SHIELD_PERM_H

#include <stdint.h>
#include <sys/types.h>

#include "scp/volume.h"

#define SCP_PERM_MAX_GROUPS 256

struct scp_cred {
    uid_t euid, ruid;
    gid_t egid, rgid;
    gid_t groups[SCP_PERM_MAX_GROUPS]; /* supplementary groups */
    int ngroups;
};

/* want: 4 read, 2 write, 1 search/exec; against the effective ids, or the real ones (access(2)) */
long scp_perm_access(const struct scp_cred *c, const scp_vstat *v, int want);
long scp_perm_access_real(const struct scp_cred *c, const scp_vstat *v, int want);
long scp_perm_open(const struct scp_cred *c, const scp_vstat *v, int flags);
/* an entry that records no owner is reported as the caller's (real ids) */
void scp_perm_owner(const struct scp_cred *c, scp_vstat *v);
long scp_perm_setattr(const struct scp_cred *c, const scp_vstat *v, int64_t *mode, int64_t uid, int64_t gid);
long scp_perm_utimes(const struct scp_cred *c, const scp_vstat *v, int explicit_times);
long scp_perm_link(const struct scp_cred *c, const scp_vstat *v);
/* the mode a file keeps after a write by c: without S_ISUID, and S_ISGID when group-executable
 * or c is outside its group, unless c is root (CAP_FSETID) */
uint32_t scp_perm_after_write(const struct scp_cred *c, const scp_vstat *v);
/* search on the volume root and each directory above rel; write+search (want) on rel's
 * directory; the sticky rule */
long scp_perm_search(const struct scp_cred *c, scp_volume *vol, const char *rel);
long scp_perm_parent(const struct scp_cred *c, scp_volume *vol, const char *rel, int want);
long scp_perm_sticky(const struct scp_cred *c, scp_volume *vol, const char *rel);

#endif
