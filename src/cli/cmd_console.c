/* cli/cmd_console.c - scpctl logs and scpctl attach: the owner's side of the console shield.
 *
 * Both fetch the service's console key from CAS (GET /v1/sessions/S/console/SERVICE: the
 * session's owner only, audited) and keep it in locked memory. `logs` decrypts a captured
 * stdout/stderr stream and reports every dropped, reordered, replayed, forged or truncated
 * record; `attach` seals its input as the stdin stream of the service. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cas_common.h"
#include "cli/commands.h"
#include "common/util.h"
#include "scp/sealed_stream.h"

static void console_usage(FILE *out, const char *cmd) {
    if (!strcmp(cmd, "logs"))
        fprintf(out,
                "usage: scpctl logs SESSION SERVICE [FILE|-] [--verbose]\n"
                "Decrypt a captured stdout or stderr stream of SERVICE (the sealed records that the\n"
                "console shield wrote; FILE or - for standard input) to standard output, exactly as the\n"
                "program wrote it. Every dropped, reordered, replayed, changed or truncated record is\n"
                "reported on standard error and makes the exit status 3; a stream that is not sealed\n"
                "records exits 3 too. --verbose also lists each stream (id, kind, parent).\n"
                "The console key comes from CAS, for the session's owner only (audited).\n"
                "Client options: --cas HOST:PORT --pin FINGERPRINT --identity FILE.\n");
    else
        fprintf(out,
                "usage: scpctl attach SESSION SERVICE [FILE|-]\n"
                "Seal FILE (or standard input) as the stdin stream of SERVICE and write the sealed\n"
                "records to standard output, for a program whose policy says 'console: {stdin: sealed}':\n"
                "  scpctl attach S svc < input.txt | scpctl run --cas ... --session S --service svc\n"
                "Each read of the input becomes one record (at most 64 KiB); the end of the input ends\n"
                "the stream. The console key comes from CAS, for the session's owner only (audited).\n"
                "Client options: --cas HOST:PORT --pin FINGERPRINT --identity FILE.\n");
}

/* The service's console key from CAS into key (locked memory). */
static int fetch_key(cli_cas *o, const char *session, const char *service, uint8_t *key) {
    int code = 0;
    scp_cas_client *c = cli_cas_client(o, &code);
    if (!c) return code;
    char path[300];
    snprintf(path, sizeof path, "/v1/sessions/%s/console/%s", session, service);
    json_t *j = NULL;
    code = cli_cas_call(c, "GET", path, NULL, NULL, 0, &j);
    scp_cas_client_free(c);
    const char *hex = j ? json_string_value(json_object_get(j, "key")) : NULL;
    if (!code && (!hex || scp_unhex(hex, key, SCP_SS_KEY_LEN) < 0)) {
        fprintf(stderr, "scpctl: CAS's answer holds no console key\n");
        code = EXIT_FAILURE_;
    }
    json_decref(j); /* jansson does not wipe; the key's hex lived in its buffer briefly */
    return code;
}

struct logs_state {
    int verbose, wrote_err;
};

static void print_stream(const scp_ss_stream_info *s) {
    char id[33], parent[33];
    scp_hex(s->id, SCP_SS_ID_LEN, id);
    scp_hex(s->parent_id, SCP_SS_ID_LEN, parent);
    static const char *rel[] = {"first stream", "fork of", "exec after"};
    fprintf(stderr, "scpctl logs: stream %s (%s): %s%s%s\n", id, s->have_header ? s->name : "?",
            s->relation >= 0 && s->relation <= 2 ? rel[s->relation] : "?", s->relation ? " " : "",
            s->relation ? parent : "");
}

static int on_event(void *arg, const scp_ss_event *ev) {
    struct logs_state *st = arg;
    if (ev->type == SCP_SS_EV_DATA) {
        if (ev->seq == 1 && st->verbose) print_stream(ev->stream);
        if (fwrite(ev->data, 1, ev->len, stdout) != ev->len) return 1;
    } else if (ev->type == SCP_SS_EV_PROBLEM) {
        fflush(stdout);
        fprintf(stderr, "scpctl logs: byte %llu: %s\n", (unsigned long long)ev->offset, ev->msg);
        st->wrote_err = 1;
    } else if (ev->type == SCP_SS_EV_UNSEALED) {
        /* line form: text between the records that no writer sealed (a launcher's messages,
         * or anyone's): never mixed into the output, shown here as what it is */
        char shown[161];
        size_t n = 0;
        for (size_t i = 0; i < ev->len && n < sizeof shown - 1; i++)
            shown[n++] = ev->data[i] >= 0x20 && ev->data[i] < 0x7f ? (char)ev->data[i] : '?';
        shown[n] = 0;
        fflush(stdout);
        fprintf(stderr, "scpctl logs: byte %llu: not a sealed record, not shown as output: \"%s\"%s\n",
                (unsigned long long)ev->offset, shown, ev->len > n ? "..." : "");
    } else if (ev->type == SCP_SS_EV_END && st->verbose) {
        fprintf(stderr, "scpctl logs: a stream ended cleanly at record %llu\n", (unsigned long long)ev->seq);
    }
    return 0;
}

static int open_input(const char *file) {
    if (!file || !strcmp(file, "-")) return 0;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fprintf(stderr, "scpctl: cannot open %s: %s\n", file, strerror(errno));
    return fd;
}

