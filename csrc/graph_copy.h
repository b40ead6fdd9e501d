// Copies of link graphs: a session parses each object file into a JITLink graph once, and each
// library that links the object gets a copy of that graph instead of parsing the ELF file again.
//
// Building a graph reads the ELF section, symbol and relocation tables and decodes every
// relocation into an edge; it is the largest single cost of a load. Linking changes a graph (it
// prunes it, adds GOT entries and stubs, assigns addresses), so the parsed graph itself cannot be
// linked twice; copying its sections, blocks, symbols and edges is cheaper than parsing. Block
// contents are not copied: the copy refers to the content of the parsed graph (the object file's
// bytes), which JITLink copies into the library's memory when it allocates it, and which the
// session keeps as long as the object is cached.
#ifndef PYTEST_ORCJIT_GRAPH_COPY_H_
#define PYTEST_ORCJIT_GRAPH_COPY_H_

#include <llvm/ExecutionEngine/JITLink/JITLink.h>

#include <memory>

namespace orcjit {

/// A copy of `graph`, which must not have been linked (or changed by any pass). Only graphs from
/// compat::parseGraph are copied (LLVM 22 and newer).
std::unique_ptr<llvm::jitlink::LinkGraph> CopyGraph(llvm::jitlink::LinkGraph& graph);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_GRAPH_COPY_H_
