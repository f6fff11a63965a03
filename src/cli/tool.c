/* cli/tool.c - the programs beside scpctl that do some of its commands' work.
 *
 * scpctl itself links only what `scpctl volume` and `scpctl run` (development mode) need, so
 * that a short `scpctl run` loads libc and libcrypto and nothing more: scpctl-cas holds the CAS
 * commands, the attested `run --cas` and a secure image's entrypoint (libssl, libsqlite3,
 * libyaml, libjansson), scpctl-image the image builder (libarchive and its dozen libraries).
 * Each lives in the directory of this scpctl and gets the command line as given, argv[0] too. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"

int cli_exec_tool(const char *tool, int argc, char **argv, int from) {
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n < 0) return cli_usage_error("cannot find this scpctl: %s", strerror(errno));
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) : 0;
    size_t len = strlen(tool);
    if (dir + 1 + len + 1 > sizeof path) return cli_usage_error("path too long: %s", path);
    path[dir] = '/';
    memcpy(path + dir + 1, tool, len + 1);
    assert(argc >= 1 && from >= 0 && from <= argc);
    char **av = malloc(((size_t)(argc - from) + 2) * sizeof *av);
    if (!av) return cli_usage_error("out of memory");
    av[0] = "scpctl"; /* what ps shows: `scpctl run --cas ...` stays that (the tools ignore it) */
    for (int i = from; i < argc; i++) av[i - from + 1] = argv[i];
    av[argc - from + 1] = NULL;
    fflush(NULL);
    execv(path, av);
    fprintf(stderr, "scpctl: cannot run %s, which does scpctl %s's work: %s\n", path, argv[0], strerror(errno));
    free(av);
    return EXIT_FAILURE_;
}
