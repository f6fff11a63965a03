/* cli/commands.h - the subcommands of scpctl.
 *
 * Each top-level subcommand is one function in its own file (cmd_<name>.c) with the signature
 * below: argv[0] is the subcommand's name, and the return value is the process exit code
 * (see the EXIT_* codes). To add a subcommand, write its file and add a line to the table in
 * cli/main.c.
 */
#ifndef SCP_CLI_COMMANDS_H
#define SCP_CLI_COMMANDS_H

#include <stddef.h>
#include <stdio.h>

#include "scp/err.h"

/* Exit codes of scpctl, documented in `scpctl --help` and README.md. */
enum {
    EXIT_OK = 0,        /* success */
    EXIT_FAILURE_ = 1,  /* the operation failed (I/O error, refused, ...) */
    EXIT_USAGE = 2,     /* bad command line */
    EXIT_INTEGRITY = 3, /* data failed authentication: tampering, corruption, rollback */
    EXIT_KEY = 4,       /* wrong key, or a key file that is unsafe or malformed */
};

int cmd_volume(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_cas(int argc, char **argv);
int cmd_session(int argc, char **argv);
int cmd_platform(int argc, char **argv);
int cmd_image(int argc, char **argv);
/* scpctl platform serve and evidence (cmd_platform_local.c). */
int cmd_platform_serve(int argc, char **argv);
int cmd_platform_evidence(int argc, char **argv);
int cmd_console(int argc, char **argv); /* logs, attach */
int cmd_run_cas(int argc, char **argv); /* run --cas, in scpctl-cas */
/* Execute TOOL from the directory of this scpctl with a command's arguments (argv[0] is the
 * command's name): TOOL gets "scpctl", then argv from argv[from] on. Returns only on
 * failure, with an exit code (cli/tool.c: scpctl-cas, scpctl-image). */
int cli_exec_tool(const char *tool, int argc, char **argv, int from);

/* The program name that cli_fail and cli_usage_error print first: "scpctl" unless main sets
 * another (scp-entry does). */
void cli_set_name(const char *name);
/* Map an error to the exit code above and print "scpctl: <msg>" to stderr. */
int cli_fail(const scp_err *err);
/* Print "scpctl: <formatted>" to stderr, return EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* True if argv[i] is -h or --help. */
int cli_is_help(const char *arg);

/* One subcommand in its command's usage: its synopsis lines, each starting "scpctl CMD SUB",
 * each followed by its explanation on lines indented by spaces. */
typedef struct cli_sub {
    const char *name;
    const char *text;
} cli_sub;

/* The usage of a command with subcommands. */
typedef struct cli_cmd_usage {
    const cli_sub *subs;
    size_t nsubs;
    const char *intro; /* after the subcommands in the whole usage only, or NULL */
    const char *outro; /* after the subcommands in both forms (options, exit codes), or NULL */
} cli_cmd_usage;

/* Print u to out: the subcommand sub's lines alone when u has sub, else every subcommand's. */
void cli_usage_print(const cli_cmd_usage *u, const char *sub, FILE *out);
/* The start of a command with subcommands (argv[0] its name, argv[1] the subcommand): none
 * given: the whole usage on stderr, EXIT_USAGE; -h or --help anywhere before a "--": the named
 * subcommand's usage (or all) on stdout, EXIT_OK; a subcommand u has not: a usage error. Otherwise
 * -1, go on, and every later cli_usage_error prints argv[1]'s usage after its message. */
int cli_usage_start(const cli_cmd_usage *u, int argc, char **argv);

#endif
