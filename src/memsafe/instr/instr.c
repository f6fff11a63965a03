/* scp-ms-instr - the memsafe instrumentation pass, on the LLVM-C API of LLVM 16.
 *
 *   scp-ms-instr [--mode=harden|full] [--trust-types] --rt=CHECK.bc IN.bc OUT.bc
 *
 * For every store (and, in full mode, every load), every atomic update, and both sides of
 * memcpy/memmove and the destination of memset (the LLVM intrinsics and the libc calls,
 * including the _FORTIFY_SOURCE __*_chk forms), it inserts a call
 *   __scp_ms_check(base, ptr, n, site)
 * where `base` is the pointer the accessed one was derived from (through GEPs, casts, PHIs and
 * selects: a PHI or select of pointers gets a PHI or select of their bases). Checking against
 * the object of the base, not of the accessed pointer, is what catches an access that runs
 * past its object into the next one. `site` names the access for the report.
 *
 * Pruned: accesses whose base is a stack slot or a global (this mode protects the heap; see
 * docs/memsafe.md), constant offsets from a malloc/calloc of constant size that are provably
 * in bounds, and repeated accesses at constant offsets from the same pointer in one block
 * between two calls, which share one check of the range they span (the fields of an array
 * element at a variable index, p[i].a and p[i].b, count as constant offsets from &p[i]: see
 * element_address). Accesses at constant,
 * non-negative offsets from a pointer that is its own base get __scp_ms_check_at, which needs
 * one compare instead of two. In a loop that cannot free (its calls are all nofree), the checks
 * of a base defined outside it compare against bounds read once in the preheader; in a loop that
 * may free, they read the limit at each check from its address, found once in the preheader.
 * With --trust-types, a field access that C's effective-type rules put inside its struct (a
 * struct GEP of constant fields from a pointer that is its own base, or the first field by its
 * TBAA tag) gets no check at all (typed_in_bounds; an option, docs/memsafe.md says what it
 * stops catching).
 *
 * Then it links CHECK.bc (the runtime's check functions) and makes them internal, so that the
 * optimizer that runs next inlines their fast path.
 */
#include "tool.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Target.h>

#include <assert.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ms_mode { MODE_HARDEN, MODE_FULL };

/* &src[idx] made for the accesses of one block, or NULL where it is not (element_address). */
struct elem {
    LLVMValueRef src, idx;
    LLVMTypeRef ty;
    LLVMBasicBlockRef bb;
    LLVMValueRef addr;
};

struct memo_entry {
    LLVMValueRef key, val;
};

/* Pointer -> base pointer, open addressing; one per function. */
struct memo {
    struct memo_entry *tab;
    size_t cap, len;
};

struct group {
    LLVMValueRef x;     /* the pointer the accesses are constant offsets from */
    LLVMValueRef base;
    LLVMValueRef first; /* the first access, where the check goes */
    int64_t lo, hi;     /* byte range [lo, hi) relative to x */
    LLVMValueRef ekey;  /* the element x is in, when the range is widened to it (element_key) */
    int64_t esize;
    unsigned count;
    char site[320];
};

/* "The object of x's base has been checked to hold [x+lo, x+hi), and no call came since":
 * what is known at a point of a function, for at most MS_MAX_FACTS pointers (forgetting a
 * fact only costs a check). `top` is the set of everything, before a block is first reached. */
#define MS_MAX_FACTS 32
struct fact {
    LLVMValueRef x;
    int64_t lo, hi;
};
struct facts {
    int top;
    unsigned n;
    struct fact f[MS_MAX_FACTS];
};

/* The blocks of one function in reverse postorder, their predecessors and the facts known
 * on entry to each (checks available on every path there). */
struct cfg {
    LLVMBasicBlockRef *bb;
    size_t n;
    size_t **preds; /* preds[i]: indexes into bb, terminated by SIZE_MAX */
    struct facts *in, *out;
};

struct pass {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMTargetDataRef td;
    LLVMBuilderRef b;
    LLVMTypeRef ptr_ty, i64_ty, i8_ty, check_ty, check_at_ty;
    LLVMValueRef check_fn, check_mem_fn, check_at_fn, check_below_fn;
    /* A base's limit looked up once before a loop, and the checks against it (lk_ty). */
    LLVMTypeRef lookup_ty, check_lk_ty, check_lk_at_ty;
    LLVMValueRef lk_lim_fn, check_lk_fn, check_lk_at_fn, check_lk_mem_fn;
    unsigned long lk_loops, lk_checks;
    /* ... or the address of its limit, read at each check, in a loop that may free. */
    LLVMTypeRef slot_ty, slot_lim_ty;
    LLVMValueRef lk_slot_fn, slot_lim_fn, lk_slot_at_fn;
    unsigned long sl_loops, sl_checks;
    unsigned long web_bases; /* bases that change now and then round such a loop (web_ctx) */
    unsigned long sh_bases, sh_uses; /* lookups shared by the checks of a base (share_lookups) */
    enum ms_mode mode;
    int trust_types; /* --trust-types: typed_in_bounds accesses get no check */
    /* Accesses through a pointer that is its own base, at constant offsets (SCP_MS_STATS): in
     * bounds by their type (typed_in_bounds), or not: no GEP (the first field, *p), an i8 GEP,
     * a struct GEP walking an array or past sizeof, another form. */
    unsigned long typed, self_direct, self_i8, self_array, self_other;
    struct memo memo;
    struct group *groups;
    size_t ngroups, cap_groups;
    unsigned long checks, pruned, merged, available, loops, at_base, below;
    /* The alias scope of the checks' metadata loads, and the kinds of the metadata naming it. */
    LLVMMetadataRef ms_scope;
    unsigned md_alias_scope, md_noalias;
    struct memo hoisted; /* accesses covered by one range check before their loop */
    struct site_tab {    /* the module's report texts, one global per distinct text (site_string) */
        struct site_ent {
            uint64_t hash;
            char *text;
            LLVMValueRef g;
        } *tab;
        size_t cap, len;
    } sites;
    struct elem *elems;  /* this function's element addresses (element_address) */
    size_t nelems, cap_elems;
    /* The elements src[idx] of this function's accesses, whatever the block (element_key): entry k
     * is named in the facts by &ekeys.name[k], an address no LLVM value has. */
    struct ekeys {
        struct ekey {
            LLVMValueRef src, idx;
            LLVMTypeRef ty;
        } *tab;
        size_t len, cap;
        char *name; /* cap bytes, allocated once per function (a key must not move) */
    } ekeys;
    unsigned long whole; /* checks widened to their whole element (the element rule) */
    const char *fname;
    int dry;          /* computing the facts at the end of a block: no checks emitted */
    struct facts cur; /* what is known at the instruction being looked at */
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "scp-ms-instr: out of memory\n");
        exit(1);
    }
    return q;
}

/* ---- memo ------------------------------------------------------------------------------ */

static size_t memo_slot(const struct memo *m, LLVMValueRef k)
{
    return (size_t)(((uintptr_t)k >> 4) * UINT64_C(0x9E3779B97F4A7C15) >> 20) & (m->cap - 1);
}

static LLVMValueRef memo_get(const struct memo *m, LLVMValueRef k)
{
    if (!m->cap)
        return NULL;
    for (size_t s = memo_slot(m, k);; s = (s + 1) & (m->cap - 1)) {
        if (m->tab[s].key == k)
            return m->tab[s].val;
        if (!m->tab[s].key)
            return NULL;
    }
}

static void memo_put(struct memo *m, LLVMValueRef k, LLVMValueRef v)
{
    if (2 * (m->len + 1) > m->cap) {
        struct memo old = *m;
        m->cap = old.cap ? old.cap * 2 : 256;
        m->tab = calloc(m->cap, sizeof *m->tab);
        if (!m->tab) {
            fprintf(stderr, "scp-ms-instr: out of memory\n");
            exit(1);
        }
        m->len = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.tab[i].key)
                memo_put(m, old.tab[i].key, old.tab[i].val);
        free(old.tab);
    }
    size_t s = memo_slot(m, k);
    while (m->tab[s].key && m->tab[s].key != k)
        s = (s + 1) & (m->cap - 1);
    if (!m->tab[s].key)
        m->len++;
    m->tab[s] = (struct memo_entry){ k, v };
}

/* Every value `from` becomes `to` (keys stay). */
static void memo_replace_values(struct memo *m, LLVMValueRef from, LLVMValueRef to)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->tab[i].key && m->tab[i].val == from)
            m->tab[i].val = to;
}

static void memo_clear(struct memo *m)
{
    free(m->tab);
    *m = (struct memo){ 0 };
}

/* ---- pointer analysis ---------------------------------------------------------------------- */

static int is_gep(LLVMValueRef v)
{
    if (LLVMIsAGetElementPtrInst(v))
        return 1;
    return LLVMIsAConstantExpr(v) && LLVMGetConstOpcode(v) == LLVMGetElementPtr;
}

static int is_ptr_cast(LLVMValueRef v)
{
    LLVMOpcode op;
    if (LLVMIsABitCastInst(v) || LLVMIsAAddrSpaceCastInst(v))
        return 1;
    if (!LLVMIsAConstantExpr(v))
        return 0;
    op = LLVMGetConstOpcode(v);
    return op == LLVMBitCast || op == LLVMAddrSpaceCast;
}

static int is_ptr(LLVMValueRef v)
{
    return LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMPointerTypeKind;
}

/* The base of v: the pointer it was derived from through GEPs and casts; for a PHI or a
 * select of pointers, a new PHI or select of their bases. */
static LLVMValueRef base_of(struct pass *p, LLVMValueRef v)
{
    LLVMValueRef m = memo_get(&p->memo, v);
    if (m)
        return m;
    LLVMValueRef r = v;
    if (is_gep(v) || is_ptr_cast(v)) {
        LLVMValueRef src = LLVMGetOperand(v, 0);
        r = is_ptr(src) ? base_of(p, src) : v;
    } else if (LLVMIsAPHINode(v)) {
        LLVMBasicBlockRef bb = LLVMGetInstructionParent(v);
        LLVMBuilderRef b = LLVMCreateBuilderInContext(p->ctx);
        LLVMPositionBuilderBefore(b, LLVMGetFirstInstruction(bb));
        r = LLVMBuildPhi(b, LLVMTypeOf(v), "ms.base");
        LLVMDisposeBuilder(b);
        memo_put(&p->memo, v, r); /* before the incoming values: loops come back here */
        unsigned n = LLVMCountIncoming(v);
        /* self: every incoming value is its own base (or v, round a loop), so v is too: its
         * accesses at constant offsets get the cheaper check (check_at). one: every incoming
         * base is `one` (or r, round a loop: p = phi [a], [p + 1]). */
        int self = 1, single = 1;
        LLVMValueRef one = NULL;
        for (unsigned i = 0; i < n; i++) {
            LLVMValueRef val = LLVMGetIncomingValue(v, i);
            LLVMValueRef in = base_of(p, val);
            LLVMBasicBlockRef from = LLVMGetIncomingBlock(v, i);
            LLVMAddIncoming(r, &in, &from, 1);
            self &= in == val || (in == r && val == v);
            if (in != r) {
                single &= !one || one == in;
                one = in;
            }
        }
        if (self || (single && one)) {
            LLVMValueRef to = self ? v : one;
            LLVMReplaceAllUsesWith(r, to);
            LLVMInstructionEraseFromParent(r);
            memo_replace_values(&p->memo, r, to);
            return to;
        }
        return r;
    } else if (LLVMIsASelectInst(v)) {
        LLVMValueRef a = base_of(p, LLVMGetOperand(v, 1));
        LLVMValueRef c = base_of(p, LLVMGetOperand(v, 2));
        if (a == c) {
            r = a;
        } else if (a == LLVMGetOperand(v, 1) && c == LLVMGetOperand(v, 2)) {
            r = v; /* a choice between two pointers that are their own bases */
        } else {
            LLVMBuilderRef b = LLVMCreateBuilderInContext(p->ctx);
            LLVMPositionBuilderBefore(b, v);
            r = LLVMBuildSelect(b, LLVMGetOperand(v, 0), a, c, "ms.base");
            LLVMDisposeBuilder(b);
        }
    }
    memo_put(&p->memo, v, r);
    return r;
}

/* The constant byte offset of a GEP's indices from `from` on (struct fields, array elements),
 * walking the type from ty; 0 and *ok = 0 when one is not a constant or the type is neither. */
static int64_t const_tail_offset(struct pass *p, LLVMValueRef gep, int from, LLVMTypeRef ty, int *ok)
{
    int64_t add = 0;
    *ok = 1;
    for (int i = from; i < LLVMGetNumOperands(gep); i++) {
        LLVMValueRef idx = LLVMGetOperand(gep, i);
        if (!LLVMIsAConstantInt(idx)) {
            *ok = 0;
            return 0;
        }
        int64_t k = LLVMConstIntGetSExtValue(idx);
        if (LLVMGetTypeKind(ty) == LLVMStructTypeKind) {
            add += (int64_t)LLVMOffsetOfElement(p->td, ty, (unsigned)k);
            ty = LLVMStructGetTypeAtIndex(ty, (unsigned)k);
        } else if (LLVMGetTypeKind(ty) == LLVMArrayTypeKind) {
            ty = LLVMGetElementType(ty);
            add += k * (int64_t)LLVMABISizeOfType(p->td, ty);
        } else {
            *ok = 0;
            return 0;
        }
    }
    return add;
}

