/* fuzz/fuzz_image.c - the readers of untrusted container images (src/image): the first byte
 * picks what the rest of the input is:
 *   0: one layer tar, applied to an empty staging root (img_apply_layers); property: nothing is
 *      created outside the root (a sentinel directory beside it stays empty), and the root can
 *      always be removed again; then filtered of what lies below /a (img_filter_layer, a
 *      protected path's files): the filtered layer has nothing left to filter;
 *   1: manifest.json of a `docker save` archive, 2: index.json of an OCI layout (img_src_open
 *      of a directory holding it): never a crash, an error or a parsed image.
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "image/internal.h"

static char base[64], root_path[96], out_path[96], work[96];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    snprintf(base, sizeof base, "/tmp/fuzz-image-XXXXXX");
    FUZZ_CHECK(mkdtemp(base) != NULL);
    snprintf(root_path, sizeof root_path, "%s/root", base);
    snprintf(out_path, sizeof out_path, "%s/outside", base);
    snprintf(work, sizeof work, "%s/work", base);
    FUZZ_CHECK(mkdir(out_path, 0755) == 0);
    return 0;
}

static void write_file(const char *dir, const char *name, const uint8_t *p, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, p, n) == (ssize_t)n);
    close(fd);
}

static int empty_dir(const char *p) {
    int n = 0;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s/x", p);
    struct stat st;
    /* cheap check: the sentinel directory's link count and a probe name */
    FUZZ_CHECK(stat(p, &st) == 0);
    n = st.st_nlink != 2 || access(cmd, F_OK) == 0;
    return !n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0] % 3;
    data++, size--;
    int top = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FUZZ_CHECK(top >= 0);
    if (mode == 0) {
        FUZZ_CHECK(mkdir(work, 0700) == 0 && mkdir(root_path, 0755) == 0);
        write_file(work, "layer.tar", data, size);
        img_src src;
        memset(&src, 0, sizeof src);
        snprintf(src.dir, sizeof src.dir, "%s", work);
        src.n_layers = 1;
        snprintf(src.layers[0].path, sizeof src.layers[0].path, "layer.tar");
        int root = open(root_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        FUZZ_CHECK(root >= 0);
        scp_err e;
        (void)img_apply_layers(&src, root, NULL, &e);
        close(root);
        FUZZ_CHECK(empty_dir(out_path));
        FUZZ_CHECK(img_remove_tree(top, root_path + 1, &e) == 0);
        /* the same layer without what lies below /a (a protected path's files): what the
         * filter writes holds nothing below /a any more */
        static const char *const prot[] = {"/a"};
        char filtered[128], again[128];
        size_t dropped = 0;
        snprintf(filtered, sizeof filtered, "%s/filtered.tar", work);
        snprintf(again, sizeof again, "%s/again.tar", work);
        if (img_filter_layer(&src, 0, prot, 1, filtered, &dropped, &e) == 0) {
            snprintf(src.layers[0].path, sizeof src.layers[0].path, "%s", filtered);
            dropped = 1;
            FUZZ_CHECK(img_filter_layer(&src, 0, prot, 1, again, &dropped, &e) == 0 && dropped == 0);
        }
    } else {
        FUZZ_CHECK(mkdir(work, 0700) == 0);
        write_file(work, mode == 1 ? "manifest.json" : "index.json", data, size);
        img_src src;
        scp_err e;
        if (img_src_open(work, NULL, &src, &e) == 0) img_src_close(&src);
    }
    scp_err e;
    FUZZ_CHECK(img_remove_tree(top, work + 1, &e) == 0);
    close(top);
    return 0;
}
