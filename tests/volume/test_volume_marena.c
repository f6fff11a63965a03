/* tests/volume/test_volume_marena.c - a large manifest's entries and strings cut from one
 * populated arena (src/volume/marena.h).
 *
 * Asserts:
 *  - the arena's pieces are aligned, zeroed and inside it; it says no when full; it is
 *    unmapped only when its last piece and its hold are gone, in any order; marena_free of
 *    malloc'd memory frees it; the registry refuses a 17th arena and takes one again after;
 *  - a parsed manifest of at least MARENA_MIN_ENTRIES entries holds every entry, path and
 *    target in its arena (the parse's size bound holds for the longest names and targets, with
 *    times), the same fields as the encoded manifest; a smaller one holds none;
 *  - a volume of 700 names, opened again (its manifest parsed into an arena), then renamed,
 *    removed, linked, made and written in, and again from a forked child in shared mode, reads
 *    back what was done, in the parent, after a close and after another open.
 * The ASan pass of CI runs it too: a piece given to free(), or an arena unmapped under a live
 * piece, is reported there.
 */
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "manifestutil.h"
#include "volume/marena.h"

static scp_err e;

/* Is the page at p mapped? (msync fails with ENOMEM on an unmapped range) */
static int mapped(const void *p) {
    uintptr_t page = (uintptr_t)p & ~(uintptr_t)4095;
    return msync((void *)page, 4096, MS_ASYNC) == 0;
}

static void test_arena(void) {
    tu_context = "arena";
    marena *a = REQUIRE_PTR(marena_new(1000), e);
    void *pieces[200];
    int n = 0;
    for (void *p; n < 200 && (p = marena_alloc(a, 8));) {
        const uint8_t *b = p;
        int zero = 1;
        for (size_t k = 0; k < 8; k++) zero &= b[k] == 0;
        CHECKF(((uintptr_t)p & 7) == 0 && zero && marena_owns(a, p), "piece %d", n);
        memset(p, 0xa5, 8);
        pieces[n++] = p;
    }
    CHECKF(n == 1000 / 8, "%d pieces of 8 bytes from 1,000", n);
    CHECK(marena_alloc(a, 1) == NULL); /* full */
    void *heap = malloc(16);
    CHECK(!marena_owns(a, heap));
    marena_free(heap); /* (free: ASan reports it otherwise) */
    /* free every other piece, drop the hold, then the rest from the end */
    for (int i = 0; i < n; i += 2) marena_free(pieces[i]);
    marena_drop(a, 0);
    CHECK(mapped(pieces[1]));
    for (int i = n - 1 - (n % 2 == 0 ? 0 : 1); i > 1; i -= 2) marena_free(pieces[i]);
    CHECK(mapped(pieces[1])); /* one piece left */
    marena_free(pieces[1]);
    CHECK(!mapped(pieces[1]));

    /* a hold dropped with the pieces counted off at once (a manifest's bulk free) */
    a = REQUIRE_PTR(marena_new(64), e);
    void *x = marena_alloc(a, 8), *y = marena_alloc(a, 8);
    REQUIRE(x && y);
    marena_free(y);
    marena_drop(a, 1);
    CHECK(!mapped(x));

    /* the registry: 16 live arenas, no 17th, one again after one goes */
    marena *r[17];
    int made = 0;
    while (made < 17 && (r[made] = marena_new(64))) made++;
    CHECKF(made == 16, "%d arenas registered", made);
    if (made > 0) marena_drop(r[--made], 0);
    marena *again = marena_new(64);
    CHECK(again != NULL);
    marena_drop(again, 0);
    while (made > 0) marena_drop(r[--made], 0);
}

/* Encode a manifest of n entries, parse it, and check the parse against it. Mixed: long
 * names, symbolic links with long targets, times. Tight (the parse's size bound at its
 * closest): names of 8 bytes, whose NUL costs a whole 8-byte step, no times, no links. */
