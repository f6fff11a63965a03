/* tests/cas/cas_serve_quiet_test.c - scp_cas_serve, library code, prints nothing itself
 * (include/scp/err.h): what it says once it listens (the CA fingerprint to pin, the address)
 * goes to the caller's announce callback, or with none to scp_log at level INFO; its warnings
 * go to scp_log. Each run is a child whose stdout and stderr are files, stopped by SIGTERM once
 * it has written its port file: both files must stay empty.
 * Usage: cas_serve_quiet_test SCRATCH_DIR
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "scp/cas.h"

#include "check.h"

static FILE *said; /* the child's record of what reached announce and the log sink */

static void on_announce(void *ctx, const char *line) {
    fprintf(said, "announce %s: %s\n", (const char *)ctx, line);
    fflush(said);
}

static void on_log(scp_log_level level, const char *who, const char *line, void *ctx) {
    (void)ctx;
    fprintf(said, "log %d %s: %s\n", (int)level, who, line);
    fflush(said);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

/* One daemon run in dir/name with announce set or not; the checks on what it said where. */
static void run(const char *dir, const char *name, int with_announce) {
    char data[4200], port[4200], out[4200], err[4200], rec[4200];
    snprintf(data, sizeof data, "%s/%s-data", dir, name);
    snprintf(port, sizeof port, "%s/%s-port", dir, name);
    snprintf(out, sizeof out, "%s/%s-stdout", dir, name);
    snprintf(err, sizeof err, "%s/%s-stderr", dir, name);
    snprintf(rec, sizeof rec, "%s/%s-said", dir, name);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        said = fopen(rec, "w");
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (!said || o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(3);
        scp_log_set_sink(on_log, NULL);
        scp_cas_server_opts opts = {0};
        opts.data_dir = data;
        opts.listen = "127.0.0.1:0";
        opts.port_file = port;
        opts.workers = 2;
        if (with_announce) {
            opts.announce = on_announce;
            opts.announce_ctx = (void *)name;
        }
        scp_err er;
        int rc = scp_cas_serve(&opts, &er);
        if (rc < 0) fprintf(said, "serve failed: %s\n", er.msg);
        fclose(said);
        _exit(rc < 0 ? 4 : 0);
    }
    /* the port file is written after the announcements */
    struct timespec ts = {0, 20 * 1000 * 1000};
    int waited = 0;
    while (file_size(port) <= 0 && waited++ < 1500) nanosleep(&ts, NULL);
    CHECK(file_size(port) > 0, "%s: no port file after 30 s", name);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    char *s = slurp(rec);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the daemon ended with status %#x (%s)",
          name, status, s);
    CHECK(file_size(out) == 0, "%s: scp_cas_serve wrote %ld bytes to stdout", name, file_size(out));
    CHECK(file_size(err) == 0, "%s: scp_cas_serve wrote %ld bytes to stderr", name, file_size(err));
    char want[200];
    if (with_announce)
        snprintf(want, sizeof want, "announce %s: created a new CA; fingerprint (pin this): ", name);
    else
        snprintf(want, sizeof want, "log %d scp-cas: created a new CA; fingerprint (pin this): ",
                 (int)SCP_LOG_INFO);
    CHECK(strstr(s, want) != NULL, "%s: '%s' not in what it said:\n%s", name, want, s);
    CHECK(strstr(s, "listening on 127.0.0.1:0 (port ") != NULL, "%s: no address in:\n%s", name, s);
    snprintf(want, sizeof want, "log %d scp-cas: WARNING: running with the 'sim' TEE backend",
             (int)SCP_LOG_WARN);
    CHECK(strstr(s, want) != NULL, "%s: the sim warning not logged:\n%s", name, s);
    if (with_announce) CHECK(strstr(s, "log 0 scp-cas: listening") == NULL, "%s: announced twice", name);
    free(s);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: cas_serve_quiet_test SCRATCH_DIR\n");
        return 2;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/serve-quiet.XXXXXX", argv[1]);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    run(dir, "announce", 1);
    run(dir, "log", 0);
    if (failures) return 1;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    printf("cas_serve_quiet_test: all checks passed\n");
    return 0;
}