/* Does v (a pointer) address a checked access in bb: a store, an atomic, a load in full mode? */
static int checked_access_in(struct pass *p, LLVMValueRef v, LLVMBasicBlockRef bb)
{
    for (LLVMUseRef u = LLVMGetFirstUse(v); u; u = LLVMGetNextUse(u)) {
        LLVMValueRef user = LLVMGetUser(u);
        if (!LLVMIsAInstruction(user) || LLVMGetInstructionParent(user) != bb)
            continue;
        switch (LLVMGetInstructionOpcode(user)) {
        case LLVMStore:
            if (LLVMGetOperand(user, 1) == v)
                return 1;
            break;
        case LLVMAtomicRMW:
        case LLVMAtomicCmpXchg:
            if (LLVMGetOperand(user, 0) == v)
                return 1;
            break;
        case LLVMLoad:
            if (p->mode == MODE_FULL)
                return 1;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* &src[idx] as a GEP of its own, for the field GEPs of one block that share src and idx
 * (`gep %T, src, idx, <constant fields>`: p[i].a, p[i].b): made once per block, before the first
 * access that needs it (`at`), so that their accesses are constant offsets from one pointer
 * and share one check (a group, or the facts of the block), as the fields of p->a, p->b do.
 * Per block, so that it dominates every access of that block that uses it; the facts that
 * reach other blocks name it and match nothing there. */
static LLVMValueRef element_address(struct pass *p, LLVMValueRef gep, LLVMValueRef at)
{
    LLVMValueRef src = LLVMGetOperand(gep, 0), idx = LLVMGetOperand(gep, 1);
    LLVMTypeRef ty = LLVMGetGEPSourceElementType(gep);
    LLVMBasicBlockRef bb = LLVMGetInstructionParent(at);
    for (size_t i = 0; i < p->nelems; i++) {
        struct elem *e = &p->elems[i];
        if (e->src == src && e->idx == idx && e->ty == ty && e->bb == bb)
            return e->addr;
    }
    /* Only where another field of the same element is accessed in this block: elsewhere the
     * GEP itself stays the pointer its facts name (they then reach the blocks it dominates),
     * and no address is added to a block that gains no merge (in sqlite's interpreter loop an
     * extra live value costs more than it saves). */
    int shared = 0;
    for (LLVMUseRef u = LLVMGetFirstUse(src); u && !shared; u = LLVMGetNextUse(u)) {
        LLVMValueRef g = LLVMGetUser(u);
        shared = g != gep && LLVMIsAGetElementPtrInst(g) && LLVMGetOperand(g, 0) == src &&
                 LLVMGetNumOperands(g) >= 2 && LLVMGetOperand(g, 1) == idx &&
                 LLVMGetGEPSourceElementType(g) == ty && checked_access_in(p, g, bb);
    }
    /* The answer is kept, NULL too: it is given at the block's first access to the element, in
     * every run over the block (the dry ones included), so that the address is made before
     * every access that uses it (asked first at a later access, the sharing test can differ:
     * it sees only direct accesses through the other GEPs). */
    if (p->nelems == p->cap_elems) {
        p->cap_elems = p->cap_elems ? 2 * p->cap_elems : 64;
        p->elems = xrealloc(p->elems, p->cap_elems * sizeof *p->elems);
    }
    LLVMValueRef addr = NULL;
    if (shared) {
        LLVMPositionBuilderBefore(p->b, at);
        addr = LLVMBuildGEP2(p->b, ty, src, &idx, 1, "ms.elem");
    }
    p->elems[p->nelems++] = (struct elem){ src, idx, ty, bb, addr };
    return addr;
}

/* The fact key of the element src[idx] of type ty, the same in every block: the facts (the checks
 * available on every path) name an element by it, so that a check of p[i] in one block covers
 * the accesses to p[i] in the blocks it reaches with no call between, whichever GEP of p[i] they
 * use (the optimizer makes one per block and field). Sound as a fact about an SSA value is: the
 * address depends only on src and idx, and a fact that reaches an access holds on every path to
 * it, so it was established after the last definition of both on each (cfg_available). The key
 * is an address of p->ekeys.name, which no LLVM value has, so it cannot match a fact about a
 * pointer value (the GEP of a memcpy's operand, say, whose offsets count from the field). */
static LLVMValueRef element_key(struct pass *p, LLVMValueRef src, LLVMValueRef idx, LLVMTypeRef ty)
{
    struct ekeys *k = &p->ekeys;
    for (size_t i = 0; i < k->len; i++)
        if (k->tab[i].src == src && k->tab[i].idx == idx && k->tab[i].ty == ty)
            return (LLVMValueRef)(void *)&k->name[i];
    /* cap is the function's instruction count (instrument_module): one key per GEP at most; were
     * it ever short, an element without a key is checked as any pointer is. */
    if (k->len >= k->cap)
        return NULL;
    k->tab[k->len] = (struct ekey){ src, idx, ty };
    return (LLVMValueRef)(void *)&k->name[k->len++];
}

/* The element an access is in, when its address is src[idx] + constant offsets (idx not a
 * constant): its key, and the access's offset from the element's start. */
struct elem_ref {
    LLVMValueRef key; /* NULL: not such an access */
    int64_t off;      /* of the access from the element's start */
    int64_t size;     /* of the element (the GEP's source type) */
};

/* v = x + *off with constant GEP offsets stripped; returns x. `at` is the access of v, or NULL
 * for no element addresses (element_address: only scalar accesses ask for them); `er`, when not
 * NULL, gets the element the access is in (element_key). */
static LLVMValueRef strip_const_offsets(struct pass *p, LLVMValueRef v, int64_t *off, LLVMValueRef at,
                                        struct elem_ref *er)
{
    *off = 0;
    if (er)
        er->key = NULL;
    for (;;) {
        if (is_ptr_cast(v) && is_ptr(LLVMGetOperand(v, 0))) {
            v = LLVMGetOperand(v, 0);
            continue;
        }
        if (!is_gep(v))
            return v;
        LLVMValueRef src = LLVMGetOperand(v, 0);
        if (!is_ptr(src))
            return v;
        LLVMTypeRef ty = LLVMGetGEPSourceElementType(v);
        if (!LLVMIsAConstantInt(LLVMGetOperand(v, 1)) && LLVMIsAGetElementPtrInst(v)) {
            /* src[idx].field (or src[idx] itself, the first field): the field's constant offset
             * from the element's address. */
            int ok;
            int64_t tail = const_tail_offset(p, v, 2, ty, &ok);
            if (!ok || !at)
                return v;
            /* Only an element of a struct type clang named (p[i].f): the optimizer rewrites the
             * element type of other GEPs freely (bytes read two at a time become a GEP of i16
             * whose element a 1-byte load would not fill), never into a named struct. */
            if (er && LLVMGetTypeKind(ty) == LLVMStructTypeKind && !LLVMIsLiteralStruct(ty))
                *er = (struct elem_ref){ element_key(p, src, LLVMGetOperand(v, 1), ty), *off + tail,
                                         (int64_t)LLVMABISizeOfType(p->td, ty) };
            LLVMValueRef elem = element_address(p, v, at);
            if (!elem)
                return v;
            *off += tail;
            return elem;
        }
        /* src + idx1 elements, then the fields and array elements the other indices name */
        LLVMValueRef idx1 = LLVMGetOperand(v, 1);
        if (!LLVMIsAConstantInt(idx1))
            return v;
        int ok;
        int64_t tail = const_tail_offset(p, v, 2, ty, &ok);
        if (!ok)
            return v; /* vectors and the like: leave it */
        *off += LLVMConstIntGetSExtValue(idx1) * (int64_t)LLVMABISizeOfType(p->td, ty) + tail;
        v = src;
    }
}

/* Stack slots, globals, null: not heap objects, not checked in this mode. */
static int is_non_heap(LLVMValueRef base)
{
    return LLVMIsAAllocaInst(base) || LLVMIsAGlobalValue(base) || LLVMIsAConstantPointerNull(base) ||
           LLVMIsAUndefValue(base);
}

/* The constant size of a malloc/calloc whose result is `base`, or -1. */
static int64_t known_alloc_size(LLVMValueRef base)
{
    if (!LLVMIsACallInst(base))
        return -1;
    const char *n = ms_callee_name(base);
    if (!strcmp(n, "malloc") && LLVMIsAConstantInt(LLVMGetOperand(base, 0)))
        return (int64_t)LLVMConstIntGetZExtValue(LLVMGetOperand(base, 0));
    if (!strcmp(n, "calloc") && LLVMIsAConstantInt(LLVMGetOperand(base, 0)) &&
        LLVMIsAConstantInt(LLVMGetOperand(base, 1))) {
        uint64_t a = LLVMConstIntGetZExtValue(LLVMGetOperand(base, 0));
        uint64_t c = LLVMConstIntGetZExtValue(LLVMGetOperand(base, 1));
        if (a < (1u << 30) && c < (1u << 30))
            return (int64_t)(a * c);
    }
    return -1;
}

/* ---- facts ------------------------------------------------------------------------------ */

static struct fact *facts_find(struct facts *s, LLVMValueRef x)
{
    for (unsigned i = 0; i < s->n; i++)
        if (s->f[i].x == x)
            return &s->f[i];
    return NULL;
}

static int facts_cover(struct facts *s, LLVMValueRef x, int64_t lo, int64_t hi)
{
    const struct fact *f = facts_find(s, x);
    return f && f->lo <= lo && hi <= f->hi;
}

/* [lo, hi) of x has been checked: extend a range it touches, or keep the larger one. */
static void facts_add(struct facts *s, LLVMValueRef x, int64_t lo, int64_t hi)
{
    assert(!s->top);
    struct fact *f = facts_find(s, x);
    if (!f) {
        if (s->n < MS_MAX_FACTS)
            s->f[s->n++] = (struct fact){ x, lo, hi };
        return;
    }
    if (lo <= f->hi && f->lo <= hi) {
        f->lo = lo < f->lo ? lo : f->lo;
        f->hi = hi > f->hi ? hi : f->hi;
    } else if (hi - lo > f->hi - f->lo) {
        *f = (struct fact){ x, lo, hi };
    }
}

/* s = s ∩ t: what is known on both paths. */
static void facts_meet(struct facts *s, const struct facts *t)
{
    if (t->top)
        return;
    if (s->top) {
        *s = *t;
        return;
    }
    unsigned k = 0;
    for (unsigned i = 0; i < s->n; i++) {
        const struct fact *g = NULL;
        for (unsigned j = 0; j < t->n && !g; j++)
            if (t->f[j].x == s->f[i].x)
                g = &t->f[j];
        if (!g)
            continue;
        int64_t lo = s->f[i].lo > g->lo ? s->f[i].lo : g->lo;
        int64_t hi = s->f[i].hi < g->hi ? s->f[i].hi : g->hi;
        if (lo < hi)
            s->f[k++] = (struct fact){ s->f[i].x, lo, hi };
    }
    s->n = k;
}

static int facts_equal(const struct facts *s, const struct facts *t)
{
    if (s->top != t->top || s->n != t->n)
        return 0;
    return s->top || memcmp(s->f, t->f, s->n * sizeof s->f[0]) == 0;
}

/* ---- check emission -------------------------------------------------------------------------- */

/* "what in f() at file:line", followed by the call sites it was inlined into, innermost
 * first: the first place is often a libc inline wrapper, the last one the caller's line. */
static void describe(struct pass *p, LLVMValueRef inst, const char *what, char *out, size_t cap)
{
    LLVMMetadataRef loc = LLVMInstructionGetDebugLoc(inst);
    size_t used = (size_t)snprintf(out, cap, "%s in %s()", what, p->fname);
    if (!loc) {
        snprintf(out + used, cap - used, " (build with -g for the line)");
        return;
    }
    for (int depth = 0; loc && used < cap && depth < 8; depth++) {
        unsigned len = 0;
        LLVMMetadataRef scope = LLVMDILocationGetScope(loc);
        LLVMMetadataRef file = scope ? LLVMDIScopeGetFile(scope) : NULL;
        const char *name = file ? LLVMDIFileGetFilename(file, &len) : "?";
        if (!file)
            len = 1;
        used += (size_t)snprintf(out + used, cap - used, "%s %.*s:%u", depth ? ", inlined at" : " at",
                                 (int)len, name, LLVMDILocationGetLine(loc));
        loc = LLVMDILocationGetInlinedAt(loc);
    }
}

/* The report's text for one check, in a section of its own (MS_SITE_SECTION): the texts are read
 * only by a report, and mixed with the program's own read-only data (as .rodata.str1.1 merged
 * them) they made the pages the program reads larger: a read of the program's data faults in the
 * pages around it (the kernel maps up to 64 KiB of a file at a fault), and sqlite's speedtest1
 * had 280 KB of its .rodata resident with the texts there against 128 KB plain. In a section of
 * their own, which the linker places after the program's read-only data, they stay on disk. */
#define MS_SITE_SECTION "scp_ms_sites"
static LLVMValueRef site_string(struct pass *p, const char *site)
{
    /* One global per distinct text, as the linker's string merging gave before: identical
     * texts (a macro's accesses, a function inlined twice at one line) make identical report
     * calls, which the code generator then merges (without this speedtest1's .text grew 2%). */
    struct site_tab *t = &p->sites;
    uint64_t h = UINT64_C(1469598103934665603);
    for (const char *c = site; *c; c++)
        h = (h ^ (unsigned char)*c) * UINT64_C(1099511628211);
    if (2 * (t->len + 1) > t->cap) {
        struct site_tab old = *t;
        t->cap = old.cap ? 2 * old.cap : 1024;
        t->tab = calloc(t->cap, sizeof *t->tab);
        if (!t->tab) {
            fprintf(stderr, "scp-ms-instr: out of memory\n");
            exit(1);
        }
        for (size_t i = 0; i < old.cap; i++)
            if (old.tab[i].text) {
                size_t k = old.tab[i].hash & (t->cap - 1);
                while (t->tab[k].text)
                    k = (k + 1) & (t->cap - 1);
                t->tab[k] = old.tab[i];
            }
        free(old.tab);
    }
    size_t k = h & (t->cap - 1);
    for (; t->tab[k].text; k = (k + 1) & (t->cap - 1))
        if (t->tab[k].hash == h && !strcmp(t->tab[k].text, site))
            return t->tab[k].g;
    LLVMValueRef init = LLVMConstStringInContext(p->ctx, site, (unsigned)strlen(site), 0);
    LLVMValueRef g = LLVMAddGlobal(p->mod, LLVMTypeOf(init), "ms.site");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    LLVMSetAlignment(g, 1);
    LLVMSetSection(g, MS_SITE_SECTION);
    char *text = strdup(site);
    if (!text) {
        fprintf(stderr, "scp-ms-instr: out of memory\n");
        exit(1);
    }
    t->tab[k] = (struct site_ent){ h, text, g };
    t->len++;
    return g;
}

static void emit_check(struct pass *p, LLVMValueRef before, LLVMValueRef fn, LLVMValueRef base,
                       LLVMValueRef ptr, LLVMValueRef n, const char *site)
{
    LLVMPositionBuilderBefore(p->b, before);
    LLVMMetadataRef loc = LLVMInstructionGetDebugLoc(before);
    LLVMValueRef s = site_string(p, site);
    if (LLVMTypeOf(n) != p->i64_ty)
        n = LLVMBuildZExt(p->b, n, p->i64_ty, "");
    LLVMValueRef args[4] = { base, ptr, n, s };
    LLVMValueRef call = LLVMBuildCall2(p->b, p->check_ty, fn, args, 4, "");
    if (loc)
        LLVMInstructionSetDebugLoc(call, loc);
    p->checks++;
}

/* A check of [base + lo, base + hi), 0 <= lo < hi, constants: __scp_ms_check_at. */
static void emit_check_at(struct pass *p, LLVMValueRef before, LLVMValueRef base, int64_t lo,
                          int64_t hi, const char *site)
{
    assert(0 <= lo && lo < hi);
    LLVMPositionBuilderBefore(p->b, before);
    LLVMMetadataRef loc = LLVMInstructionGetDebugLoc(before);
    LLVMValueRef s = site_string(p, site);
    LLVMValueRef args[4] = { base, LLVMConstInt(p->i64_ty, (unsigned long long)lo, 0),
                             LLVMConstInt(p->i64_ty, (unsigned long long)hi, 0), s };
    LLVMValueRef call = LLVMBuildCall2(p->b, p->check_at_ty, p->check_at_fn, args, 4, "");
    if (loc)
        LLVMInstructionSetDebugLoc(call, loc);
    p->checks++;
    p->at_base++;
}

static void flush_groups(struct pass *p)
{
    for (size_t i = 0; i < p->ngroups; i++) {
        struct group *g = &p->groups[i];
        LLVMValueRef ptr = g->x;
        if (g->lo != 0) {
            LLVMPositionBuilderBefore(p->b, g->first);
            LLVMValueRef off = LLVMConstInt(p->i64_ty, (unsigned long long)g->lo, 1);
            ptr = LLVMBuildGEP2(p->b, p->i8_ty, g->x, &off, 1, "ms.lo");
        }
        if (g->count > 1) {
            size_t l = strlen(g->site);
            snprintf(g->site + l, sizeof g->site - l,
                     " (checked together with %u more accesses at constant offsets)", g->count - 1);
            p->merged += g->count - 1;
        }
        if (g->ekey && g->esize > 1) {
            /* the check spans the element, not only the bytes the access names (the element rule) */
            size_t l = strlen(g->site);
            snprintf(g->site + l, sizeof g->site - l, " (its %lld-byte array element checked whole)",
                     (long long)g->esize);
        }
        /* Constant offsets from the base itself (x is its own base: loaded, an argument, a
         * call's result) cannot start before the object: the cheaper check. Sizes and offsets
         * this large are not real accesses, they keep the general check. */
        if (g->x == g->base && g->lo >= 0 && g->hi < (INT64_C(1) << 40)) {
            emit_check_at(p, g->first, g->base, g->lo, g->hi, g->site);
            continue;
        }
        /* Starting below the base itself (a header before the pointer, sds's s[-1]): the
         * general check would call the exact one every time; this one decides inline. In full
         * mode also below a pointer derived from the base (x = base + a variable, then x[-k]:
         * sqlite's backward scans of a file name, `while (z[-1] || z[-2] ...) z--`, its parser's
         * yymsp[-k]): such an access is often below the base, where the general check's exact
         * check runs out of the function, in the far segment, whose pages it then brings in
         * (sqlite's full build: 128 KB less of it resident, +1.7% instructions; harden, whose
         * memory has room and whose time has none, keeps the general check: bench/RESULTS.md,
         * ms20). */
        if ((g->x == g->base || p->mode == MODE_FULL) && g->lo < 0 && g->lo > -(INT64_C(1) << 40) &&
            g->hi < (INT64_C(1) << 40)) {
            emit_check(p, g->first, p->check_below_fn, g->base, ptr,
                       LLVMConstInt(p->i64_ty, (uint64_t)(g->hi - g->lo), 0), g->site);
            p->below++;
            continue;
        }
        /* __scp_ms_check takes lengths below 2^40 (check.c); longer ones cannot be real
         * accesses, but get the check of any length. */
        uint64_t len = (uint64_t)g->hi - (uint64_t)g->lo;
        emit_check(p, g->first, len < (UINT64_C(1) << 40) ? p->check_fn : p->check_mem_fn, g->base, ptr,
                   LLVMConstInt(p->i64_ty, len, 0), g->site);
    }
    p->ngroups = 0;
}

/* The object holds [x + off, x + off + n) on every path here, with no call since: 1 (counted as
 * already checked), or 0 after recording that it will once this access's check passed. A
 * pointer that is its own base (loaded, an argument, a call's result) is in its object, so a
 * check of [x + lo, x + hi) with lo >= 0 shows [x, x + hi) too: its fact starts at 0. */
static int fact_known(struct pass *p, LLVMValueRef x, LLVMValueRef base, int64_t off, uint64_t n)
{
    int64_t flo = x == base && off >= 0 ? 0 : off;
    if (facts_cover(&p->cur, x, flo, off + (int64_t)n)) {
        if (!p->dry)
            p->available++;
        return 1;
    }
    facts_add(&p->cur, x, flo, off + (int64_t)n);
    return 0;
}

/* The first field of a struct, stored or loaded through the pointer itself: no GEP names the
 * struct (`p->first = v` is `store v, ptr %p`), but the access's TBAA tag does, as clang gives it:
 * !{!T, !S, i64 0}, a struct type T (the base type, not the scalar S itself) and a scalar member
 * S at offset 0. The access is in bounds of a whole T when it is S's size: a store merged from
 * several fields gets the most generic tag of theirs, a scalar one (base == access), and an array
 * member gets its element's scalar tag, so neither counts. */
static int typed_first_field(struct pass *p, LLVMValueRef inst, LLVMValueRef ptr, uint64_t n)
{
    static const struct {
        const char *name;
        uint64_t size;
    } scalars[] = { { "omnipotent char", 1 }, { "_Bool", 1 }, { "short", 2 }, { "int", 4 }, { "float", 4 },
                    { "long", 8 }, { "long long", 8 }, { "double", 8 }, { "any pointer", 8 } };
    static unsigned tbaa;
    if (!tbaa)
        tbaa = LLVMGetMDKindIDInContext(p->ctx, "tbaa", 4);
    if (!is_ptr(ptr) || base_of(p, ptr) != ptr)
        return 0;
    LLVMValueRef tag = LLVMGetMetadata(inst, tbaa);
    if (!tag || LLVMGetMDNodeNumOperands(tag) < 3)
        return 0;
    LLVMValueRef t[8];
    unsigned nt = LLVMGetMDNodeNumOperands(tag);
    if (nt > 8)
        return 0;
    LLVMGetMDNodeOperands(tag, t);
    if (t[0] == t[1] || !t[2] || !LLVMIsAConstantInt(t[2]) || LLVMConstIntGetZExtValue(t[2]) != 0)
        return 0;
    /* The access type: !{!"name", !parent, i64 0}. */
    if (!t[1] || LLVMGetMDNodeNumOperands(t[1]) != 3)
        return 0;
    LLVMValueRef s[3];
    LLVMGetMDNodeOperands(t[1], s);
    unsigned len;
    const char *name = s[0] ? LLVMGetMDString(s[0], &len) : NULL;
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        if (strlen(scalars[i].name) == len && !memcmp(scalars[i].name, name, len))
            return scalars[i].size == n;
    return 0;
}

/* The rule of --trust-types (docs/memsafe.md). ptr is
 *   getelementptr inbounds %T, ptr %x, i64 0, <constant struct field indices>
 * (or a chain of such GEPs, the outermost from %x naming T), every index naming a struct field
 * (none an array element: a GEP that walks an array, a trailing or flexible array included,
 * stays checked), %x a pointer that is its own base (loaded, an argument, a call's result), and
 * the access [offset, offset + n) inside sizeof(T): then the access is in bounds whenever %x
 * points to a whole T, which C's effective-type rules require of an access through a T. An
 * access through %x itself (T's first field, no GEP) counts when its TBAA tag names T
 * (typed_first_field). What it
 * stops catching: an access through %x when %x points to an undersized allocation, a freed or
 * reused object, or an object of another type (probe typed_undersized). */
static int typed_in_bounds(struct pass *p, LLVMValueRef inst, LLVMValueRef ptr, uint64_t n)
{
    int64_t off = 0;
    LLVMTypeRef outer = NULL;
    LLVMValueRef v = ptr;
    if (!LLVMIsAGetElementPtrInst(v))
        return typed_first_field(p, inst, ptr, n);
    while (LLVMIsAGetElementPtrInst(v)) {
        LLVMTypeRef ty = LLVMGetGEPSourceElementType(v);
        unsigned nops = (unsigned)LLVMGetNumOperands(v);
        if (LLVMGetTypeKind(ty) != LLVMStructTypeKind || !LLVMIsInBounds(v) || nops < 3)
            return 0;
        LLVMValueRef i1 = LLVMGetOperand(v, 1);
        if (!LLVMIsAConstantInt(i1) || LLVMConstIntGetZExtValue(i1) != 0)
            return 0;
        LLVMTypeRef t = ty;
        for (unsigned i = 2; i < nops; i++) {
            LLVMValueRef idx = LLVMGetOperand(v, i);
            if (LLVMGetTypeKind(t) != LLVMStructTypeKind || !LLVMIsAConstantInt(idx))
                return 0;
            unsigned k = (unsigned)LLVMConstIntGetZExtValue(idx);
            if (k >= LLVMCountStructElementTypes(t))
                return 0;
            off += (int64_t)LLVMOffsetOfElement(p->td, t, k);
            t = LLVMStructGetTypeAtIndex(t, k);
        }
        /* The field the GEP lands on: an array there (a trailing array of size 0 or 1, a
         * struct whose first field is an array) is indexed memory, not a field. */
        for (;;) {
            if (LLVMGetTypeKind(t) == LLVMArrayTypeKind)
                return 0;
            if (LLVMGetTypeKind(t) != LLVMStructTypeKind || LLVMCountStructElementTypes(t) == 0)
                break;
            t = LLVMStructGetTypeAtIndex(t, 0);
        }
        outer = ty;
        v = LLVMGetOperand(v, 0);
    }
    if (!outer || !is_ptr(v) || base_of(p, v) != v)
        return 0;
    assert(off >= 0);
    return n > 0 && (uint64_t)off + n <= LLVMABISizeOfType(p->td, outer);
}

/* SCP_MS_STATS: the form of a checked access through a pointer that is its own base. */
static void count_self_form(struct pass *p, LLVMValueRef ptr)
{
    if (!LLVMIsAGetElementPtrInst(ptr)) {
        p->self_direct++;
        return;
    }
    LLVMTypeRef ty = LLVMGetGEPSourceElementType(ptr);
    if (LLVMGetTypeKind(ty) == LLVMIntegerTypeKind && LLVMGetIntTypeWidth(ty) == 8)
        p->self_i8++;
    else if (LLVMGetTypeKind(ty) == LLVMStructTypeKind)
        p->self_array++;
    else
        p->self_other++;
}

/* Widen group g's range to its whole element, [elo, ehi) relative to g->x, when the access is to
 * an element checked whole (elo < ehi: the element rule), and name the element, so that the
 * facts and the report know it; counts the groups that the widening made larger. */
static void group_widen(struct pass *p, struct group *g, int64_t elo, int64_t ehi, const struct elem_ref *er)
{
    if (elo >= ehi)
        return;
    p->whole += g->lo > elo || g->hi < ehi;
    g->lo = g->lo < elo ? g->lo : elo;
    g->hi = g->hi > ehi ? g->hi : ehi;
    g->ekey = er->key;
    g->esize = er->size;
}

/* A load or store of n bytes at ptr by `inst`. */
static void scalar_access(struct pass *p, LLVMValueRef inst, LLVMValueRef ptr, uint64_t n,
                          const char *what)
{
    if (!is_ptr(ptr))
        return;
    int64_t off;
    struct elem_ref er;
    LLVMValueRef x = strip_const_offsets(p, ptr, &off, inst, &er);
    LLVMValueRef base = base_of(p, x);
    if (is_non_heap(base)) {
        p->pruned += !p->dry;
        return;
    }
    if (p->trust_types && typed_in_bounds(p, inst, ptr, n)) {
        p->typed += !p->dry;
        return;
    }
    int64_t known = x == base ? known_alloc_size(base) : -1;
    if (known >= 0 && off >= 0 && (uint64_t)off + n <= (uint64_t)known) {
        p->pruned += !p->dry;
        return;
    }
    if (memo_get(&p->hoisted, inst)) {
        p->pruned += !p->dry;
        return;
    }
    /* Checked on every path here, with no call since (p->c checked, then p->a in a block it
     * dominates): the object still holds the range. An element src[i] is checked whole (the
     * element rule: p[i].f is an access to the T p[i], which C requires to lie in its object),
     * and known so by its key in every block its check reaches: p[i].n checked, then p[i].z
     * stored in a block it dominates needs no check (sqlite's interpreter: pDest->n, then
     * pDest->z = pDest->zMalloc). The element's bytes relative to x (the element's address, or
     * the field GEP when the block has no other access to the element: x = elem + er.off - off). */
    int64_t elo = 0, ehi = 0;
    /* The access inside its element: an access at an offset outside it ((char *)&p[n] - 1, the
     * last byte before a one-past-the-end element) is not an access to that element. */
    if (er.key && er.size > 0 && er.size < (INT64_C(1) << 30) && er.off >= 0 && er.off + (int64_t)n <= er.size) {
        int64_t lo = 0, hi = er.size;
        if (facts_cover(&p->cur, er.key, er.off, er.off + (int64_t)n)) {
            /* by the check of this block's group for the element, or by one on every path here */
            for (size_t i = 0; i < p->ngroups && !p->dry; i++)
                if (p->groups[i].ekey == er.key) {
                    p->groups[i].count++;
                    return;
                }
            p->available += !p->dry;
            return;
        }
        facts_add(&p->cur, er.key, lo, hi);
        elo = lo - (er.off - off);
        ehi = hi - (er.off - off);
    } else if (fact_known(p, x, base, off, n)) {
        return;
    }
    if (p->dry)
        return;
    if (x == base && off >= 0)
        count_self_form(p, ptr);
    for (size_t i = 0; i < p->ngroups; i++) {
        struct group *g = &p->groups[i];
        if (g->x == x) {
            if (off < g->lo)
                g->lo = off;
            if (off + (int64_t)n > g->hi)
                g->hi = off + (int64_t)n;
            group_widen(p, g, elo, ehi, &er);
            g->count++;
            return;
        }
    }
    if (p->ngroups == p->cap_groups) {
        p->cap_groups = p->cap_groups ? 2 * p->cap_groups : 16;
        p->groups = xrealloc(p->groups, p->cap_groups * sizeof *p->groups);
    }
    struct group *g = &p->groups[p->ngroups++];
    *g = (struct group){ .x = x, .base = base, .first = inst, .lo = off, .hi = off + (int64_t)n,
                         .count = 1 };
    group_widen(p, g, elo, ehi, &er);
    char what_n[64];
    snprintf(what_n, sizeof what_n, "%s of %llu bytes", what, (unsigned long long)n);
    describe(p, inst, what_n, g->site, sizeof g->site);
}

static void mem_access(struct pass *p, LLVMValueRef inst, LLVMValueRef ptr, LLVMValueRef len,
                       const char *what)
{
    if (!is_ptr(ptr))
        return;
    LLVMValueRef base = base_of(p, ptr);
    if (is_non_heap(base)) {
        p->pruned += !p->dry;
        return;
    }
    /* A constant length: the range is known checked after it, as a scalar access's is
     * (memset(p, 0, sizeof *p), then p->a = ..), and needs no check if it already is. */
    int64_t off = 0;
    LLVMValueRef x = NULL;
    uint64_t n = 0;
    if (LLVMIsAConstantInt(len)) {
        n = LLVMConstIntGetZExtValue(len);
        x = strip_const_offsets(p, ptr, &off, NULL, NULL);
        if (n > 0 && n < (UINT64_C(1) << 40) && off > -(INT64_C(1) << 40) && off < (INT64_C(1) << 40)) {
            if (fact_known(p, x, base, off, n))
                return;
        } else {
            x = NULL;
        }
    }
    if (p->dry)
        return;
    char site[320];
    describe(p, inst, what, site, sizeof site);
    /* A constant length below 2^40 is checked as a scalar access of that size is: one compare
     * at constant offsets from a pointer that is its own base (check_at), two otherwise; the check
     * of any length needs three (a zero length, and a length that could wrap). */
    if (x && x == base && off >= 0)
        emit_check_at(p, inst, base, off, off + (int64_t)n, site);
    else if (x)
        emit_check(p, inst, p->check_fn, base, ptr, len, site);
    else
        emit_check(p, inst, p->check_mem_fn, base, ptr, len, site);
}

enum mem_fn { MEM_NONE, MEM_COPY, MEM_MOVE, MEM_SET };

static enum mem_fn mem_kind(const char *n)
{
    if (!strncmp(n, "llvm.memcpy.", 12) || !strcmp(n, "memcpy") || !strcmp(n, "__memcpy_chk"))
        return MEM_COPY;
    if (!strncmp(n, "llvm.memmove.", 13) || !strcmp(n, "memmove") || !strcmp(n, "__memmove_chk"))
        return MEM_MOVE;
    if (!strncmp(n, "llvm.memset.", 12) || !strcmp(n, "memset") || !strcmp(n, "__memset_chk"))
        return MEM_SET;
    return MEM_NONE;
}

static int call_is_nofree(LLVMValueRef call)
{
    static unsigned kind;
    if (!kind)
        kind = LLVMGetEnumAttributeKindForName("nofree", 6);
    if (LLVMGetCallSiteEnumAttribute(call, LLVMAttributeFunctionIndex, kind))
        return 1;
    LLVMValueRef f = LLVMGetCalledValue(call);
    return f && LLVMIsAFunction(f) && LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, kind);
}

static void call_access(struct pass *p, LLVMValueRef inst)
{
    const char *n = ms_callee_name(inst);
    if (!strncmp(n, "__scp_ms_", 9))
        return; /* a check made before a loop: it frees nothing */
    enum mem_fn k = mem_kind(n);
    if (k == MEM_NONE) {
        /* A call may exit: the range checks of earlier accesses go before it. A call may
         * free: what was checked before it is not known after it, unless the optimizer
         * proved that it frees nothing that existed before it (nofree: neither the callee
         * nor anything it calls frees or reallocates such memory). */
        if (strncmp(n, "llvm.", 5) != 0) {
            flush_groups(p);
            if (!call_is_nofree(inst))
                p->cur.n = 0;
        }
        return;
    }
    if (LLVMGetNumArgOperands(inst) < 3)
        return;
    const char *fn = k == MEM_COPY ? "memcpy" : k == MEM_MOVE ? "memmove" : "memset";
    char what[64];
    snprintf(what, sizeof what, "%s destination (write)", fn);
    mem_access(p, inst, LLVMGetOperand(inst, 0), LLVMGetOperand(inst, 2), what);
    if (k != MEM_SET) {
        snprintf(what, sizeof what, "%s source (read)", fn);
        mem_access(p, inst, LLVMGetOperand(inst, 1), LLVMGetOperand(inst, 2), what);
    }
}

/* Checks the accesses of bb given what is known on entry (in); with p->dry, only computes
 * what is known at its end (p->cur). */
static void instrument_block(struct pass *p, LLVMBasicBlockRef bb, const struct facts *in)
{
    p->cur = *in;
    assert(!p->cur.top);
    for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i)) {
        switch (LLVMGetInstructionOpcode(i)) {
        case LLVMStore: {
            LLVMTypeRef t = LLVMTypeOf(LLVMGetOperand(i, 0));
            scalar_access(p, i, LLVMGetOperand(i, 1), LLVMStoreSizeOfType(p->td, t), "store");
            break;
        }
        case LLVMLoad:
            if (p->mode == MODE_FULL)
                scalar_access(p, i, LLVMGetOperand(i, 0), LLVMStoreSizeOfType(p->td, LLVMTypeOf(i)),
                              "load");
            break;
        case LLVMAtomicRMW: {
            LLVMTypeRef t = LLVMTypeOf(LLVMGetOperand(i, 1));
            scalar_access(p, i, LLVMGetOperand(i, 0), LLVMStoreSizeOfType(p->td, t), "atomic update");
            break;
        }
        case LLVMAtomicCmpXchg: {
            LLVMTypeRef t = LLVMTypeOf(LLVMGetOperand(i, 2));
            scalar_access(p, i, LLVMGetOperand(i, 0), LLVMStoreSizeOfType(p->td, t),
                          "atomic compare-exchange");
            break;
        }
        case LLVMCall:
        case LLVMInvoke:
            call_access(p, i);
            break;
        default:
            break;
        }
    }
    flush_groups(p);
}

