// Library thunks: process functions that must know which library calls them, bound per library.
//
// A few functions act on behalf of the library that calls them, yet take no argument that says
// which one: glibc's atexit(fn) is `__cxa_atexit(fn, NULL, __dso_handle)` with the caller's own
// `__dso_handle` (libc_nonshared.h), and tvm-ffi's TVMFFIFunctionSetGlobal and TVMFFITypeRegister*
// register global functions and type reflection that must go away, or stay valid, with the
// library (ffi_registrations.h). The return address cannot tell the caller reliably (a tail call
// from another library, a call through a pointer that a library handed out), and neither can a
// "library now running" variable (a callback runs whenever it is called). So each library gets its
// own entry points: the binding plugin binds the library's references to such a name to a thunk,
// a few instructions in the library's own arena, that loads the library's key (the address of its
// `__dso_handle`) into the argument register after the function's own arguments and jumps to the
// core's version, which takes the key as its last argument. The thunk jumps rather than calls, so
// the stack, the return address and the caller's arguments are untouched: the core function runs
// as if the library had called it directly. A library's thunks take one page of its arena, made on
// the first graph that needs one and unmapped with the arena.
#ifndef PYTEST_ORCJIT_LIBRARY_THUNKS_H_
#define PYTEST_ORCJIT_LIBRARY_THUNKS_H_

#include <llvm/ADT/StringRef.h>
#include <llvm/ExecutionEngine/Orc/Shared/ExecutorAddress.h>
#include <llvm/Support/Error.h>

#include <cstddef>
#include <mutex>

#include "memory.h"

namespace orcjit {

/// A name that libraries get their own binding of.
struct EntryPoint {
  const char* name;
  const void* target;
  /// The argument (0-based) that receives the library's key; -1 binds the name to `target` as it
  /// is, with no thunk (an alias, such as `__stack_chk_fail_local`).
  int key_argument;
};

/// Every entry point, in a fixed order: a library's thunk for entry `i` is slot `i` of its page.
llvm::ArrayRef<EntryPoint> EntryPoints();

/// One library's thunks.
class LibraryThunks {
 public:
  /// `key` is what the thunks pass (the library's `__dso_handle`); the page comes from `arena`.
  LibraryThunks(Arena& arena, void* key) : arena_(arena), key_(key) {}

  /// The address that references to EntryPoints()[index] are bound to in this library: its thunk,
  /// made with the others on first use, or the target itself for an alias. Fails only when the
  /// arena has no page left.
  llvm::Expected<llvm::orc::ExecutorAddr> Address(size_t index);

 private:
  Arena& arena_;
  void* const key_;
  std::mutex mutex_;
  char* page_ = nullptr;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_LIBRARY_THUNKS_H_
