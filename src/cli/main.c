/* cli/main.c - scpctl: the one command-line front end of SCP. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/util.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

/* The commands that run in scpctl-cas (cli/tool.c) */
static int cas_tool(int argc, char **argv) { return cli_exec_tool("scpctl-cas", argc, argv, 0); }

static const struct command commands[] = {
    {"volume", cmd_volume, "create and use protected volumes (encrypted, tamper-evident files)"},
    {"run", cmd_run, "run an unmodified program with its files in protected volumes"},
    {"cas", cas_tool, "run and query the configuration and attestation service (CAS)"},
    {"session", cas_tool, "create, show, update, list and delete CAS sessions (YAML policies)"},
    {"platform", cas_tool, "sim platform keys, enrolment in CAS, measurements, attestation"},
    {"image", cmd_image, "build, inspect and verify secure container images"},
    {"logs", cas_tool, "decrypt a service's sealed stdout/stderr and check it is complete (owner)"},
    {"attach", cas_tool, "seal input as a service's stdin (owner)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: scpctl COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nRun 'scpctl COMMAND --help' for the command's own help.\n\n"
            "exit codes:\n"
            "  0  success\n"
            "  1  the operation failed (I/O error, not found, refused)\n"
            "  2  bad command line\n"
            "  3  integrity failure: data was modified, truncated, moved or rolled back\n"
            "  4  wrong key, or an unsafe or malformed key file\n");
}

int main(int argc, char **argv) {
    scp_no_core_dumps(); /* scpctl handles keys */
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("scpctl 0.1.0\n");
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "scpctl: unknown command '%s'; run 'scpctl --help' for the list\n", argv[1]);
    return EXIT_USAGE;
}