/* ---- the CFG and the checks available at each block ----------------------------------------- */

/* Index + 1 of each block of the function being instrumented (1 while the DFS runs). */
static struct memo ms_bb_index;

static size_t cfg_index(LLVMBasicBlockRef bb)
{
    LLVMValueRef v = memo_get(&ms_bb_index, LLVMBasicBlockAsValue(bb));
    return v ? (size_t)(uintptr_t)v - 1 : SIZE_MAX;
}

static unsigned succ_count(LLVMBasicBlockRef bb)
{
    LLVMValueRef t = LLVMGetBasicBlockTerminator(bb);
    return t ? LLVMGetNumSuccessors(t) : 0;
}

/* Reverse postorder of the blocks reachable from the entry, by an explicit-stack DFS. */
static void cfg_build(struct cfg *g, LLVMValueRef f)
{
    size_t nblocks = LLVMCountBasicBlocks(f);
    memo_clear(&ms_bb_index);
    *g = (struct cfg){ 0 };
    g->bb = xrealloc(NULL, nblocks * sizeof *g->bb);
    LLVMBasicBlockRef *stack = xrealloc(NULL, nblocks * sizeof *stack);
    unsigned *next = xrealloc(NULL, nblocks * sizeof *next);
    LLVMBasicBlockRef *post = xrealloc(NULL, nblocks * sizeof *post);
    size_t sp = 0, npost = 0;
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(f);
    memo_put(&ms_bb_index, LLVMBasicBlockAsValue(entry), (LLVMValueRef)(uintptr_t)1);
    stack[sp] = entry;
    next[sp++] = 0;
    while (sp > 0) {
        LLVMBasicBlockRef bb = stack[sp - 1];
        if (next[sp - 1] < succ_count(bb)) {
            LLVMBasicBlockRef s = LLVMGetSuccessor(LLVMGetBasicBlockTerminator(bb), next[sp - 1]++);
            if (!memo_get(&ms_bb_index, LLVMBasicBlockAsValue(s))) {
                memo_put(&ms_bb_index, LLVMBasicBlockAsValue(s), (LLVMValueRef)(uintptr_t)1);
                assert(sp < nblocks);
                stack[sp] = s;
                next[sp++] = 0;
            }
            continue;
        }
        post[npost++] = bb;
        sp--;
    }
    g->n = npost;
    for (size_t i = 0; i < npost; i++) {
        g->bb[i] = post[npost - 1 - i];
        memo_put(&ms_bb_index, LLVMBasicBlockAsValue(g->bb[i]), (LLVMValueRef)(uintptr_t)(i + 1));
    }
    /* Predecessors (reachable ones only), each list ended by SIZE_MAX. */
    size_t *count = calloc(g->n + 1, sizeof *count);
    if (!count)
        exit(1);
    for (size_t i = 0; i < g->n; i++)
        for (unsigned k = 0; k < succ_count(g->bb[i]); k++)
            count[cfg_index(LLVMGetSuccessor(LLVMGetBasicBlockTerminator(g->bb[i]), k))]++;
    g->preds = xrealloc(NULL, (g->n ? g->n : 1) * sizeof *g->preds);
    for (size_t i = 0; i < g->n; i++) {
        g->preds[i] = xrealloc(NULL, (count[i] + 1) * sizeof **g->preds);
        g->preds[i][0] = SIZE_MAX;
        count[i] = 0;
    }
    for (size_t i = 0; i < g->n; i++)
        for (unsigned k = 0; k < succ_count(g->bb[i]); k++) {
            size_t j = cfg_index(LLVMGetSuccessor(LLVMGetBasicBlockTerminator(g->bb[i]), k));
            g->preds[j][count[j]++] = i;
            g->preds[j][count[j]] = SIZE_MAX;
        }
    free(count);
    free(stack);
    free(next);
    free(post);
    g->in = xrealloc(NULL, (g->n ? g->n : 1) * sizeof *g->in);
    g->out = xrealloc(NULL, (g->n ? g->n : 1) * sizeof *g->out);
}

