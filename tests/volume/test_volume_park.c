/* test_volume_park - parked at a fork (docs/volume-format.md, "Parked at a fork"): a process in
 * shared mode that holds nothing of the volume lets go of its presence lock before it forks,
 * so that its child, opening the volume afresh, may go private; the parent's next call waits,
 * as an open does, until that child has gone shared.
 *   held      not parked, the parent's presence keeps a child's fresh open from going private
 *             (scp_volume_go_private 0), and a volume with a file open does not park
 *   private   parked: the child forgets its copy (scp_volume_forget), opens the volume, goes
 *             private (1), writes 3 chunks of a new file without committing them and tells
 *             the parent; the parent's stat of that file waits until the child's watcher has
 *             committed them and let go, and finds all 3 chunks; the child then writes on in
 *             shared mode, and the parent reads every byte the child wrote
 *   keep      parked, and the child uses its copy without forgetting it: its first call
 *             unparks it (after its own presence lock) and its commit is kept
 */
#include <pthread.h>

#include "scenario.h"

static const uint8_t KEY[32] = {7, 1, 8};
#define CH 4096

static void pattern(uint8_t *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12));
}

/* the child's watcher: as the shield's (priv_watch, sh_priv_end): shared, commit, shared, end */
struct watch {
    scp_volume *v;
    scp_vfile *f;
    int ok;
};
static void *watcher(void *arg) {
    struct watch *w = arg;
    scp_err e;
    scp_volume_private_wait(w->v);
    scp_volume_set_shared(w->v);
    w->ok = scp_vfile_fsync(w->f, &e) == 0;
    scp_volume_set_shared(w->v);
    scp_volume_private_end(w->v);
    return NULL;
}

static scp_volume *open_shared(const char *dir) {
    scp_err e;
    scp_volume *v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE(v);
    scp_volume_set_shared(v);
    return v;
}

static void put(scp_volume *v, const char *path, const uint8_t *b, size_t n) {
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, path, O_RDWR | O_CREAT, 0644, &e);
    REQUIRE(f);
    REQUIRE(scp_vfile_pwrite(f, b, n, 0, &e) == (ssize_t)n);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
}

static int same(scp_volume *v, const char *path, const uint8_t *b, size_t n) {
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, &e);
    if (!f) return 0;
    uint8_t *got = malloc(n + 1);
    REQUIRE(got);
    ssize_t r = scp_vfile_pread(f, got, n + 1, 0, &e);
    int ok = r == (ssize_t)n && memcmp(got, b, n) == 0;
    free(got);
    (void)scp_vfile_close(f, &e);
    return ok;
}

static void test_held(const char *dir) {
    scp_err e;
    scp_volume *v = open_shared(dir);
    uint8_t b[CH];
    pattern(b, sizeof b, 1);
    put(v, "laid", b, sizeof b);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    tu_child c;
    if (tu_child_start(&c)) { /* a fresh open beside a present parent */
        scp_volume *w = scp_volume_open(dir, KEY, NULL, &e);
        int pr = w ? scp_volume_go_private(w) : -1;
        tu_child_exit(&c, &pr, sizeof pr);
    }
    int pr = -1;
    REQUIRE(tu_child_wait(&c, &pr, sizeof pr));
    CHECKF(pr == 0, "held: a child's open went private (%d) beside its present parent", pr);
    scp_vfile *f = scp_vfile_open(v, "laid", O_RDONLY, 0, &e);
    REQUIRE(f);
    CHECKF(scp_volume_park(v) == 0, "held: parked with a file open");
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    printf("  held: the child stays shared beside its present parent; no park with a file open\n");
}

