// A function handed out by a library: the trampoline every call goes through, which checks that
// the library is still open (a call after close() raises instead of jumping into unmapped memory)
// and copies the values the call returns or raises out of the library's memory.
//
// Values a kernel returns or raises are tvm-ffi objects whose deleter is JIT code of the library:
// freeing one after the library closed would jump into unmapped memory, and pytest keeps failed
// tests' exceptions well past the test's teardown. So strings, bytes, arrays, maps and errors
// made by the library are copied into objects the core owns on their way out; tensors, functions
// and other objects made by JIT code are handed out as they are and must not outlive the library.
#ifndef PYTEST_ORCJIT_FUNCTION_CALL_H_
#define PYTEST_ORCJIT_FUNCTION_CALL_H_

#include <tvm/ffi/function.h>

#include <string>

namespace orcjit {

class LibraryObj;

/// The function at `address` of `library` (a TVM-FFI safe-call function, the export `name`), which
/// holds a reference to the library and calls through the trampoline above.
tvm::ffi::Function MakeLibraryFunction(LibraryObj* library, void* address, const std::string& name);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_FUNCTION_CALL_H_
