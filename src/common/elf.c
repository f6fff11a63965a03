/* common/elf.c - see elf.h. The file is untrusted: every read goes through the bounds-checked
 * helpers below, and offsets are compared by subtraction so that nothing overflows. */
#include "common/elf.h"

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int bad(scp_err *err, const char *why) { return scp_fail(err, SCP_E_FORMAT, ENOEXEC, "not a usable ELF file: %s", why); }

/* buf[off, off + n) lies inside buf[0, len) */
static int in_bounds(size_t len, uint64_t off, uint64_t n) { return off <= len && n <= len - off; }

static uint64_t rd(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

/* Map a virtual address to a file offset through the PT_LOAD headers. */
static int vaddr_to_off(const uint8_t *buf, size_t len, uint64_t phoff, unsigned phnum, uint64_t va, uint64_t *off) {
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = buf + phoff + (uint64_t)i * 56;
        if (rd(ph, 4) != PT_LOAD) continue;
        uint64_t p_off = rd(ph + 8, 8), p_va = rd(ph + 16, 8), p_fsz = rd(ph + 32, 8);
        if (va >= p_va && va - p_va < p_fsz) {
            uint64_t o = p_off + (va - p_va);
            if (o < p_off || o >= len) return -1;
            *off = o;
            return 0;
        }
    }
    return -1;
}

/* Copy the NUL-terminated string at strtab[idx] (strtab of size strsz) into out. */
static int get_str(const uint8_t *buf, uint64_t strtab, uint64_t strsz, uint64_t idx, char *out, size_t outsz) {
    if (idx >= strsz) return -1;
    const uint8_t *s = buf + strtab + idx;
    size_t max = (size_t)(strsz - idx);
    const uint8_t *nul = memchr(s, 0, max);
    if (!nul) return -1;
    size_t l = (size_t)(nul - s);
    if (l + 1 > outsz) return -1;
    memcpy(out, s, l + 1);
    return 0;
}

int scp_elf_parse(const uint8_t *buf, size_t len, scp_elf_info *out, scp_err *err) {
    memset(out, 0, sizeof *out);
    if (!buf || len < 64) return bad(err, "too short");
    if (memcmp(buf, ELFMAG, SELFMAG) != 0) return bad(err, "no ELF magic");
    if (buf[EI_CLASS] != ELFCLASS64 || buf[EI_DATA] != ELFDATA2LSB) return bad(err, "not 64-bit little-endian");
    out->type = (uint16_t)rd(buf + 16, 2);
    out->machine = (uint16_t)rd(buf + 18, 2);
    if (out->type != ET_EXEC && out->type != ET_DYN) return bad(err, "not an executable or shared object");
    uint64_t phoff = rd(buf + 32, 8);
    unsigned phentsize = (unsigned)rd(buf + 54, 2), phnum = (unsigned)rd(buf + 56, 2);
    if (phnum == 0) return 0;
    if (phentsize != 56) return bad(err, "unexpected program header size");
    if (phnum == 0xffff) return bad(err, "extended program header count");
    if (!in_bounds(len, phoff, (uint64_t)phnum * 56)) return bad(err, "program headers outside the file");
    uint64_t dyn_off = 0, dyn_sz = 0;
    int have_dyn = 0;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = buf + phoff + (uint64_t)i * 56;
        uint32_t type = (uint32_t)rd(ph, 4);
        uint64_t off = rd(ph + 8, 8), fsz = rd(ph + 32, 8);
        if (type == PT_INTERP) {
            if (out->interp[0]) return bad(err, "two PT_INTERP headers");
            if (!in_bounds(len, off, fsz) || fsz < 2 || fsz > sizeof out->interp) return bad(err, "bad PT_INTERP");
            const uint8_t *s = buf + off;
            const uint8_t *nul = memchr(s, 0, (size_t)fsz);
            if (!nul || nul == s) return bad(err, "PT_INTERP is not a string");
            memcpy(out->interp, s, (size_t)(nul - s) + 1);
            if (out->interp[0] != '/') return bad(err, "PT_INTERP is not an absolute path");
        } else if (type == PT_DYNAMIC) {
            if (have_dyn) return bad(err, "two PT_DYNAMIC headers");
            if (!in_bounds(len, off, fsz) || fsz % 16) return bad(err, "bad PT_DYNAMIC");
            have_dyn = 1;
            dyn_off = off;
            dyn_sz = fsz;
        }
    }
    if (!have_dyn) return 0;
    uint64_t strtab_va = 0, strsz = 0;
    int have_strtab = 0, have_strsz = 0;
    for (uint64_t o = 0; o < dyn_sz; o += 16) {
        int64_t tag = (int64_t)rd(buf + dyn_off + o, 8);
        uint64_t val = rd(buf + dyn_off + o + 8, 8);
        if (tag == DT_NULL) break;
        if (tag == DT_STRTAB) strtab_va = val, have_strtab = 1;
        if (tag == DT_STRSZ) strsz = val, have_strsz = 1;
    }
    if (!have_strtab || !have_strsz) return bad(err, "PT_DYNAMIC without a string table");
    uint64_t strtab;
    if (vaddr_to_off(buf, len, phoff, phnum, strtab_va, &strtab) < 0 || !in_bounds(len, strtab, strsz))
        return bad(err, "the string table lies outside the file");
    for (uint64_t o = 0; o < dyn_sz; o += 16) {
        int64_t tag = (int64_t)rd(buf + dyn_off + o, 8);
        uint64_t val = rd(buf + dyn_off + o + 8, 8);
        if (tag == DT_NULL) break;
        if (tag == DT_NEEDED) {
            if (out->n_needed >= SCP_ELF_MAX_NEEDED) return bad(err, "too many DT_NEEDED entries");
            char *dst = out->needed[out->n_needed];
            if (get_str(buf, strtab, strsz, val, dst, SCP_ELF_MAX_NAME) < 0 || !dst[0])
                return bad(err, "bad DT_NEEDED name");
            out->n_needed++;
        } else if (tag == DT_RUNPATH || tag == DT_RPATH) {
            int rp = tag == DT_RUNPATH;
            if (rp ? out->has_runpath : out->has_rpath) return bad(err, "two search paths of one kind");
            if (get_str(buf, strtab, strsz, val, rp ? out->runpath : out->rpath, SCP_ELF_MAX_SEARCH) < 0)
                return bad(err, "bad DT_RUNPATH/DT_RPATH");
            if (rp) out->has_runpath = 1;
            else out->has_rpath = 1;
        }
    }
    return 0;
}

int scp_elf_join(char *out, size_t outsz, const char *dir, size_t dlen, const char *name, const char *origin) {
    size_t o = 0;
    for (size_t i = 0; i < dlen;) {
        const char *rep = NULL;
        size_t skip = 0;
        if (!strncmp(dir + i, "$ORIGIN", 7) && (i + 7 >= dlen || dir[i + 7] == '/')) rep = origin, skip = 7;
        else if (!strncmp(dir + i, "${ORIGIN}", 9)) rep = origin, skip = 9;
        const char *src = rep ? rep : dir + i;
        size_t sl = rep ? strlen(rep) : 1;
        if (o + sl >= outsz) return -1;
        memcpy(out + o, src, sl);
        o += sl;
        i += rep ? skip : 1;
    }
    int n = snprintf(out + o, outsz - o, "%s%s", o ? "/" : "", name);
    return n < 0 || (size_t)n >= outsz - o ? -1 : 0;
}

