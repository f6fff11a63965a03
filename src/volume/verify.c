/* volume/verify.c - check every chunk of every file of a volume (scpctl volume verify). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "volume/internal.h"

long scp_volume_verify(scp_volume *v, scp_verify_problem_cb problem_cb,
                       scp_verify_progress_cb progress_cb, void *ctx, scp_err *err) {
    /* Snapshot the list of files first: each file is then loaded and checked on its own, so
     * that the volume lock is never held while a file lock is taken (see internal.h). */
    if (vol_lock(v, err) < 0) return -1;
    size_t n = 0;
    scp_mentry *list = calloc(v->man.n ? v->man.n : 1, sizeof *list);
    uint64_t total = 0;
    for (size_t i = 0; list && i < v->man.n; i++) {
        if (v->man.e[i]->type != 1) continue;
        if (man_entry_dup(&list[n], v->man.e[i], NULL) < 0) break;
        total += v->man.e[i]->size;
        n++;
    }
    vol_unlock(v);
    if (!list) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    long problems = 0;
    uint64_t done = 0;
    for (size_t i = 0; i < n; i++) {
        scp_err e;
        if (vol_lock(v, err) < 0) {
            problems = -1;
            break;
        }
        long mi = man_find(&v->man, list[i].path);
        scp_file *f = NULL;
        if (mi >= 0) {
            f = file_get(v, v->man.e[mi], &e);
            if (!f) {
                if (problem_cb) problem_cb(ctx, list[i].path, -1, e.msg);
                problems++;
            }
        }
        vol_unlock(v);
        if (!f) continue;
        long p = file_verify(f, problem_cb, ctx, &done, progress_cb, total);
        if (p < 0) {
            problems = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory verifying");
        } else {
            problems += p;
        }
        pthread_mutex_lock(&v->mu);
        file_put(v, f);
        pthread_mutex_unlock(&v->mu);
        if (problems < 0) break;
    }
    if (progress_cb && problems >= 0) progress_cb(ctx, total, total);
    for (size_t i = 0; i < n; i++) man_entry_clear(&list[i]);
    free(list);
    return problems;
}
