/* tests/volume/test_volume_links.c - hard links inside a protected volume (scp_volume_link).
 *
 * Asserts, through the public API and the bytes in the volume directory:
 *  - two names of one file read and write the same bytes, before and after a commit, after the
 *    volume is closed and opened again, and after a writer that wrote through the second name
 *    and fsynced is killed (SIGKILL) without closing anything;
 *  - nlink and the inode number agree on every name; chmod through one name shows on the other;
 *  - rename of one name over another name of the same file does nothing (POSIX);
 *  - unlink or rename-over of one name keeps the objects; removing the last name frees them;
 *  - EEXIST, EPERM (a directory), ENOENT (an open file with no name left);
 *  - a manifest whose entries share an id but disagree (size) is refused by the parser.
 */
#include <signal.h>
#include <sys/wait.h>

#include "manifestutil.h"

static scp_err e;

static int count_objects(const char *vd) {
    char *od = tu_path(vd, "objects");
    DIR *d = opendir(od);
    free(od);
    if (!d) tu_die("opendir objects");
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void append(scp_volume *v, const char *path, const char *s, int sync) {
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, path, O_RDWR | O_APPEND, 0, &e), e);
    CHECK(scp_vfile_write(f, s, strlen(s), &e) == (ssize_t)strlen(s));
    if (sync) CHECK_OK(scp_vfile_fsync(f, &e), e);
    CHECK_OK(scp_vfile_close(f, &e), e);
}

static void test_names(tu_rng *rng) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_volume *v = tu_new_volume(rng, "links", key, &root, &vd);
    REQUIRE_OK(scp_volume_mkdir(v, "d", 0755, &e), e);
    REQUIRE_OK(tu_vput(v, "a", "one", 3, &e), e);
    int objs_one = count_objects(vd);
    CHECK_OK(scp_volume_link(v, "a", "d/b", &e), e);
    CHECK(tu_nlink(v, "a") == 2 && tu_nlink(v, "d/b") == 2);
    scp_vstat sa, sb;
    CHECK_OK(scp_volume_stat(v, "a", &sa, &e), e);
    CHECK_OK(scp_volume_stat(v, "d/b", &sb, &e), e);
    CHECK(sa.ino == sb.ino);
    CHECK(count_objects(vd) == objs_one); /* a name, no new objects */

    /* write through the second name, read through the first: uncommitted, then committed */
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "d/b", O_RDWR, 0, &e), e);
    CHECK(scp_vfile_pwrite(f, "-two", 4, 3, &e) == 4);
    tu_check_content(v, "a", "one-two");
    CHECK_OK(scp_vfile_fsync(f, &e), e);
    CHECK_OK(scp_vfile_close(f, &e), e);
    tu_check_content(v, "a", "one-two");
    CHECK_OK(scp_volume_setattr(v, "a", 0600, -1, -1, INT64_MIN, &e), e);
    CHECK_OK(scp_volume_stat(v, "d/b", &sb, &e), e);
    CHECK(sb.mode == 0600 && sb.size == 7);

    /* errors as the kernel gives them */
    CHECK(scp_volume_link(v, "a", "d/b", &e) < 0 && e.sys == EEXIST);
    CHECK(scp_volume_link(v, "d", "d2", &e) < 0 && e.sys == EPERM);
    CHECK(scp_volume_link(v, "nope", "x", &e) < 0 && e.sys == ENOENT);
    CHECK(scp_volume_link(v, "a", "nodir/x", &e) < 0 && e.sys == ENOENT);

    /* a third name through an open handle (linkat AT_EMPTY_PATH) */
    f = REQUIRE_PTR(scp_vfile_open(v, "a", O_RDONLY, 0, &e), e);
    CHECK_OK(scp_vfile_link(f, "c", &e), e);
    CHECK(tu_nlink(v, "a") == 3 && tu_nlink(v, "c") == 3);
    scp_vstat fs;
    CHECK_OK(scp_vfile_stat(f, &fs, &e), e);
    CHECK(fs.nlink == 3);
    CHECK_OK(scp_vfile_close(f, &e), e);

    /* rename between two names of one file: nothing happens */
    CHECK_OK(scp_volume_rename(v, "a", "c", &e), e);
    CHECK(tu_nlink(v, "a") == 3 && tu_nlink(v, "c") == 3);
    tu_check_content(v, "c", "one-two");

    /* closed and opened again: the links are in the manifest */
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    CHECK(tu_nlink(v, "a") == 3 && tu_nlink(v, "d/b") == 3 && tu_nlink(v, "c") == 3);
    tu_check_content(v, "d/b", "one-two");
    append(v, "c", "-three", 0);
    tu_check_content(v, "a", "one-two-three");

    /* rename another file over one name: the others keep the file */
    REQUIRE_OK(tu_vput(v, "other", "OTHER", 5, &e), e);
    CHECK_OK(scp_volume_rename(v, "other", "c", &e), e);
    tu_check_content(v, "c", "OTHER");
    CHECK(tu_nlink(v, "c") == 1 && tu_nlink(v, "a") == 2);
    tu_check_content(v, "a", "one-two-three");

    /* an open handle outlives its names */
    f = REQUIRE_PTR(scp_vfile_open(v, "a", O_RDWR, 0, &e), e);
    CHECK_OK(scp_volume_unlink(v, "a", &e), e);
    CHECK(tu_nlink(v, "d/b") == 1);
    tu_check_content(v, "d/b", "one-two-three");
    CHECK(scp_vfile_pwrite(f, "!", 1, 13, &e) == 1);
    CHECK_OK(scp_vfile_fsync(f, &e), e); /* commits through the name that is left */
    tu_check_content(v, "d/b", "one-two-three!");
    CHECK_OK(scp_vfile_close(f, &e), e); /* (the objects stay: d/b names them) */
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    tu_check_content(v, "d/b", "one-two-three!");
    f = REQUIRE_PTR(scp_vfile_open(v, "d/b", O_RDWR, 0, &e), e);
    int objs_before = count_objects(vd);
    CHECK_OK(scp_volume_unlink(v, "d/b", &e), e);
    CHECK_OK(scp_vfile_stat(f, &fs, &e), e);
    CHECK(fs.nlink == 0);
    CHECK(scp_vfile_link(f, "again", &e) < 0 && e.sys == ENOENT);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_sync(v, &e), e); /* the removal is durable: the objects may go */
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    CHECKF(count_objects(vd) < objs_before, "objects after the last name went: %d, before %d",
           count_objects(vd), objs_before);
    CHECK(tu_nlink(v, "c") == 1);
    CHECK_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* A writer that links, writes through the new name, fsyncs and is killed: both names read
 * what it wrote. */