static int do_logs(const char *session, const char *service, int fd, const uint8_t *key, int verbose) {
    scp_err e = {0};
    scp_ss_reader *r = scp_ss_reader_new(key, session, service, &e);
    if (!r) return cli_fail(&e);
    struct logs_state st = {verbose, 0};
    static uint8_t buf[1 << 16];
    uint64_t skipped = 0;
    int started = 0, rc = 0;
    size_t keep = 0; /* bytes of a possible magic split across reads */
    for (;;) {
        ssize_t n = read(fd, buf + keep, sizeof buf - keep);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            scp_fail_errno(&e, "cannot read the stream");
            rc = -1;
            break;
        }
        size_t len = keep + (size_t)n, off = 0;
        keep = 0;
        if (!started) {
            /* scpctl run's own messages may precede the first record on a captured stderr */
            uint8_t *m = memmem(buf, len, "SCR1", 4);
            if (!m) {
                keep = len < 3 ? len : 3;
                skipped += len - keep;
                memmove(buf, buf + len - keep, keep);
                if (n == 0) {
                    skipped += keep;
                    break;
                }
                continue;
            }
            off = (size_t)(m - buf);
            skipped += off;
            started = 1;
        }
        if (n == 0) break;
        if (scp_ss_reader_feed(r, buf + off, len - off, on_event, &st, &e) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && !started) {
        scp_fail(&e, SCP_E_FORMAT, EINVAL, "the input holds no sealed record (%llu bytes of something else)",
                 (unsigned long long)skipped);
        rc = -1;
    }
    if (rc == 0 && scp_ss_reader_finish(r, on_event, &st, &e) < 0) rc = -1;
    fflush(stdout);
    if (skipped && started)
        fprintf(stderr, "scpctl logs: note: %llu bytes before the first record are not part of the stream\n",
                (unsigned long long)skipped);
    int clean = rc == 0 && scp_ss_reader_clean(r);
    uint64_t records = scp_ss_reader_records(r);
    scp_ss_reader_free(r);
    if (rc < 0) {
        e.code = SCP_E_INTEGRITY;
        return cli_fail(&e);
    }
    if (!records) {
        fprintf(stderr, "scpctl logs: no record authenticates with the console key of %s/%s: wrong session or "
                        "service, or not its stream\n", session, service);
        return EXIT_INTEGRITY;
    }
    if (!clean) {
        fprintf(stderr, "scpctl logs: the stream is NOT intact (see above); the bytes shown are authentic but "
                        "incomplete or out of order\n");
        return EXIT_INTEGRITY;
    }
    return EXIT_OK;
}

static int do_attach(const char *session, const char *service, int fd, const uint8_t *key) {
    scp_err e = {0};
    scp_ss_writer *w = scp_secure_alloc(sizeof *w);
    uint8_t *frame = malloc(SCP_SS_MAX_FRAME);
    int code = EXIT_OK;
    if (!w || !frame || scp_ss_writer_start(w, key, SCP_SS_STDIN, "stdin", session, service, SCP_SS_ROOT, NULL, 0,
                                            NULL, &e) < 0) {
        if (!e.msg[0]) scp_fail(&e, SCP_E_NOMEM, ENOMEM, "out of memory");
        code = cli_fail(&e);
        goto out;
    }
    ssize_t n = scp_ss_seal_header(w, scp_now_ns(), frame, SCP_SS_MAX_FRAME, &e);
    if (n < 0 || scp_write_full(1, frame, (size_t)n) < 0) goto fail;
    for (;;) {
        ssize_t got = read(fd, frame + SCP_SS_HEAD_LEN, SCP_SS_MAX_DATA);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            scp_fail_errno(&e, "cannot read the input");
            goto fail;
        }
        if (got == 0) break;
        n = scp_ss_seal_data(w, frame + SCP_SS_HEAD_LEN, (size_t)got, scp_now_ns(), frame, SCP_SS_MAX_FRAME, &e);
        if (n < 0 || scp_write_full(1, frame, (size_t)n) < 0) goto fail;
    }
    n = scp_ss_seal_end(w, SCP_SS_END_CLOSED, NULL, scp_now_ns(), frame, SCP_SS_MAX_FRAME, &e);
    if (n < 0 || scp_write_full(1, frame, (size_t)n) < 0) goto fail;
    goto out;
fail:
    if (!e.msg[0]) scp_fail_errno(&e, "cannot write the sealed stream");
    code = cli_fail(&e);
out:
    if (w) scp_secure_free(w, sizeof *w);
    free(frame);
    return code;
}

int cmd_console(int argc, char **argv) {
    const char *cmd = argv[0];
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            console_usage(stdout, cmd);
            return EXIT_OK;
        }
    cli_cas o = {0};
    const char *pos[3] = {0};
    int npos = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_cas_opt(argc, argv, &i, &o);
        if (r < 0) return cli_usage_error("'%s' needs a value", argv[i]);
        if (r) continue;
        if (!strcmp(argv[i], "--verbose") && !strcmp(cmd, "logs")) verbose = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error("%s: unknown option '%s'", cmd, argv[i]);
        else if (npos < 3) pos[npos++] = argv[i];
        else return cli_usage_error("%s: too many arguments", cmd);
    }
    if (npos < 2) {
        console_usage(stderr, cmd);
        return EXIT_USAGE;
    }
    int fd = open_input(pos[2]);
    if (fd < 0) return EXIT_FAILURE_;
    scp_no_core_dumps();
    uint8_t *key = scp_secure_alloc(SCP_SS_KEY_LEN);
    if (!key) return EXIT_FAILURE_;
    int code = fetch_key(&o, pos[0], pos[1], key);
    if (!code)
        code = !strcmp(cmd, "logs") ? do_logs(pos[0], pos[1], fd, key, verbose) : do_attach(pos[0], pos[1], fd, key);
    scp_secure_free(key, SCP_SS_KEY_LEN);
    if (fd > 0) close(fd);
    return code;
}
