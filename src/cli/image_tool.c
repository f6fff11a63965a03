/* cli/image_tool.c - scpctl-image: `scpctl image build, inspect and verify` (scp/image.h).
 *
 * A program of its own, which `scpctl image` executes (cli/cmd_image.c), so that libarchive and
 * what it loads (libxml2, ICU, libstdc++: 12 shared libraries) are loaded only by the commands
 * that read or write image layers, not by every `scpctl run` (about 2.7 ms of CPU each).
 */
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/progress.h"
#include "common/util.h"
#include "runtime/launch.h"
#include "scp/image.h"

static const cli_sub subs[] = {
    {"build", "scpctl image build FROM -t NAME[:TAG] --session S --service NAME [--protect PATH]... [--trusted PATH]...\n"
              "                          [-o FILE|-] [--template FILE] [--tmpdir DIR]\n"
              "            FROM: a 'docker save' archive, an OCI layout (directory or tar), or an image of the\n"
              "            local Docker engine by name. Writes a secure image: the input's layers, and /scp with\n"
              "            the runtime, the shield and a trusted-files manifest that the measurement covers; its\n"
              "            entrypoint attests to CAS before it runs the original entrypoint and command.\n"
              "            Without -o it is loaded into the Docker engine. Prints the measurement; --template\n"
              "            writes a session for it (default: NAME.session.yaml beside -o, else stdout).\n"},
    {"inspect", "scpctl image inspect IMAGE     the measurement, entry, protected paths, trusted files\n"},
    {"verify", "scpctl image verify IMAGE      recompute the trusted-files manifest and the measurement from\n"
               "            the layers and compare (exit 3 on a difference)\n"},
};

static const cli_cmd_usage usage = {
    subs, sizeof subs / sizeof subs[0], NULL,
    "Temporary files (the layers, unpacked) go under --tmpdir, $TMPDIR or /var/tmp.\n",
};

/* on a terminal: a line per step, and a bar while the layers are applied (the long part) */
static progress layer_bar;
static void show_progress(const char *line) {
    progress_end(&layer_bar); /* the bar's line is cleared; its next update draws it again */
    fprintf(stderr, "scpctl: %s\n", line);
}
static void show_bar(uint64_t done, uint64_t total) {
    if (!layer_bar.label) progress_start(&layer_bar, "layers", total);
    progress_update(&layer_bar, done);
}

static int write_template(const char *path, const char *doc) {
    /* 0600: with files under a protected path it holds their seed key (docs/image.md) */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f && fd >= 0) close(fd);
    if (!f || fputs(doc, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "scpctl: cannot write the session template '%s'\n", path);
        return EXIT_FAILURE_;
    }
    fprintf(stderr, "scpctl: session template written to %s\n", path);
    return EXIT_OK;
}

static int image_build(int argc, char **argv) {
    scp_image_build_opts o = {0};
    const char *tmpl = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if ((!strcmp(a, "-t") || !strcmp(a, "--tag")) && has) o.tag = argv[++i];
        else if (!strcmp(a, "--session") && has) o.session = argv[++i];
        else if (!strcmp(a, "--service") && has) o.service = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has) o.output = argv[++i];
        else if (!strcmp(a, "--template") && has) tmpl = argv[++i];
        else if (!strcmp(a, "--tmpdir") && has) o.tmpdir = argv[++i];
        else if (!strcmp(a, "--protect") && has) {
            if (o.n_protect == SCP_IMAGE_MAX_PATHS) return cli_usage_error("at most %d --protect paths", SCP_IMAGE_MAX_PATHS);
            o.protect[o.n_protect++] = argv[++i];
        } else if (!strcmp(a, "--trusted") && has) {
            if (o.n_trust == SCP_IMAGE_MAX_PATHS) return cli_usage_error("at most %d --trusted paths", SCP_IMAGE_MAX_PATHS);
            o.trust[o.n_trust++] = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0')
            return cli_usage_error("image build: unknown option or missing value '%s'", a);
        else if (!o.from) o.from = a;
        else return cli_usage_error("image build takes one input (got '%s' and '%s')", o.from, a);
    }
    if (!o.from || !o.tag || !o.session || !o.service)
        return cli_usage_error("image build needs FROM, -t NAME[:TAG], --session S and --service NAME");
    scp_err e = {0};
    if (scp_image_build_check(&o, &e) < 0) return cli_usage_error("%s", e.msg);
    /* the image's runtime: $SCP_ENTRY, else scp-entry next to this scpctl */
    char self[PATH_MAX], shield[PATH_MAX], entry[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) return cli_usage_error("cannot find this scpctl");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    const char *env_entry = getenv("SCP_ENTRY");
    if (env_entry && *env_entry) snprintf(entry, sizeof entry, "%s", env_entry);
    else if (snprintf(entry, sizeof entry, "%s/scp-entry", self) >= (int)sizeof entry) return cli_usage_error("path too long");
    if (access(entry, X_OK) < 0)
        return cli_usage_error("cannot find scp-entry, the image's runtime, at %s (set SCP_ENTRY)", entry);
    o.entry = entry;
    if (scp_run_find_shield(NULL, shield, sizeof shield, &e) < 0) return cli_fail(&e);
    o.shield_lib = shield;
    if (isatty(2)) o.progress = show_progress, o.bar = show_bar;
    scp_image_result r;
    if (scp_image_build(&o, &r, &e) < 0) return cli_fail(&e);
    char mhex[65];
    for (int i = 0; i < 32; i++) sprintf(mhex + 2 * i, "%02x", r.measurement[i]);
    FILE *out = o.output && !strcmp(o.output, "-") ? stderr : stdout;
    fprintf(out, "image %s (%s)\nmeasurement %s\ntrusted files %zu\nentry %s\n", o.tag, r.image_id, mhex, r.n_trusted,
            r.entry);
    char def[PATH_MAX];
    int rc = EXIT_OK;
    if (!tmpl && o.output && strcmp(o.output, "-") != 0) {
        snprintf(def, sizeof def, "%s.session.yaml", o.output);
        tmpl = def;
    }
    if (tmpl) rc = write_template(tmpl, r.session_template);
    else fprintf(out, "session template:\n%s", r.session_template);
    free(r.session_template);
    return rc;
}

static int image_show(int argc, char **argv, int verify) {
    const char *from = NULL, *tmpdir = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tmpdir") && i + 1 < argc) tmpdir = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error("unknown option '%s'", argv[i]);
        else if (!from) from = argv[i];
        else return cli_usage_error("one image at a time");
    }
    if (!from) return cli_usage_error("image %s: no IMAGE given", verify ? "verify" : "inspect");
    scp_image_info info;
    scp_err e = {0};
    int r = verify ? scp_image_verify(from, tmpdir, &info, &e) : scp_image_inspect(from, tmpdir, &info, &e);
    if (r < 0) return cli_fail(&e);
    if (verify)
        printf("verified: %s (%s): %zu trusted files and the measurement match its layers\n", from, info.image_id,
               info.n_trusted);
    else
        printf("%s\n", info.image_json);
    scp_image_info_free(&info);
    return EXIT_OK;
}

int main(int argc, char **argv) {
    scp_no_core_dumps(); /* as scpctl does (cli/main.c) */
    /* argv[1] is the image command, as `scpctl image` had it */
    argv[0] = "image"; /* the command's name in messages (scpctl passed "scpctl") */
    int code = cli_usage_start(&usage, argc, argv);
    if (code >= 0) return code;
    if (!strcmp(argv[1], "build")) return image_build(argc, argv);
    return image_show(argc, argv, !strcmp(argv[1], "verify"));
}
