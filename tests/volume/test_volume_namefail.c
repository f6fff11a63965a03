/* tests/volume/test_volume_namefail.c - a namespace operation whose manifest commit fails
 * leaves the names as they were.
 *
 * The rename of a name that is no directory, a hard link and an unlink change the manifest in
 * place and note what they changed (volume.c: rename_name_locked, link_locked,
 * remove_committed); when the commit fails they must put everything back: the entries, the
 * link counts of a file's other names, the directories' times. Here every write to the
 * manifest's files (the log and the slots) fails with EIO while `failing` is set (pwrite
 * wrapped), one operation at a time, and then:
 *  - the operation reports the failure, and every name reads as before, with its link count
 *    and its directory's times;
 *  - the same operation then succeeds, and the volume reopened shows its result.
 * Cases: a rename to a new name; a rename over a name of a file that has a second name (the
 * replaced file keeps that name, nlink 2 -> 1 after the success); a rename of one name of a
 * twice-linked file; a hard link; an unlink of a twice-linked file's name.
 */
#include "testutil.h"

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);

static scp_err e;
static int failing;
static int failed; /* writes refused while failing */

static int is_manifest(int fd) {
    char p[64], t[4096];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, t, sizeof t - 1);
    if (n < 0) return 0;
    t[n] = 0;
    return strstr(t, "/manifest.") != NULL;
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
    if (failing && is_manifest(fd)) {
        failed++;
        errno = EIO;
        return -1;
    }
    return __real_pwrite(fd, buf, n, off);
}

static void check_missing(scp_volume *v, const char *path) {
    scp_vstat st;
    CHECKF(scp_volume_stat(v, path, &st, &e) < 0 && e.code == SCP_E_NOENT, "'%s' exists", path);
}

/* A stat of every name the cases use, as text: what must not change across a failure. */
static void snapshot(scp_volume *v, char *out, size_t cap) {
    static const char *const names[] = {"", "d", "d/a", "d/b", "d/b2", "d/c", "d/l1", "d/l2",
                                        "e", "e/x", "e/y"};
    size_t k = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        scp_vstat st;
        if (scp_volume_stat(v, names[i], &st, &e) < 0) {
            k += (size_t)snprintf(out + k, cap - k, "%s:-;", names[i]);
        } else {
            k += (size_t)snprintf(out + k, cap - k, "%s:%d,%llu,%u,%llu,%lld,%lld;", names[i], (int)st.type,
                                  (unsigned long long)st.size, st.nlink, (unsigned long long)st.ino,
                                  (long long)st.mtime_ns, (long long)st.ctime_ns);
        }
        if (k >= cap) tu_die("snapshot too long");
    }
}

typedef int (*op_fn)(scp_volume *v);
static int op_rename_new(scp_volume *v) { return scp_volume_rename(v, "d/a", "d/c", &e); }
static int op_rename_over(scp_volume *v) { return scp_volume_rename(v, "d/c", "d/b", &e); }
static int op_rename_linked(scp_volume *v) { return scp_volume_rename(v, "d/l1", "e/y", &e); }
static int op_link(scp_volume *v) { return scp_volume_link(v, "e/x", "d/a", &e); }
static int op_unlink(scp_volume *v) { return scp_volume_unlink(v, "d/l2", &e); }

/* op fails with the manifest's writes refused and leaves every name as it was; then works. */
static void fail_then_work(scp_volume *v, const char *what, op_fn op) {
    char before[4096], after[4096];
    snapshot(v, before, sizeof before);
    failing = 1;
    failed = 0;
    int rc = op(v);
    failing = 0;
    CHECKF(rc < 0, "%s: succeeded with every manifest write refused", what);
    CHECKF(failed > 0, "%s: wrote nothing to the manifest", what);
    snapshot(v, after, sizeof after);
    CHECKF(strcmp(before, after) == 0, "%s: a failed commit changed the names:\n  before %s\n  after  %s", what,
           before, after);
    CHECKF(op(v) == 0, "%s: failed after the writes came back: %s", what, e.msg);
}

static void test_cases(tu_rng *rng) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_volume *v = tu_new_volume(rng, "namefail", key, &root, &vd);
    REQUIRE_OK(scp_volume_mkdir(v, "d", 0755, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, "e", 0755, &e), e);
    REQUIRE_OK(tu_vput(v, "d/a", "A", 1, &e), e);
    REQUIRE_OK(tu_vput(v, "d/b", "BB", 2, &e), e);
    REQUIRE_OK(scp_volume_link(v, "d/b", "d/b2", &e), e);
    REQUIRE_OK(tu_vput(v, "d/l1", "LLL", 3, &e), e);
    REQUIRE_OK(scp_volume_link(v, "d/l1", "d/l2", &e), e);
    REQUIRE_OK(tu_vput(v, "e/x", "XXXX", 4, &e), e);
    /* (a name of its own, to a new name) */
    fail_then_work(v, "rename to a new name", op_rename_new);
    check_missing(v, "d/a");
    tu_check_content(v, "d/c", "A");
    /* (over one of two names of another file) */
    fail_then_work(v, "rename over a linked name", op_rename_over);
    check_missing(v, "d/c");
    tu_check_content(v, "d/b", "A");
    tu_check_content(v, "d/b2", "BB");
    CHECK(tu_nlink(v, "d/b") == 1 && tu_nlink(v, "d/b2") == 1);
    /* (one of two names, into another directory) */
    fail_then_work(v, "rename of a linked name", op_rename_linked);
    check_missing(v, "d/l1");
    tu_check_content(v, "e/y", "LLL");
    CHECK(tu_nlink(v, "e/y") == 2 && tu_nlink(v, "d/l2") == 2);
    fail_then_work(v, "hard link", op_link);
    CHECK(tu_nlink(v, "d/a") == 2 && tu_nlink(v, "e/x") == 2);
    fail_then_work(v, "unlink of a linked name", op_unlink);
    check_missing(v, "d/l2");
    CHECK(tu_nlink(v, "e/y") == 1);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    /* another opener sees the results */
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    char s[4096];
    snapshot(v, s, sizeof s);
    tu_check_content(v, "d/b", "A");
    tu_check_content(v, "d/b2", "BB");
    tu_check_content(v, "e/y", "LLL");
    tu_check_content(v, "d/a", "XXXX");
    check_missing(v, "d/c");
    check_missing(v, "d/l1");
    check_missing(v, "d/l2");
    CHECK(tu_nlink(v, "d/a") == 2 && tu_nlink(v, "e/x") == 2 && tu_nlink(v, "e/y") == 1);
    CHECKF(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0, "verify: problems or %s", e.msg);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

int main(void) {
    tu_rng rng = {0x7a3e};
    test_cases(&rng);
    return tu_exit_code("test_volume_namefail");
}
