/* fuzz/volfix.c - see volfix.h. */
#include "volfix.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void *xalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "volfix: out of memory\n");
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "volfix: out of memory\n");
        abort();
    }
    return p;
}

long vf_find(const vf_fixture *fx, const char *name) {
    for (size_t i = 0; i < fx->nuniv; i++)
        if (strcmp(fx->univ[i], name) == 0) return (long)i;
    return -1;
}

static size_t univ_add(vf_fixture *fx, const char *name) {
    long i = vf_find(fx, name);
    if (i >= 0) return (size_t)i;
    if (fx->nuniv == fx->capuniv) {
        fx->capuniv = fx->capuniv ? 2 * fx->capuniv : 16;
        fx->univ = xrealloc(fx->univ, fx->capuniv * sizeof *fx->univ);
    }
    fx->univ[fx->nuniv] = strdup(name);
    if (!fx->univ[fx->nuniv]) abort();
    return fx->nuniv++;
}

static int read_all(const char *path, uint8_t **out, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = xalloc(n);
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, b + done, n - done);
        if (r <= 0) break;
        done += (size_t)r;
    }
    close(fd);
    *out = b;
    *len = done;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names (relative to the volume directory) of its regular files and of objects/<x>. */
static size_t list_names(const char *vdir, char ***out) {
    size_t n = 0, cap = 16;
    char **names = xalloc(cap * sizeof *names);
    const char *sub[2] = {"", "objects/"};
    for (int k = 0; k < 2; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", vdir, sub[k]);
        DIR *d = opendir(p);
        if (!d) continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_type != DT_REG) continue;
            if (n == cap) names = xrealloc(names, (cap *= 2) * sizeof *names);
            size_t l = strlen(sub[k]) + strlen(de->d_name) + 1;
            names[n] = xalloc(l);
            snprintf(names[n], l, "%s%s", sub[k], de->d_name);
            n++;
        }
        closedir(d);
    }
    qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

static void snap_take(vf_fixture *fx, const char *vdir, int crash, const scp_volume_tag *tag) {
    char **names;
    size_t n = list_names(vdir, &names);
    for (size_t i = 0; i < n; i++) univ_add(fx, names[i]);
    vf_snap s = {.crash = crash, .tag = *tag, .nf = fx->nuniv, .dur_gen = fx->dur_gen};
    s.f = xalloc(fx->nuniv * sizeof *s.f);
    for (size_t i = 0; i < n; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", vdir, names[i]);
        vf_blob *b = &s.f[vf_find(fx, names[i])];
        if (read_all(p, &b->data, &b->len) == 0) b->present = 1;
        free(names[i]);
    }
    free(names);
    /* Skip a snapshot identical to the previous one. */
    if (fx->nsnap > 0) {
        vf_snap *p = &fx->snap[fx->nsnap - 1];
        int same = p->nf == s.nf;
        for (size_t i = 0; same && i < s.nf; i++)
            same = p->f[i].present == s.f[i].present && p->f[i].len == s.f[i].len &&
                   (!s.f[i].present || memcmp(p->f[i].data, s.f[i].data, s.f[i].len) == 0);
        if (same) {
            for (size_t i = 0; i < s.nf; i++) free(s.f[i].data);
            free(s.f);
            return;
        }
    }
    if (fx->nsnap == fx->capsnap) {
        fx->capsnap = fx->capsnap ? 2 * fx->capsnap : 32;
        fx->snap = xrealloc(fx->snap, fx->capsnap * sizeof *fx->snap);
    }
    fx->snap[fx->nsnap++] = s;
}

struct live {
    vf_fixture *fx;
    const char *vdir;
};

static uint64_t tag_gen(const scp_volume_tag *tag) {
    uint64_t g = 0;
    for (int i = 0; i < 8; i++) g = g << 8 | tag->bytes[i];
    return g;
}

static void on_commit(void *ctx, const scp_volume_tag *tag) {
    struct live *l = ctx;
    l->fx->dur_gen = tag_gen(tag);
    snap_take(l->fx, l->vdir, 1, tag);
}

static int fail(const char *what, const scp_err *err) {
    fprintf(stderr, "volfix: %s: %s\n", what, err ? err->msg : "");
    return -1;
}

static int put(scp_volume *v, const char *path, int flags, const void *buf, size_t n,
               uint64_t off, scp_err *err) {
    scp_vfile *f = scp_vfile_open(v, path, flags, 0640, err);
    if (!f) return -1;
    if (n && scp_vfile_pwrite(f, buf, n, off, err) != (ssize_t)n) {
        scp_vfile_close(f, NULL);
        return -1;
    }
    return scp_vfile_close(f, err);
}