static void cfg_free(struct cfg *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->preds[i]);
    free(g->preds);
    free(g->bb);
    free(g->in);
    free(g->out);
    memo_clear(&ms_bb_index);
}

/* Facts about the pointer PHIs of block i: p = phi [v1, b1], ..., [vn, bn] holds on entry what
 * was known of v_k at the end of every b_k (the intersection of their ranges), since p is v_k on
 * the edge from b_k, and p's base is v_k's base there (base_of makes the PHI of the incoming
 * bases). Facts name SSA values: without this, a block that jump threading copied (one copy per
 * way in) knows nothing after the copies join, of the PHI that joins their pointers (sqlite's
 * interpreter: pC->cacheStatus stored in each copy of OP_Next's tail, then pC->nullRow after
 * them, through the PHI). A predecessor not reached yet (top) or unreachable adds no condition. */
static void phi_facts(const struct cfg *g, size_t i, struct facts *in)
{
    for (LLVMValueRef v = LLVMGetFirstInstruction(g->bb[i]); v && LLVMIsAPHINode(v); v = LLVMGetNextInstruction(v)) {
        if (!is_ptr(v) || in->n >= MS_MAX_FACTS || facts_find(in, v))
            continue;
        int64_t lo = INT64_MIN, hi = INT64_MAX;
        int any = 0, ok = 1;
        unsigned n = LLVMCountIncoming(v);
        for (unsigned k = 0; k < n && ok; k++) {
            size_t q = cfg_index(LLVMGetIncomingBlock(v, k));
            if (q == SIZE_MAX || g->out[q].top)
                continue;
            LLVMValueRef x = LLVMGetIncomingValue(v, k);
            const struct fact *f = NULL;
            for (unsigned j = 0; j < g->out[q].n && !f; j++)
                if (g->out[q].f[j].x == x)
                    f = &g->out[q].f[j];
            if (!f) {
                ok = 0;
                break;
            }
            lo = f->lo > lo ? f->lo : lo;
            hi = f->hi < hi ? f->hi : hi;
            any = 1;
        }
        if (ok && any && lo < hi)
            in->f[in->n++] = (struct fact){ v, lo, hi };
    }
}

