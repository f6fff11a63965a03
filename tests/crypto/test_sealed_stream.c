/* test_sealed_stream - the sealed record stream (scp/sealed_stream.h): a stream written in
 * records reads back byte for byte; a dropped, reordered, replayed, changed or cut-off record,
 * a missing end, a missing exec successor and a stream of another service are each reported
 * as what they are; a stream read with another key yields no byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scp/sealed_stream.h"

#include "check.h"

struct frames {
    uint8_t *f[64];
    size_t n[64];
    size_t count;
};

struct out {
    char text[4096];
    size_t len;
    int problems[8];
    int ends, unsealed;
};

static int on_event(void *arg, const scp_ss_event *ev) {
    struct out *o = arg;
    if (ev->type == SCP_SS_EV_DATA && o->len + ev->len < sizeof o->text) {
        memcpy(o->text + o->len, ev->data, ev->len);
        o->len += ev->len;
    } else if (ev->type == SCP_SS_EV_PROBLEM) {
        o->problems[ev->problem]++;
    } else if (ev->type == SCP_SS_EV_END) {
        o->ends++;
    } else if (ev->type == SCP_SS_EV_UNSEALED) {
        o->unsealed++;
    }
    return 0;
}

static void add(struct frames *fr, const uint8_t *p, ssize_t n) {
    if (n <= 0) {
        failures++;
        return;
    }
    fr->f[fr->count] = malloc((size_t)n);
    memcpy(fr->f[fr->count], p, (size_t)n);
    fr->n[fr->count++] = (size_t)n;
}

static void free_frames(struct frames *fr) {
    for (size_t i = 0; i < fr->count; i++) free(fr->f[i]);
    fr->count = 0;
}

static const char *lines[] = {"first line\n", "MARKER-42\n", "third\n"};

/* header, three data records, end */
static void make(struct frames *fr, const uint8_t key[32], const char *service) {
    scp_ss_writer w;
    uint8_t buf[SCP_SS_MAX_FRAME];
    scp_err e;
    memset(fr, 0, sizeof *fr);
    CHECK(scp_ss_writer_start(&w, key, SCP_SS_STDOUT, "stdout", "sess", service, SCP_SS_ROOT, NULL, 0, NULL, &e) == 0);
    add(fr, buf, scp_ss_seal_header(&w, 1, buf, sizeof buf, &e));
    for (int i = 0; i < 3; i++) add(fr, buf, scp_ss_seal_data(&w, lines[i], strlen(lines[i]), 2, buf, sizeof buf, &e));
    add(fr, buf, scp_ss_seal_end(&w, SCP_SS_END_CLOSED, NULL, 3, buf, sizeof buf, &e));
}

/* Read frames in the order given by idx (-1 ends), fed in chunks of `chunk` bytes. */
static int read_order(const struct frames *fr, const int *idx, const uint8_t key[32], size_t chunk, struct out *o,
                      size_t cut) {
    memset(o, 0, sizeof *o);
    scp_err e;
    scp_ss_reader *r = scp_ss_reader_new(key, "sess", "svc", &e);
    uint8_t all[8192];
    size_t len = 0;
    for (int i = 0; idx[i] >= 0; i++) {
        memcpy(all + len, fr->f[idx[i]], fr->n[idx[i]]);
        len += fr->n[idx[i]];
    }
    if (cut) len -= cut;
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += chunk)
        rc = scp_ss_reader_feed(r, all + off, len - off < chunk ? len - off : chunk, on_event, o, &e);
    if (rc == 0) rc = scp_ss_reader_finish(r, on_event, o, &e);
    int clean = rc == 0 && scp_ss_reader_clean(r);
    scp_ss_reader_free(r);
    return rc < 0 ? -1 : clean;
}

/* The same in line form: each frame as a line, `plain` (if not NULL) before the first and after
 * every frame, `crlf`: lines end in CR LF; flip: change the character at that offset of the
 * text (0: none). */
