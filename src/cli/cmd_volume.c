/* cli/cmd_volume.c - `scpctl volume ...`: create, fill, read and check protected volumes. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/volume_tree.h"
#include "common/util.h"
#include "scp/volume.h"


/* Parsed command line of a volume subcommand: options may come anywhere. */
struct opts {
    const char *key_file;
    const char *expect_tag;
    uint32_t chunk_size;
    int long_list;
    int recursive;
    const char *pos[4];
    int npos;
};

static const cli_sub subs[] = {
    {"keygen", "scpctl volume keygen KEYFILE\n"
               "           write a new random 32-byte key (mode 0600)\n"},
    {"create", "scpctl volume create VOLDIR --key-file KEY [--chunk-size N]\n"
               "           create an empty volume (chunk size 4096..65536)\n"},
    {"import", "scpctl volume import SRCDIR VOLDIR --key-file KEY [--chunk-size N]\n"
               "           encrypt the plain directory tree SRCDIR into the volume VOLDIR (created if\n"
               "           VOLDIR does not exist or is empty); the source comes first, as with cp;\n"
               "           keeps modes, numeric owners, times, links and special files (cp -a), and\n"
               "           SRCDIR's own attributes become the volume root's; an entry that cannot\n"
               "           be read is named and left out, the rest imported, and the exit is 1\n"},
    {"export", "scpctl volume export VOLDIR OUTDIR --key-file KEY\n"
               "           decrypt a whole volume into a plain directory, with modes, times, links\n"
               "           and special files; owners and device nodes only when run as root\n"},
    {"ls", "scpctl volume ls VOLDIR [PATH] --key-file KEY [-l] [-R]\n"
           "           list a directory of the volume (-l: type, mode, owner, size and modification\n"
           "           time in UTC; -R: recursively)\n"},
    {"cat", "scpctl volume cat VOLDIR PATH --key-file KEY\n"
            "           print a file of the volume to stdout\n"},
    {"put", "scpctl volume put VOLDIR PATH [SRCFILE] --key-file KEY\n"
            "           store SRCFILE (or stdin) as PATH in the volume\n"},
    {"mkdir", "scpctl volume mkdir VOLDIR PATH --key-file KEY\n"
              "           create a directory in the volume\n"},
    {"rm", "scpctl volume rm VOLDIR PATH --key-file KEY\n"
           "           remove a file or an empty directory\n"},
    {"verify", "scpctl volume verify VOLDIR --key-file KEY\n"
               "           check every chunk; report problems by file and offset\n"},
    {"info", "scpctl volume info VOLDIR --key-file KEY\n"
             "           format version, chunk size, file count, tag\n"},
};

static const cli_cmd_usage usage = {
    subs, sizeof subs / sizeof subs[0],
    "A protected volume is a directory whose files are encrypted and authenticated in chunks\n"
    "(AES-256-GCM) with a manifest that hides names and binds every file to its content.\n",
    "options:\n"
    "  --key-file KEY     the volume key (32 bytes; must not be readable by group or others)\n"
    "  --expect-tag TAG   refuse a volume state older than TAG (as printed by 'info'):\n"
    "                     detects a rollback of the volume or of any file in it\n"
    "  --chunk-size N     chunk size for create/import (default 4096)\n"
    "\n"
    "exit codes: 0 ok, 1 failed, 2 bad command line, 3 integrity failure or rollback,\n"
    "4 wrong or unsafe key.\n",
};

static int parse_opts(int argc, char **argv, struct opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--key-file") == 0 || strcmp(a, "--expect-tag") == 0 ||
            strcmp(a, "--chunk-size") == 0) {
            if (i + 1 >= argc) return cli_usage_error("%s needs a value", a);
            const char *val = argv[++i];
            if (a[2] == 'k') o->key_file = val;
            else if (a[2] == 'e') {
                scp_volume_tag tag;
                scp_err terr;
                if (scp_volume_tag_parse(val, &tag, &terr) < 0)
                    return cli_usage_error("--expect-tag: %s", terr.msg);
                o->expect_tag = val;
            } else {
                char *end;
                unsigned long cs = strtoul(val, &end, 10);
                if (*end || !scp_volume_chunk_ok(cs))
                    return cli_usage_error("--chunk-size takes a power of two from 4096 to 65536");
                o->chunk_size = (uint32_t)cs;
            }
        } else if (strcmp(a, "-l") == 0) {
            o->long_list = 1;
        } else if (strcmp(a, "-R") == 0) {
            o->recursive = 1;
        } else if (strcmp(a, "--key") == 0 || strcmp(a, "-k") == 0) {
            return cli_usage_error("unknown option '%s': the volume key is given with --key-file KEY", a);
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("unknown option '%s'", a);
        } else {
            if (o->npos == 4) return cli_usage_error("too many arguments");
            o->pos[o->npos++] = a;
        }
    }
    return 0;
}

