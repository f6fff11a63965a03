/* tests/volume/test_volume_rootattr.c - the volume root's mode, owner and times (its own
 * manifest entry, SCP_ROOT_ENTRY, made by the first setattr of the root).
 *
 * Asserts, through the public API:
 *  - a new volume's root shows 0755, no owner recorded, times 0 (as before the entry existed);
 *  - scp_volume_setattr of "" changes the mode, owner and times that stat of "" shows, moves
 *    ctime, and keeps them across a close and open, across a manifest log fold (many commits
 *    after it) and in another process that has the volume open (shared mode);
 *  - the entry is nowhere a name: readdir of the root lists only the names made in it, the
 *    root's link count is 2 + its subdirectories, the volume info's directory count leaves it
 *    out, and mkdir, rename and rmdir of a directory and a file beside it work as before;
 *  - the parser takes "/" only as a directory and refuses it as a file, or as a path with a
 *    leading slash anywhere else ("/a").
 */
#include <sys/wait.h>

#include "testutil.h"
#include "volume/format.h"

static scp_err e;

static int count_cb(void *ctx, const char *name, const scp_vstat *st) {
    (void)st;
    int *n = ctx;
    CHECKF(name[0] && !strchr(name, '/'), "readdir of the root gives the name '%s'", name);
    (*n)++;
    return 0;
}

static int list_count(scp_volume *v, const char *dir) {
    int n = 0;
    CHECK_OK(scp_volume_readdir(v, dir, count_cb, &n, &e), e);
    return n;
}

static void check_root(scp_volume *v, uint32_t mode, uint32_t uid, uint32_t gid, int64_t mt,
                       const char *when) {
    scp_vstat st;
    REQUIRE_OK(scp_volume_stat(v, "", &st, &e), e);
    CHECKF(st.type == SCP_VTYPE_DIR && st.mode == mode && st.uid == uid && st.gid == gid &&
               !st.owner_unset && st.mtime_ns == mt,
           "%s: root shows type %d mode %o uid %u gid %u unset %d mtime %lld", when, (int)st.type,
           st.mode, st.uid, st.gid, st.owner_unset, (long long)st.mtime_ns);
}

