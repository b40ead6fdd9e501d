// The first step of the object check (object_check.h): the ELF header. It tells the files a user
// passes by mistake (an ar archive, a shared library, an executable, an object for another machine
// or ABI) from a corrupt one, with a message that says what to pass instead, and checks the fields
// of the header that the rest of the check relies on to read the section header table.
#ifndef PYTEST_ORCJIT_ELF_HEADER_CHECK_H_
#define PYTEST_ORCJIT_ELF_HEADER_CHECK_H_

#include <llvm/ADT/StringRef.h>
#include <llvm/Support/Error.h>

#include <cstdint>

namespace orcjit {

/// Checks that the `file_size` bytes at `data` start with the ELF header of an x86-64 ELF64
/// little-endian relocatable object (ET_REL, version 1, a 64-byte header). `name` (a path, or
/// "<bytes>") starts each message, as in object_check.h. Reads nothing outside the bytes.
llvm::Error CheckElfHeader(const uint8_t* data, uint64_t file_size, llvm::StringRef name);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_ELF_HEADER_CHECK_H_