static int need(const struct opts *o, int min, int max, const char *sub) {
    if (o->npos < min || o->npos > max)
        return cli_usage_error("wrong number of arguments for 'volume %s'", sub);
    return 0;
}

static int load_key(const struct opts *o, uint8_t key[32], scp_err *err) {
    if (!o->key_file)
        return scp_fail(err, SCP_E_KEY, EINVAL,
                        "--key-file KEY is required (make a key with 'scpctl volume keygen KEY')");
    return scp_key_file_read(o->key_file, key, err);
}

/* Open the volume named by pos[0] with the key (and expected tag) from the options. */
static scp_volume *open_vol(const struct opts *o, scp_err *err) {
    uint8_t key[32];
    scp_volume_tag tag;
    if (load_key(o, key, err) < 0) return NULL;
    if (o->expect_tag && scp_volume_tag_parse(o->expect_tag, &tag, err) < 0) {
        scp_wipe(key, sizeof key);
        return NULL;
    }
    scp_volume *v = scp_volume_open(o->pos[0], key, o->expect_tag ? &tag : NULL, err);
    scp_wipe(key, sizeof key);
    return v;
}

/* ---- import ------------------------------------------------------------------------------- */

/* 1 if dir holds a volume's header, 0 if not. */
static int is_volume(const char *dir) {
    char hdr[8192];
    snprintf(hdr, sizeof hdr, "%s/scpvol.hdr", dir);
    return access(hdr, F_OK) == 0;
}

/* 1 if path is a directory with something in it. */
static int is_full_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *de;
    int full = 0;
    while (!full && (de = readdir(d))) full = strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return full;
}

/* `import VOLDIR SRCDIR`, the arguments the wrong way round: the target is a directory with
 * files that is no volume, while the source is a volume or missing. A usage error that names
 * the order (0 when the order looks right). */
static int import_order(const struct opts *o) {
    const char *src = o->pos[0], *dst = o->pos[1];
    struct stat st;
    int src_missing = stat(src, &st) < 0 && errno == ENOENT;
    if (!is_full_dir(dst) || is_volume(dst) || !(src_missing || is_volume(src))) return 0;
    return cli_usage_error("'%s' is a directory with files and no volume, and '%s' %s: the source "
                           "comes first ('scpctl volume import %s %s' to import '%s')",
                           dst, src, src_missing ? "does not exist" : "is a volume", dst, src, dst);
}

static int sub_import(struct opts *o, scp_err *err) {
    const char *src = o->pos[0], *dst = o->pos[1];
    struct stat st;
    if (stat(src, &st) < 0 || !S_ISDIR(st.st_mode))
        return scp_fail(err, SCP_E_NOENT, ENOENT, "'%s' is not a directory to import", src);
    uint8_t key[32];
    if (load_key(o, key, err) < 0) return -1;
    if (!is_volume(dst) && scp_volume_create(dst, key, o->chunk_size, err) < 0) {
        scp_wipe(key, sizeof key);
        return -1;
    }
    scp_volume *v = scp_volume_open(dst, key, NULL, err);
    scp_wipe(key, sizeof key);
    if (!v) return -1;
    progress pg;
    progress_start(&pg, "import", 0);
    if (pg.active) pg.total = vt_tree_size(src); /* (a walk of its own: only for the bar) */
    uint64_t done = 0;
    long nfiles = 0;
    int rc = vt_import(v, src, &pg, &done, &nfiles, err);
    progress_end(&pg);
    /* (the close makes the import durable: vt_import's closes are lazy; also after entries
     * were left out, whose error it then replaces: what was imported is not durable) */
    scp_err ce;
    if (scp_volume_close(v, &ce) < 0) {
        *err = ce;
        rc = -1;
    }
    if (rc == 0) fprintf(stderr, "imported %ld files, %" PRIu64 " bytes into '%s'\n", nfiles, done, dst);
    return rc;
}

/* ---- export ------------------------------------------------------------------------------- */

static int sub_export(struct opts *o, scp_err *err) {
    scp_volume *v = open_vol(o, err);
    if (!v) return -1;
    const char *out = o->pos[1];
    int rc = 0;
    scp_volume_info info;
    if (rc == 0) rc = scp_volume_info_get(v, &info, err);
    progress pg;
    uint64_t done = 0;
    if (rc == 0) {
        progress_start(&pg, "export", info.total_bytes);
        rc = vt_export(v, out, &pg, &done, err);
        progress_end(&pg);
    }
    scp_volume_close(v, NULL);
    return rc;
}

