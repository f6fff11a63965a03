/* shield/creds.c - the program's credentials and the protected volumes.
 *
 * Two things, both about who the program is:
 *  - A daemon that drops privileges (nginx's `user www-data;`, PostgreSQL, MariaDB, redis)
 *    must keep its volumes. The volume library opens its backing objects by name (openat on
 *    the volume's objects/ directory) each time a file is opened, and the backing store is
 *    created 0700/0600 for the user who launched the program. After setuid(www-data) the
 *    kernel refuses those opens with EACCES. So just before the program gives up its user id,
 *    while it still may, the shield hands the backing store (the volume directory, objects/
 *    and every file in them; no file contents change) to the user the program becomes.
 *    A process that stays root (nginx's master) keeps access through CAP_DAC_OVERRIDE.
 *  - Inside a volume the program's own view of ownership is enforced: the manifest keeps
 *    each file's owner, group and mode, and opens, chmod and chown are checked against the
 *    caller's effective ids and groups as the kernel checks them (root bypasses the read and
 *    write bits, not a missing execute bit).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shield/internal.h"
#include "shield/perm.h"

/* ---- permission checks inside a volume --------------------------------------------------- */

/* The program's credentials, read once and again after each change that goes through the
 * interposed set*id calls below: the read path (open of a protected file) makes no system call.
 * The rules themselves are perm.c's, shared with the static-image supervisor. */
static struct scp_cred cr;
static int cr_valid; /* atomic */

static const struct scp_cred *cred_load(void) {
    if (__atomic_load_n(&cr_valid, __ATOMIC_ACQUIRE)) return &cr;
    cr.euid = geteuid();
    cr.egid = getegid();
    cr.ruid = getuid();
    cr.rgid = getgid();
    int n = getgroups(SCP_PERM_MAX_GROUPS, cr.groups);
    cr.ngroups = n < 0 ? 0 : n;
    __atomic_store_n(&cr_valid, 1, __ATOMIC_RELEASE);
    return &cr;
}
static void cred_changed(void) { __atomic_store_n(&cr_valid, 0, __ATOMIC_RELEASE); }

int sh_cred_root(void) { return cred_load()->euid == 0; }
long sh_cred_access(const scp_vstat *v, int want) { return scp_perm_access(cred_load(), v, want); }
long sh_cred_access_real(const scp_vstat *v, int want) { return scp_perm_access_real(cred_load(), v, want); }
long sh_cred_search(int vol, const char *rel) { return scp_perm_search(cred_load(), sh.vol[vol].v, rel); }
long sh_cred_utimes(const scp_vstat *v, int explicit_times) { return scp_perm_utimes(cred_load(), v, explicit_times); }
void sh_cred_owner(scp_vstat *v) { scp_perm_owner(cred_load(), v); }
long sh_cred_open(const scp_vstat *v, int flags) { return scp_perm_open(cred_load(), v, flags); }
long sh_cred_setattr(const scp_vstat *v, int64_t *mode, int64_t uid, int64_t gid) {
    return scp_perm_setattr(cred_load(), v, mode, uid, gid);
}
long sh_cred_link(const scp_vstat *v) { return scp_perm_link(cred_load(), v); }
long sh_cred_parent(int vol, const char *rel, int want) { return scp_perm_parent(cred_load(), sh.vol[vol].v, rel, want); }
long sh_cred_sticky(int vol, const char *rel) { return scp_perm_sticky(cred_load(), sh.vol[vol].v, rel); }
uint32_t sh_cred_after_write(const scp_vstat *v) { return scp_perm_after_write(cred_load(), v); }

/* ---- keep the backing store reachable across a change of user ----------------------------- */

