/* tests/shield/mkvol.c - test helper: make a key file and an empty protected volume.
 * usage: shield-mkvol KEYFILE DIR [CHUNK_SIZE]
 * (KEYFILE must not exist; DIR must not exist or be empty; CHUNK_SIZE defaults to 4096) */
#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"
#include "scp/volume.h"

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: shield-mkvol KEYFILE DIR [CHUNK_SIZE]\n");
        return 2;
    }
    scp_err err;
    uint8_t key[SCP_VOLUME_KEY_LEN];
    if (scp_key_file_generate(argv[1], &err) || scp_key_file_read(argv[1], key, &err) ||
        scp_volume_create(argv[2], key, argc == 4 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0, &err)) {
        fprintf(stderr, "shield-mkvol: %s\n", err.msg);
        return 1;
    }
    scp_wipe(key, sizeof key);
    return 0;
}