/* ---- ls ----------------------------------------------------------------------------------- */

struct ls_ctx {
    scp_volume *v;
    const struct opts *o;
    const char *dir;
    scp_err *err;
};

static char type_char(const scp_vstat *st) {
    switch (st->type) {
    case SCP_VTYPE_DIR: return 'd';
    case SCP_VTYPE_LINK: return 'l';
    case SCP_VTYPE_NODE:
        return st->node_type == S_IFIFO ? 'p' : st->node_type == S_IFSOCK ? 's' : st->node_type == S_IFCHR ? 'c' : 'b';
    default: return '-';
    }
}

static int ls_entry(void *c, const char *name, const scp_vstat *st) {
    struct ls_ctx *x = c;
    char path[VT_PATH];
    if (vt_join(path, x->dir, name, x->err) < 0) return -1;
    const char *shown = x->o->recursive ? path : name;
    if (x->o->long_list) {
        /* type as ls(1) shows it, mode, numeric owner, size, name (and a link's target) */
        char target[PATH_MAX + 1] = "";
        long n = st->type == SCP_VTYPE_LINK ? scp_volume_readlink(x->v, path, target, PATH_MAX, NULL) : -1;
        target[n > 0 && n <= PATH_MAX ? n : 0] = '\0';
        /* (the modification time in UTC, as stored; "-" for the root's before anything set it) */
        char when[32] = "               -";
        time_t secs = (time_t)(st->mtime_ns / 1000000000);
        struct tm tm;
        if (st->mtime_ns != 0 && gmtime_r(&secs, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        printf("%c%04o %5u:%-5u %12" PRIu64 " %s  %s%s%s%s\n", type_char(st), st->mode & 07777,
               st->uid, st->gid, st->size, when, shown, st->type == SCP_VTYPE_DIR ? "/" : "",
               n > 0 ? " -> " : "", target);
    } else
        printf("%s%s\n", shown, st->type == SCP_VTYPE_DIR ? "/" : "");
    if (x->o->recursive && st->type == SCP_VTYPE_DIR) {
        struct ls_ctx sub = *x;
        sub.dir = path;
        return scp_volume_readdir(x->v, path, ls_entry, &sub, x->err);
    }
    return 0;
}

static int sub_ls(struct opts *o, scp_err *err) {
    scp_volume *v = open_vol(o, err);
    if (!v) return -1;
    struct ls_ctx x = {v, o, o->npos > 1 ? o->pos[1] : "", err};
    int rc = scp_volume_readdir(v, x.dir, ls_entry, &x, err);
    scp_volume_close(v, NULL);
    return rc;
}

/* ---- verify ------------------------------------------------------------------------------- */

struct verify_ctx {
    progress pg;
    int printed_bar;
};

static void verify_problem(void *c, const char *path, int64_t off, const char *msg) {
    struct verify_ctx *x = c;
    progress_end(&x->pg);
    if (off >= 0)
        printf("CORRUPT %s at offset %" PRId64 ": %s\n", path, off, msg);
    else
        printf("CORRUPT %s: %s\n", path, msg);
}

static void verify_progress(void *c, uint64_t done, uint64_t total) {
    struct verify_ctx *x = c;
    x->pg.total = total;
    progress_update(&x->pg, done);
}

static int sub_verify(struct opts *o, scp_err *err, int *problems_out) {
    scp_volume *v = open_vol(o, err);
    if (!v) return -1;
    struct verify_ctx x;
    progress_start(&x.pg, "verify", 0);
    long p = scp_volume_verify(v, verify_problem, verify_progress, &x, err);
    progress_end(&x.pg);
    scp_volume_info info;
    if (p >= 0 && scp_volume_info_get(v, &info, err) == 0) {
        if (p == 0)
            printf("ok: %" PRIu64 " files, %" PRIu64 " bytes, all chunks authentic\n",
                   info.file_count, info.total_bytes);
        else
            printf("%ld problem(s) found in %" PRIu64 " files\n", p, info.file_count);
    }
    scp_volume_close(v, NULL);
    *problems_out = (int)(p > 0);
    return p < 0 ? -1 : 0;
}

static int sub_info(struct opts *o, scp_err *err) {
    scp_volume *v = open_vol(o, err);
    if (!v) return -1;
    scp_volume_info info;
    int rc = scp_volume_info_get(v, &info, err);
    if (rc == 0) {
        char hex[2 * SCP_VOLUME_TAG_LEN + 1];
        scp_volume_tag_hex(&info.tag, hex);
        printf("format version: %u\nchunk size:     %u\nfiles:          %" PRIu64
               "\ndirectories:    %" PRIu64 "\nbytes:          %" PRIu64
               "\ngeneration:     %" PRIu64 "\ntag:            %s\n",
               info.format_version, info.chunk_size, info.file_count, info.dir_count,
               info.total_bytes, info.generation, hex);
    }
    scp_volume_close(v, NULL);
    return rc;
}

int cmd_volume(int argc, char **argv) {
    int code = cli_usage_start(&usage, argc, argv);
    if (code >= 0) return code;
    const char *sub = argv[1];
    struct opts o;
    if (parse_opts(argc - 1, argv + 1, &o) != 0) return EXIT_USAGE;
    /* every subcommand but keygen opens a volume: a missing key is a command-line error (2),
     * not a key failure (4) */
    static const char *const keyed[] = {"create", "import", "export", "ls", "cat", "put", "mkdir", "rm", "verify", "info"};
    int needs_key = 0;
    for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) needs_key |= strcmp(sub, keyed[i]) == 0;
    if (needs_key && !o.key_file)
        return cli_usage_error("'volume %s' needs --key-file KEY (make a key with 'scpctl volume keygen KEY')", sub);
    scp_err err = {0};
    int rc = 0, problems = 0;
    if (!strcmp(sub, "keygen")) {
        if (need(&o, 1, 1, sub)) return EXIT_USAGE;
        rc = scp_key_file_generate(o.pos[0], &err);
        if (rc == 0) fprintf(stderr, "wrote a new 32-byte key to '%s' (mode 0600)\n", o.pos[0]);
    } else if (!strcmp(sub, "create")) {
        if (need(&o, 1, 1, sub)) return EXIT_USAGE;
        uint8_t key[32];
        rc = load_key(&o, key, &err);
        if (rc == 0) rc = scp_volume_create(o.pos[0], key, o.chunk_size, &err);
        scp_wipe(key, sizeof key);
        if (rc == 0) fprintf(stderr, "created volume '%s'\n", o.pos[0]);
    } else if (!strcmp(sub, "import")) {
        if (need(&o, 2, 2, sub) || import_order(&o)) return EXIT_USAGE;
        rc = sub_import(&o, &err);
    } else if (!strcmp(sub, "export")) {
        if (need(&o, 2, 2, sub)) return EXIT_USAGE;
        rc = sub_export(&o, &err);
    } else if (!strcmp(sub, "ls")) {
        if (need(&o, 1, 2, sub)) return EXIT_USAGE;
        rc = sub_ls(&o, &err);
    } else if (!strcmp(sub, "cat") || !strcmp(sub, "put") || !strcmp(sub, "mkdir") ||
               !strcmp(sub, "rm")) {
        int put = !strcmp(sub, "put");
        if (need(&o, 2, put ? 3 : 2, sub)) return EXIT_USAGE;
        scp_volume *v = open_vol(&o, &err);
        if (!v) return cli_fail(&err);
        uint64_t done = 0;
        if (!strcmp(sub, "cat")) {
            rc = vt_copy_out(v, o.pos[1], STDOUT_FILENO, NULL, &done, &err);
        } else if (put) {
            int fd = o.npos == 3 ? open(o.pos[2], O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
            if (fd < 0) rc = scp_fail_errno(&err, "cannot open '%s'", o.pos[2]);
            else rc = vt_copy_in(v, fd, o.pos[1], 0644, NULL, &done, &err);
            if (fd > 2) close(fd);
        } else if (!strcmp(sub, "mkdir")) {
            rc = scp_volume_mkdir(v, o.pos[1], 0755, &err);
        } else {
            scp_vstat st;
            rc = scp_volume_stat(v, o.pos[1], &st, &err);
            if (rc == 0)
                rc = st.type == SCP_VTYPE_DIR ? scp_volume_rmdir(v, o.pos[1], &err)
                                              : scp_volume_unlink(v, o.pos[1], &err);
        }
        scp_volume_close(v, NULL);
    } else if (!strcmp(sub, "verify")) {
        if (need(&o, 1, 1, sub)) return EXIT_USAGE;
        rc = sub_verify(&o, &err, &problems);
        if (rc == 0 && problems) return EXIT_INTEGRITY;
    } else {
        assert(!strcmp(sub, "info")); /* cli_usage_start let through the subcommands of subs[] */
        if (need(&o, 1, 1, sub)) return EXIT_USAGE;
        rc = sub_info(&o, &err);
    }
    return rc < 0 ? cli_fail(&err) : EXIT_OK;
}
