// The import tree that a library carries in its `__tvm_ffi__library_bin` symbol, read as
// tvm_ffi.load_module reads it from a shared library (tvm-ffi's ProcessLibraryBin, which it does
// not export): TVM puts there, for example, the device modules of a GPU kernel, which the host code
// finds through TVMFFIEnvModLookupFromImports.
//
// The format, all integers little-endian u64:
//   <nbytes> then nbytes of: <indptr: vec> <children: vec> <module 0> <module 1> ...
// where vec = <count> <count integers>, str = <length> <bytes>, and a module is <kind: str>
// followed by <bytes: str> unless the kind is "_lib", which stands for the library itself (its
// position in the tree; nothing to read). The tree is stored compressed by rows: module i imports
// children[indptr[i]] .. children[indptr[i + 1] - 1]. Module 0 is the root, which load_module
// returns; the library's `__tvm_ffi__library_ctx` points at its "_lib" module. A module of another
// kind is made by the global function `ffi.Module.load_from_bytes.<kind>` from its bytes.
//
// Unlike tvm-ffi, every read is checked against the bytes the object defines at the symbol, and
// the tree's shape before any module is made: a malformed blob raises ValueError saying what is
// wrong, where tvm-ffi would read past the blob or build an import cycle.
#ifndef PYTEST_ORCJIT_LIBRARY_BIN_H_
#define PYTEST_ORCJIT_LIBRARY_BIN_H_

#include <llvm/Support/MemoryBuffer.h>
#include <tvm/ffi/extra/module.h>

#include <cstdint>
#include <functional>
#include <string>

namespace orcjit {

/// How many bytes the ELF object `object` defines at its symbol `__tvm_ffi__library_bin`: the
/// symbol's size, or, for a symbol without one, the rest of its section; 0 if it has no such
/// symbol or it cannot be read (the object was checked before: object_check.h).
uint64_t LibraryBinExtent(llvm::MemoryBufferRef object);

/// Builds the modules of the import tree held in the `size` bytes at `data`, wires their imports
/// and returns the root. `library_module` makes the module of each "_lib" entry and points the
/// library's context at it. `where` names the blob in messages ("library 'x': the
/// __tvm_ffi__library_bin of 'a.o'"). ValueError for a malformed blob or an unknown module kind;
/// what a loader raises passes through.
tvm::ffi::Module ExpandLibraryBin(const char* data, uint64_t size, const std::string& where,
                                  const std::function<tvm::ffi::Module()>& library_module);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_LIBRARY_BIN_H_
