/* tests/shield/static_helper.c - a statically linked child: no libc to interpose, no shield.
 * usage: shield-static-helper MOUNT
 * Puts a marker into a file under MOUNT by path (a supervisor serves static images: the parent
 * checks that what this reports as written is stored), then tries every inherited descriptor
 * at 1024 and above (the shield's reserved ones). Exits 0 when the path write failed, 3 when
 * it succeeded, and 1 if an attempt through a reserved descriptor succeeded; the seccomp filter
 * may also kill it (SIGSYS) in that loop, which is fine. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    static const char m[] = "SCPBYPASS_static_marker_0123456789";
    if (argc != 2) return 2;
    char p[4096];
    snprintf(p, sizeof p, "%s/static.txt", argv[1]);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    int stored = fd >= 0 && write(fd, m, sizeof m - 1) == (ssize_t)sizeof m - 1 && close(fd) == 0;
    for (int i = 1024; i < 65536; i++) { /* the shield's numbers (the test runner may pass low ones) */
        if (fcntl(i, F_GETFD) < 0) continue;
        if (write(i, m, sizeof m - 1) > 0) return 1;
        int d = openat(i, "static.txt", O_CREAT | O_WRONLY, 0600);
        if (d >= 0 && write(d, m, sizeof m - 1) > 0) return 1;
    }
    return stored ? 3 : 0;
}