static void test_kill(tu_rng *rng) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_volume *v = tu_new_volume(rng, "links-kill", key, &root, &vd);
    REQUIRE_OK(tu_vput(v, "x", "base", 4, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
        if (!cv || scp_volume_link(cv, "x", "y", &e) < 0) _exit(3);
        scp_vfile *f = scp_vfile_open(cv, "y", O_RDWR | O_APPEND, 0, &e);
        if (!f || scp_vfile_write(f, "+kill", 5, &e) != 5 || scp_vfile_fsync(f, &e) < 0) _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) tu_die("waitpid");
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status %d", st);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    tu_check_content(v, "x", "base+kill");
    tu_check_content(v, "y", "base+kill");
    CHECK(tu_nlink(v, "x") == 2);
    CHECK_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* The parser accepts names of one file only when they agree. */
static void test_parse(void) {
    scp_mentry ent[2];
    memset(ent, 0, sizeof ent);
    ent[0].type = ent[1].type = SCP_MTYPE_FILE;
    ent[0].path = "a";
    ent[1].path = "b";
    memset(ent[0].id, 7, SCP_FILEID_LEN);
    memset(ent[1].id, 7, SCP_FILEID_LEN);
    ent[0].size = ent[1].size = 3;
    scp_mentry *ep[2] = {&ent[0], &ent[1]};
    scp_manifest m = {.e = ep, .n = 2, .cap = 2}, out;
    uint8_t *body;
    size_t len;
    REQUIRE_OK(scp_manifest_encode(&m, &body, &len, &e), e);
    CHECK_OK(scp_manifest_parse(body, len, &out, &e), e);
    CHECK(out.n == 2 && out.e[0]->nlink == 2 && out.e[1]->nlink == 2);
    scp_manifest_free(&out);
    free(body);
    ent[1].size = 4; /* the same id, another size: not two names of one file */
    REQUIRE_OK(scp_manifest_encode(&m, &body, &len, &e), e);
    CHECK(scp_manifest_parse(body, len, &out, &e) < 0 && e.code == SCP_E_INTEGRITY);
    free(body);
    ent[1].size = 3;
    ent[1].type = SCP_MTYPE_DIR; /* a directory never shares its id */
    ent[1].size = 0;
    ent[0].size = 0;
    ent[0].type = SCP_MTYPE_DIR;
    REQUIRE_OK(scp_manifest_encode(&m, &body, &len, &e), e);
    CHECK(scp_manifest_parse(body, len, &out, &e) < 0);
    free(body);
}

/* A larger manifest through the parser's shortcuts (session 60): the parent found once for a
 * run of names in one directory, and the count of names without a sort when no id repeats.
 * Names with '-' after a directory's sort between it and its children. Then a name whose
 * parent is a file, inside such a run: malformed. */
static void test_parse_many(void) {
    enum { D = 10, F = 150, N = D * (2 + 2 * F + 1) + 1 };
    static scp_mentry ent[N];
    static char names[N][32];
    scp_mentry *ep[N];
    size_t n = 0;
    memset(ent, 0, sizeof ent);
    for (int d = 0; d < D; d++) {
        snprintf(names[n], sizeof names[n], "d%d", d);
        ent[n++].type = SCP_MTYPE_DIR;
        snprintf(names[n], sizeof names[n], "d%d/s", d);
        ent[n++].type = SCP_MTYPE_DIR;
        snprintf(names[n], sizeof names[n], "d%d-x", d);
        ent[n++].type = SCP_MTYPE_FILE;
        for (int f = 0; f < F; f++) {
            snprintf(names[n], sizeof names[n], "d%d/s/f%03d", d, f);
            ent[n++].type = SCP_MTYPE_FILE;
            snprintf(names[n], sizeof names[n], "d%d/g%03d", d, f);
            ent[n++].type = SCP_MTYPE_FILE;
        }
    }
    for (size_t i = 0; i < n; i++) ent[i].path = names[i];
    tu_entries_sorted(ent, ep, n);
    scp_manifest out;
    CHECK_OK(tu_reparse(ep, n, &out, &e), e);
    int ones = out.n == n;
    for (size_t i = 0; ones && i < out.n; i++) ones = out.e[i]->nlink == 1;
    CHECKF(ones, "%zu distinct ids: every nlink 1", n);
    scp_manifest_free(&out);
    /* two names of one file, far apart: counted by the sort */
    size_t a = 5, b = n - 7;
    REQUIRE(ep[a]->type == SCP_MTYPE_FILE && ep[b]->type == SCP_MTYPE_FILE);
    memcpy(ep[b]->id, ep[a]->id, SCP_FILEID_LEN);
    CHECK_OK(tu_reparse(ep, n, &out, &e), e);
    size_t twos = 0;
    for (size_t i = 0; i < out.n; i++) twos += out.e[i]->nlink == 2;
    CHECKF(twos == 2 && out.e[a]->nlink == 2 && out.e[b]->nlink == 2, "one linked pair: %zu names with 2", twos);
    scp_manifest_free(&out);
    /* a name below a file, after others of its directory: the parent check still fails it */
    static char bad[] = "d3/s/f000/x";
    scp_mentry x = {.type = SCP_MTYPE_FILE, .path = bad};
    memset(x.id, 0xee, SCP_FILEID_LEN);
    scp_mentry *ep2[N + 1];
    memcpy(ep2, ep, n * sizeof *ep);
    ep2[n] = &x;
    qsort(ep2, n + 1, sizeof *ep2, tu_cmp_entp);
    CHECK(tu_reparse(ep2, n + 1, &out, &e) < 0 && e.code == SCP_E_INTEGRITY);
}

int main(void) {
    tu_rng rng = {0x11c5};
    test_parse();
    test_parse_many();
    test_names(&rng);
    test_kill(&rng);
    return tu_exit_code("test_volume_links");
}
