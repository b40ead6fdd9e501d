// Link errors: what a failed link of a library says. ORC reports each failure on its own
// (session.h collects them per library); this turns them into one message. Each undefined symbol
// comes with the objects that reference it, and the symbols of a shared library that kernels often
// call (an OpenMP runtime, a BLAS, libcudart, libm) are grouped under that library, with how to
// load it (shared_libraries.h): the table of those libraries is the one place to teach it another.
#ifndef PYTEST_ORCJIT_LINK_ERRORS_H_
#define PYTEST_ORCJIT_LINK_ERRORS_H_

#include <llvm/ExecutionEngine/Orc/Core.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBuffer.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace orcjit {

/// The objects of a library added from files: each one's path and bytes.
using ObjectFiles = std::vector<std::pair<std::string, std::shared_ptr<llvm::MemoryBuffer>>>;

/// One message for a failed link of `dylib`: what ORC reported for it, then `err` (what the
/// lookup returned), separated by "; ". `files` are searched for the objects that reference each
/// undefined symbol.
std::string DescribeLinkFailure(llvm::Error err, const llvm::orc::JITDylib* dylib,
                                const ObjectFiles& files);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_LINK_ERRORS_H_