static void check_parse(size_t n, int want_arena, int tight) {
    scp_mentry *ent = calloc(n, sizeof *ent);
    scp_mentry **ep = calloc(n, sizeof *ep);
    char **names = calloc(n, sizeof *names);
    REQUIRE(ent && ep && names);
    ent[0].type = SCP_MTYPE_DIR;
    names[0] = strdup("d");
    for (size_t i = 1; i < n; i++) {
        char *p = malloc(SCP_MAX_PATH + 1);
        REQUIRE(p);
        /* every tenth name as long as a name may be */
        int len = snprintf(p, SCP_MAX_PATH + 1, "d/%06zu", i);
        if (i % 10 == 0 && !tight) {
            memset(p + len, 'x', (size_t)(SCP_MAX_NAME + 2 - len));
            p[SCP_MAX_NAME + 2] = '\0';
        }
        names[i] = p;
        ent[i].type = i % 10 != 0 && i % 3 == 0 && !tight ? SCP_MTYPE_LINK : SCP_MTYPE_FILE;
        if (ent[i].type == SCP_MTYPE_LINK) {
            char *t = malloc(SCP_MAX_PATH + 1);
            REQUIRE(t);
            memset(t, 't', SCP_MAX_PATH);
            t[SCP_MAX_PATH - (i % 7)] = '\0';
            ent[i].target = t;
            ent[i].size = strlen(t);
        } else {
            ent[i].size = i;
        }
        ent[i].mtime_ns = (int64_t)i;
        ent[i].ctime_ns = ent[i].atime_ns = i % 2 && !tight ? (int64_t)i + 1 : (int64_t)i;
    }
    for (size_t i = 0; i < n; i++) ent[i].path = names[i];
    tu_entries_sorted(ent, ep, n);
    scp_manifest out;
    REQUIRE_OK(tu_reparse(ep, n, &out, &e), e);
    CHECKF((out.arena != NULL) == want_arena, "%zu entries: arena %s", n, out.arena ? "yes" : "no");
    size_t owned = 0, pieces = 0, same = out.n == n;
    for (size_t i = 0; same && i < n; i++) {
        const scp_mentry *p = out.e[i], *q = ep[i];
        same = strcmp(p->path, q->path) == 0 && p->type == q->type && p->size == q->size &&
               p->mtime_ns == q->mtime_ns && p->ctime_ns == q->ctime_ns &&
               p->atime_ns == q->atime_ns && !p->target == !q->target &&
               (!p->target || strcmp(p->target, q->target) == 0);
        owned += (size_t)(marena_owns(out.arena, p) + marena_owns(out.arena, p->path) +
                          (p->target ? marena_owns(out.arena, p->target) : 0));
        pieces += p->target ? 3 : 2;
    }
    CHECKF(same, "%zu entries parse back as encoded", n);
    CHECKF(owned == (want_arena ? pieces : 0), "%zu of %zu pieces in the arena", owned, pieces);
    scp_manifest_free(&out);
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
        free(ent[i].target);
    }
    free(names);
    free(ep);
    free(ent);
}

#define NFILES 700

static void content_of(int i, char *out, size_t n) { snprintf(out, n, "file %d", i); }

/* The volume's state after the changes below: f%03d for i kept, g%03d for renamed (i in
 * [100, 200)), none for removed ([200, 300); and [600, 650] after the child, which moved
 * f650 to c/g650 and made d/child), l%03d links of [300, 310) with "+" appended. */
