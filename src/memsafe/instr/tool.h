/* memsafe/instr/tool.h - what the memsafe tools on LLVM-C 16 share (scp-ms-instr, scp-ms-autoinit):
 * their command line (options, then IN.bc OUT.bc), reading and writing a module, and the name of
 * a call's callee.
 *
 * Nothing here prints: each tool's main reports a failure in its own name (a tool's messages
 * start with the tool's name, and only the programs' main files write to stderr).
 */
#ifndef SCP_MEMSAFE_TOOL_H
#define SCP_MEMSAFE_TOOL_H

#include <llvm-c/Core.h>

#include <stddef.h>

/* The tool's handler of one option (an argument that starts with '-'): returns 1 if it took
 * the option, 0 if the tool has no such option. */
typedef int (*ms_tool_opt_fn)(const char *arg, void *ctx);

/* Parses argv[1..argc): options go to opt, in order; the first two other arguments are IN and
 * OUT. Returns 0, or -1 for a command line the tool does not take (an option opt refuses, a
 * third file, IN or OUT missing): the caller prints its usage. */
int ms_tool_args(int argc, char **argv, ms_tool_opt_fn opt, void *ctx, const char **in, const char **out);

/* The bitcode module in `path`, in ctx; NULL on failure, with a message naming the file in
 * why[0..cap) ("cannot read PATH: ...", "PATH is not LLVM 16 bitcode"). */
LLVMModuleRef ms_tool_read(LLVMContextRef ctx, const char *path, char *why, size_t cap);

/* Writes mod to path as bitcode: 0, or -1 (nothing more is known: LLVM-C says no more). */
int ms_tool_write(LLVMModuleRef mod, const char *path);

/* The name of the function a call calls directly, "" for an indirect call. */
const char *ms_callee_name(LLVMValueRef call);

#endif
