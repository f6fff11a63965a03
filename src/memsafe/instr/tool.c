/* memsafe/instr/tool.c - what the memsafe tools on LLVM-C 16 share (tool.h). */
#include "tool.h"

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>

#include <stdio.h>

int ms_tool_args(int argc, char **argv, ms_tool_opt_fn opt, void *ctx, const char **in, const char **out)
{
    *in = NULL;
    *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            if (!opt(argv[i], ctx))
                return -1;
        } else if (!*in) {
            *in = argv[i];
        } else if (!*out) {
            *out = argv[i];
        } else {
            return -1;
        }
    }
    return *in && *out ? 0 : -1;
}

LLVMModuleRef ms_tool_read(LLVMContextRef ctx, const char *path, char *why, size_t cap)
{
    LLVMMemoryBufferRef buf;
    char *msg = NULL;
    LLVMModuleRef m;
    if (LLVMCreateMemoryBufferWithContentsOfFile(path, &buf, &msg)) {
        snprintf(why, cap, "cannot read %s: %s", path, msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return NULL;
    }
    /* The module takes the buffer's contents (a lazy parse would keep the buffer: this one
     * does not). */
    if (LLVMParseBitcodeInContext2(ctx, buf, &m)) {
        snprintf(why, cap, "%s is not LLVM 16 bitcode", path);
        LLVMDisposeMemoryBuffer(buf);
        return NULL;
    }
    LLVMDisposeMemoryBuffer(buf);
    return m;
}

int ms_tool_write(LLVMModuleRef mod, const char *path)
{
    return LLVMWriteBitcodeToFile(mod, path) ? -1 : 0;
}

const char *ms_callee_name(LLVMValueRef call)
{
    LLVMValueRef f = LLVMGetCalledValue(call);
    size_t len;
    if (!f || !LLVMIsAFunction(f))
        return "";
    return LLVMGetValueName2(f, &len);
}
