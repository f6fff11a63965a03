/* tests/volume/test_volume_family.c - the fork family's region (SCP_VOLUME_FAMILY=1;
 * docs/volume-format.md, "Fork family's shared state"): the manifest-log records' plaintext
 * that members seal, taken by the other members' walks instead of decrypting the records.
 *
 * Asserts:
 * 1. "family": a process opens a volume in shared mode with the switch on and forks a child
 *    that writes one file N times and creates another; the parent then reads both: it sees
 *    every write, and its catch-up took the child's records from the region (hits >= N + 1,
 *    no miss); a fresh open without the switch reads the same (the files are the truth);
 * 2. "torn": an entry whose seq is odd (a member killed while rewriting it) is never taken,
 *    even when its generation and chain value match a record in the log: the body scribbled,
 *    seq made odd, the walk decrypts instead (a miss) and reads the write (without the seq
 *    check the scribbled body fails to parse and the log ends there: the write is not seen);
 * 3. "killed": a child SIGKILLed inside the region's update (after the entry's generation and
 *    chain, before its body; the volume lock held) leaves the entry odd; a second child
 *    writes and reuses the slot; the parent reads every committed write, from the region
 *    (the killed write, whose journal record landed before the kill, may be seen or not, as
 *    any write a kill interrupts; the parent and a fresh open agree);
 * 4. "outsider": an unrelated process (this binary exec'd: no region of the family's; it
 *    makes its own) writes beside the family and leaves without a close (as the shield does:
 *    its records stay in the log): a member reads its write (decrypted: misses), and the
 *    outsider reads the family's writes; a member's write after it is read by the parent.
 * 5. "off": without the variable there is no region and nothing changes (v->fam NULL).
 */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"
#include "volume/internal.h"

#define N 16
#define CS 4096u

static uint8_t key[SCP_VOLUME_KEY_LEN];

static scp_volume *open_vol(const char *vd) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    return v;
}

/* Write byte b at offset off of path (created if absent) with pwrite. */
static void put(scp_volume *v, const char *path, uint8_t b, uint64_t off) {
    scp_err e;
    tu_err_clear(&e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, path, O_RDWR | O_CREAT, 0600, &e), e);
    uint8_t buf[64];
    memset(buf, b, sizeof buf);
    REQUIRE(scp_vfile_pwrite(f, buf, sizeof buf, off, &e) == (ssize_t)sizeof buf);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
}

/* Check that path holds byte b at offset off (64 bytes), read through an open handle. */
static void expect(scp_volume *v, const char *path, uint8_t b, uint64_t off) {
    scp_err e;
    tu_err_clear(&e);
    scp_vfile *f = scp_vfile_open(v, path, O_RDONLY, 0, &e);
    CHECKF(f != NULL, "%s: cannot open (%s)", path, e.msg);
    if (!f) return;
    uint8_t buf[64];
    ssize_t n = scp_vfile_pread(f, buf, sizeof buf, off, &e);
    CHECKF(n == (ssize_t)sizeof buf, "%s: read %zd (%s)", path, n, e.msg);
    for (size_t i = 0; n == (ssize_t)sizeof buf && i < sizeof buf; i++)
        if (buf[i] != b) {
            CHECKF(0, "%s at %llu: byte %zu is %u, not %u", path, (unsigned long long)off, i, buf[i], b);
            break;
        }
    scp_vfile_close(f, &e);
}

static uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static void wait_ok(pid_t c) {
    int st;
    REQUIRE(waitpid(c, &st, 0) == c);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
}

/* A child that writes /f N times (byte i at offset 0) and creates /g. */
static void child_writes(scp_volume *v) {
    scp_err e;
    tu_err_clear(&e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "/f", O_RDWR, 0, &e), e);
    uint8_t buf[64];
    for (int i = 1; i <= N; i++) {
        memset(buf, i, sizeof buf);
        REQUIRE(scp_vfile_pwrite(f, buf, sizeof buf, 0, &e) == (ssize_t)sizeof buf);
    }
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    put(v, "/g", 0x47, 0);
}

static void kill_self(void) { raise(SIGKILL); }

/* The outsider: open dir's volume afresh (its own region, if any), check the family's writes,
 * write /o. */
static int outsider(const char *vd) {
    setenv("SCP_VOLUME_FAMILY", "1", 1);
    scp_volume *v = open_vol(vd);
    scp_volume_set_shared(v);
    expect(v, "/f", 0x77, 64);
    expect(v, "/g", 0x47, 0);
    expect(v, "/h", 0x48, 0);
    put(v, "/o", 0x4f, 0);
    /* Left without a close, as the shield leaves: a close would fold the log, and the family
     * would reload the slot instead of walking this process's records. */
    _exit(tu_failures ? 1 : 0);
}

