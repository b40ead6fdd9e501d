// Validation of an object file before JITLink sees it. JITLink trusts much of an ELF file: with
// assertions off (release builds of LLVM) a relocation offset past the end of its section becomes
// a wild write during fixups, a bad symbol or section index an out-of-bounds read. CheckObject
// reads the object with bounds-checked arithmetic only and rejects anything JITLink's x86-64 ELF
// backend would trip over, with a message that names the object, says what is wrong and what to
// do. It accepts every object that clang and gcc produce with `-c -fPIC` for x86-64 Linux.

#ifndef PYTEST_ORCJIT_OBJECT_CHECK_H_
#define PYTEST_ORCJIT_OBJECT_CHECK_H_

#include <llvm/ADT/StringRef.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBufferRef.h>

namespace orcjit {

/// Checks that `buffer` is an x86-64 ELF64 little-endian relocatable object (ET_REL) that JITLink
/// can link without reading or writing out of bounds. `name` (a path, or "<bytes>") is used in
/// messages. Returns a StringError whose message starts with the quoted name, for example
/// "'x.o' is truncated or corrupt: ...". Never reads outside `buffer`, and has no alignment
/// requirement on it.
llvm::Error CheckObject(llvm::MemoryBufferRef buffer, llvm::StringRef name);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_OBJECT_CHECK_H_