/* The checks available on entry to each block: an iterative must-analysis (intersection over
 * predecessors, a call forgets everything), from "everything" down to its greatest fixpoint.
 * It generalizes "an earlier check in a dominating block": a check made on every path in. If
 * it does not settle in a bounded number of rounds, nothing is assumed known anywhere. */
static void cfg_available(struct pass *p, struct cfg *g)
{
    for (size_t i = 0; i < g->n; i++) {
        g->out[i] = (struct facts){ .top = 1 };
        g->in[i] = (struct facts){ 0 };
    }
    p->dry = 1;
    int changed = 1, phis = !getenv("SCP_MS_NO_PHI_FACTS"); /* SCP_MS_NO_PHI_FACTS: a measurement aid */
    for (int round = 0; changed && round < 16; round++) {
        changed = 0;
        for (size_t i = 0; i < g->n; i++) {
            struct facts in = { .top = i != 0 };
            for (const size_t *q = g->preds[i]; *q != SIZE_MAX; q++)
                facts_meet(&in, &g->out[*q]);
            in.top = 0; /* a block with only unreached predecessors so far: nothing known */
            if (phis)
                phi_facts(g, i, &in);
            g->in[i] = in;
            instrument_block(p, g->bb[i], &in);
            if (!facts_equal(&p->cur, &g->out[i])) {
                g->out[i] = p->cur;
                changed = 1;
            }
        }
    }
    p->dry = 0;
    p->ngroups = 0;
    if (changed)
        for (size_t i = 0; i < g->n; i++)
            g->in[i] = (struct facts){ 0 };
}

/* ---- loops: one range check before the loop for accesses at an induction variable --------- */

/* Immediate dominators (Cooper, Harvey and Kennedy), by reverse-postorder index. */
static size_t *cfg_dominators(const struct cfg *g)
{
    size_t cap = g->n ? g->n : 1;
    size_t *idom = calloc(cap, sizeof *idom); /* every entry written: 0, then SIZE_MAX but the entry's */
    if (!idom)
        exit(1);
    for (size_t i = 1; i < cap; i++)
        idom[i] = SIZE_MAX;
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 1; i < g->n; i++) {
            size_t d = SIZE_MAX;
            for (const size_t *q = g->preds[i]; *q != SIZE_MAX; q++) {
                size_t a = *q;
                if (idom[a] == SIZE_MAX)
                    continue;
                if (d == SIZE_MAX) {
                    d = a;
                    continue;
                }
                while (a != d) {
                    while (a > d)
                        a = idom[a];
                    while (d > a)
                        d = idom[d];
                }
            }
            if (d != idom[i]) {
                idom[i] = d;
                changed = 1;
            }
        }
    }
    return idom;
}

/* Whether block a dominates block b. The blocks are the reachable ones in reverse postorder
 * (cfg_build), so every block but the entry has a predecessor before it and its immediate
 * dominator comes before it: idom[b] < b for b > 0, and the walk up from b ends at or below a. */
static int dominates(const size_t *idom, size_t a, size_t b)
{
    while (b > a) {
        size_t up = idom[b];
        assert(up < b);
        b = up;
    }
    return a == b;
}

static int defined_outside(LLVMValueRef v, const unsigned char *in_loop)
{
    if (!LLVMIsAInstruction(v))
        return LLVMIsAArgument(v) || LLVMIsAConstant(v);
    size_t k = cfg_index(LLVMGetInstructionParent(v));
    return k != SIZE_MAX && !in_loop[k];
}

/* A loop the range check can be made for: one latch T that is its only exit, a preheader P
 * that only jumps to the header H, no call and no trap inside (nothing can end it early), and
 * an induction variable i = phi [start, P], [i + C, T] (C > 0 constant) with the latch's
 * test `i + C == N` (or !=) against a value N from outside. Then every block that dominates T
 * runs once for each i in start, start + C, ..., N - C, and nothing else runs. */
struct canon_loop {
    size_t h, t, pre;
    LLVMValueRef iv, start, step, end;
};

static int canonical_loop(const struct cfg *g, const size_t *idom, size_t h, size_t t,
                          unsigned char *in_loop, struct canon_loop *L)
{
    /* The body: blocks that reach t without passing h. */
    memset(in_loop, 0, g->n);
    size_t *stack = xrealloc(NULL, g->n * sizeof *stack), sp = 0;
    in_loop[h] = 1;
    if (!in_loop[t]) {
        in_loop[t] = 1;
        stack[sp++] = t;
    }
    while (sp > 0) {
        size_t b = stack[--sp];
        for (const size_t *q = g->preds[b]; *q != SIZE_MAX; q++)
            if (!in_loop[*q]) {
                in_loop[*q] = 1;
                stack[sp++] = *q;
            }
    }
    free(stack);
    size_t pre = SIZE_MAX, outside = 0;
    for (const size_t *q = g->preds[h]; *q != SIZE_MAX; q++) {
        if (in_loop[*q]) {
            if (*q != t)
                return 0; /* a second back edge */
        } else {
            pre = *q;
            outside++;
        }
    }
    if (outside != 1 || succ_count(g->bb[pre]) != 1)
        return 0;
    for (size_t b = 0; b < g->n; b++) {
        if (!in_loop[b])
            continue;
        if (!dominates(idom, h, b))
            return 0;
        LLVMValueRef term = LLVMGetBasicBlockTerminator(g->bb[b]);
        unsigned ns = succ_count(g->bb[b]);
        if (!term || LLVMGetInstructionOpcode(term) != LLVMBr || ns == 0)
            return 0;
        for (unsigned k = 0; k < ns; k++) {
            size_t sidx = cfg_index(LLVMGetSuccessor(term, k));
            if (b != t && (sidx == SIZE_MAX || !in_loop[sidx]))
                return 0; /* an exit other than the latch */
        }
        for (LLVMValueRef i = LLVMGetFirstInstruction(g->bb[b]); i; i = LLVMGetNextInstruction(i)) {
            if (!LLVMIsACallInst(i) && !LLVMIsAInvokeInst(i))
                continue;
            const char *n = ms_callee_name(i);
            if (strncmp(n, "llvm.", 5) != 0 || strstr(n, "trap"))
                return 0;
        }
    }
    LLVMValueRef term = LLVMGetBasicBlockTerminator(g->bb[t]);
    if (!LLVMIsConditional(term))
        return 0;
    LLVMValueRef cond = LLVMGetCondition(term);
    if (!LLVMIsAICmpInst(cond))
        return 0;
    LLVMIntPredicate pr = LLVMGetICmpPredicate(cond);
    size_t to_h = cfg_index(LLVMGetSuccessor(term, 0)) == h ? 0 : 1;
    /* eq: true leaves the loop; ne: true goes round again. */
    if (!((pr == LLVMIntEQ && to_h == 1) || (pr == LLVMIntNE && to_h == 0)))
        return 0;
    for (int side = 0; side < 2; side++) {
        LLVMValueRef next = LLVMGetOperand(cond, (unsigned)side), end = LLVMGetOperand(cond, (unsigned)!side);
        if (!LLVMIsAInstruction(next) || LLVMGetInstructionOpcode(next) != LLVMAdd ||
            LLVMGetTypeKind(LLVMTypeOf(next)) != LLVMIntegerTypeKind ||
            LLVMGetIntTypeWidth(LLVMTypeOf(next)) != 64 || !defined_outside(end, in_loop))
            continue;
        for (int o = 0; o < 2; o++) {
            LLVMValueRef iv = LLVMGetOperand(next, (unsigned)o), c = LLVMGetOperand(next, (unsigned)!o);
            if (!LLVMIsAPHINode(iv) || LLVMGetInstructionParent(iv) != g->bb[h] ||
                LLVMCountIncoming(iv) != 2 || !LLVMIsAConstantInt(c) || LLVMConstIntGetSExtValue(c) <= 0 ||
                LLVMConstIntGetSExtValue(c) > 4096)
                continue;
            LLVMValueRef start = NULL;
            int back_ok = 0;
            for (unsigned k = 0; k < 2; k++) {
                size_t from = cfg_index(LLVMGetIncomingBlock(iv, k));
                if (from == pre)
                    start = LLVMGetIncomingValue(iv, k);
                else if (from == t && LLVMGetIncomingValue(iv, k) == next)
                    back_ok = 1;
            }
            if (!start || !back_ok)
                continue;
            *L = (struct canon_loop){ h, t, pre, iv, start, c, end };
            return 1;
        }
    }
    return 0;
}

/* x + i * stride + off, with i the loop's induction variable and x from outside: returns x. */
static LLVMValueRef iv_address(struct pass *p, LLVMValueRef ptr, const struct canon_loop *L,
                               const unsigned char *in_loop, int64_t *stride, int64_t *off)
{
    if (!LLVMIsAGetElementPtrInst(ptr) || LLVMGetNumOperands(ptr) < 2 || LLVMGetOperand(ptr, 1) != L->iv)
        return NULL;
    LLVMValueRef x = LLVMGetOperand(ptr, 0);
    if (!is_ptr(x) || !defined_outside(x, in_loop))
        return NULL;
    LLVMTypeRef ty = LLVMGetGEPSourceElementType(ptr);
    *stride = (int64_t)LLVMABISizeOfType(p->td, ty);
    *off = 0;
    for (int i = 2; i < LLVMGetNumOperands(ptr); i++) {
        LLVMValueRef idx = LLVMGetOperand(ptr, i);
        if (!LLVMIsAConstantInt(idx))
            return NULL;
        int64_t k = LLVMConstIntGetSExtValue(idx);
        if (LLVMGetTypeKind(ty) == LLVMStructTypeKind) {
            *off += (int64_t)LLVMOffsetOfElement(p->td, ty, (unsigned)k);
            ty = LLVMStructGetTypeAtIndex(ty, (unsigned)k);
        } else if (LLVMGetTypeKind(ty) == LLVMArrayTypeKind) {
            ty = LLVMGetElementType(ty);
            *off += k * (int64_t)LLVMABISizeOfType(p->td, ty);
        } else {
            return NULL;
        }
    }
    return *stride > 0 ? x : NULL;
}