static void test_api(tu_rng *rng) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_volume *v = tu_new_volume(rng, "rootattr", key, &root, &vd);
    scp_vstat st;
    REQUIRE_OK(scp_volume_stat(v, "", &st, &e), e);
    CHECK(st.type == SCP_VTYPE_DIR && st.mode == 0755 && st.owner_unset && st.mtime_ns == 0 &&
          st.ctime_ns == 0 && st.nlink == 2);
    REQUIRE_OK(scp_volume_mkdir(v, "d", 0755, &e), e);
    REQUIRE_OK(tu_vput(v, "f", "one", 3, &e), e);
    scp_volume_info info;
    REQUIRE_OK(scp_volume_info_get(v, &info, &e), e);
    uint64_t dirs = info.dir_count;
    CHECK(dirs == 1);
    REQUIRE_OK(scp_volume_stat(v, "", &st, &e), e); /* (names made: no entry yet, times 0) */
    CHECK(st.owner_unset && st.mtime_ns == 0 && st.ctime_ns == 0);

    REQUIRE_OK(scp_volume_setattr(v, "", 0700, 70, 71, INT64_MIN, &e), e);
    check_root(v, 0700, 70, 71, 0, "after setattr");
    REQUIRE_OK(scp_volume_stat(v, "", &st, &e), e);
    CHECK(st.ctime_ns > 0 && st.nlink == 3);
    REQUIRE_OK(scp_volume_setattr_times(v, "", -1, -1, -1, 5000000000, 978307200000000000, &e), e);
    check_root(v, 0700, 70, 71, 978307200000000000, "after utimes");
    REQUIRE_OK(scp_volume_info_get(v, &info, &e), e);
    CHECK(info.dir_count == dirs);
    CHECK(list_count(v, "") == 2);

    /* names beside it: a directory made, renamed and removed, a file renamed */
    REQUIRE_OK(scp_volume_mkdir(v, "e", 0755, &e), e);
    REQUIRE_OK(scp_volume_rename(v, "e", "e2", &e), e);
    REQUIRE_OK(scp_volume_rename(v, "f", "d/f", &e), e);
    CHECK(list_count(v, "") == 2 && list_count(v, "d") == 1);
    REQUIRE_OK(scp_volume_rmdir(v, "e2", &e), e);
    CHECK(scp_volume_rmdir(v, "d", &e) < 0); /* not empty */
    CHECK(scp_volume_stat(v, "/", &st, &e) == 0 && st.mode == 0700); /* "/" is the root's name */
    /* ... and, as any directory's, the root's mtime and ctime moved with them */
    CHECKF(st.mtime_ns > 978307200000000000 && st.ctime_ns >= st.mtime_ns,
           "names made and removed in the root left its times at %lld %lld",
           (long long)st.mtime_ns, (long long)st.ctime_ns);
    int64_t moved = st.mtime_ns;
    REQUIRE_OK(scp_volume_unlink(v, "d/f", &e), e); /* (in a subdirectory: not the root's) */
    REQUIRE_OK(scp_volume_stat(v, "", &st, &e), e);
    CHECK(st.mtime_ns == moved);
    REQUIRE_OK(tu_vput(v, "f", "one", 3, &e), e);
    REQUIRE_OK(scp_volume_setattr_times(v, "", -1, -1, -1, 5000000000, 978307200000000000, &e), e);

    /* another process sees it, and its own setattr comes back */
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    check_root(v, 0700, 70, 71, 978307200000000000, "after reopen");
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
        if (!cv || scp_volume_stat(cv, "", &st, &e) < 0 || st.mode != 0700 || st.uid != 70) _exit(3);
        if (scp_volume_setattr(cv, "", 0750, -1, 72, INT64_MIN, &e) < 0) _exit(4);
        _exit(scp_volume_close(cv, &e) < 0 ? 5 : 0);
    }
    int ws;
    if (waitpid(pid, &ws, 0) != pid) tu_die("waitpid");
    CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child status %d", ws);
    check_root(v, 0750, 70, 72, 978307200000000000, "after another process's setattr");

    /* many commits: the manifest log folds into a slot, the entry with it */
    char name[32];
    for (int i = 0; i < 400; i++) {
        snprintf(name, sizeof name, "d/n%d", i % 50);
        REQUIRE_OK(scp_volume_setattr(v, "d", 0700 | (uint32_t)(i & 1) * 0055, -1, -1, INT64_MIN, &e), e);
        if (i % 50 == 0) REQUIRE_OK(tu_vput(v, name, "x", 1, &e), e);
    }
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    check_root(v, 0750, 70, 72, 978307200000000000, "after folds and reopen");
    CHECK(list_count(v, "") == 2);
    REQUIRE_OK(scp_volume_info_get(v, &info, &e), e);
    CHECK(info.dir_count == 1);
    CHECK_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* The parser: "/" is the root's entry, a directory; nothing else may start with '/'. */
static void test_parse(void) {
    scp_mentry ent[2] = {{.type = SCP_MTYPE_DIR, .path = "/", .id = {1}},
                         {.type = SCP_MTYPE_FILE, .path = "a", .id = {2}}};
    scp_mentry *ep[2] = {&ent[0], &ent[1]};
    scp_manifest m = {.e = ep, .n = 2, .cap = 2}, out;
    uint8_t *body;
    size_t len;
    REQUIRE_OK(scp_manifest_encode(&m, &body, &len, &e), e);
    CHECK_OK(scp_manifest_parse(body, len, &out, &e), e);
    CHECK(out.n == 2 && strcmp(out.e[0]->path, "/") == 0);
    scp_manifest_free(&out);
    free(body);
    ent[0].type = SCP_MTYPE_FILE; /* the root's entry as a file */
    REQUIRE_OK(scp_manifest_encode(&m, &body, &len, &e), e);
    CHECK(scp_manifest_parse(body, len, &out, &e) < 0 && e.code == SCP_E_INTEGRITY);
    free(body);
    ent[0].type = SCP_MTYPE_DIR;
    ent[0].path = "/a"; /* a leading slash elsewhere */
    ent[1].path = "b";
    REQUIRE_OK(scp_manifest_encode(&m, &body, &len, &e), e);
    CHECK(scp_manifest_parse(body, len, &out, &e) < 0 && e.code == SCP_E_INTEGRITY);
    free(body);
}

int main(void) {
    tu_rng rng = {0x2007};
    test_parse();
    test_api(&rng);
    return tu_exit_code("test_volume_rootattr");
}
