/* cli/cmd_image.c - scpctl image: executes scpctl-image or scpctl-cas (cli/tool.c).
 *
 * `scpctl image entry` is what a secure image runs first (docs/image.md); it attests and starts
 * the program as `scpctl run --cas` does, in scpctl-cas. build, inspect and verify read and
 * write image layers with libarchive; they live in the program scpctl-image beside this scpctl
 * (cli/image_tool.c), so that scpctl itself does not load libarchive and its dozen libraries on
 * every run.
 */
#include <string.h>

#include "cli/commands.h"

int cmd_image(int argc, char **argv) {
    /* the entrypoint of a secure image attests as run --cas does: scpctl-cas */
    if (argc >= 2 && !strcmp(argv[1], "entry")) return cli_exec_tool("scpctl-cas", argc, argv, 0);
    return cli_exec_tool("scpctl-image", argc, argv, 1); /* (it names its command itself) */
}