/* Before the loop: check [x + start*stride + off, x + (end - step)*stride + off + n), the bytes
 * the access touches over all iterations, and mark the access as covered. */
static void hoist_range_check(struct pass *p, const struct cfg *g, const struct canon_loop *L,
                              LLVMValueRef inst, LLVMValueRef x, int64_t stride, int64_t off,
                              uint64_t n, const char *what)
{
    LLVMValueRef base = base_of(p, x);
    if (is_non_heap(base))
        return;
    LLVMValueRef before = LLVMGetBasicBlockTerminator(g->bb[L->pre]);
    LLVMPositionBuilderBefore(p->b, before);
    LLVMValueRef s = LLVMConstInt(p->i64_ty, (unsigned long long)stride, 0);
    LLVMValueRef lo = LLVMBuildAdd(p->b, LLVMBuildMul(p->b, L->start, s, ""),
                                   LLVMConstInt(p->i64_ty, (unsigned long long)off, 1), "");
    LLVMValueRef first = LLVMBuildGEP2(p->b, p->i8_ty, x, &lo, 1, "ms.loop.lo");
    LLVMValueRef span = LLVMBuildSub(p->b, LLVMBuildSub(p->b, L->end, L->step, ""), L->start, "");
    LLVMValueRef len = LLVMBuildAdd(p->b, LLVMBuildMul(p->b, span, s, ""),
                                    LLVMConstInt(p->i64_ty, n, 0), "ms.loop.len");
    char what_n[96], site[320];
    snprintf(what_n, sizeof what_n, "%s of %llu bytes in a loop (checked for all its iterations)", what,
             (unsigned long long)n);
    describe(p, inst, what_n, site, sizeof site);
    /* A length computed at run time: the check of any length (which takes a zero length as
     * touching nothing; the loop's length is at least n unless its bounds make it wrap). */
    emit_check(p, before, p->check_mem_fn, base, first, len, site);
    memo_put(&p->hoisted, inst, inst);
    p->loops++;
}

static void hoist_loop_checks(struct pass *p, const struct cfg *g)
{
    if (g->n < 2)
        return;
    size_t *idom = cfg_dominators(g);
    unsigned char *in_loop = xrealloc(NULL, g->n);
    for (size_t t = 0; t < g->n; t++) {
        for (unsigned k = 0; k < succ_count(g->bb[t]); k++) {
            size_t h = cfg_index(LLVMGetSuccessor(LLVMGetBasicBlockTerminator(g->bb[t]), k));
            struct canon_loop L;
            if (h == SIZE_MAX || !dominates(idom, h, t) || !canonical_loop(g, idom, h, t, in_loop, &L))
                continue;
            for (size_t b = 0; b < g->n; b++) {
                if (!in_loop[b] || !dominates(idom, b, t))
                    continue;
                for (LLVMValueRef i = LLVMGetFirstInstruction(g->bb[b]); i; i = LLVMGetNextInstruction(i)) {
                    LLVMOpcode op = LLVMGetInstructionOpcode(i);
                    LLVMValueRef ptr;
                    uint64_t n;
                    const char *what;
                    if (op == LLVMStore) {
                        ptr = LLVMGetOperand(i, 1);
                        n = LLVMStoreSizeOfType(p->td, LLVMTypeOf(LLVMGetOperand(i, 0)));
                        what = "store";
                    } else if (op == LLVMLoad && p->mode == MODE_FULL) {
                        ptr = LLVMGetOperand(i, 0);
                        n = LLVMStoreSizeOfType(p->td, LLVMTypeOf(i));
                        what = "load";
                    } else {
                        continue;
                    }
                    int64_t stride, off;
                    LLVMValueRef x = iv_address(p, ptr, &L, in_loop, &stride, &off);
                    if (x)
                        hoist_range_check(p, g, &L, i, x, stride, off, n, what);
                }
            }
        }
    }
    free(in_loop);
    free(idom);
}

/* The region table and the objects' size metadata are written by the runtime only (malloc,
 * free, realloc: calls), never by a load, store or mem* intrinsic of the program: tell the
 * optimizer so, by an alias scope of their own. Without it, every store (a u8 or u32 store
 * may alias a uint32_t size entry, as far as LLVM can tell) forces the next check of the same
 * object to load its table entry and size again, and a loop that stores keeps its checks'
 * lookups inside. With it, a check's lookup is shared with an earlier one of the same base
 * across stores, and hoisted out of loops that make no call (a call may free: it still
 * clobbers the metadata). Measured on sqlite's speedtest1 (instructions): the scope alone
 * 434.6M -> 440.6M (the interpreter loop keeps more lookups live, and spills them), the scope
 * with straight-line checks (check.c) 431.1M, the straight-line checks alone 441.3M. */
static void add_noalias_scope(struct pass *p, LLVMValueRef inst)
{
    LLVMValueRef old = LLVMGetMetadata(inst, p->md_noalias);
    unsigned n = old ? LLVMGetMDNodeNumOperands(old) : 0;
    LLVMValueRef *ops = xrealloc(NULL, (n + 1) * sizeof *ops);
    LLVMMetadataRef *mds = xrealloc(NULL, (n + 1) * sizeof *mds);
    if (old)
        LLVMGetMDNodeOperands(old, ops);
    for (unsigned i = 0; i < n; i++)
        mds[i] = LLVMValueAsMetadata(ops[i]);
    mds[n] = p->ms_scope;
    LLVMSetMetadata(inst, p->md_noalias, LLVMMetadataAsValue(p->ctx, LLVMMDNodeInContext2(p->ctx, mds, n + 1)));
    free(ops);
    free(mds);
}

static void mark_program_accesses(struct pass *p, LLVMValueRef f)
{
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i)) {
            LLVMOpcode op = LLVMGetInstructionOpcode(i);
            if (op == LLVMLoad || op == LLVMStore || op == LLVMAtomicRMW || op == LLVMAtomicCmpXchg ||
                (op == LLVMCall && !strncmp(ms_callee_name(i), "llvm.mem", 8) && mem_kind(ms_callee_name(i)) != MEM_NONE))
                add_noalias_scope(p, i);
        }
}

/* ---- loops: a base's bounds looked up once, before the loop --------------------------------- */

/* A call in a loop that can free: it ends the loop's use of bounds looked up before it. The
 * checks, intrinsics other than traps, and calls the optimizer proved nofree cannot. */
static int call_may_free(LLVMValueRef call)
{
    const char *n = ms_callee_name(call);
    if (!strncmp(n, "__scp_ms_", 9))
        return 0;
    if (!strncmp(n, "llvm.", 5))
        return strstr(n, "trap") != NULL;
    return !call_is_nofree(call);
}

/* A call at `before` with `before`'s line: a call that will be inlined needs one in a function
 * with debug info (when the checks' bitcode has some: profiling builds). */
static LLVMValueRef build_call_at(struct pass *p, LLVMValueRef before, LLVMValueRef line_of, LLVMTypeRef ty,
                                  LLVMValueRef fn, LLVMValueRef *args, unsigned n, const char *name)
{
    LLVMPositionBuilderBefore(p->b, before);
    LLVMValueRef call = LLVMBuildCall2(p->b, ty, fn, args, n, name);
    LLVMMetadataRef loc = LLVMInstructionGetDebugLoc(line_of);
    if (loc)
        LLVMInstructionSetDebugLoc(call, loc);
    return call;
}

/* The lookup made once in the preheader for `base` (memoized in `lk`): its limit (a loop that
 * cannot free) or the address of its limit (slots: a loop that may free). */
static LLVMValueRef preheader_lookup(struct pass *p, LLVMValueRef base, LLVMValueRef pre_term, LLVMValueRef first,
                                     int slots, struct memo *lk)
{
    LLVMValueRef v = memo_get(lk, base);
    if (!v) {
        v = slots ? build_call_at(p, pre_term, first, p->slot_ty, p->lk_slot_fn, &base, 1, "ms.lk.slot")
                  : build_call_at(p, pre_term, first, p->lookup_ty, p->lk_lim_fn, &base, 1, "ms.lk.lim");
        memo_put(lk, base, v);
    }
    return v;
}

/* A base that changes round a loop that may free only now and then: a PHI in the loop whose
 * values from inside the loop are the PHI itself (unchanged), other PHIs of the same kind,
 * or pointers defined in blocks that do not run on every iteration (none dominates a latch).
 * sqlite's interpreter loop keeps its registers (aMem) and its program (aOp) so: they change
 * when a subprogram starts or returns, and every opcode checks them. The address of its limit
 * (the slot, see hoist_loop_lookups) is then a function of the base alone (the region table is
 * written once, before the program runs: alloc.c), so it can be found where each new value is
 * made and carried round the loop by PHIs of slots alongside the PHIs of bases; each check
 * reads the limit from the slot (what a full lookup would read at that moment) instead of
 * looking the base up again. */
struct web_ctx {
    const struct cfg *g;
    const size_t *idom;
    const unsigned char *in_loop;
    size_t h;
    LLVMValueRef pre_term;
    struct memo *lk;  /* the preheader's lookups */
    struct memo done; /* value -> its slot (or, while checking, value -> value) */
};

static int web_leaf_ok(const struct web_ctx *w, LLVMValueRef v)
{
    if (!LLVMIsAInstruction(v) || LLVMIsAPHINode(v) || LLVMIsASelectInst(v) || LLVMIsATerminatorInst(v) ||
        is_gep(v) || is_ptr_cast(v))
        return 0;
    size_t b = cfg_index(LLVMGetInstructionParent(v));
    if (b == SIZE_MAX)
        return 0;
    for (const size_t *q = w->g->preds[w->h]; *q != SIZE_MAX; q++)
        if (dominates(w->idom, w->h, *q) && dominates(w->idom, b, *q))
            return 0; /* runs on every iteration that takes this latch */
    return 1;
}

/* Whether v's values round the loop are all of the kind above (at most 64 PHIs). */
static int web_ok(struct web_ctx *w, LLVMValueRef v, unsigned *n)
{
    if (defined_outside(v, w->in_loop))
        return 1;
    if (!LLVMIsAPHINode(v))
        return web_leaf_ok(w, v);
    if (memo_get(&w->done, v))
        return 1;
    if (++*n > 64)
        return 0;
    memo_put(&w->done, v, v);
    unsigned k = LLVMCountIncoming(v);
    for (unsigned i = 0; i < k; i++)
        if (!web_ok(w, LLVMGetIncomingValue(v, i), n))
            return 0;
    return 1;
}

/* The slot of v (web_ok(v) holds): a PHI of slots for a PHI, a lookup right after a new value,
 * the preheader's lookup for a value from outside. */
static LLVMValueRef web_slot(struct pass *p, struct web_ctx *w, LLVMValueRef v)
{
    if (defined_outside(v, w->in_loop))
        return preheader_lookup(p, v, w->pre_term, w->pre_term, 1, w->lk);
    LLVMValueRef s = memo_get(&w->done, v);
    if (s)
        return s;
    LLVMBuilderRef b = LLVMCreateBuilderInContext(p->ctx);
    if (LLVMIsAPHINode(v)) {
        LLVMPositionBuilderBefore(b, LLVMGetFirstInstruction(LLVMGetInstructionParent(v)));
        s = LLVMBuildPhi(b, p->ptr_ty, "ms.web.slot");
        LLVMDisposeBuilder(b);
        memo_put(&w->done, v, s); /* before the incoming values: round the loop they come back */
        unsigned k = LLVMCountIncoming(v);
        for (unsigned i = 0; i < k; i++) {
            LLVMValueRef in = web_slot(p, w, LLVMGetIncomingValue(v, i));
            LLVMBasicBlockRef from = LLVMGetIncomingBlock(v, i);
            LLVMAddIncoming(s, &in, &from, 1);
        }
        return s;
    }
    LLVMPositionBuilderBefore(b, LLVMGetNextInstruction(v));
    LLVMValueRef call = LLVMBuildCall2(b, p->slot_ty, p->lk_slot_fn, &v, 1, "ms.web.slot");
    LLVMDisposeBuilder(b);
    memo_put(&w->done, v, call);
    return call;
}

/* The check calls of bb whose base is defined outside the loop: against a limit looked up in the
 * preheader, or (slots) read at the check from a slot found in the preheader. With slots, the
 * limit lookups of inner loops (made by the first pass, in their preheaders inside this loop)
 * read the slot too. */
