/* fuzz/volfix.h - a small protected volume with a known history, for fuzz_volume_open and the
 * seed generator.
 *
 * vf_build() creates a volume with the library's own API and runs a fixed sequence of
 * operations on it (mkdir, create, sparse writes, overwrites that go through the journal,
 * truncate-on-open, rename, shrink). It takes a snapshot of every file of the volume directory
 * after each call, and also from inside the commit callback: that one is the state of a crash
 * right after the commit point (new manifest, old objects, complete journal), so journal
 * recovery is part of what gets fuzzed. Each snapshot is then opened once to learn its "truth":
 * the tag and the exact namespace and contents that a correct library must show for it.
 *
 * Files of all snapshots form one numbered "universe" (ordered by first appearance, then by
 * name, so the numbering is the same from run to run even though file ids are random). */
#ifndef SCP_FUZZ_VOLFIX_H
#define SCP_FUZZ_VOLFIX_H

#include <stddef.h>
#include <stdint.h>

#include "scp/volume.h"

/* kind of a present file when written out */
enum { VF_REG = 0, VF_FIFO, VF_DIR, VF_DEVZERO /* a symlink to /dev/zero */ };

typedef struct vf_blob {
    int present;
    uint8_t *data;
    size_t len;
    int kind; /* VF_REG unless an attack made it something else */
} vf_blob;

typedef struct vf_snap {
    vf_blob *f;          /* indexed by universe number (nuniv entries) */
    size_t nf;           /* entries filled when taken; later names are absent */
    int crash;           /* taken inside the commit callback */
    scp_volume_tag tag;  /* the committed state it holds */
    uint64_t dur_gen;    /* generation of the newest durable state when it was taken (the last
                          * tag the commit callback reported): what a freshness service holds */
} vf_snap;

typedef struct vf_entry {
    char *path;
    int type; /* SCP_VTYPE_FILE or SCP_VTYPE_DIR */
    uint8_t *data;
    size_t len;
} vf_entry;

typedef struct vf_truth {
    scp_volume_tag tag;
    uint64_t gen;
    vf_entry *e;
    size_t n;
} vf_truth;

typedef struct vf_fixture {
    char dir[256]; /* private temporary directory (removed by vf_free) */
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char **univ;
    size_t nuniv, capuniv;
    vf_snap *snap;
    size_t nsnap, capsnap;
    vf_truth *truth;
    size_t ntruth;
    uint64_t dur_gen; /* while building: the last durable generation reported */
} vf_fixture;

/* Build the fixture in a new temporary directory under base (e.g. /dev/shm). Prints a reason
 * and returns -1 on failure. A genuine snapshot that fails to open or verify is a library bug:
 * that is reported too (and returns -1). */
int vf_build(vf_fixture *fx, const char *base);
void vf_free(vf_fixture *fx);

/* Write the given file set (nuniv blobs) as a volume directory at dir (created if needed);
 * names absent from the set are removed, whatever they were. Returns -1 on a system error. */
int vf_materialize(const vf_fixture *fx, const vf_blob *set, const char *dir);

/* Universe number of a name, or -1. */
long vf_find(const vf_fixture *fx, const char *name);
/* The truth with this tag, or NULL. */
const vf_truth *vf_truth_of(const vf_fixture *fx, const scp_volume_tag *tag);

#endif