static void check_state(scp_volume *v, const char *when, int child_done) {
    tu_context = when;
    char p[64], want[64];
    int bad = 0;
    for (int i = 0; i < NFILES; i++) {
        content_of(i, want, sizeof want);
        scp_vstat st;
        if (i >= 100 && i < 200) snprintf(p, sizeof p, "d/g%03d", i);
        else snprintf(p, sizeof p, "d/f%03d", i);
        int gone = (i >= 200 && i < 300) || (child_done && i >= 600 && i <= 650);
        if (gone) {
            bad += scp_volume_stat(v, p, &st, &e) == 0;
            continue;
        }
        if (i >= 300 && i < 310) strcat(want, "+");
        size_t n;
        uint8_t *b = tu_vget(v, p, &n, &e);
        bad += !b || n != strlen(want) || memcmp(b, want, n) != 0;
        free(b);
    }
    CHECKF(bad == 0, "%d names wrong", bad);
    for (int i = 300; i < 310; i++) {
        snprintf(p, sizeof p, "d/l%03d", i);
        snprintf(want, sizeof want, "file %d+", i);
        tu_check_content(v, p, want);
    }
    if (child_done) {
        tu_check_content(v, "d/child", "from the child");
        tu_check_content(v, "c/g650", "file 650");
    }
}

static void test_volume(tu_rng *rng) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd, p[64], q[64], c[64];
    tu_context = "make";
    scp_volume *v = tu_new_volume(rng, "marena", key, &root, &vd);
    REQUIRE_OK(scp_volume_mkdir(v, "d", 0755, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, "c", 0755, &e), e);
    for (int i = 0; i < NFILES; i++) {
        snprintf(p, sizeof p, "d/f%03d", i);
        content_of(i, c, sizeof c);
        REQUIRE_OK(tu_vput(v, p, c, strlen(c), &e), e);
    }
    REQUIRE_OK(scp_volume_symlink(v, "d/f000", "d/s", &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);

    /* opened again: the manifest is parsed (into an arena), then changed name by name */
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    tu_context = "changes";
    for (int i = 100; i < 200; i++) {
        snprintf(p, sizeof p, "d/f%03d", i);
        snprintf(q, sizeof q, "d/g%03d", i);
        CHECK_OK(scp_volume_rename(v, p, q, &e), e);
    }
    for (int i = 200; i < 300; i++) {
        snprintf(p, sizeof p, "d/f%03d", i);
        CHECK_OK(scp_volume_unlink(v, p, &e), e);
    }
    for (int i = 300; i < 310; i++) {
        snprintf(p, sizeof p, "d/f%03d", i);
        snprintf(q, sizeof q, "d/l%03d", i);
        CHECK_OK(scp_volume_link(v, p, q, &e), e);
        scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, q, O_RDWR | O_APPEND, 0, &e), e);
        CHECK(scp_vfile_write(f, "+", 1, &e) == 1);
        CHECK_OK(scp_vfile_close(f, &e), e);
    }
    check_state(v, "changed, open", 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    check_state(v, "changed, opened again", 0);

    /* shared mode: a forked child (a copy of the arenas) removes, renames, makes; the parent
     * takes its records in */
    scp_volume_set_shared(v);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int ok = 1;
        for (int i = 600; i < 650 && ok; i++) {
            snprintf(p, sizeof p, "d/f%03d", i);
            ok = scp_volume_unlink(v, p, &e) == 0;
        }
        ok = ok && scp_volume_rename(v, "d/f650", "c/g650", &e) == 0 &&
             tu_vput(v, "d/child", "from the child", 14, &e) == 0 && scp_volume_close(v, &e) == 0;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    tu_context = "after the child";
    scp_vstat st;
    CHECK(scp_volume_stat(v, "d/f650", &st, &e) < 0);
    check_state(v, "after the child, in the parent", 1);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    check_state(v, "after the child, opened again", 1);
    CHECK(scp_volume_stat(v, "d/s", &st, &e) == 0 && st.type == SCP_VTYPE_LINK && st.size == 6);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

int main(void) {
    tu_rng rng = {0x3a7e};
    test_arena();
    check_parse(MARENA_MIN_ENTRIES - 1, 0, 0);
    check_parse(MARENA_MIN_ENTRIES, 1, 0);
    check_parse(3000, 1, 0);
    check_parse(3000, 1, 1);
    test_volume(&rng);
    return tu_exit_code("test_volume_marena");
}
