/* cli/cmd_image.c - scpctl image: a secure image's entrypoint here, the rest in scpctl-image.
 *
 * `scpctl image entry` is what a secure image runs first (docs/image.md); it attests and starts
 * the program, so it stays in scpctl with `scpctl run`. build, inspect and verify read and write
 * image layers with libarchive; they live in the program scpctl-image beside this scpctl
 * (cli/image_tool.c), which this executes with the same arguments, so that scpctl itself does
 * not load libarchive and its dozen libraries on every run.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "scp/image.h"

int cmd_image(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "entry")) { /* the entrypoint of a secure image */
        scp_err e = {0};
        int rc = scp_image_entry(argc - 2, argv + 2, &e);
        return rc < 0 ? cli_fail(&e) : rc;
    }
    char tool[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", tool, sizeof tool - 1);
    if (n < 0) return cli_usage_error("cannot find this scpctl: %s", strerror(errno));
    tool[n] = '\0';
    char *slash = strrchr(tool, '/');
    size_t dir = slash ? (size_t)(slash - tool) : 0;
    static const char name[] = "/scpctl-image";
    if (dir + sizeof name > sizeof tool) return cli_usage_error("path too long: %s", tool);
    memcpy(tool + dir, name, sizeof name);
    argv[0] = "scpctl-image";
    execv(tool, argv);
    fprintf(stderr, "scpctl: cannot run %s, which does scpctl image's work: %s\n", tool, strerror(errno));
    return EXIT_FAILURE_;
}
