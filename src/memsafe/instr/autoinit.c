/* scp-ms-autoinit - the size limit of -ftrivial-auto-var-init=zero, on the LLVM-C API of LLVM 16.
 *
 *   scp-ms-autoinit --max=BYTES IN.bc OUT.bc
 *
 * Removes the zeroing that -ftrivial-auto-var-init=zero gave each automatic variable of more
 * than BYTES bytes (scp-cc --memsafe, docs/memsafe.md): what clang 17 does with
 * -ftrivial-auto-var-init-max-size, which clang-16 lacks. Variables of at most BYTES bytes stay
 * zeroed, and no initialization the program itself wrote is touched.
 *
 * It must run on the front end's output before any optimization (clang -Xclang
 * -disable-llvm-passes): there the zeroing is one llvm.memset (or a few stores) right at its
 * variable, marked `!annotation !{!"auto-init"}`. The optimizer merges the program's own stores
 * into such a memset and drops the mark (redis's aclKeyResultCache: its `keys_init = 0` became
 * part of an unmarked 2072-byte memset), so after it the zeroing can no longer be told apart.
 *
 * Why a limit: a large automatic buffer is nearly always filled before it is read (read(),
 * snprintf, a callee that fills it), and zeroing it costs a memset of its whole size at every
 * call: redis 7.0's ACLCheckAllUserCommandPerm zeroes 2 KiB at every command, 2,088 of the
 * 7,334 instructions per request of redis-benchmark in the harden build (plain's: 4,396;
 * bench/RESULTS.md, section mstime).
 */
#include "tool.h"

#include <llvm-c/Core.h>
#include <llvm-c/Target.h>

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether inst carries !annotation with the string "auto-init" (clang's CodeGen marks every
 * store and memset of -ftrivial-auto-var-init so). */
static int is_auto_init(unsigned kind, LLVMValueRef inst)
{
    if (!LLVMHasMetadata(inst))
        return 0;
    LLVMValueRef md = LLVMGetMetadata(inst, kind);
    if (!md)
        return 0;
    unsigned n = LLVMGetMDNodeNumOperands(md);
    if (n == 0 || n > 16)
        return 0;
    LLVMValueRef ops[16];
    LLVMGetMDNodeOperands(md, ops);
    for (unsigned i = 0; i < n; i++) {
        unsigned len = 0;
        const char *s = ops[i] ? LLVMGetMDString(ops[i], &len) : NULL;
        if (s && len == 9 && !memcmp(s, "auto-init", 9))
            return 1;
    }
    return 0;
}

/* The variable a zeroing writes: its pointer operand, an alloca directly or through constant
 * GEPs (the stores clang splits a small zeroing into). NULL if it is not an alloca. */
static LLVMValueRef alloca_of(LLVMValueRef ptr)
{
    while (ptr && LLVMIsAGetElementPtrInst(ptr))
        ptr = LLVMGetOperand(ptr, 0);
    return ptr && LLVMIsAAllocaInst(ptr) ? ptr : NULL;
}

/* The bytes of an alloca of constant count, or 0 (a VLA: its zeroing has a variable length and
 * is kept). */
static uint64_t alloca_bytes(LLVMTargetDataRef td, LLVMValueRef a)
{
    LLVMValueRef count = LLVMGetOperand(a, 0);
    if (!LLVMIsAConstantInt(count))
        return 0;
    return LLVMConstIntGetZExtValue(count) * LLVMABISizeOfType(td, LLVMGetAllocatedType(a));
}

/* Removes the marked zeroing of every variable of more than max bytes; returns how many
 * variables lost it. */
static unsigned long trim_module(LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetDataRef td, uint64_t max)
{
    unsigned kind = LLVMGetMDKindIDInContext(ctx, "annotation", 10);
    unsigned long vars = 0;
    LLVMValueRef last = NULL; /* the variable of the last removed zeroing (counted once) */
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb)) {
            LLVMValueRef i = LLVMGetFirstInstruction(bb);
            while (i) {
                LLVMValueRef next = LLVMGetNextInstruction(i);
                LLVMValueRef ptr = NULL;
                if (LLVMIsACallInst(i) && !strncmp(ms_callee_name(i), "llvm.memset.", 12))
                    ptr = LLVMGetOperand(i, 0);
                else if (LLVMIsAStoreInst(i))
                    ptr = LLVMGetOperand(i, 1);
                LLVMValueRef a = ptr ? alloca_of(ptr) : NULL;
                /* The zeroing has no users (a call of void, a store): erasing it leaves
                 * nothing dangling. A GEP it used is left for the optimizer to drop. */
                if (a && is_auto_init(kind, i) && alloca_bytes(td, a) > max) {
                    assert(LLVMGetFirstUse(i) == NULL);
                    LLVMInstructionEraseFromParent(i);
                    if (a != last)
                        vars++;
                    last = a;
                }
                i = next;
            }
        }
    return vars;
}

static void usage(void)
{
    fprintf(stderr, "usage: scp-ms-autoinit --max=BYTES IN.bc OUT.bc\n");
    exit(2);
}

struct opts {
    uint64_t max;
    int have_max;
};

static int take_opt(const char *arg, void *ctx)
{
    struct opts *o = ctx;
    if (strncmp(arg, "--max=", 6) != 0)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg + 6, &end, 10);
    if (errno || end == arg + 6 || *end || arg[6] == '-') {
        fprintf(stderr, "scp-ms-autoinit: --max takes a number of bytes (got '%s')\n", arg + 6);
        exit(2);
    }
    o->max = v;
    o->have_max = 1;
    return 1;
}

int main(int argc, char **argv)
{
    const char *in, *out;
    struct opts o = { 0 };
    if (ms_tool_args(argc, argv, take_opt, &o, &in, &out) != 0 || !o.have_max)
        usage();

    LLVMContextRef ctx = LLVMContextCreate();
    char why[1024];
    LLVMModuleRef mod = ms_tool_read(ctx, in, why, sizeof why);
    if (!mod) {
        fprintf(stderr, "scp-ms-autoinit: %s\n", why);
        return 1;
    }
    LLVMTargetDataRef td = LLVMCreateTargetData(LLVMGetDataLayoutStr(mod));
    unsigned long vars = trim_module(ctx, mod, td, o.max);
    if (ms_tool_write(mod, out) != 0) {
        fprintf(stderr, "scp-ms-autoinit: cannot write %s\n", out);
        return 1;
    }
    if (getenv("SCP_MS_STATS"))
        fprintf(stderr, "scp-ms-autoinit: %s: %lu automatic variables of more than %llu bytes not zeroed\n", in,
                vars, (unsigned long long)o.max);
    LLVMDisposeTargetData(td);
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    return 0;
}