/* Fixed pattern without bytes 0x00 and 0xA5 (those mark wiped and untouched buffers). */
static void pattern(uint8_t *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)('A' + (i * 7 + seed) % 26);
}

/* The history. After each step, a quiescent snapshot; commits also snapshot via on_commit. */
static int history(vf_fixture *fx, const char *vdir) {
    scp_err err;
    scp_volume_tag tag;
    if (scp_volume_create(vdir, fx->key, 4096, &err) < 0) return fail("create", &err);
    scp_volume *v = scp_volume_open(vdir, fx->key, NULL, &err);
    if (!v) return fail("open", &err);
    scp_volume_tag_get(v, &tag);
    fx->dur_gen = tag_gen(&tag); /* (a new volume's first state is durable) */
    snap_take(fx, vdir, 0, &tag);
    struct live l = {fx, vdir};
    scp_volume_on_commit(v, on_commit, &l);
    static uint8_t b[3 * 4096 + 200];
    int rc = 0;
    /* After each step a quiescent snapshot at the state in memory (a namespace step leaves it
     * in the scratch slot), then a sync, whose durable commit snapshots through on_commit. */
    scp_volume_info info;
#define STEP(call)                                                            \
    do {                                                                      \
        if (rc == 0 && (call) < 0) rc = fail(#call, &err);                    \
        if (rc == 0 && scp_volume_info_get(v, &info, &err) < 0) rc = fail("info", &err); \
        if (rc == 0) snap_take(fx, vdir, 0, &info.tag);                       \
        if (rc == 0 && scp_volume_sync(v, &err) < 0) rc = fail("sync", &err); \
    } while (0)
    pattern(b, sizeof b, 1);
    STEP(scp_volume_mkdir(v, "d", 0750, &err));
    /* A create is a namespace step of its own (its state is only in the scratch slot until the
     * sync), so that every state any slot can hold is the newest of some snapshot. */
    STEP(put(v, "a.txt", O_CREAT | O_WRONLY, NULL, 0, 0, &err));
    STEP(put(v, "a.txt", O_WRONLY, b, 100, 0, &err));
    pattern(b, sizeof b, 2);
    STEP(put(v, "d/b.bin", O_CREAT | O_RDWR, NULL, 0, 0, &err));
    STEP(put(v, "d/b.bin", O_RDWR, b, 4096 + 100, 0, &err));
    STEP(put(v, "d/b.bin", O_RDWR, b + 500, 50, 3 * 4096 + 10, &err)); /* chunk 2 stays a hole */
    /* Overwrites below the committed size go through the journal. */
    pattern(b, sizeof b, 3);
    STEP(put(v, "d/b.bin", O_RDWR, b, 10, 5, &err));
    STEP(put(v, "d/b.bin", O_RDWR, b + 20, 40, 4096 - 20, &err)); /* straddles chunks 0 and 1 */
    pattern(b, sizeof b, 4);
    STEP(put(v, "a.txt", O_RDWR | O_TRUNC, b, 60, 0, &err));
    STEP(put(v, "e", O_CREAT | O_WRONLY, NULL, 0, 0, &err));
    STEP(scp_volume_rename(v, "e", "d/e2", &err));
    {
        scp_vfile *f = scp_vfile_open(v, "d/b.bin", O_RDWR, 0, &err);
        STEP(f ? scp_vfile_truncate(f, 4096 + 10, &err) : -1);
        STEP(f ? scp_vfile_close(f, &err) : -1);
    }
#undef STEP
    if (scp_volume_close(v, &err) < 0 && rc == 0) rc = fail("close", &err);
    return rc;
}

struct names {
    char **name;
    int *type;
    size_t n, cap;
};

static int collect(void *ctx, const char *name, const scp_vstat *st) {
    struct names *ns = ctx;
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? 2 * ns->cap : 16;
        ns->name = xrealloc(ns->name, ns->cap * sizeof *ns->name);
        ns->type = xrealloc(ns->type, ns->cap * sizeof *ns->type);
    }
    ns->name[ns->n] = strdup(name);
    ns->type[ns->n++] = st->type;
    return 0;
}