static void use_loop_lookups(struct pass *p, LLVMBasicBlockRef bb, LLVMValueRef pre_term,
                             const unsigned char *in_loop, int slots, struct memo *lk, struct web_ctx *web)
{
    LLVMValueRef next;
    for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = next) {
        next = LLVMGetNextInstruction(i);
        if (!LLVMIsACallInst(i))
            continue;
        LLVMValueRef fn = LLVMGetCalledValue(i);
        int is_lookup = slots && fn == p->lk_lim_fn;
        if (fn != p->check_fn && fn != p->check_at_fn && fn != p->check_mem_fn && !is_lookup)
            continue;
        LLVMValueRef base = LLVMGetOperand(i, 0);
        LLVMValueRef lim;
        if (defined_outside(base, in_loop)) {
            lim = preheader_lookup(p, base, pre_term, i, slots, lk);
        } else if (slots && !is_lookup && web && LLVMIsAPHINode(base)) {
            /* A base that changes now and then round the loop (web_ctx). */
            LLVMValueRef slot = memo_get(&web->done, base);
            if (!slot || slot == base) {
                struct memo saved = web->done;
                unsigned n = 0;
                web->done = (struct memo){ 0 };
                int ok = web_ok(web, base, &n);
                memo_clear(&web->done);
                web->done = saved;
                if (!ok)
                    continue;
                slot = web_slot(p, web, base);
                p->web_bases++;
            }
            lim = slot;
        } else {
            continue;
        }
        if (slots)
            lim = build_call_at(p, i, i, p->slot_lim_ty, p->slot_lim_fn, &lim, 1, "ms.sl.lim");
        if (is_lookup) {
            LLVMReplaceAllUsesWith(i, lim);
            LLVMInstructionEraseFromParent(i);
            continue;
        }
        LLVMValueRef to = fn == p->check_fn ? p->check_lk_fn : fn == p->check_at_fn ? p->check_lk_at_fn : p->check_lk_mem_fn;
        LLVMValueRef args[5] = { lim, base, LLVMGetOperand(i, 1), LLVMGetOperand(i, 2), LLVMGetOperand(i, 3) };
        build_call_at(p, i, i, fn == p->check_at_fn ? p->check_lk_at_ty : p->check_lk_ty, to, args, 5, "");
        LLVMInstructionEraseFromParent(i);
        if (slots)
            p->sl_checks++;
        else
            p->lk_checks++;
    }
}

/* In a loop that cannot free (no call in it but nofree ones, see call_may_free), an object's
 * bounds do not change: its table entry and size are read once in the preheader (the lookup is
 * safe to run whether or not the loop then checks anything: every table entry has a readable
 * meta, alloc.c), and each check in the loop of a base defined outside it is then a subtract and
 * one or two compares. Outer loops first (headers in reverse postorder), so a check moves as far
 * out as a loop allows.
 * With `slots`, the loops that may free: what is found once in the preheader is the address of
 * the object's limit (the table entry, the multiply), not the limit, which each check reads
 * again, so a free or a reuse in the loop is seen as by a full lookup (the region table is
 * written once, when the allocator starts: a base finds the same slot whenever it looks). */
static void hoist_loop_lookups(struct pass *p, const struct cfg *g, int slots)
{
    if (g->n < 2)
        return;
    size_t *idom = cfg_dominators(g);
    unsigned char *in_loop = xrealloc(NULL, g->n);
    size_t *stack = xrealloc(NULL, g->n * sizeof *stack);
    for (size_t h = 0; h < g->n; h++) {
        /* The body: blocks that reach a latch (a predecessor of h that h dominates) without h. */
        memset(in_loop, 0, g->n);
        size_t sp = 0, pre = SIZE_MAX, outside = 0, latches = 0;
        in_loop[h] = 1;
        for (const size_t *q = g->preds[h]; *q != SIZE_MAX; q++) {
            if (dominates(idom, h, *q)) {
                latches++;
                if (!in_loop[*q]) {
                    in_loop[*q] = 1;
                    stack[sp++] = *q;
                }
            } else {
                pre = *q;
                outside++;
            }
        }
        if (latches == 0 || outside != 1)
            continue;
        while (sp > 0) {
            size_t b = stack[--sp];
            for (const size_t *q = g->preds[b]; *q != SIZE_MAX; q++)
                if (!in_loop[*q]) {
                    in_loop[*q] = 1;
                    stack[sp++] = *q;
                }
        }
        int ok = 1;
        for (size_t b = 0; b < g->n && ok && !slots; b++) {
            if (!in_loop[b])
                continue;
            for (LLVMValueRef i = LLVMGetFirstInstruction(g->bb[b]); i && ok; i = LLVMGetNextInstruction(i))
                if ((LLVMIsACallInst(i) || LLVMIsAInvokeInst(i)) && call_may_free(i))
                    ok = 0;
        }
        if (!ok)
            continue;
        struct memo lk = { 0 };
        LLVMValueRef pre_term = LLVMGetBasicBlockTerminator(g->bb[pre]);
        struct web_ctx web = { g, idom, in_loop, h, pre_term, &lk, { 0 } };
        for (size_t b = 0; b < g->n; b++)
            if (in_loop[b])
                use_loop_lookups(p, g->bb[b], pre_term, in_loop, slots, &lk, &web);
        memo_clear(&web.done);
        if (slots)
            p->sl_loops += lk.len != 0;
        else
            p->lk_loops += lk.len != 0;
        memo_clear(&lk);
    }
    free(stack);
    free(in_loop);
    free(idom);
}

/* ---- one lookup for the checks of a base that its first check dominates ------------------- */

/* A check (or a loop's lookup) of base, in block `block` (reverse postorder), the order-th met. */
struct sh_use {
    LLVMValueRef base, call;
    size_t block, order;
};

static int sh_use_cmp(const void *a, const void *b)
{
    const struct sh_use *x = a, *y = b;
    if (x->base != y->base)
        return (uintptr_t)x->base < (uintptr_t)y->base ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* The checks left after the other rules each look their base up (the table entry, a multiply:
 * the address of the object's limit, then the limit), also where an earlier check of the same
 * base dominates them and only a call since (which may free) made them needed. The address of
 * the limit is a function of the base alone (the region table is written once, when the
 * allocator starts), so the first check finds it and the checks it dominates read the limit
 * from it: what a lookup of their own would read (the object's limit, 0 once it is freed, a new
 * object's once it is reused), in fewer instructions and bytes of code (a reload and a compare
 * instead of a shift, a multiply, two table loads and a compare). The address is found where
 * the first check would have looked the base up: no path runs a lookup it did not run before.
 * The loops' lookups of the base (hoist_loop_lookups) in the blocks the first check dominates
 * take it too. */
static void share_lookups(struct pass *p, const struct cfg *g)
{
    if (g->n == 0)
        return;
    size_t *idom = cfg_dominators(g);
    struct sh_use *u = NULL;
    size_t n = 0, cap = 0;
    for (size_t b = 0; b < g->n; b++)
        for (LLVMValueRef i = LLVMGetFirstInstruction(g->bb[b]); i; i = LLVMGetNextInstruction(i)) {
            if (!LLVMIsACallInst(i))
                continue;
            LLVMValueRef fn = LLVMGetCalledValue(i);
            if (fn != p->check_fn && fn != p->check_at_fn && fn != p->check_mem_fn && fn != p->lk_lim_fn &&
                fn != p->lk_slot_fn)
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                u = xrealloc(u, cap * sizeof *u);
            }
            u[n] = (struct sh_use){ LLVMGetOperand(i, 0), i, b, n };
            n++;
        }
    if (n) qsort(u, n, sizeof *u, sh_use_cmp); /* (u is NULL when there is none) */
    /* For each base, its uses in reverse postorder: a use joins the group of the first earlier
     * use whose block dominates its own (an earlier use in the same block is one), or starts a
     * group. A block's dominators come before it in reverse postorder. */
    size_t *anchor = xrealloc(NULL, (n ? n : 1) * sizeof *anchor);
    size_t *members = xrealloc(NULL, (n ? n : 1) * sizeof *members);
    for (size_t lo = 0, hi; lo < n; lo = hi) {
        for (hi = lo + 1; hi < n && u[hi].base == u[lo].base; hi++)
            ;
        for (size_t k = lo; k < hi; k++) {
            anchor[k] = k;
            members[k] = 0;
            for (size_t a = lo; a < k; a++)
                if (anchor[a] == a && dominates(idom, u[a].block, u[k].block)) {
                    anchor[k] = a;
                    break;
                }
            members[anchor[k]]++;
        }
        for (size_t a = lo; a < hi; a++) {
            if (anchor[a] != a || members[a] < 2)
                continue;
            /* The address of the limit, right before the first use (which names the line). A
             * check made right before its access looks its base up with the index unmasked
             * (check.c, ms_rix): the slot is found the same way, and that first check stays as
             * it is, so that the optimizer makes the two lookups one. */
            LLVMValueRef slot, afn = LLVMGetCalledValue(u[a].call);
            int keep_first = afn == p->check_fn || afn == p->check_at_fn;
            if (afn == p->lk_slot_fn)
                slot = u[a].call;
            else
                slot = build_call_at(p, u[a].call, u[a].call, p->slot_ty, keep_first ? p->lk_slot_at_fn : p->lk_slot_fn,
                                     &u[a].base, 1, "ms.sh.slot");
            p->sh_bases++;
            for (size_t k = a; k < hi; k++) {
                if (anchor[k] != a || u[k].call == slot || (k == a && keep_first))
                    continue;
                LLVMValueRef i = u[k].call, fn = LLVMGetCalledValue(i);
                p->sh_uses++;
                if (fn == p->lk_slot_fn) {
                    LLVMReplaceAllUsesWith(i, slot);
                    LLVMInstructionEraseFromParent(i);
                    continue;
                }
                LLVMValueRef lim = build_call_at(p, i, i, p->slot_lim_ty, p->slot_lim_fn, &slot, 1, "ms.sh.lim");
                if (fn == p->lk_lim_fn) {
                    LLVMReplaceAllUsesWith(i, lim);
                    LLVMInstructionEraseFromParent(i);
                    continue;
                }
                LLVMValueRef to = fn == p->check_fn      ? p->check_lk_fn
                                  : fn == p->check_at_fn ? p->check_lk_at_fn
                                                         : p->check_lk_mem_fn;
                LLVMValueRef args[5] = { lim, u[k].base, LLVMGetOperand(i, 1), LLVMGetOperand(i, 2),
                                         LLVMGetOperand(i, 3) };
                build_call_at(p, i, i, fn == p->check_at_fn ? p->check_lk_at_ty : p->check_lk_ty, to, args, 5, "");
                LLVMInstructionEraseFromParent(i);
            }
        }
    }
    free(members);
    free(anchor);
    free(u);
    free(idom);
}

static void instrument_module(struct pass *p)
{
    for (LLVMValueRef f = LLVMGetFirstFunction(p->mod); f; f = LLVMGetNextFunction(f)) {
        size_t len;
        const char *name = LLVMGetValueName2(f, &len);
        if (LLVMIsDeclaration(f) || !strncmp(name, "__scp_ms_", 9))
            continue;
        p->fname = name;
        size_t ninst = 0;
        for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
            for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i))
                ninst++;
        p->ekeys.len = 0;
        p->ekeys.cap = ninst + 1;
        p->ekeys.tab = xrealloc(p->ekeys.tab, p->ekeys.cap * sizeof *p->ekeys.tab);
        free(p->ekeys.name);
        p->ekeys.name = xrealloc(NULL, p->ekeys.cap);
        /* base_of may add PHIs, never blocks: the CFG stays as it is. */
        struct cfg g;
        cfg_build(&g, f);
        mark_program_accesses(p, f);
        hoist_loop_checks(p, &g);
        cfg_available(p, &g);
        for (size_t i = 0; i < g.n; i++)
            instrument_block(p, g.bb[i], &g.in[i]);
        /* Unreachable blocks: nothing known. */
        static const struct facts none;
        for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
            if (cfg_index(bb) == SIZE_MAX)
                instrument_block(p, bb, &none);
        /* SCP_MS_NO_LK, SCP_MS_NO_SLOTS, SCP_MS_NO_SHARE: measurement aids (each rule off). */
        if (!getenv("SCP_MS_NO_LK"))
            hoist_loop_lookups(p, &g, 0);
        if (!getenv("SCP_MS_NO_SLOTS"))
            hoist_loop_lookups(p, &g, 1);
        if (!getenv("SCP_MS_NO_SHARE"))
            share_lookups(p, &g);
        cfg_free(&g);
        memo_clear(&p->memo);
        memo_clear(&p->hoisted);
        p->nelems = 0;
    }
}

/* ---- driver ---------------------------------------------------------------------------------- */

static LLVMModuleRef read_module(LLVMContextRef ctx, const char *path)
{
    char why[1024];
    LLVMModuleRef m = ms_tool_read(ctx, path, why, sizeof why);
    if (!m) {
        fprintf(stderr, "scp-ms-instr: %s\n", why);
        exit(1);
    }
    return m;
}

