/* image/archive_lazy.c - libarchive, loaded at its first use.
 *
 * scpctl links the image builder, and libarchive brings twelve libraries with it (libxml2,
 * ICU's two, libstdc++, the compressors...). Mapping and relocating them cost every scpctl
 * command 2-3 ms of CPU at start (bench/RESULTS.md, bulk24), `scpctl run` included, which
 * never reads an archive: a third of the start-up of a sqlite3 command under `scpctl run`
 * beyond plain sqlite3's. So, as the shield does with OpenSSL (shield/openssl_lazy.c), this
 * file defines, with hidden visibility, each libarchive function that src/image calls, as a
 * stub that calls through a table filled by dlopen and dlsym; scp_image is linked without
 * libarchive. The stubs' prototypes are checked by the compiler against libarchive's headers.
 * Hidden definitions are not exported, so libarchive's own calls, once loaded, bind to its
 * own functions.
 *
 * Every use of libarchive begins with archive_read_new or archive_write_new (an entry
 * without an archive is never written: output.c makes entries only for an open writer), and
 * each of those call sites first calls img_archive_load, which reports a missing library
 * as an error; the other stubs are reached only with an object such a call returned.
 *
 * Threads and fork: no lock. Two threads that load at once both fill a table and publish it
 * with a compare-and-swap (the loser frees its copy); dlopen is reference counted.
 */
#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

#include "image/internal.h"

/* libarchive 3's soname has been libarchive.so.13 since 3.0 */
_Static_assert(ARCHIVE_VERSION_NUMBER >= 3000000 && ARCHIVE_VERSION_NUMBER < 4000000,
               "LIBARCHIVE names libarchive 3's soname");
#define LIBARCHIVE "libarchive.so.13"

/* Every libarchive function src/image calls: F(return type, name, (parameters), (arguments)),
 * V(name, (parameters), (arguments)) for those returning void. */
#define ARCHIVE_FNS(F, V) \
    F(mode_t, archive_entry_filetype, (struct archive_entry *e), (e)) \
    V(archive_entry_free, (struct archive_entry *e), (e)) \
    F(la_int64_t, archive_entry_gid, (struct archive_entry *e), (e)) \
    F(const char *, archive_entry_hardlink, (struct archive_entry *e), (e)) \
    F(time_t, archive_entry_mtime, (struct archive_entry *e), (e)) \
    F(long, archive_entry_mtime_nsec, (struct archive_entry *e), (e)) \
    F(struct archive_entry *, archive_entry_new, (void), ()) \
    F(const char *, archive_entry_pathname, (struct archive_entry *e), (e)) \
    F(mode_t, archive_entry_perm, (struct archive_entry *e), (e)) \
    V(archive_entry_set_filetype, (struct archive_entry *e, unsigned int t), (e, t)) \
    V(archive_entry_set_gid, (struct archive_entry *e, la_int64_t g), (e, g)) \
    V(archive_entry_set_mtime, (struct archive_entry *e, time_t s, long ns), (e, s, ns)) \
    V(archive_entry_set_pathname, (struct archive_entry *e, const char *p), (e, p)) \
    V(archive_entry_set_perm, (struct archive_entry *e, mode_t m), (e, m)) \
    V(archive_entry_set_size, (struct archive_entry *e, la_int64_t s), (e, s)) \
    V(archive_entry_set_symlink, (struct archive_entry *e, const char *p), (e, p)) \
    V(archive_entry_set_uid, (struct archive_entry *e, la_int64_t u), (e, u)) \
    F(la_int64_t, archive_entry_size, (struct archive_entry *e), (e)) \
    F(const char *, archive_entry_symlink, (struct archive_entry *e), (e)) \
    F(la_int64_t, archive_entry_uid, (struct archive_entry *e), (e)) \
    F(const char *, archive_error_string, (struct archive *a), (a)) \
    F(la_int64_t, archive_filter_bytes, (struct archive *a, int n), (a, n)) \
    F(la_ssize_t, archive_read_data, (struct archive *a, void *p, size_t n), (a, p, n)) \
    F(int, archive_read_data_into_fd, (struct archive *a, int fd), (a, fd)) \
    F(int, archive_read_free, (struct archive *a), (a)) \
    F(struct archive *, archive_read_new, (void), ()) \
    F(int, archive_read_next_header, (struct archive *a, struct archive_entry **e), (a, e)) \
    F(int, archive_read_open_fd, (struct archive *a, int fd, size_t bs), (a, fd, bs)) \
    F(int, archive_read_open_filename, (struct archive *a, const char *f, size_t bs), (a, f, bs)) \
    F(int, archive_read_support_filter_all, (struct archive *a), (a)) \
    F(int, archive_read_support_format_tar, (struct archive *a), (a)) \
    F(int, archive_write_add_filter_none, (struct archive *a), (a)) \
    F(int, archive_write_close, (struct archive *a), (a)) \
    F(la_ssize_t, archive_write_data, (struct archive *a, const void *p, size_t n), (a, p, n)) \
    F(int, archive_write_free, (struct archive *a), (a)) \
    F(int, archive_write_header, (struct archive *a, struct archive_entry *e), (a, e)) \
    F(struct archive *, archive_write_new, (void), ()) \
    F(int, archive_write_open_fd, (struct archive *a, int fd), (a, fd)) \
    F(int, archive_write_open_filename, (struct archive *a, const char *f), (a, f)) \
    F(int, archive_write_set_bytes_in_last_block, (struct archive *a, int n), (a, n)) \
    F(int, archive_write_set_format_pax_restricted, (struct archive *a), (a))