static int walk(scp_volume *v, const char *dir, vf_truth *t, scp_err *err) {
    struct names ns = {0};
    if (scp_volume_readdir(v, dir, collect, &ns, err) < 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < ns.n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s%s%s", dir, dir[0] ? "/" : "", ns.name[i]);
        t->e = xrealloc(t->e, (t->n + 1) * sizeof *t->e);
        vf_entry *e = &t->e[t->n++];
        memset(e, 0, sizeof *e);
        e->path = strdup(path);
        e->type = ns.type[i];
        if (rc == 0 && e->type == SCP_VTYPE_DIR) {
            rc = walk(v, path, t, err);
        } else if (rc == 0) {
            scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, err);
            if (!f) {
                rc = -1;
            } else {
                uint64_t sz = scp_vfile_size(f);
                e = &t->e[t->n - 1];
                e->data = xalloc((size_t)sz);
                e->len = (size_t)sz;
                if (scp_vfile_pread(f, e->data, e->len, 0, err) != (ssize_t)e->len) rc = -1;
                if (scp_vfile_close(f, err) < 0) rc = -1;
            }
        }
        free(ns.name[i]);
    }
    free(ns.name);
    free(ns.type);
    return rc;
}

static void problem(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)ctx;
    fprintf(stderr, "volfix: verify: %s at %lld: %s\n", path, (long long)off, msg);
}

const vf_truth *vf_truth_of(const vf_fixture *fx, const scp_volume_tag *tag) {
    for (size_t i = 0; i < fx->ntruth; i++)
        if (memcmp(fx->truth[i].tag.bytes, tag->bytes, SCP_VOLUME_TAG_LEN) == 0)
            return &fx->truth[i];
    return NULL;
}

static int learn_truth(vf_fixture *fx, size_t k, const char *cdir) {
    scp_err err;
    if (vf_materialize(fx, fx->snap[k].f, cdir) < 0) return fail("materialize", NULL);
    scp_volume *v = scp_volume_open(cdir, fx->key, &fx->snap[k].tag, &err);
    if (!v) {
        fprintf(stderr, "volfix: LIBRARY BUG? genuine snapshot %zu (%s) does not open: %s\n", k,
                fx->snap[k].crash ? "crash point" : "quiescent", err.msg);
        return -1;
    }
    scp_volume_info info;
    if (scp_volume_info_get(v, &info, &err) < 0) return fail("info", &err);
    int rc = 0;
    if (memcmp(info.tag.bytes, fx->snap[k].tag.bytes, SCP_VOLUME_TAG_LEN) != 0) {
        fprintf(stderr, "volfix: LIBRARY BUG? snapshot %zu opens with another tag\n", k);
        rc = -1;
    }
    vf_truth t = {.tag = info.tag, .gen = info.generation};
    if (rc == 0 && walk(v, "", &t, &err) < 0) {
        fprintf(stderr, "volfix: LIBRARY BUG? snapshot %zu (%s) does not read back: %s\n", k,
                fx->snap[k].crash ? "crash point" : "quiescent", err.msg);
        rc = -1;
    }
    long p = rc == 0 ? scp_volume_verify(v, problem, NULL, NULL, &err) : 0;
    if (p != 0) {
        fprintf(stderr, "volfix: LIBRARY BUG? snapshot %zu (%s) fails verify (%ld)\n", k,
                fx->snap[k].crash ? "crash point" : "quiescent", p);
        rc = -1;
    }
    if (scp_volume_close(v, &err) < 0) rc = fail("close", &err);
    const vf_truth *old = vf_truth_of(fx, &t.tag);
    if (rc == 0 && old) { /* the same state seen twice (crash point and after the call) */
        int same = old->n == t.n;
        for (size_t i = 0; same && i < t.n; i++)
            same = strcmp(old->e[i].path, t.e[i].path) == 0 && old->e[i].type == t.e[i].type &&
                   old->e[i].len == t.e[i].len &&
                   memcmp(old->e[i].data ? old->e[i].data : (uint8_t *)"", 
                          t.e[i].data ? t.e[i].data : (uint8_t *)"", t.e[i].len) == 0;
        if (!same) {
            fprintf(stderr, "volfix: LIBRARY BUG? snapshot %zu reads differently from an "
                            "earlier snapshot with the same tag\n", k);
            rc = -1;
        }
    }
    if (rc == 0 && !old) {
        fx->truth = xrealloc(fx->truth, (fx->ntruth + 1) * sizeof *fx->truth);
        fx->truth[fx->ntruth++] = t;
    } else {
        for (size_t i = 0; i < t.n; i++) {
            free(t.e[i].path);
            free(t.e[i].data);
        }
        free(t.e);
    }
    return rc;
}

