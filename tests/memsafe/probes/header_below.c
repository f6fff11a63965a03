/* A string with its header in front of it, as redis's sds keeps one: the program holds a
 * pointer past the header and reads and writes the header at constant negative offsets
 * (s[-1], the type; s - 3, the length). Such a pointer, loaded from memory, is its own base,
 * and these accesses start below it: instr.c gives them __scp_ms_check_below, which decides
 * inline (the general check called the out-of-line exact check at every one). The benign run
 * points past a 3-byte header; the bad one at the record's first byte, so the header reads
 * land before the record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile str; /* volatile: loaded from memory, a pointer that is its own base */

static __attribute__((noinline)) unsigned header_len(char *s)
{
    unsigned char type = (unsigned char)s[-1];
    unsigned short len;
    memcpy(&len, s - 3, sizeof len);
    return type == 1 ? len : 0;
}

int main(int argc, char **argv)
{
    long hdr = argc > 1 ? strtol(argv[1], NULL, 10) : 3;
    char *rec = calloc(32, 1);
    if (!rec)
        return 1;
    rec[0] = 5;
    rec[2] = 1;
    str = rec + hdr;
    char *s = str;
    s[-1] = 1; /* before the record when hdr is 0 */
    printf("%u\n", header_len(s));
    free(rec);
    return 0;
}