static int read_lines(const struct frames *fr, const int *idx, const uint8_t key[32], size_t chunk, struct out *o,
                      const char *plain, int crlf, size_t flip) {
    memset(o, 0, sizeof *o);
    scp_err e;
    scp_ss_reader *r = scp_ss_reader_new(key, "sess", "svc", &e);
    size_t cap = 1 << 20, len = 0;
    char *all = malloc(cap);
    if (plain) len += (size_t)snprintf(all + len, cap - len, "%s", plain);
    for (int i = 0; idx[i] >= 0; i++) {
        size_t n = scp_ss_frame_line(fr->f[idx[i]], fr->n[idx[i]], all + len);
        CHECK(n <= SCP_SS_LINE_LEN(fr->n[idx[i]]) && all[len + n - 1] == '\n' && !memcmp(all + len, "SCR1:", 5));
        len += n;
        if (crlf) {
            all[len - 1] = '\r';
            all[len++] = '\n';
        }
        if (plain) len += (size_t)snprintf(all + len, cap - len, "%s", plain);
    }
    if (flip) all[flip] = all[flip] == 'A' ? 'B' : 'A';
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += chunk)
        rc = scp_ss_reader_feed(r, all + off, len - off < chunk ? len - off : chunk, on_event, o, &e);
    if (rc == 0) rc = scp_ss_reader_finish(r, on_event, o, &e);
    int clean = rc == 0 && scp_ss_reader_clean(r);
    CHECK((uint64_t)o->unsealed == scp_ss_reader_unsealed(r));
    scp_ss_reader_free(r);
    free(all);
    return rc < 0 ? -1 : clean;
}

/* --seed DIR: the fuzzer's seeds (fuzz/fuzz_sealed_stream.c): byte 0 and 1 pick the feed
 * size and kind check, then a clean stream */
