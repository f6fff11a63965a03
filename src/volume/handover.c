/* src/volume/handover.c - handing a volume's backing store to another user.
 *
 * A root process that becomes another user (a daemon's privilege drop under the shield, an
 * image's USER under `scpctl run`) must still reach every file of the store: the library opens
 * objects by name, and the store was made 0700 for root. The store is shallow: the volume
 * directory and its flat objects/ (volume.c, scp_volume_create). One walk, two callers: the
 * shield makes its system calls through its gate (its own calls must not reach the functions
 * it interposes), the launcher through syscall(2) (scp_volume_sys). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "scp/volume.h"

long scp_volume_sys(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    long r = syscall(nr, a1, a2, a3, a4, a5, a6);
    return r < 0 ? -errno : r;
}

/* The entries of dfd to uid:gid, and at depth 0 those of its subdirectories (objects/). A
 * subdirectory is handed after its entries, so that one that uid:gid owns already was handed
 * whole before, and is passed by: every start of a daemon that drops privileges made an
 * fchownat per object, 90,000 for a volume of 30,000 files (1 s; session 60). The objects that
 * a root process makes later go to the directory's owner as it makes them (vol_objects_owner).
 * The volume directory's own few entries are handed each time. Goes on past a failure (a
 * subdirectory with an entry not handed is not handed either); returns 0, or the first
 * failure's -errno. */
static long chown_dir(int dfd, uid_t uid, gid_t gid, int depth, scp_volume_sysfn sys) {
    char buf[4096] __attribute__((aligned(8)));
    long n, rc = 0;
    while ((n = sys(SYS_getdents64, dfd, (long)buf, sizeof buf, 0, 0, 0)) > 0) {
        for (long off = 0; off < n;) {
            const struct dirent64 *d = (const struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) continue;
            if (d->d_type == DT_DIR && depth == 0) {
                struct stat st;
                if (sys(SYS_newfstatat, dfd, (long)d->d_name, (long)&st, AT_SYMLINK_NOFOLLOW, 0, 0) == 0 &&
                    st.st_uid == uid && st.st_gid == gid)
                    continue;
                long sub = sys(SYS_openat, dfd, (long)d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0, 0, 0);
                long sub_rc = sub < 0 ? sub : chown_dir((int)sub, uid, gid, depth + 1, sys);
                if (sub >= 0) sys(SYS_close, sub, 0, 0, 0, 0, 0);
                if (sub_rc < 0) {
                    if (rc == 0) rc = sub_rc;
                    continue;
                }
            }
            long r = sys(SYS_fchownat, dfd, (long)d->d_name, uid, gid, AT_SYMLINK_NOFOLLOW, 0);
            if (r < 0 && rc == 0) rc = r;
        }
    }
    return n < 0 && rc == 0 ? n : rc;
}

long scp_volume_store_chown(int dirfd, uid_t uid, gid_t gid, scp_volume_sysfn sys) {
    long rc = sys(SYS_fchownat, dirfd, (long)"", uid, gid, AT_EMPTY_PATH, 0);
    /* (a descriptor of its own: reading the directory moves the offset of its description) */
    long dfd = sys(SYS_openat, dirfd, (long)".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, 0, 0);
    if (dfd < 0) return rc < 0 ? rc : dfd;
    long r = chown_dir((int)dfd, uid, gid, 0, sys);
    sys(SYS_close, dfd, 0, 0, 0, 0, 0);
    return rc < 0 ? rc : r;
}
