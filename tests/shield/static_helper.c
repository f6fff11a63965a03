/* tests/shield/static_helper.c - a statically linked child: no libc to interpose, no shield.
 * usage: shield-static-helper MOUNT
 * Tries to put a marker into a file under MOUNT by path and through every inherited
 * descriptor at 1024 and above (the shield's reserved ones). Exits 0 when every attempt failed; the
 * seccomp filter may also kill it (SIGSYS), which is fine. Exits 1 if any attempt succeeded. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    static const char m[] = "SCPBYPASS_static_marker_0123456789";
    if (argc != 2) return 2;
    char p[4096];
    snprintf(p, sizeof p, "%s/static.txt", argv[1]);
    int fd = open(p, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0 && write(fd, m, sizeof m - 1) > 0) return 1;
    for (int i = 1024; i < 65536; i++) { /* the shield's numbers (the test runner may pass low ones) */
        if (fcntl(i, F_GETFD) < 0) continue;
        if (write(i, m, sizeof m - 1) > 0) return 1;
        int d = openat(i, "static.txt", O_CREAT | O_WRONLY, 0600);
        if (d >= 0 && write(d, m, sizeof m - 1) > 0) return 1;
    }
    return 0;
}
