/* runtime/userns.c - the id maps of a user namespace a process has just entered (userns.h). */
#include "runtime/userns.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/util.h"

static int write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = scp_write_full(fd, s, strlen(s));
    close(fd);
    return r;
}

int scp_userns_map_self(uid_t uid, gid_t gid, scp_err *err) {
    char m[64];
    /* the map files belong to root while this process is not dumpable: be dumpable for the
     * moment it takes to write them (no key is in memory yet) */
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    int bad = 0;
    snprintf(m, sizeof m, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    if (write_file("/proc/self/uid_map", m)) bad = scp_fail_errno(err, "cannot write uid_map");
    else if (write_file("/proc/self/setgroups", "deny") && errno != ENOENT)
        bad = scp_fail_errno(err, "cannot write setgroups");
    else {
        snprintf(m, sizeof m, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
        if (write_file("/proc/self/gid_map", m)) bad = scp_fail_errno(err, "cannot write gid_map");
    }
    prctl(PR_SET_DUMPABLE, dumpable > 0 ? dumpable : 0, 0, 0, 0);
    return bad ? -1 : 0;
}
