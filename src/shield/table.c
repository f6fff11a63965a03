/* shield/table.c - the system call table (table.def) as an array indexed by number.
 *
 * One table drives the shield: the seccomp filter (gate.c) is generated from its filter and
 * descriptor columns, the trap handler and sh_syscall dispatch by its handler column, the
 * path dispatcher takes its directory descriptors and paths from it, and the trace prints its
 * names. Adding a system call to the shield is adding a line to table.def.
 */
#include <sys/syscall.h>

#include "shield/internal.h"

#define A(i) SH_ARG(i)

#define SH_SYS(nm, f, flt, d1, p1, d2, p2, em, h) \
    [SYS_##nm] = {#nm, (uint8_t)(f), (uint8_t)(flt), d1, p1, d2, p2, em, (uint8_t)(h)},
const struct sh_sysent sh_systab[SH_SYS_MAX] = {
#include "shield/table.def"
};
#undef SH_SYS

const char *sh_sysname(long nr) {
    const struct sh_sysent *s = sh_sys(nr);
    return s ? s->name : "syscall";
}
