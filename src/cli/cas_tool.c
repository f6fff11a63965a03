/* cli/cas_tool.c - scpctl-cas: scpctl's commands that talk to or are CAS (cas, session,
 * platform, logs, attach), the attested `run --cas` and `image entry`.
 *
 * scpctl executes it with the command line it was given (cli/tool.c), so that scpctl itself does
 * not load libssl, libsqlite3, libyaml and libjansson at every `scpctl run`. Not meant to be run
 * by hand: argv[1] is the scpctl command. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/util.h"
#include "scp/image.h"

static int image_entry(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "entry") != 0) return cli_usage_error("scpctl-cas does only 'image entry'");
    scp_err e = {0};
    int rc = scp_image_entry(argc - 2, argv + 2, &e);
    return rc < 0 ? cli_fail(&e) : rc;
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"run", cmd_run_cas}, {"cas", cmd_cas},         {"session", cmd_session}, {"platform", cmd_platform},
    {"logs", cmd_console}, {"attach", cmd_console}, {"image", image_entry},
};

int main(int argc, char **argv) {
    scp_no_core_dumps(); /* as scpctl: keys and secrets */
    for (size_t i = 0; argc >= 2 && i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "scpctl-cas: not a command of scpctl-cas: run it through scpctl\n");
    return EXIT_USAGE;
}