static int write_seed(const char *dir, const struct frames *fr) {
    char path[4096];
    snprintf(path, sizeof path, "%s/clean", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    fputc(40, f);
    fputc(3, f);
    for (size_t i = 0; i < fr->count; i++) fwrite(fr->f[i], 1, fr->n[i], f);
    if (fclose(f) != 0) return 1;
    /* the same stream in line form, after a plain line */
    snprintf(path, sizeof path, "%s/clean-lines", dir);
    if (!(f = fopen(path, "wb"))) return 1;
    fputc(40, f);
    fputc(3, f);
    fputs("entry: starting\r\n", f);
    static char line[SCP_SS_MAX_LINE];
    for (size_t i = 0; i < fr->count; i++) fwrite(line, 1, scp_ss_frame_line(fr->f[i], fr->n[i], line), f);
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    uint8_t sk[32], key[32], other[32];
    memset(sk, 7, sizeof sk);
    scp_err e;
    CHECK(scp_ss_service_key(sk, "svc", key, &e) == 0);
    CHECK(scp_ss_service_key(sk, "svc2", other, &e) == 0);
    CHECK(memcmp(key, other, 32) != 0);
    struct frames fr;
    struct out o;
    make(&fr, key, "svc");
    if (argc == 3 && !strcmp(argv[1], "--seed")) return write_seed(argv[2], &fr);
    const char *want = "first line\nMARKER-42\nthird\n";

    /* the marker is not in the ciphertext */
    for (size_t i = 0; i < fr.count; i++) CHECK(!memmem(fr.f[i], fr.n[i], "MARKER", 6));

    int in_order[] = {0, 1, 2, 3, 4, -1};
    for (size_t chunk = 1; chunk <= 4096; chunk *= 7) {
        CHECK(read_order(&fr, in_order, key, chunk, &o, 0) == 1);
        CHECK(o.len == strlen(want) && !memcmp(o.text, want, o.len) && o.ends == 1);
    }
    int dropped[] = {0, 1, 3, 4, -1};
    CHECK(read_order(&fr, dropped, key, 100, &o, 0) == 0 && o.problems[SCP_SS_DROPPED] == 1);
    CHECK(o.len == strlen("first line\nthird\n"));
    int reordered[] = {0, 2, 1, 3, 4, -1};
    CHECK(read_order(&fr, reordered, key, 100, &o, 0) == 0 && o.problems[SCP_SS_REORDERED] == 1);
    int replayed[] = {0, 1, 2, 2, 3, 4, -1};
    CHECK(read_order(&fr, replayed, key, 100, &o, 0) == 0 && o.problems[SCP_SS_REPLAYED] == 1);
    CHECK(o.len == strlen(want)); /* the replayed copy is not output */
    int truncated[] = {0, 1, 2, 3, -1};
    CHECK(read_order(&fr, truncated, key, 100, &o, 0) == 0 && o.problems[SCP_SS_TRUNCATED] == 1);
    CHECK(read_order(&fr, in_order, key, 100, &o, 5) == 0 && o.problems[SCP_SS_TRUNCATED] >= 1);
    int no_header[] = {1, 2, 3, 4, -1};
    CHECK(read_order(&fr, no_header, key, 100, &o, 0) == 0 && o.problems[SCP_SS_DROPPED] == 1);
    /* a flipped ciphertext bit */
    fr.f[2][SCP_SS_HEAD_LEN] ^= 1;
    CHECK(read_order(&fr, in_order, key, 100, &o, 0) == 0 && o.problems[SCP_SS_FORGED] == 1);
    CHECK(!memmem(o.text, o.len, "MARKER", 6));
    fr.f[2][SCP_SS_HEAD_LEN] ^= 1;
    /* a changed sequence number in the head */
    fr.f[2][28] ^= 1;
    CHECK(read_order(&fr, in_order, key, 100, &o, 0) == 0 && o.problems[SCP_SS_FORGED] == 1);
    fr.f[2][28] ^= 1;
    /* another service's key: nothing authenticates, nothing comes out */
    CHECK(read_order(&fr, in_order, other, 100, &o, 0) == 0 && o.len == 0 && o.problems[SCP_SS_FORGED] == 5);
    /* plain text is read as lines: unsealed lines, no output; plain bytes after a binary
     * frame's start are not a stream */
    {
        memset(&o, 0, sizeof o);
        scp_ss_reader *r = scp_ss_reader_new(key, "sess", "svc", &e);
        CHECK(scp_ss_reader_feed(r, "hello world, this is plain text on stdout\n", 42, on_event, &o, &e) == 0);
        CHECK(scp_ss_reader_finish(r, on_event, &o, &e) == 0);
        CHECK(o.unsealed == 1 && o.len == 0 && scp_ss_reader_records(r) == 0);
        scp_ss_reader_free(r);
        r = scp_ss_reader_new(key, "sess", "svc", &e);
        uint8_t bad[SCP_SS_MAX_FRAME];
        memcpy(bad, fr.f[0], fr.n[0]);
        const char *pl = "hello world, this is plain text on stdout\n";
        memcpy(bad + fr.n[0], pl, strlen(pl));
        CHECK(scp_ss_reader_feed(r, bad, fr.n[0] + strlen(pl), on_event, &o, &e) == -1);
        scp_ss_reader_free(r);
    }

    /* line form: the same bytes back, in any feed size, with CR LF, between plain lines (each
     * reported as unsealed, none in the output) */
    for (size_t chunk = 1; chunk <= 4096; chunk *= 4) {
        CHECK(read_lines(&fr, in_order, key, chunk, &o, NULL, 0, 0) == 1);
        CHECK(o.len == strlen(want) && !memcmp(o.text, want, o.len) && o.ends == 1 && o.unsealed == 0);
    }
    CHECK(read_lines(&fr, in_order, key, 7, &o, "launcher: starting\n", 1, 0) == 1);
    CHECK(o.len == strlen(want) && !memcmp(o.text, want, o.len) && o.unsealed == 6);
    /* a changed character: that record is forged, the others read on; a dropped line: dropped;
     * another key: nothing */
    CHECK(read_lines(&fr, in_order, key, 100, &o, NULL, 0, 0) == 1);
    {
        size_t l0 = scp_ss_frame_line(fr.f[0], fr.n[0], (char[SCP_SS_MAX_LINE]){0});
        CHECK(read_lines(&fr, in_order, key, 100, &o, NULL, 0, l0 + 30) == 0 && o.problems[SCP_SS_FORGED] == 1);
        CHECK(o.len == strlen("MARKER-42\nthird\n") && !memcmp(o.text, "MARKER-42\nthird\n", o.len));
    }
    CHECK(read_lines(&fr, dropped, key, 100, &o, NULL, 0, 0) == 0 && o.problems[SCP_SS_DROPPED] == 1);
    CHECK(read_lines(&fr, in_order, other, 100, &o, NULL, 0, 0) == 0 && o.len == 0 &&
          o.problems[SCP_SS_FORGED] == 5);
    /* the longest records: a line-form record (SCP_SS_LINE_DATA) fits Docker's 16 KiB message;
     * the largest binary frame also reads back as a line (the decoder's last group) */
    for (size_t dn = SCP_SS_LINE_DATA; dn <= SCP_SS_MAX_DATA; dn += SCP_SS_MAX_DATA - SCP_SS_LINE_DATA) {
        scp_ss_writer w;
        static uint8_t buf[SCP_SS_MAX_FRAME], big[SCP_SS_MAX_DATA];
        struct frames fb;
        memset(&fb, 0, sizeof fb);
        memset(big, 'x', sizeof big);
        CHECK(scp_ss_writer_start(&w, key, SCP_SS_STDOUT, "stdout", "sess", "svc", SCP_SS_ROOT, NULL, 0, NULL, &e) == 0);
        add(&fb, buf, scp_ss_seal_header(&w, 1, buf, sizeof buf, &e));
        add(&fb, buf, scp_ss_seal_data(&w, big, dn, 1, buf, sizeof buf, &e));
        add(&fb, buf, scp_ss_seal_end(&w, SCP_SS_END_CLOSED, NULL, 1, buf, sizeof buf, &e));
        if (dn == SCP_SS_LINE_DATA) CHECK(SCP_SS_LINE_LEN(fb.n[1]) < 16384);
        int all3[] = {0, 1, 2, -1};
        memset(&o, 0, sizeof o);
        CHECK(read_lines(&fb, all3, key, 1000, &o, NULL, 0, 0) == 1 && o.ends == 1);
        free_frames(&fb);
    }

    /* a stream of service svc written with svc's key but naming svc2 is foreign */
    struct frames f2;
    make(&f2, key, "svc2");
    CHECK(read_order(&f2, in_order, key, 100, &o, 0) == 0 && o.problems[SCP_SS_FOREIGN] == 1 && o.len == 0);

    /* exec: the first stream ends pointing at the next; without the next, truncated */
    {
        scp_ss_writer w;
        uint8_t buf[SCP_SS_MAX_FRAME], next[SCP_SS_ID_LEN];
        struct frames fx;
        memset(&fx, 0, sizeof fx);
        memset(next, 0x33, sizeof next);
        CHECK(scp_ss_writer_start(&w, key, SCP_SS_STDOUT, "stdout", "sess", "svc", SCP_SS_ROOT, NULL, 0, NULL, &e) == 0);
        add(&fx, buf, scp_ss_seal_header(&w, 1, buf, sizeof buf, &e));
        add(&fx, buf, scp_ss_seal_data(&w, "a", 1, 1, buf, sizeof buf, &e));
        add(&fx, buf, scp_ss_seal_end(&w, SCP_SS_END_EXEC, next, 1, buf, sizeof buf, &e));
        CHECK(scp_ss_seal_data(&w, "b", 1, 1, buf, sizeof buf, &e) < 0); /* ended */
        CHECK(scp_ss_writer_restart(&w, SCP_SS_EXEC, next, &e) == 0);
        add(&fx, buf, scp_ss_seal_header(&w, 1, buf, sizeof buf, &e));
        add(&fx, buf, scp_ss_seal_data(&w, "b", 1, 1, buf, sizeof buf, &e));
        add(&fx, buf, scp_ss_seal_end(&w, SCP_SS_END_CLOSED, NULL, 1, buf, sizeof buf, &e));
        int both[] = {0, 1, 2, 3, 4, 5, -1}, first[] = {0, 1, 2, -1};
        CHECK(read_order(&fx, both, key, 100, &o, 0) == 1 && o.len == 2 && !memcmp(o.text, "ab", 2));
        CHECK(read_order(&fx, first, key, 100, &o, 0) == 0 && o.problems[SCP_SS_TRUNCATED] == 1);
        free_frames(&fx);
    }
    free_frames(&fr);
    free_frames(&f2);
    if (failures) fprintf(stderr, "test_sealed_stream: %d failure(s)\n", failures);
    else printf("test_sealed_stream: all checks passed\n");
    return failures != 0;
}
