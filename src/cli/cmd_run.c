/* cli/cmd_run.c - scpctl run: run an unmodified program with its files in protected volumes.
 *
 * The attested mode (--cas) runs in scpctl-cas beside this scpctl (cli/cmd_run_cas.c), which
 * this executes: so the development mode's short commands do not load the CAS client's and
 * server's libraries (libssl, libsqlite3, libyaml, libjansson) at every start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "common/util.h"
#include "runtime/launch.h"

static void run_usage(FILE *out) {
    fprintf(out,
            "usage: scpctl run --cas HOST:PORT --session S --service NAME [--tee auto|sim|tdx|snp] [--platform-key FILE]\n"
            "                  [--volume-dir DIR] [--tag-sync] [--cas-timeout SEC] [--renew-interval SEC]\n"
            "                  [--pin FP] [--identity FILE] [--console-lines]\n"
            "                  [--rootfs DIR] [--net host|none] [--hostname NAME] [--cap NAME]...\n"
            "                  [--trusted PATH]... [--trace] -- PROGRAM [ARGS...]\n\n"
            "Measures PROGRAM (resolved in PATH, or with --rootfs inside DIR, as are its loader and\n"
            "libraries), its loader, its libraries and the shield runtime from open descriptors,\n"
            "attests to CAS and runs PROGRAM from the measured descriptor, always in a container (the\n"
            "options below; --hostname defaults to the service's name), with the\n"
            "configuration CAS releases: the policy's command (ARGS are appended only when the policy\n"
            "says append_args: true), its environment (nothing from the host) and working directory,\n"
            "and its volumes, kept under --volume-dir (default: /var/lib/scp/volumes for root, else\n"
            "$XDG_DATA_HOME/scp/volumes or ~/.local/share/scp/volumes; DIR/SESSION/VOLUME, created on\n"
            "first start) and opened against the tag CAS expects. After every commit the new tag is\n"
            "reported to CAS by this process (asynchronously unless --tag-sync). 'scpctl platform measure -- PROGRAM'\n"
            "prints the measurement to put into the policy (given the same --rootfs, --net, --cap and\n"
            "--trusted options, which the measurement covers).\n\n"
            "  --trusted PATH        a file (inside the rootfs) that the program reads, runs or dlopens:\n"
            "                        measured, and checked by the shield at every open, exec and\n"
            "                        executable mapping (repeatable). Every exec of a binary that is not\n"
            "                        measured (program, loader, libraries, --trusted) is refused\n"
            "  --platform-key FILE   the sim platform key (default $SCP_PLATFORM_KEY or $SCP_HOME/platform.key)\n"
            "  --cas-timeout SEC     keep retrying an unreachable CAS this long (default 10)\n"
            "  --renew-interval SEC  network identity: instance: attest again and renew the instance\n"
            "                        certificate this often (default: at half its remaining validity)\n"
            "  --tag-sync            every commit (fsync) waits until CAS acknowledged the volume's new tag;\n"
            "                        if CAS cannot be told within --cas-timeout the program is killed\n"
            "  --console-lines       a sealed console (policy `console`) writes each record as a line of\n"
            "                        text (\"SCR1:\" and Base64), for channels that keep only text (a log\n"
            "                        collector); `scpctl logs` reads both forms\n"
            "  --tee auto|sim|tdx|snp  the TEE that attests (default auto: TDX or SEV-SNP through the kernel's\n"
            "                        configfs-tsm when this machine is such a guest, else sim, and says which);\n"
            "                        sim does NOT protect memory\n"
            "  --rootfs DIR, --net host|none, --hostname NAME, --cap NAME: the container, as below;\n"
            "                        the policy's cwd and volume paths must lie inside DIR\n"
            "Exit status: PROGRAM's (128+N for signal N); 1 CAS unreachable or refused (CAS's reason\n"
            "shown), program missing; 2 usage; 3 wrong CAS pin or a rolled-back volume.\n\n"
            "usage (development only, no CAS, keys from files):\n"
            "       scpctl run [--volume HOSTDIR:/MOUNT[:KEYFILE]]... [--key-file KEYFILE]\n"
            "                  [--trace[=FILE]] [--container] [--rootfs DIR] [--net host|none]\n"
            "                  [--hostname NAME] [--cap NAME]... -- PROGRAM [ARGS...]\n\n"
            "Runs PROGRAM under the shield: every file it keeps under /MOUNT is stored in the\n"
            "protected volume HOSTDIR (encrypted and authenticated); nothing under /MOUNT ever\n"
            "reaches the host in plaintext, and what the shield cannot serve fails with an error.\n\n"
            "  --volume HOSTDIR:/MOUNT[:KEYFILE]  a volume and where the program sees it (repeatable;\n"
            "                              KEYFILE defaults to --key-file)\n"
            "  --key-file KEYFILE          32-byte key file (mode 0600) for volumes without their own\n"
            "  --trace[=FILE]              log every intercepted call and its result to FILE or\n"
            "                              standard error (never keys or file contents)\n\n"
            "Container (any of these options turns it on; see docs/runtime.md): new mount, pid,\n"
            "ipc and uts namespaces, a fresh /proc, a minimal /dev, a private /tmp, no_new_privs,\n"
            "no capabilities, no ptrace; as an ordinary user through a user namespace. The\n"
            "container's pid 1 forwards TERM/INT/HUP/USR1/USR2 to PROGRAM (pid 2), reaps orphans,\n"
            "and when PROGRAM ends, kills what is left.\n"
            "  --container                 run in the container, with the host's root\n"
            "  --rootfs DIR                pivot_root into DIR (an absolute path; volume mount\n"
            "                              points are inside it)\n"
            "  --net host|none             the host's network (default) or only lo\n"
            "  --hostname NAME             the container's hostname (default scp)\n"
            "  --cap NAME                  keep capability NAME, e.g. net_bind_service (repeatable)\n\n"
            "Exit status: PROGRAM's (128+N when a signal N ended it), or 1/2/3/4 as for every scpctl command when it cannot start;\n"
            "126 when the shield refuses to run the program.\n");
}

int cmd_run(int argc, char **argv) {
    for (int k = 1; k < argc && strcmp(argv[k], "--") != 0; k++)
        if (!strcmp(argv[k], "--cas") || !strcmp(argv[k], "--session") || !strcmp(argv[k], "--service"))
            return cli_exec_tool("scpctl-cas", argc, argv, 0); /* cli/cmd_run_cas.c */
    static struct scp_run_opts o;
    memset(&o, 0, sizeof o);
    const char *keyfile = NULL;
    char *vol_key[SCP_SHIELD_MAX_VOLUMES] = {0};
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            run_usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (!strcmp(a, "--volume") || !strcmp(a, "-v")) {
            if (++i >= argc) return cli_usage_error("--volume needs HOSTDIR:/MOUNT");
            if (o.nvol >= SCP_SHIELD_MAX_VOLUMES)
                return cli_usage_error("at most %u volumes", SCP_SHIELD_MAX_VOLUMES);
            char *spec = argv[i];
            char *c1 = strchr(spec, ':');
            if (!c1 || c1 == spec || c1[1] != '/')
                return cli_usage_error("--volume wants HOSTDIR:/MOUNT[:KEYFILE], not '%s'", spec);
            *c1 = 0;
            char *c2 = strchr(c1 + 1, ':');
            if (c2) *c2 = 0;
            o.vol[o.nvol].hostdir = spec;
            o.vol[o.nvol].mount = c1 + 1;
            vol_key[o.nvol] = c2 ? c2 + 1 : NULL;
            o.nvol++;
        } else if (!strcmp(a, "--key-file") || !strcmp(a, "-k")) {
            if (++i >= argc) return cli_usage_error("--key-file needs a file");
            keyfile = argv[i];
        } else if (!strcmp(a, "--trace")) {
            o.trace = 1;
        } else if (!strncmp(a, "--trace=", 8)) {
            o.trace = 1;
            o.trace_file = a + 8;
        } else if (!strcmp(a, "--container")) {
            o.container.enabled = 1;
        } else if (!strcmp(a, "--rootfs")) {
            if (++i >= argc || argv[i][0] != '/') return cli_usage_error("--rootfs needs an absolute DIR");
            o.container.rootfs = argv[i];
            o.container.enabled = 1;
        } else if (!strcmp(a, "--net")) {
            if (++i >= argc || (strcmp(argv[i], "host") != 0 && strcmp(argv[i], "none") != 0))
                return cli_usage_error("--net wants host or none");
            o.container.net_none = strcmp(argv[i], "none") == 0;
            o.container.enabled = 1;
        } else if (!strcmp(a, "--hostname")) {
            if (++i >= argc || !*argv[i] || strlen(argv[i]) > 64)
                return cli_usage_error("--hostname needs a NAME of 1 to 64 characters");
            o.container.hostname = argv[i];
            o.container.enabled = 1;
        } else if (!strcmp(a, "--cap")) {
            int cap = ++i < argc ? scp_container_cap_from_name(argv[i]) : -1;
            if (cap < 0) return cli_usage_error("--cap needs a capability name such as net_bind_service");
            o.container.keep_caps |= 1ull << cap;
            o.container.enabled = 1;
        } else if (a[0] == '-') {
            return cli_usage_error("unknown option '%s'; see 'scpctl run --help'", a);
        } else break;
    }
    if (i >= argc) return cli_usage_error("no program given; see 'scpctl run --help'");
    o.argv = argv + i;
    /* Say plainly what is and is not protected: this entry point runs without a TEE. */
    const char *quiet = getenv("SCP_QUIET");
    if (!quiet || !*quiet)
        fprintf(stderr, "scpctl run: development mode (keys from files, no CAS, no attestation; use --cas for "
                        "production). No TEE ('sim' mode): files under the mounts are encrypted and "
                        "authenticated, but the program's memory is NOT protected from the host "
                        "(set SCP_QUIET=1 to silence this notice)\n");
    scp_err err;
    /* before any key is read */
    if (o.container.enabled ? scp_container_prepare(&o.container, &err) : o.nvol && scp_run_isolate(&err))
        return cli_fail(&err);
    for (unsigned v = 0; v < o.nvol; v++) {
        const char *kf = vol_key[v] ? vol_key[v] : keyfile;
        if (!kf) return cli_usage_error("volume %s has no key: give --key-file", o.vol[v].hostdir);
        if (scp_key_file_read(kf, o.vol[v].key, &err)) return cli_fail(&err);
    }
    scp_run_exec(&o, &err);
    int code = cli_fail(&err);
    if (o.in_container) { /* a forked child of this process, or this one once its children's pid
                           * namespace changed (launch.h) */
        fflush(NULL);
        _exit(code);
    }
    return code;
}
