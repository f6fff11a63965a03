/* tests/shield/openssl_cleanup.c - a program that uses OpenSSL itself and tears it down with
 * OPENSSL_cleanup() before it exits, as mariadbd does at the end of its shutdown. The shield
 * runs in the same process on the same libcrypto: its commits (at fsync, close, exit), its
 * reads and its console streams still need OpenSSL after the program's call.
 *
 * usage: shield-openssl-cleanup MODE FILE
 *   synced: write FILE and fsync it, overwrite it and fsync it again (a journaled commit),
 *           OPENSSL_cleanup(), exit without closing it (mariadbd's order: every file synced,
 *           then the cleanup, then exit);
 *   after:  OPENSSL_cleanup(), then create and write FILE, read it back, exit without closing
 *           or syncing it (the shield commits it at exit).
 * Prints "written" and exits 0 if every call succeeded; a crash or a lost write is the bug.
 */
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_file(const char *path, const char *data, int sync) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data)) return -1;
    /* an overwrite: a commit through the journal */
    if (sync && (fsync(fd) < 0 || pwrite(fd, data, strlen(data), 0) != (ssize_t)strlen(data) ||
                 fsync(fd) < 0))
        return -1;
    char back[256] = {0};
    if (pread(fd, back, sizeof back - 1, 0) != (ssize_t)strlen(data) || strcmp(back, data) != 0)
        return -1;
    return 0; /* left open: the exit commits it */
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "synced") != 0 && strcmp(argv[1], "after") != 0)) {
        fprintf(stderr, "usage: %s synced|after FILE\n", argv[0]);
        return 2;
    }
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) { /* the program's own use of OpenSSL */
        fprintf(stderr, "RAND_bytes failed\n");
        return 1;
    }
    char data[128];
    snprintf(data, sizeof data, "SCPMARK_openssl_cleanup_%s\n", argv[1]);
    int synced = strcmp(argv[1], "synced") == 0;
    if (synced && write_file(argv[2], data, 1) < 0) {
        perror("write before the cleanup");
        return 1;
    }
    OPENSSL_cleanup();
    if (!synced && write_file(argv[2], data, 0) < 0) {
        perror("write after the cleanup");
        return 1;
    }
    printf("written\n");
    return 0; /* exit(): atexit handlers and destructors, the shield's among them */
}
