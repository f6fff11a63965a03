/* tests/shield/append.c - several processes appending lines to one file at once, as nginx's
 * workers write their access log (one O_APPEND descriptor each, opened at start), as a logger
 * or a mail spool appends under flock(2), and as a shell's `>>` opens the file per line.
 *
 * usage: shield-append DIR SECONDS PROCESSES MODE
 *   MODE held:  each process opens DIR/log once with O_APPEND and writes a line per write(2);
 *   MODE flock: the same descriptor, each write under flock(LOCK_EX), and every tenth
 *               line written in two write(2)s under the one lock (a record in pieces);
 *   MODE open:  each line opens DIR/log with O_APPEND, writes it and closes it.
 *
 * A line is "P SEQ LEN CRC pad...\n": the process's number, its sequence number from 0, the
 * line's length and a checksum of its head, padded to a length that varies from 40 to 700
 * bytes so that lines straddle the volume's chunks. Each process reports its lines through a
 * pipe. Then the file is read back whole: every line must parse and check, each process's
 * sequence numbers must run 0, 1, 2, ... with none missing or twice (an append that landed
 * over another's bytes breaks a line or loses one), the file's size must be the sum of the
 * lines, and every process must have written at least one.
 * Exits 0 if all of that holds. Each process stops at MAX_LINES lines or its time. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workers.h"

enum mode { HELD, FLOCK, OPEN };

/* a process stops after this many lines even before its time is up: a plain directory takes
 * some 200,000 a second, and the file stays below ~30 MB */
#define MAX_LINES 25000

/* the checksum of a line's head (FNV-1a): what makes a line whose bytes another append
 * overwrote, or whose pieces were split, fail to check */
static unsigned crc(const char *s, size_t n) {
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* line SEQ of process P into b (at least 800 bytes); its length */
static size_t make_line(char *b, int p, long seq) {
    size_t len = 40 + (size_t)((seq * 7919 + p * 104729) % 661);
    int h = snprintf(b, 64, "%d %ld %zu ", p, seq, len);
    int t = snprintf(b + h, 16, "%08x ", crc(b, (size_t)h));
    size_t at = (size_t)h + (size_t)t;
    for (size_t i = at; i < len - 1; i++) b[i] = (char)('a' + (seq + (long)i) % 26);
    b[len - 1] = '\n';
    return len;
}

static int write_all(int fd, const char *b, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* one process's loop: its lines, or -1 after a failed call */
static long appender(const char *path, int p, enum mode m, long long end) {
    char b[800];
    int fd = -1;
    if (m != OPEN && (fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644)) < 0) {
        printf("open %s: %s\n", path, strerror(errno));
        return -1;
    }
    long seq = 0;
    while (seq < MAX_LINES && now_ms() < end) {
        size_t len = make_line(b, p, seq);
        int bad;
        if (m == OPEN) {
            int f = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
            bad = f < 0 || write_all(f, b, len) != 0 || close(f) != 0;
        } else if (m == FLOCK) {
            bad = flock(fd, LOCK_EX) != 0;
            if (!bad && seq % 10 == 9) /* a record in two writes, held together by the lock */
                bad = write_all(fd, b, len / 2) != 0 || write_all(fd, b + len / 2, len - len / 2) != 0;
            else if (!bad)
                bad = write_all(fd, b, len) != 0;
            bad |= flock(fd, LOCK_UN) != 0;
        } else {
            /* one write(2) per line: O_APPEND makes each land whole at the end */
            ssize_t w = write(fd, b, len);
            bad = w != (ssize_t)len;
        }
        if (bad) {
            printf("process %d, line %ld: %s\n", p, seq, strerror(errno));
            return -1;
        }
        seq++;
    }
    if (fd >= 0 && close(fd) != 0) return -1;
    return seq;
}

struct job {
    const char *path;
    enum mode m;
    long long end;
};

static long job_run(int k, void *ctx) {
    const struct job *j = ctx;
    return appender(j->path, k, j->m, j->end);
}

/* read PATH back and check it against the counts each process reported */
static int check(const char *path, const long *count, int nproc) {
    FILE *f = fopen(path, "r");
    if (!f) return printf("read %s: %s\n", path, strerror(errno)), 1;
    long *next = calloc((size_t)nproc, sizeof *next);
    char line[1024];
    long lineno = 0, bytes = 0;
    int bad = 0;
    while (!bad && fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        bytes += (long)n;
        int p = -1, h = 0;
        long seq = -1;
        size_t len = 0;
        unsigned c = 0;
        char want[800];
        if (sscanf(line, "%d %ld %zu %n%x", &p, &seq, &len, &h, &c) != 4 || p < 0 ||
            p >= nproc || seq < 0 || len != n || len > sizeof want || crc(line, (size_t)h) != c) {
            printf("line %ld does not parse or check (%zu bytes): %.60s\n", lineno, n, line);
            bad = 1;
        } else if (seq != next[p]) {
            printf("line %ld: process %d's line %ld, expected %ld (one lost or twice)\n", lineno,
                   p, seq, next[p]);
            bad = 1;
        } else if (make_line(want, p, seq) != n || memcmp(want, line, n) != 0) {
            printf("line %ld: process %d's line %ld is not the bytes it wrote\n", lineno, p, seq);
            bad = 1;
        } else {
            next[p]++;
        }
    }
    if (ferror(f)) printf("read %s: %s\n", path, strerror(errno)), bad = 1;
    fclose(f);
    struct stat st;
    if (!bad && stat(path, &st) == 0 && st.st_size != bytes)
        printf("the file's size %lld, its lines %ld bytes\n", (long long)st.st_size, bytes), bad = 1;
    for (int p = 0; !bad && p < nproc; p++)
        if (next[p] != count[p])
            printf("process %d wrote %ld lines, the file holds %ld\n", p, count[p], next[p]), bad = 1;
    printf("%ld lines, %ld bytes%s\n", lineno, bytes, bad ? ": FAILED" : "");
    free(next);
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s DIR SECONDS PROCESSES held|flock|open\n", argv[0]);
        return 2;
    }
    int nproc = atoi(argv[3]);
    if (nproc < 1 || nproc > 16) return fprintf(stderr, "PROCESSES: 1..16\n"), 2;
    enum mode m;
    if (strcmp(argv[4], "held") == 0) m = HELD;
    else if (strcmp(argv[4], "flock") == 0) m = FLOCK;
    else if (strcmp(argv[4], "open") == 0) m = OPEN;
    else return fprintf(stderr, "MODE: held, flock or open\n"), 2;
    char path[4200];
    snprintf(path, sizeof path, "%s/log.%s", argv[1], argv[4]);
    if (unlink(path) != 0 && errno != ENOENT) return perror(path), 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct job j = {path, m, now_ms() + 1000LL * atoi(argv[2])};
    long count[16];
    if (run_workers(argv[4], nproc, job_run, &j, count)) return printf("%s: a process failed\n", argv[4]), 1;
    return check(path, count, nproc);
}
