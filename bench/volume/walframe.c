/* bench/volume/walframe.c - the volume library's CPU per sqlite WAL transaction, without sqlite
 * and without the shield: a one-row transaction in WAL mode with synchronous=FULL writes one
 * frame (a 24-byte header and a 4096-byte page at 32 + 4120 n, so every frame straddles two
 * 4 KiB chunks) and fsyncs the -wal file; sqlite starts over at the file's beginning after a
 * checkpoint (every 1000 frames by default).
 *
 *   walframe DIR [TXNS] [private]   (DIR: a new directory; on tmpfs the flushes cost no waiting)
 *
 * "private": the process takes the volume's private lock first (scp_volume_go_private), as the
 * shield does for sqlite3 under `scpctl run`: the sole holder's commits skip the cross-process
 * lock and catch-up (docs/volume-format.md, "Sole holder"). No watcher thread here: another
 * process that opens the volume meanwhile waits until this one ends.
 *
 * Prints the process CPU time per transaction (getrusage). Under valgrind --tool=callgrind the
 * instruction count per transaction is a figure that the machine's load does not move. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "scp/volume.h"

static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: walframe DIR [TXNS] [private]\n");
        return 2;
    }
    int txns = argc > 2 ? atoi(argv[2]) : 2000;
    uint8_t key[32], hdr[24], page[4096];
    memset(key, 7, sizeof key);
    scp_err e;
    scp_volume *v = NULL;
    scp_vfile *f = NULL;
    if (scp_volume_create(argv[1], key, 4096, &e) < 0 || !(v = scp_volume_open(argv[1], key, NULL, &e)) ||
        !(f = scp_vfile_open(v, "db-wal", O_RDWR | O_CREAT, 0644, &e))) {
        fprintf(stderr, "walframe: %s\n", e.msg);
        return 1;
    }
    if (argc > 3 && strcmp(argv[3], "private") == 0 && scp_volume_go_private(v) != 1) {
        fprintf(stderr, "walframe: cannot take the volume's private lock\n");
        return 1;
    }
    memset(hdr, 0, sizeof hdr);
    if (scp_vfile_pwrite(f, hdr, sizeof hdr, 0, &e) < 0 || scp_vfile_fsync(f, &e) < 0) {
        fprintf(stderr, "walframe: %s\n", e.msg);
        return 1;
    }
    double t0 = cpu();
    for (int n = 0; n < txns; n++) {
        uint64_t off = 32 + 4120 * (uint64_t)(n % 1000);
        memset(hdr, n & 0xff, sizeof hdr);
        memset(page, (n * 7) & 0xff, sizeof page);
        if (scp_vfile_pwrite(f, hdr, sizeof hdr, off, &e) < 0 ||
            scp_vfile_pwrite(f, page, sizeof page, off + sizeof hdr, &e) < 0 ||
            scp_vfile_fsync(f, &e) < 0) {
            fprintf(stderr, "walframe: %s\n", e.msg);
            return 1;
        }
    }
    double t = cpu() - t0;
    printf("walframe: %d transactions, %.1f us CPU per transaction\n", txns, t * 1e6 / txns);
    if (scp_vfile_close(f, &e) < 0 || scp_volume_close(v, &e) < 0) {
        fprintf(stderr, "walframe: %s\n", e.msg);
        return 1;
    }
    return 0;
}
