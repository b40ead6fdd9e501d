// Shared libraries loaded for kernels: an OpenMP runtime, a BLAS, libcudart, whatever JIT code
// calls that the process does not load by itself. Each is loaded RTLD_GLOBAL, so that its symbols
// are visible to dlsym(RTLD_DEFAULT), and therefore to every library of every session
// (process_symbols.h). Loading cannot be undone: the library stays for the rest of the process.
//
// Sessions remember the symbols the process did not define (process_symbols.h); a generation,
// counted up by every load, tells them that a symbol missing before may be there now.
#ifndef PYTEST_ORCJIT_SHARED_LIBRARIES_H_
#define PYTEST_ORCJIT_SHARED_LIBRARIES_H_

#include <cstdint>
#include <string>

namespace orcjit {

/// Loads the shared library at `path` (RTLD_NOW | RTLD_GLOBAL) and returns the path the loader
/// gives it (a bare file name such as "libgomp.so.1" is searched the loader's way). Loading a
/// library already loaded makes its symbols global if they were not. Throws ValueError with the
/// loader's reason.
std::string LoadSharedLibrary(const std::string& path);

/// How many times a shared library was loaded into the process; 0 before the first.
uint64_t SharedLibraryGeneration();

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_SHARED_LIBRARIES_H_
