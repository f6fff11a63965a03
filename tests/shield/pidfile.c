/* tests/shield/pidfile.c - a pid file polled by fresh processes while another process writes,
 * rewrites and removes it: what pg_ctl does with postmaster.pid.
 *
 * usage: shield-pidfile DIR SECONDS READERS [rename]
 *
 * The writer (the postmaster) loops: create DIR/pid exclusively, write its lines, fsync, close;
 * open it again, rewrite its last line in place, fsync, close; remove it. Each reader (pg_ctl
 * stop's wait) loops: fork a child that opens the file with fopen, reads it with fscanf and
 * fgets (glibc's own reads: the seccomp trap under the shield) and closes it.
 * A child reports, as its exit status: 0 read a whole version, 1 no such file, 2 empty (opened
 * between the create and the write: a plain directory shows that too), 3 an error (its errno is
 * printed), 4 content neither version has. A child killed by a signal is a failure, as is any
 * 3 or 4. Before the fix of file_refresh (a loaded file's path cleared by its own volume lock,
 * another process's removal) about 1 child in 30 died of SIGSEGV here.
 * With "rename", the writer replaces the file as a program replaces a configuration or git its
 * index: write DIR/pid.tmp whole (create, write, fsync, close), rename it over DIR/pid; each
 * third cycle it removes DIR/pid instead. A reader's open file is then one whose name another
 * file took (the catch-up's rename-over case).
 * Exits 0 if every read was 0, 1 or 2, and at least one of each reader was 0. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workers.h"

#define TAIL_FIRST "ready   \n"
#define TAIL_AFTER "stopping\n"

static int version(char *buf, size_t n, long pid, const char *tail) {
    return snprintf(buf, n, "%ld\n/data/dir\n1234\n5432\n/tmp\n\n  1 2\n%s", pid, tail);
}

/* one poll, in a child: its exit status as above */
static int poll_once(const char *path) {
    FILE *fp = fopen(path, "r");
    if (!fp) {
        if (errno == ENOENT) return 1;
        printf("fopen: %s\n", strerror(errno));
        return 3;
    }
    long pid;
    char all[512], line[128];
    int rc;
    if (fscanf(fp, "%ld", &pid) != 1) {
        rc = ferror(fp) ? 3 : feof(fp) && ftell(fp) == 0 ? 2 : 4;
        if (rc == 3) printf("fscanf: %s\n", strerror(errno));
        if (rc == 4) printf("no pid on the first line\n");
        fclose(fp);
        return rc;
    }
    size_t n = (size_t)snprintf(all, sizeof all, "%ld", pid);
    while (fgets(line, sizeof line, fp) && n + strlen(line) < sizeof all) n += (size_t)snprintf(all + n, sizeof all - n, "%s", line);
    rc = ferror(fp) ? 3 : 0;
    if (rc == 3) printf("fgets: %s\n", strerror(errno));
    fclose(fp);
    if (rc) return rc;
    char a[512], b[512];
    version(a, sizeof a, pid, TAIL_FIRST);
    version(b, sizeof b, pid, TAIL_AFTER);
    if (strcmp(all, a) != 0 && strcmp(all, b) != 0) {
        printf("content neither version has: '%s'\n", all);
        return 4;
    }
    return 0;
}

static int reader(const char *path, long long end) {
    long count[5] = {0}, died = 0;
    while (now_ms() < end) {
        fflush(stdout);
        pid_t c = fork();
        if (c < 0) return perror("fork"), 1;
        if (c == 0) _exit(poll_once(path));
        int st;
        if (waitpid(c, &st, 0) < 0) return perror("waitpid"), 1;
        if (WIFSIGNALED(st)) {
            printf("a reading process died of signal %d (%s)\n", WTERMSIG(st), strsignal(WTERMSIG(st)));
            died++;
        } else if (WEXITSTATUS(st) <= 4) {
            count[WEXITSTATUS(st)]++;
        }
    }
    printf("reader %d: %ld whole, %ld absent, %ld empty, %ld errors, %ld wrong, %ld died\n", (int)getpid(),
           count[0], count[1], count[2], count[3], count[4], died);
    return died || count[3] || count[4] || !count[0];
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s DIR SECONDS READERS [rename]\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/pid", argv[1]);
    int readers = atoi(argv[3]);
    long long end = now_ms() + 1000LL * atoi(argv[2]);
    pid_t kids[16];
    if (readers < 1 || readers > 16) return fprintf(stderr, "READERS: 1..16\n"), 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int k = 0; k < readers; k++)
        if ((kids[k] = fork()) == 0) _exit(reader(path, end));
    long cycles = 0;
    int bad = 0;
    char buf[512];
    int rename_mode = argc == 5 && strcmp(argv[4], "rename") == 0;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    while (rename_mode && now_ms() < end && !bad) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int len = version(buf, sizeof buf, (long)getpid(), cycles % 2 ? TAIL_AFTER : TAIL_FIRST);
        bad |= fd < 0 || write(fd, buf, (size_t)len) != len || fsync(fd) != 0 || close(fd) != 0 ||
               rename(tmp, path) != 0;
        if (!bad && cycles % 3 == 2) bad |= unlink(path) != 0;
        if (bad) printf("writer: a call failed: %s\n", strerror(errno));
        cycles++;
    }
    while (!rename_mode && now_ms() < end && !bad) {
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0) {
            printf("writer: create: %s\n", strerror(errno));
            bad = 1;
            break;
        }
        int len = version(buf, sizeof buf, (long)getpid(), TAIL_FIRST);
        bad |= write(fd, buf, (size_t)len) != len || fsync(fd) != 0 || close(fd) != 0;
        usleep(1000);
        /* as the postmaster's AddToDataDirLockFile: read it, rewrite a line in place */
        fd = open(path, O_RDWR);
        bad |= fd < 0 || read(fd, buf, sizeof buf) != len ||
               pwrite(fd, TAIL_AFTER, strlen(TAIL_AFTER), len - (int)strlen(TAIL_AFTER)) != (ssize_t)strlen(TAIL_AFTER) ||
               fsync(fd) != 0 || close(fd) != 0;
        bad |= unlink(path) != 0;
        if (bad) printf("writer: a call failed: %s\n", strerror(errno));
        cycles++;
    }
    printf("writer: %ld cycles\n", cycles);
    for (int k = 0; k < readers; k++) {
        int st;
        if (waitpid(kids[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad = 1;
    }
    return bad;
}
