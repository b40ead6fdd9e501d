// The x86-64 ELF relocation types and how JITLink's x86-64 backend treats each: how many bytes it
// patches, whether it links it at all, and, for the thread-local-storage models this JIT does not
// link, what the user should compile with instead. The object check (object_check.h) looks every
// relocation of an object up here before JITLink sees it.
#ifndef PYTEST_ORCJIT_RELOCATION_TABLE_H_
#define PYTEST_ORCJIT_RELOCATION_TABLE_H_

#include <cstdint>

namespace orcjit {

/// How JITLink's x86-64 ELF backend (LLVM 19 to 22) treats a relocation type.
struct RelocationInfo {
  uint32_t type;
  const char* name;
  unsigned width;   ///< Bytes patched at r_offset.
  unsigned before;  ///< Bytes before r_offset that GOT relaxation reads and rewrites.
  bool linkable;    ///< Accepted by ELF_x86_64.cpp (checked with llvm-jitlink 19 and 22).
};

/// The entry for `type`, or nullptr if it is not an x86-64 relocation type.
const RelocationInfo* FindRelocation(uint32_t type);

/// What to do about a relocation of a thread-local model this JIT does not link, or nullptr for
/// a type that is not about thread-local storage.
const char* ThreadLocalAdvice(uint32_t type);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_RELOCATION_TABLE_H_