/* The final state must hold what the history wrote (a check of the fixture itself). */
static int check_final(const vf_fixture *fx) {
    const vf_truth *t = vf_truth_of(fx, &fx->snap[fx->nsnap - 1].tag);
    static uint8_t b[3 * 4096 + 200], want[4096 + 10];
    memset(want, 0, sizeof want);
    pattern(b, sizeof b, 2);
    memcpy(want, b, sizeof want);
    pattern(b, sizeof b, 3);
    memcpy(want + 5, b, 10);
    memcpy(want + 4096 - 20, b + 20, 30); /* the rest of that write was cut by the truncate */
    pattern(b, sizeof b, 4);
    struct {
        const char *path;
        const uint8_t *data;
        size_t len;
    } exp[] = {{"a.txt", b, 60}, {"d", NULL, 0}, {"d/b.bin", want, sizeof want}, {"d/e2", NULL, 0}};
    if (!t || t->n != 4) return fail("final state has the wrong entries", NULL);
    for (size_t i = 0; i < 4; i++)
        if (strcmp(t->e[i].path, exp[i].path) != 0 || t->e[i].len != exp[i].len ||
            (exp[i].len && memcmp(t->e[i].data, exp[i].data, exp[i].len) != 0)) {
            fprintf(stderr, "volfix: LIBRARY BUG? final content of '%s' is wrong\n", exp[i].path);
            return -1;
        }
    return 0;
}

int vf_build(vf_fixture *fx, const char *base) {
    memset(fx, 0, sizeof *fx);
    for (int i = 0; i < SCP_VOLUME_KEY_LEN; i++) fx->key[i] = (uint8_t)(0x11 * i + 3);
    snprintf(fx->dir, sizeof fx->dir, "%s/scp-volfix.XXXXXX", base);
    if (!mkdtemp(fx->dir)) {
        fprintf(stderr, "volfix: mkdtemp %s: %s\n", fx->dir, strerror(errno));
        return -1;
    }
    char vdir[512], cdir[512];
    snprintf(vdir, sizeof vdir, "%s/live", fx->dir);
    snprintf(cdir, sizeof cdir, "%s/truth", fx->dir);
    if (history(fx, vdir) < 0) return -1;
    for (size_t k = 0; k < fx->nsnap; k++) { /* every snapshot sees the whole universe */
        fx->snap[k].f = xrealloc(fx->snap[k].f, fx->nuniv * sizeof *fx->snap[k].f);
        memset(fx->snap[k].f + fx->snap[k].nf, 0,
               (fx->nuniv - fx->snap[k].nf) * sizeof *fx->snap[k].f);
        fx->snap[k].nf = fx->nuniv;
    }
    for (size_t k = 0; k < fx->nsnap; k++)
        if (learn_truth(fx, k, cdir) < 0) return -1;
    return check_final(fx);
}

static void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            if (de->d_type == DT_DIR) rm_tree(p);
            else unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

void vf_free(vf_fixture *fx) {
    if (fx->dir[0]) rm_tree(fx->dir);
    for (size_t k = 0; k < fx->nsnap; k++) {
        for (size_t i = 0; i < fx->snap[k].nf; i++) free(fx->snap[k].f[i].data);
        free(fx->snap[k].f);
    }
    free(fx->snap);
    for (size_t i = 0; i < fx->nuniv; i++) free(fx->univ[i]);
    free(fx->univ);
    for (size_t i = 0; i < fx->ntruth; i++) {
        for (size_t j = 0; j < fx->truth[i].n; j++) {
            free(fx->truth[i].e[j].path);
            free(fx->truth[i].e[j].data);
        }
        free(fx->truth[i].e);
    }
    free(fx->truth);
    memset(fx, 0, sizeof *fx);
}

/* Remove whatever is at p (a file, FIFO, symlink or directory tree). */
static int clear_path(const char *p) {
    if (unlink(p) == 0 || errno == ENOENT) return 0;
    if (errno == EISDIR || errno == EPERM) {
        rm_tree(p);
        return 0;
    }
    return -1;
}

int vf_materialize(const vf_fixture *fx, const vf_blob *set, const char *dir) {
    char p[512];
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -1;
    snprintf(p, sizeof p, "%s/objects", dir);
    if (mkdir(p, 0700) < 0 && errno != EEXIST) return -1;
    for (size_t i = 0; i < fx->nuniv; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, fx->univ[i]);
        /* Never open what a previous run left there: it may be a FIFO. */
        if (clear_path(p) < 0) return -1;
        if (!set[i].present) continue;
        switch (set[i].kind) {
        case VF_FIFO:
            if (mkfifo(p, 0600) < 0) return -1;
            continue;
        case VF_DIR:
            if (mkdir(p, 0700) < 0) return -1;
            continue;
        case VF_DEVZERO:
            if (symlink("/dev/zero", p) < 0) return -1;
            continue;
        default:
            break;
        }
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) return -1;
        size_t done = 0;
        while (done < set[i].len) {
            ssize_t r = write(fd, set[i].data + done, set[i].len - done);
            if (r <= 0) break;
            done += (size_t)r;
        }
        close(fd);
        if (done != set[i].len) return -1;
    }
    return 0;
}