int main(int argc, char **argv) {
    memset(key, 9, sizeof key);
    if (argc == 3 && strcmp(argv[1], "outsider") == 0) return outsider(argv[2]);
    char *root = tu_tmpdir("family");
    char *vd = tu_path(root, "vol");
    scp_err e;
    tu_err_clear(&e);
    REQUIRE_OK(scp_volume_create(vd, key, CS, &e), e);

    tu_context = "off";
    unsetenv("SCP_VOLUME_FAMILY");
    scp_volume *v = open_vol(vd);
    CHECK(v->fam == NULL);
    put(v, "/f", 0, 0);
    REQUIRE_OK(scp_volume_close(v, &e), e);

    tu_context = "family";
    setenv("SCP_VOLUME_FAMILY", "1", 1);
    v = open_vol(vd);
    REQUIRE(v->fam != NULL);
    scp_volume_set_shared(v);
    expect(v, "/f", 0, 0); /* (the file loaded here before the child's writes) */
    pid_t c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        child_writes(v);
        _exit(tu_failures ? 1 : 0);
    }
    wait_ok(c);
    uint64_t h0 = ld(&v->fam->hits), m0 = ld(&v->fam->misses);
    CHECKF(ld(&v->fam->stores) >= N + 1, "stores %llu", (unsigned long long)ld(&v->fam->stores));
    expect(v, "/f", N, 0);
    expect(v, "/g", 0x47, 0);
    uint64_t h1 = ld(&v->fam->hits), m1 = ld(&v->fam->misses);
    CHECKF(h1 - h0 >= N + 1, "hits %llu", (unsigned long long)(h1 - h0));
    CHECKF(m1 == m0, "misses %llu", (unsigned long long)(m1 - m0));

    tu_context = "torn";
    /* A child writes once more; before the parent walks that record, its entry is made to
     * look like one a killed member was rewriting: seq odd, body scribbled, generation and
     * chain value intact. */
    uint64_t gen_before = v->gen;
    c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        put(v, "/f", 0x55, 0);
        _exit(tu_failures ? 1 : 0);
    }
    wait_ok(c);
    {
        struct vol_fam_ent *en = &v->fam->ent[(gen_before + 1) % VOL_FAM_SLOTS];
        CHECK(en->gen == gen_before + 1 && !(en->seq & 1));
        __atomic_store_n(&en->seq, en->seq + 1, __ATOMIC_RELEASE);
        memset(en->body, 0xff, en->len);
    }
    m0 = ld(&v->fam->misses);
    expect(v, "/f", 0x55, 0);
    CHECKF(ld(&v->fam->misses) > m0, "misses %llu", (unsigned long long)(ld(&v->fam->misses) - m0));

    tu_context = "killed";
    gen_before = v->gen;
    c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        vol_test_fam_midstore = kill_self;
        put(v, "/f", 0x66, 0); /* (killed in its commit's seal: never committed) */
        _exit(3);
    }
    int st;
    REQUIRE(waitpid(c, &st, 0) == c);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
    {
        const struct vol_fam_ent *en = &v->fam->ent[(gen_before + 1) % VOL_FAM_SLOTS];
        CHECK(en->seq & 1); /* left mid-update */
    }
    c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        put(v, "/f", 0x77, 64);
        put(v, "/h", 0x48, 0);
        _exit(tu_failures ? 1 : 0);
    }
    wait_ok(c);
    {
        const struct vol_fam_ent *en = &v->fam->ent[(gen_before + 1) % VOL_FAM_SLOTS];
        CHECK(!(en->seq & 1)); /* reused by the second child */
    }
    h0 = ld(&v->fam->hits);
    /* The killed child's write had appended its journal record before the kill: as any write
     * a kill interrupts, it may be seen or not (lazy publication's follow past the named
     * commit takes it); the parent and a fresh open must agree. */
    uint8_t at0 = 0;
    {
        scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "/f", O_RDONLY, 0, &e), e);
        REQUIRE(scp_vfile_pread(f, &at0, 1, 0, &e) == 1);
        scp_vfile_close(f, &e);
        CHECKF(at0 == 0x55 || at0 == 0x66, "/f at 0: %u", at0);
    }
    expect(v, "/f", at0, 0);
    expect(v, "/f", 0x77, 64);
    expect(v, "/h", 0x48, 0);
    CHECKF(ld(&v->fam->hits) - h0 >= 2, "hits %llu", (unsigned long long)(ld(&v->fam->hits) - h0));

    tu_context = "outsider";
    pid_t o = fork();
    REQUIRE(o >= 0);
    if (o == 0) {
        char *av[] = {argv[0], "outsider", vd, NULL};
        execv("/proc/self/exe", av);
        _exit(127);
    }
    /* (the family beside it: this process stays open, its child writes meanwhile) */
    wait_ok(o);
    m0 = ld(&v->fam->misses);
    expect(v, "/o", 0x4f, 0);
    CHECKF(ld(&v->fam->misses) > m0, "misses %llu", (unsigned long long)(ld(&v->fam->misses) - m0));
    c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        put(v, "/o", 0x50, 64);
        _exit(tu_failures ? 1 : 0);
    }
    wait_ok(c);
    expect(v, "/o", 0x50, 64);
    REQUIRE_OK(scp_volume_close(v, &e), e);

    tu_context = "fresh";
    unsetenv("SCP_VOLUME_FAMILY");
    v = open_vol(vd);
    CHECK(v->fam == NULL);
    expect(v, "/f", at0, 0);
    expect(v, "/f", 0x77, 64);
    expect(v, "/g", 0x47, 0);
    expect(v, "/h", 0x48, 0);
    expect(v, "/o", 0x4f, 0);
    expect(v, "/o", 0x50, 64);
    REQUIRE_OK(scp_volume_close(v, &e), e);

    tu_rm_rf(root);
    free(root);
    free(vd);
    return tu_exit_code("test_volume_family");
}
