/* cli/exit.c - how scpctl's commands end: an error's message on stderr and its exit code
 * (the EXIT_* codes of cli/commands.h); their usage, all of it for `scpctl CMD --help`, one
 * subcommand's for `scpctl CMD SUB --help` (stdout, exit 0) and after a usage error in SUB
 * (stderr, exit 2), as git does. Shared by scpctl, scpctl-image and scp-entry. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

/* The name at the start of every error line: set once, at the start of main, if at all. */
static const char *cli_name = "scpctl";

/* The subcommand whose usage cli_usage_error prints after its message (cli_usage_start). */
static const cli_cmd_usage *err_usage;
static const char *err_sub;

static const cli_sub *find_sub(const cli_cmd_usage *u, const char *sub) {
    for (size_t i = 0; sub && i < u->nsubs; i++)
        if (strcmp(u->subs[i].name, sub) == 0) return &u->subs[i];
    return NULL;
}

/* One subcommand's lines: "usage: " before the very first, seven spaces before each further
 * synopsis ("scpctl ..."), the indented explanations as written. */
static void print_sub(const cli_sub *s, int *first, FILE *out) {
    const char *p = s->text;
    while (*p) {
        size_t n = strcspn(p, "\n");
        const char *lead = strncmp(p, "scpctl ", 7) != 0 ? "" : *first ? "usage: " : "       ";
        fprintf(out, "%s%.*s\n", lead, (int)n, p);
        *first = 0;
        p += n + (p[n] == '\n');
    }
}

void cli_usage_print(const cli_cmd_usage *u, const char *sub, FILE *out) {
    const cli_sub *only = find_sub(u, sub);
    int first = 1;
    for (size_t i = 0; i < u->nsubs; i++)
        if (!only || only == &u->subs[i]) print_sub(&u->subs[i], &first, out);
    if (!only && u->intro) fprintf(out, "\n%s", u->intro);
    if (u->outro) fprintf(out, "\n%s", u->outro);
}

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
    if (err_usage) cli_usage_print(err_usage, err_sub, stderr);
    return EXIT_USAGE;
}

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

int cli_usage_start(const cli_cmd_usage *u, int argc, char **argv) {
    if (argc < 2) {
        cli_usage_print(u, NULL, stderr);
        return EXIT_USAGE;
    }
    /* --help at every level, up to a "--" (after it, the arguments are a program's) */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (cli_is_help(argv[i])) {
            cli_usage_print(u, i > 1 ? argv[1] : NULL, stdout);
            return EXIT_OK;
        }
    if (!find_sub(u, argv[1]))
        return cli_usage_error("unknown subcommand '%s %s'; see 'scpctl %s --help'", argv[0], argv[1], argv[0]);
    err_usage = u;
    err_sub = argv[1];
    return -1;
}