static void test_private(const char *dir) {
    scp_err e;
    scp_volume *v = open_shared(dir);
    enum { N = 3, M = 5 };
    uint8_t b[M * CH];
    pattern(b, sizeof b, 2);
    REQUIRE(scp_volume_park(v) == 1);
    int go[2];
    REQUIRE(pipe(go) == 0);
    tu_child c;
    if (tu_child_start(&c)) {
        close(go[1]);
        scp_volume_forget(v);
        scp_volume *w = scp_volume_open(dir, KEY, NULL, &e);
        if (!w) _exit(5);
        int pr = scp_volume_go_private(w);
        scp_vfile *f = scp_vfile_open(w, "child", O_RDWR | O_CREAT, 0644, &e);
        if (!f || scp_vfile_pwrite(f, b, N * CH, 0, &e) != N * CH) _exit(6);
        struct watch wt = {w, f, 0};
        pthread_t t;
        if (pr == 1 && pthread_create(&t, NULL, watcher, &wt)) _exit(7);
        int ready = 1; /* (uncommitted: private mode buffers until fsync) */
        if (write(c.fd[1], &ready, sizeof ready) != sizeof ready) _exit(8);
        char x;
        if (read(go[0], &x, 1) != 1) _exit(9);
        if (pr == 1) pthread_join(t, NULL);
        if (scp_vfile_pwrite(f, b + N * CH, (M - N) * CH, N * CH, &e) != (M - N) * CH ||
            scp_vfile_fsync(f, &e) < 0 || scp_vfile_close(f, &e) < 0 || scp_volume_close(w, &e) < 0)
            _exit(10);
        int out[2] = {pr, wt.ok};
        tu_child_exit(&c, out, sizeof out);
    }
    close(go[0]);
    int ready = 0;
    REQUIRE(read(c.fd[0], &ready, sizeof ready) == sizeof ready && ready == 1);
    scp_vstat st;
    /* the parked parent's first call: waits for the private child's move, then catches up */
    int sr = scp_volume_stat(v, "child", &st, &e);
    CHECKF(sr == 0 && st.size == N * CH, "private: the parent's stat found %s (size %llu)",
           sr == 0 ? "the file" : "no file", sr == 0 ? (unsigned long long)st.size : 0ULL);
    CHECKF(same(v, "child", b, N * CH), "private: the child's first chunks are not what it wrote");
    if (sr != 0 || st.size != N * CH) { /* (a parent that did not wait: let the child's watcher end) */
        scp_volume *w = scp_volume_open(dir, KEY, NULL, &e);
        if (w) (void)scp_volume_close(w, &e);
    }
    REQUIRE(write(go[1], "g", 1) == 1);
    int out[2] = {-1, 0};
    REQUIRE(tu_child_wait(&c, out, sizeof out));
    close(go[1]);
    CHECKF(out[0] == 1, "private: the child of a parked parent did not go private (%d)", out[0]);
    CHECKF(out[1] == 1, "private: the watcher's commit failed");
    CHECKF(same(v, "child", b, sizeof b), "private: the parent does not read every byte the child wrote");
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, KEY, NULL, &e);
    REQUIRE(v);
    CHECKF(same(v, "child", b, sizeof b), "private: a fresh open does not read the child's file");
    REQUIRE_OK(scp_volume_close(v, &e), e);
    printf("  private: the child went private; the parent waited for its move and read every byte\n");
}

static void test_keep(const char *dir) {
    scp_err e;
    scp_volume *v = open_shared(dir);
    uint8_t b[2 * CH];
    pattern(b, sizeof b, 3);
    REQUIRE(scp_volume_park(v) == 1);
    tu_child c;
    if (tu_child_start(&c)) { /* its copy: the first call unparks it */
        scp_vfile *f = scp_vfile_open(v, "kept", O_RDWR | O_CREAT, 0644, &e);
        if (!f || scp_vfile_pwrite(f, b, sizeof b, 0, &e) != (ssize_t)sizeof b ||
            scp_vfile_fsync(f, &e) < 0 || scp_vfile_close(f, &e) < 0)
            _exit(5);
        tu_child_exit(&c, NULL, 0);
    }
    REQUIRE(tu_child_wait(&c, NULL, 0));
    CHECKF(same(v, "kept", b, sizeof b), "keep: the parent does not read the child's file");
    REQUIRE_OK(scp_volume_close(v, &e), e);
    printf("  keep: a child that keeps its copy unparks it and commits\n");
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    char base[] = "/tmp/scp-park-XXXXXX", dir[600];
    scp_err e;
    REQUIRE(mkdtemp(base));
    snprintf(dir, sizeof dir, "%s/vol", base);
    REQUIRE_OK(scp_volume_create(dir, KEY, CH, &e), e);
    if (!strcmp(what, "all") || !strcmp(what, "held")) test_held(dir);
    if (!strcmp(what, "all") || !strcmp(what, "private")) test_private(dir);
    if (!strcmp(what, "all") || !strcmp(what, "keep")) test_keep(dir);
    tu_rm_rf(base);
    return tu_exit_code("test_volume_park");
}