#define FIELD(ret, name, params, args) ret(*name) params;
#define VFIELD(name, params, args) void(*name) params;
struct archive_fns {
    ARCHIVE_FNS(FIELD, VFIELD)
};

static struct archive_fns *tab;

/* dlsym into a function pointer: POSIX guarantees the conversion, ISO C does not name it */
#define SYM(ret, name, params, args) \
    if (!(t->name = (ret(*) params)dlsym(h, #name))) return #name;
#define VSYM(name, params, args) SYM(void, name, params, args)
static const char *syms(void *h, struct archive_fns *t) {
    ARCHIVE_FNS(SYM, VSYM)
    return NULL;
}

int img_archive_load(scp_err *err) {
    if (__atomic_load_n(&tab, __ATOMIC_ACQUIRE)) return 0;
    void *h = dlopen(LIBARCHIVE, RTLD_NOW | RTLD_LOCAL);
    if (!h) return scp_fail(err, SCP_E_NOTSUP, ENOENT, "cannot load %s, which reads and writes image layers: %s", LIBARCHIVE, dlerror());
    struct archive_fns *t = calloc(1, sizeof *t);
    if (!t) {
        dlclose(h);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    const char *missing = syms(h, t);
    if (missing) {
        free(t);
        dlclose(h);
        return scp_fail(err, SCP_E_NOTSUP, ENOENT, "%s has no %s", LIBARCHIVE, missing);
    }
    struct archive_fns *none = NULL;
    if (!__atomic_compare_exchange_n(&tab, &none, t, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) free(t);
    return 0; /* (h stays open for the process, as a linked library would) */
}

static const struct archive_fns *fns(void) {
    const struct archive_fns *t = __atomic_load_n(&tab, __ATOMIC_ACQUIRE);
    /* every path to a stub passes img_archive_load first (the top of this file) */
    assert(t);
    if (!t) abort();
    return t;
}

#define STUB(ret, name, params, args) \
    __attribute__((visibility("hidden"))) ret name params { return fns()->name args; }
#define VSTUB(name, params, args) \
    __attribute__((visibility("hidden"))) void name params { fns()->name args; }
ARCHIVE_FNS(STUB, VSTUB)