/* Called before a credential change that leaves the effective (and file system) uid `to`. */
static void keep_volumes(uid_t to) {
    if (!sh.active || to == (uid_t)-1 || to == 0 || geteuid() != 0) return;
    gid_t gid = getegid();
    for (int i = 0; i < sh.nvol; i++) {
        /* (best effort, as the hand-off always was: a store left root's gives EACCES later) */
        long r = scp_volume_store_chown(sh.cfg.vol[i].dirfd, to, gid, sh_gate);
        if (r < 0)
            sh_trace("volume %d's backing store not wholly handed to uid %u: %s", i, (unsigned)to, strerror((int)-r));
        else
            sh_trace("volume %d's backing store handed to uid %u gid %u", i, (unsigned)to, (unsigned)gid);
    }
}

static void *real_sym(const char *name) { return dlsym(RTLD_NEXT, name); }

SH_EXPORT int setuid(uid_t u) {
    sh_threads_before_setxid();
    keep_volumes(u);
    int (*f)(uid_t) = (int (*)(uid_t))real_sym("setuid");
    int rc = f(u);
    cred_changed();
    return rc;
}
SH_EXPORT int seteuid(uid_t u) {
    sh_threads_before_setxid();
    keep_volumes(u);
    int (*f)(uid_t) = (int (*)(uid_t))real_sym("seteuid");
    int rc = f(u);
    cred_changed();
    return rc;
}
SH_EXPORT int setreuid(uid_t r, uid_t e) {
    sh_threads_before_setxid();
    keep_volumes(e);
    int (*f)(uid_t, uid_t) = (int (*)(uid_t, uid_t))real_sym("setreuid");
    int rc = f(r, e);
    cred_changed();
    return rc;
}
SH_EXPORT int setresuid(uid_t r, uid_t e, uid_t s) {
    sh_threads_before_setxid();
    keep_volumes(e);
    int (*f)(uid_t, uid_t, uid_t) = (int (*)(uid_t, uid_t, uid_t))real_sym("setresuid");
    int rc = f(r, e, s);
    cred_changed();
    return rc;
}
SH_EXPORT int setfsuid(uid_t u) {
    keep_volumes(u);
    int (*f)(uid_t) = (int (*)(uid_t))real_sym("setfsuid");
    int rc = f(u);
    cred_changed();
    return rc;
}
SH_EXPORT int setgid(gid_t g) {
    sh_threads_before_setxid();
    int (*f)(gid_t) = (int (*)(gid_t))real_sym("setgid");
    int rc = f(g);
    cred_changed();
    return rc;
}
SH_EXPORT int setegid(gid_t g) {
    sh_threads_before_setxid();
    int (*f)(gid_t) = (int (*)(gid_t))real_sym("setegid");
    int rc = f(g);
    cred_changed();
    return rc;
}
SH_EXPORT int setregid(gid_t r, gid_t e) {
    sh_threads_before_setxid();
    int (*f)(gid_t, gid_t) = (int (*)(gid_t, gid_t))real_sym("setregid");
    int rc = f(r, e);
    cred_changed();
    return rc;
}
SH_EXPORT int setresgid(gid_t r, gid_t e, gid_t s) {
    sh_threads_before_setxid();
    int (*f)(gid_t, gid_t, gid_t) = (int (*)(gid_t, gid_t, gid_t))real_sym("setresgid");
    int rc = f(r, e, s);
    cred_changed();
    return rc;
}
SH_EXPORT int setgroups(size_t n, const gid_t *list) {
    sh_threads_before_setxid();
    int (*f)(size_t, const gid_t *) = (int (*)(size_t, const gid_t *))real_sym("setgroups");
    int rc = f(n, list);
    cred_changed();
    return rc;
}
SH_EXPORT int initgroups(const char *user, gid_t g) {
    sh_threads_before_setxid();
    int (*f)(const char *, gid_t) = (int (*)(const char *, gid_t))real_sym("initgroups");
    int rc = f(user, g);
    cred_changed();
    return rc;
}

/* New files get mode & ~umask: follow the program's umask changes, not only the one at start. */
SH_EXPORT mode_t umask(mode_t m) {
    mode_t (*f)(mode_t) = (mode_t (*)(mode_t))real_sym("umask");
    sh.umask = m & 0777;
    return f(m);
}
