/* cli/exit.c - how scpctl's commands end: an error's message on stderr and its exit code
 * (the EXIT_* codes of cli/commands.h). Shared by scpctl, scpctl-image and scp-entry. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

/* The name at the start of every error line: set once, at the start of main, if at all. */
static const char *cli_name = "scpctl";

void cli_set_name(const char *name) { cli_name = name; }

int cli_fail(const scp_err *err) {
    fflush(stdout); /* what was printed comes before the error, also when both go to one pipe */
    fprintf(stderr, "%s: %s\n", cli_name, err->msg[0] ? err->msg : scp_code_name(err->code));
    return scp_err_exit_status(err->code); /* EXIT_INTEGRITY, EXIT_KEY or EXIT_FAILURE_ */
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }
