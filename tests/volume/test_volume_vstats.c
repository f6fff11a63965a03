/* tests/volume/test_volume_vstats.c - the library's shared-mode counters (SCP_VOLUME_STATS,
 * src/volume/vstats.h), a measurement aid that bench/volume/pgbench.sh reads.
 *
 * Asserts, from the line the library writes:
 * 1. a fork family counts together: a process opens a volume in shared mode, forks a child
 *    that writes N times and leaves with _exit (no destructor runs: PostgreSQL's backends'
 *    counts were lost that way), then writes N times itself and exits; exactly one line is
 *    written, by that process, and it counts both processes' writes (pwrite_calls 2N + 1,
 *    lazy commits, volume locks, the other process's manifest-log records caught up on, a
 *    follow of its journal records) and their CPU time (pwrite_ns);
 * 2. off without the variable: the same run appends nothing (to the file of the first run).
 * Each run is a fresh exec of this binary (the library reads the variable as it loads).
 */
#include <sys/wait.h>

#include "testutil.h"

#define N 20
#define CS 4096u

static void worker(const char *dir) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    memset(key, 7, sizeof key);
    char *vd = tu_path(dir, "vol");
    scp_err e;
    tu_err_clear(&e);
    REQUIRE_OK(scp_volume_create(vd, key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_volume_set_shared(v);
    uint8_t buf[CS];
    memset(buf, 1, sizeof buf);
    REQUIRE_OK(tu_vput(v, "/f", buf, sizeof buf, &e), e);
    pid_t c = fork();
    REQUIRE(c >= 0);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "/f", O_RDWR, 0, &e), e);
    for (int i = 0; i < N; i++) {
        buf[0] = (uint8_t)(c == 0 ? i : 100 + i);
        REQUIRE(scp_vfile_pwrite(f, buf, 64, (uint64_t)(c == 0 ? 0 : 64), &e) == 64);
    }
    if (c == 0) _exit(tu_failures ? 1 : 0);
    int st;
    REQUIRE(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    buf[0] = 0;
    REQUIRE(scp_vfile_pwrite(f, buf, 64, 128, &e) == 64); /* (after the child's: a catch-up) */
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    free(vd);
    exit(tu_failures ? 1 : 0);
}

/* Run this binary as a worker on dir, with SCP_VOLUME_STATS=stats (NULL: unset). Its pid. */
static pid_t run_worker(char *self, const char *dir, const char *stats) {
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0) {
        if (stats) setenv("SCP_VOLUME_STATS", stats, 1);
        else unsetenv("SCP_VOLUME_STATS");
        char *argv[] = {self, "worker", (char *)dir, NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int st;
    REQUIRE(waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return p;
}

/* The value of " name=" in line, or 0 if absent. */
static unsigned long long field(const char *line, const char *name) {
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", name);
    const char *p = strstr(line, pat);
    return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "worker") == 0) worker(argv[2]);
    char *root = tu_tmpdir("vstats");
    char *d1 = tu_path(root, "on"), *d2 = tu_path(root, "off");
    char *stats = tu_path(root, "stats");
    REQUIRE(mkdir(d1, 0700) == 0 && mkdir(d2, 0700) == 0);

    tu_context = "family";
    pid_t w = run_worker(argv[0], d1, stats);
    size_t len = 0;
    char *txt = (char *)tu_read_file(stats, &len);
    REQUIRE(txt != NULL);
    if (txt) {
        txt = realloc(txt, len + 1);
        txt[len] = 0;
        char head[64];
        snprintf(head, sizeof head, "vstats pid=%ld ", (long)w);
        CHECK(strncmp(txt, head, strlen(head)) == 0);
        CHECK(strchr(txt, '\n') == txt + len - 1); /* one line */
        CHECK(field(txt, "pwrite_calls") == 2 * N + 2); /* (tu_vput's, the child's, ours) */
        CHECK(field(txt, "commit_lazy") >= 2 * N);
        CHECK(field(txt, "vol_lock") >= 2 * N);
        CHECK(field(txt, "mlog_rec_open") >= 1); /* the other process's records */
        CHECK(field(txt, "follow") >= 1);        /* and its journal's */
        CHECK(field(txt, "pwrite_ns") > 0);
        if (tu_failures) fprintf(stderr, "the line: %s", txt);
        free(txt);
    }

    tu_context = "off";
    run_worker(argv[0], d2, NULL);
    struct stat sb;
    CHECK(stat(stats, &sb) == 0 && (size_t)sb.st_size == len); /* (nothing appended to the other) */

    tu_rm_rf(root);
    free(root);
    free(d1);
    free(d2);
    free(stats);
    return tu_exit_code("test_volume_vstats");
}
