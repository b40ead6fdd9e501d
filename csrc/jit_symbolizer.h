// Names for addresses in JIT code: "NullWrite (kernels/misbehave.cc:17)" where the object file has
// debug information, "NullWrite+0x1a (kernels/misbehave.cc)" where it has only its symbol table.
//
// The function comes from the map of JIT code (jit_code_map.h), its source from the object file
// it was linked from, read again from its path: the address's offset in the function plus the
// function symbol's value in the object is an offset in the symbol's section, which the object's
// DWARF line table (llvm::DWARFContext, relocations applied) turns into a file and line. Without
// a line table the source file is the object's STT_FILE symbol, else the object's path. Paths
// inside the current directory are shown relative to it. Reading and parsing allocates: this is
// for ordinary contexts (the Python API, a crash report's helper process), never a signal handler.
// An object file changed since it was linked (its function symbol no longer has the linked size)
// is not trusted for a line: the name is given with its offset and the object is said to have
// changed.
#ifndef PYTEST_ORCJIT_JIT_SYMBOLIZER_H_
#define PYTEST_ORCJIT_JIT_SYMBOLIZER_H_

#include <cstdint>
#include <optional>
#include <string>

namespace orcjit {

/// Describes the JIT code at `pc`, or nothing when `pc` is in no mapped JIT function. A return
/// address should be passed as `pc - 1` (the call instruction), as debuggers do.
std::optional<std::string> DescribeJitAddress(uintptr_t pc);

/// The function's name for display: demangled, without its parameter list ("ns::Kernel").
std::string DisplayName(const char* symbol);

/// `path` relative to the current directory when it lies inside it, else as it is.
std::string DisplayPath(const std::string& path);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_JIT_SYMBOLIZER_H_