/* The object's requested size is written by malloc, free and realloc (calls) and read
 * concurrently by other threads' checks: C can only say "relaxed atomic", which the optimizer
 * treats as an ordered access it must not merge; LLVM's "unordered" ordering is still a single
 * untorn load but may be merged with an earlier one of the same address, as long as no store
 * or call that may write the metadata comes between (a call to free does: a check after a
 * call still sees a free).
 * The region table's loads (an entry's multiplier, limit array and size: plain loads from an
 * address made by inttoptr, check.c's ms_tab) are marked !invariant.load: no entry
 * changes once instrumented code runs (the runtime writes the whole table in the program's
 * .preinit_array, or at the first malloc if that comes earlier, and never again: alloc.c), so a
 * lookup of the same base needs no new table loads after a call or a store, and the multiply
 * that follows is shared too; only the object's limit is loaded again. Measured on sqlite's
 * speedtest1 --size 2 (instructions, bench/RESULTS.md, ms14): harden 335.32M -> 334.19M, full
 * 569.69M -> 555.55M. (An older state of the checks measured the opposite, 436.1M without,
 * 438.3M with: the optimizer then hoisted lookups to the top of big functions and spilled
 * them.) */
static void let_optimizer_share_loads(struct pass *p, LLVMValueRef f)
{
    unsigned inv = LLVMGetMDKindIDInContext(p->ctx, "invariant.load", 14);
    LLVMValueRef empty = LLVMMetadataAsValue(p->ctx, LLVMMDNodeInContext2(p->ctx, NULL, 0));
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i)) {
            if (!LLVMIsALoadInst(i))
                continue;
            if (LLVMGetOrdering(i) == LLVMAtomicOrderingMonotonic) {
                LLVMSetOrdering(i, LLVMAtomicOrderingUnordered);
                continue;
            }
            LLVMValueRef a = LLVMGetOperand(i, 0);
            while (LLVMIsAGetElementPtrInst(a))
                a = LLVMGetOperand(a, 0);
            /* The table's arrays are at a constant address: the optimizer may have folded the
             * cast into a constant expression, with the index in a GEP. */
            int table = LLVMIsAIntToPtrInst(a) ||
                        (LLVMIsAConstantExpr(a) && LLVMGetConstOpcode(a) == LLVMIntToPtr);
            if (LLVMGetOrdering(i) == LLVMAtomicOrderingNotAtomic && table)
                LLVMSetMetadata(i, inv, empty);
        }
}

/* The checks' loads (table entries and sizes) are in their own alias scope: see
 * mark_program_accesses. */
static void set_check_scope(struct pass *p, LLVMValueRef f)
{
    LLVMValueRef list = LLVMMetadataAsValue(p->ctx, LLVMMDNodeInContext2(p->ctx, &p->ms_scope, 1));
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i))
            if (LLVMIsALoadInst(i))
                LLVMSetMetadata(i, p->md_alias_scope, list);
}

static void link_runtime(struct pass *p, const char *rt_path)
{
    LLVMModuleRef rt = read_module(p->ctx, rt_path);
    LLVMSetTarget(rt, LLVMGetTarget(p->mod));
    LLVMSetDataLayout(rt, LLVMGetDataLayoutStr(p->mod));
    if (LLVMLinkModules2(p->mod, rt)) {
        fprintf(stderr, "scp-ms-instr: cannot link %s\n", rt_path);
        exit(1);
    }
    /* The last one is the out-of-line exact check (noinline, cold): internal too, one copy per
     * module. */
    static const char *const fns[] = { "__scp_ms_check",       "__scp_ms_check_at",    "__scp_ms_check_mem",
                                       "__scp_ms_lookup_lim",  "__scp_ms_check_lk",    "__scp_ms_check_lk_at",
                                       "__scp_ms_check_lk_mem", "__scp_ms_lookup_slot", "__scp_ms_slot_lim",
                                       "__scp_ms_check_below", "__scp_ms_lookup_slot_at", "__scp_ms_check_exact" };
    unsigned inl = LLVMGetEnumAttributeKindForName("alwaysinline", 12);
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        LLVMValueRef f = LLVMGetNamedFunction(p->mod, fns[i]);
        if (f && !LLVMIsDeclaration(f)) {
            LLVMSetLinkage(f, LLVMInternalLinkage);
            if (strcmp(fns[i], "__scp_ms_check_exact") != 0)
                LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                                        LLVMCreateEnumAttribute(p->ctx, inl, 0));
            let_optimizer_share_loads(p, f);
            set_check_scope(p, f);
        }
    }
}

/* A program with full-mode code gives back the pages of freed objects from 16 KiB (alloc.c,
 * __scp_ms_full_mode): a weak definition in every full-mode module, so that any number of them
 * link into one program, and the runtime's weak reference finds it. */
static void mark_full_mode(struct pass *p)
{
    if (LLVMGetNamedGlobal(p->mod, "__scp_ms_full_mode"))
        return;
    LLVMValueRef g = LLVMAddGlobal(p->mod, p->i8_ty, "__scp_ms_full_mode");
    LLVMSetInitializer(g, LLVMConstInt(p->i8_ty, 1, 0));
    LLVMSetGlobalConstant(g, 1);
    /* Not discardable: the optimizer keeps it though nothing in the module refers to it. */
    LLVMSetLinkage(g, LLVMWeakODRLinkage);
}

static void usage(void)
{
    fprintf(stderr, "usage: scp-ms-instr [--mode=harden|full] [--trust-types] --rt=CHECK.bc IN.bc OUT.bc\n");
    exit(2);
}

struct opts {
    enum ms_mode mode;
    int trust_types;
    const char *rt;
};

static int take_opt(const char *arg, void *ctx)
{
    struct opts *o = ctx;
    if (!strcmp(arg, "--mode=harden"))
        o->mode = MODE_HARDEN;
    else if (!strcmp(arg, "--mode=full"))
        o->mode = MODE_FULL;
    else if (!strcmp(arg, "--trust-types"))
        o->trust_types = 1;
    else if (!strncmp(arg, "--rt=", 5))
        o->rt = arg + 5;
    else
        return 0;
    return 1;
}

int main(int argc, char **argv)
{
    struct pass p = { 0 };
    const char *in, *out;
    struct opts o = { .mode = MODE_HARDEN };
    int stats = getenv("SCP_MS_STATS") != NULL;
    if (ms_tool_args(argc, argv, take_opt, &o, &in, &out) != 0 || !o.rt)
        usage();
    const char *rt = o.rt;
    p.mode = o.mode;
    p.trust_types = o.trust_types;

    p.ctx = LLVMContextCreate();
    p.mod = read_module(p.ctx, in);
    p.td = LLVMCreateTargetData(LLVMGetDataLayoutStr(p.mod));
    p.b = LLVMCreateBuilderInContext(p.ctx);
    p.ptr_ty = LLVMPointerTypeInContext(p.ctx, 0);
    p.i64_ty = LLVMInt64TypeInContext(p.ctx);
    p.i8_ty = LLVMInt8TypeInContext(p.ctx);
    LLVMTypeRef params[4] = { p.ptr_ty, p.ptr_ty, p.i64_ty, p.ptr_ty };
    p.check_ty = LLVMFunctionType(LLVMVoidTypeInContext(p.ctx), params, 4, 0);
    p.check_fn = LLVMGetNamedFunction(p.mod, "__scp_ms_check");
    if (!p.check_fn)
        p.check_fn = LLVMAddFunction(p.mod, "__scp_ms_check", p.check_ty);
    LLVMTypeRef at_params[4] = { p.ptr_ty, p.i64_ty, p.i64_ty, p.ptr_ty };
    p.check_at_ty = LLVMFunctionType(LLVMVoidTypeInContext(p.ctx), at_params, 4, 0);
    p.check_at_fn = LLVMGetNamedFunction(p.mod, "__scp_ms_check_at");
    if (!p.check_at_fn)
        p.check_at_fn = LLVMAddFunction(p.mod, "__scp_ms_check_at", p.check_at_ty);
    p.check_mem_fn = LLVMGetNamedFunction(p.mod, "__scp_ms_check_mem");
    if (!p.check_mem_fn)
        p.check_mem_fn = LLVMAddFunction(p.mod, "__scp_ms_check_mem", p.check_ty);
    p.check_below_fn = LLVMAddFunction(p.mod, "__scp_ms_check_below", p.check_ty);
    p.lookup_ty = LLVMFunctionType(p.i64_ty, &p.ptr_ty, 1, 0);
    p.lk_lim_fn = LLVMAddFunction(p.mod, "__scp_ms_lookup_lim", p.lookup_ty);
    p.slot_ty = LLVMFunctionType(p.ptr_ty, &p.ptr_ty, 1, 0);
    p.lk_slot_fn = LLVMAddFunction(p.mod, "__scp_ms_lookup_slot", p.slot_ty);
    p.lk_slot_at_fn = LLVMAddFunction(p.mod, "__scp_ms_lookup_slot_at", p.slot_ty);
    p.slot_lim_ty = LLVMFunctionType(p.i64_ty, &p.ptr_ty, 1, 0);
    p.slot_lim_fn = LLVMAddFunction(p.mod, "__scp_ms_slot_lim", p.slot_lim_ty);
    LLVMTypeRef lk_params[5] = { p.i64_ty, p.ptr_ty, p.ptr_ty, p.i64_ty, p.ptr_ty };
    p.check_lk_ty = LLVMFunctionType(LLVMVoidTypeInContext(p.ctx), lk_params, 5, 0);
    LLVMTypeRef lk_at_params[5] = { p.i64_ty, p.ptr_ty, p.i64_ty, p.i64_ty, p.ptr_ty };
    p.check_lk_at_ty = LLVMFunctionType(LLVMVoidTypeInContext(p.ctx), lk_at_params, 5, 0);
    p.check_lk_at_fn = LLVMAddFunction(p.mod, "__scp_ms_check_lk_at", p.check_lk_at_ty);
    p.check_lk_fn = LLVMAddFunction(p.mod, "__scp_ms_check_lk", p.check_lk_ty);
    p.check_lk_mem_fn = LLVMAddFunction(p.mod, "__scp_ms_check_lk_mem", p.check_lk_ty);

    p.md_alias_scope = LLVMGetMDKindIDInContext(p.ctx, "alias.scope", 11);
    p.md_noalias = LLVMGetMDKindIDInContext(p.ctx, "noalias", 7);
    /* Named (not self-referencing) scope and domain nodes, as MDBuilder::createAliasScope makes. */
    LLVMMetadataRef dom = LLVMMDStringInContext2(p.ctx, "scp.memsafe.domain", 18);
    LLVMMetadataRef dom_node = LLVMMDNodeInContext2(p.ctx, &dom, 1);
    LLVMMetadataRef scope_ops[2] = { LLVMMDStringInContext2(p.ctx, "scp.memsafe.metadata", 20), dom_node };
    p.ms_scope = LLVMMDNodeInContext2(p.ctx, scope_ops, 2);
    instrument_module(&p);
    link_runtime(&p, rt);
    if (p.mode == MODE_FULL)
        mark_full_mode(&p);

    char *msg = NULL;
    if (LLVMVerifyModule(p.mod, LLVMReturnStatusAction, &msg)) {
        fprintf(stderr, "scp-ms-instr: internal error, the instrumented module of %s is invalid:\n%s\n",
                in, msg ? msg : "");
        return 1;
    }
    LLVMDisposeMessage(msg);
    if (ms_tool_write(p.mod, out) != 0) {
        fprintf(stderr, "scp-ms-instr: cannot write %s\n", out);
        return 1;
    }
    if (stats)
        fprintf(stderr,
                "scp-ms-instr: %s: %lu checks, %lu merged into them, %lu pruned, %lu already checked "
                "on every path; %lu cover a loop; %lu at constant offsets from their base; %lu against "
                "bounds looked up before their loop (%lu loops); %lu against a limit's address found before "
                "their loop (%lu loops; %lu bases that change round their loop, carried with their limit's address); %lu "
                "below their base, decided inline; %lu lookups shared by %lu checks; "
                "%lu widened to their whole element; "
                "%lu in bounds by their type, unchecked (--trust-types); checked at constant offsets from "
                "their own base: %lu with no GEP, %lu through an i8 GEP, %lu through a struct GEP (not by "
                "type: an array, past sizeof, the rule off), %lu other\n",
                in, p.checks, p.merged, p.pruned, p.available, p.loops, p.at_base, p.lk_checks, p.lk_loops,
                p.sl_checks, p.sl_loops, p.web_bases, p.below, p.sh_bases, p.sh_uses, p.whole, p.typed, p.self_direct, p.self_i8,
                p.self_array, p.self_other);
    free(p.groups);
    free(p.ekeys.tab);
    free(p.ekeys.name);
    for (size_t i = 0; i < p.sites.cap; i++)
        free(p.sites.tab[i].text);
    free(p.sites.tab);
    LLVMDisposeBuilder(p.b);
    LLVMDisposeTargetData(p.td);
    LLVMDisposeModule(p.mod);
    LLVMContextDispose(p.ctx);
    return 0;
}
