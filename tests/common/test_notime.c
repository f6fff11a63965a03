/* tests/common/test_notime.c - scp_fstat_notime and scp_fstatat_notime (common/util.h) answer
 * as fstat and fstatat do for every field the volume reads (type and mode, owner, links, inode
 * and device, size, blocks), by descriptor and by name, without following a final symbolic
 * link when asked not to, fail as they fail, and give zero times. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "../crypto/check.h"

static void same(const struct stat *a, const struct stat *b) {
    CHECK(a->st_dev == b->st_dev && a->st_ino == b->st_ino);
    CHECK(a->st_mode == b->st_mode && a->st_nlink == b->st_nlink);
    CHECK(a->st_uid == b->st_uid && a->st_gid == b->st_gid);
    CHECK(a->st_size == b->st_size && a->st_blocks == b->st_blocks);
    CHECK(b->st_mtim.tv_sec == 0 && b->st_mtim.tv_nsec == 0 && b->st_ctim.tv_sec == 0 &&
          b->st_ctim.tv_nsec == 0 && b->st_atim.tv_sec == 0);
}

int main(void) {
    char dir[] = "/tmp/scp-notime-XXXXXX";
    if (!mkdtemp(dir)) return 2;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    int fd = openat(dfd, "f", O_CREAT | O_RDWR, 0640);
    if (dfd < 0 || fd < 0 || pwrite(fd, "0123456789", 10, 70000) != 10) return 2;
    if (linkat(dfd, "f", dfd, "g", 0) < 0 || symlinkat("f", dfd, "l") < 0) return 2;

    struct stat a, b;
    CHECK(fstat(fd, &a) == 0 && scp_fstat_notime(fd, &b) == 0);
    same(&a, &b);
    CHECK(S_ISREG(b.st_mode) && b.st_size == 70010 && b.st_nlink == 2);
    CHECK(fstat(dfd, &a) == 0 && scp_fstat_notime(dfd, &b) == 0);
    same(&a, &b);
    CHECK(S_ISDIR(b.st_mode));
    CHECK(fstatat(dfd, "l", &a, AT_SYMLINK_NOFOLLOW) == 0 &&
          scp_fstatat_notime(dfd, "l", AT_SYMLINK_NOFOLLOW, &b) == 0);
    same(&a, &b);
    CHECK(S_ISLNK(b.st_mode));
    CHECK(fstatat(dfd, "l", &a, 0) == 0 && scp_fstatat_notime(dfd, "l", 0, &b) == 0);
    same(&a, &b);
    CHECK(S_ISREG(b.st_mode) && b.st_size == 70010);

    errno = 0;
    CHECK(scp_fstatat_notime(dfd, "missing", AT_SYMLINK_NOFOLLOW, &b) < 0 && errno == ENOENT);
    int closed = dup(fd);
    close(closed);
    errno = 0;
    CHECK(scp_fstat_notime(closed, &b) < 0 && errno == EBADF);

    close(fd);
    unlinkat(dfd, "l", 0);
    unlinkat(dfd, "g", 0);
    unlinkat(dfd, "f", 0);
    close(dfd);
    rmdir(dir);
    if (failures) fprintf(stderr, "test_notime: %d failure(s)\n", failures);
    return failures != 0;
}
