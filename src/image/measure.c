/* image/measure.c - the measurement of a secure image and opening files inside an image root:
 * the parts that the local attestation service and the runtime inside a container share with
 * the image builder (this file needs no libarchive).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "image/internal.h"
#include "runtime/attest_run.h"
#include "runtime/elfdeps.h"
#include "scp/attest.h"

int img_open_in_root(int root, const char *path, int flags) {
    return scp_openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

int img_measure(int root, const char *shield, const char *prog, const char *img_json, uint8_t m[32], scp_err *err) {
    scp_elf_set *set = malloc(sizeof *set);
    if (!set) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int rc = scp_attest_program_shielded(root, prog, SCP_ATTEST_RUN_ROOTFS_PATH, err);
    if (rc == 0) rc = scp_elf_set_open_in(root, prog, SCP_ATTEST_RUN_ROOTFS_PATH, shield, set, err);
    if (rc < 0) {
        scp_err_prefix(err, "the image's entrypoint");
    } else {
        rc = scp_attest_measure_fds(set->fd, set->n, img_json, strlen(img_json), m, err);
        scp_elf_set_close(set, -1);
    }
    free(set);
    return rc;
}
