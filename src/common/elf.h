/* common/elf.h - a small reader of ELF headers, treating the file as untrusted input: what the
 * loader needs from one object (its interpreter, the libraries it needs, where it searches
 * them). Used by scpctl run's measurement (runtime/elfdeps.c) and by the shield, which loads
 * libraries stored inside a volume (shield/libs.c). No allocation, no I/O. */
#ifndef SCP_COMMON_ELF_H
#define SCP_COMMON_ELF_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "scp/err.h"

#define SCP_ELF_MAX_NEEDED 128u /* DT_NEEDED entries per object */
#define SCP_ELF_MAX_NAME 256u   /* length of a DT_NEEDED name, with its NUL */
#define SCP_ELF_MAX_SEARCH 2048u /* length of DT_RUNPATH / DT_RPATH, with its NUL */

/* What the loader needs from one object. Strings are NUL-terminated; empty when absent. */
typedef struct scp_elf_info {
    uint16_t machine;
    uint16_t type;                 /* ET_EXEC or ET_DYN */
    char interp[PATH_MAX];         /* PT_INTERP */
    int has_runpath, has_rpath;
    char runpath[SCP_ELF_MAX_SEARCH];
    char rpath[SCP_ELF_MAX_SEARCH];
    size_t n_needed;
    char needed[SCP_ELF_MAX_NEEDED][SCP_ELF_MAX_NAME];
} scp_elf_info;

/* Parse an ELF64 little-endian image held in buf[0, len). Every offset, size and string is
 * checked against len; malformed input fails with SCP_E_FORMAT and never reads out of bounds.
 * A static program (no PT_DYNAMIC) yields no names. */
int scp_elf_parse(const uint8_t *buf, size_t len, scp_elf_info *out, scp_err *err);

/* out = the search-list entry dir[0, dlen) with $ORIGIN and ${ORIGIN} replaced by origin (the
 * directory of the object that names it), then "/" and name (no "/" when the entry is empty
 * after expansion). 0, or -1 when it does not fit outsz. */
int scp_elf_join(char *out, size_t outsz, const char *dir, size_t dlen, const char *name, const char *origin);

#endif
