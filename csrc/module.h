// The tvm_ffi.Module view of a library, which load_module returns: it creates a library from
// objects, links it, wires tvm-ffi's context symbols into it as tvm_ffi.load_module does for a
// shared library, expands the import tree the library carries (library_bin.h), and hands out the
// library's exports as the module's functions. The module holds the library, which closes when the
// last reference to either goes.
#ifndef PYTEST_ORCJIT_MODULE_H_
#define PYTEST_ORCJIT_MODULE_H_

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/extra/module.h>

#include <string>

#include "session.h"

namespace orcjit {

/// Creates a library from `objects` (each a path String or Bytes), links it, wires tvm-ffi's
/// context symbols, and returns it as a tvm_ffi.Module whose functions are the exports.
tvm::ffi::Module LoadModule(Session session, const tvm::ffi::Array<tvm::ffi::Any>& objects,
                            std::string name);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_MODULE_H_
