// The map of JIT code: which function of which object file lies at an address, readable from a
// signal handler.
//
// A crash report must name the kernel a faulting pc or return address lies in, yet the process
// that crashed may be inside malloc, or hold any lock, when its handler runs. So the map is built
// when code is linked, not when it crashes: a plugin of the object linking layer records, once
// each graph has its final addresses, every named symbol of its executable sections (start, end,
// name) with the graph's object path, sorted by address, in a table of its own mapped pages. The
// tables are published in a fixed array of atomic slots; looking an address up reads them and
// nothing else (no lock, no allocation), which is async-signal-safe. A library's tables are
// dropped when its memory is removed (the library closed). Tables live in ordinary private memory:
// a forked child (a test of the fork server) inherits them with the code they describe, and since
// they are made from each linked graph, prepared or copied graphs (graph_copy.h) are mapped like
// any other.
//
// Limits: symbols without a name (JITLink's stubs, anonymous blocks) are not mapped; at most
// kMaxCodeTables graphs are mapped at once (further ones are linked but not mapped); a table that
// is dropped while a signal handler on another thread reads it can be read after it was unmapped
// (a crash report racing a library's close).
#ifndef PYTEST_ORCJIT_JIT_CODE_MAP_H_
#define PYTEST_ORCJIT_JIT_CODE_MAP_H_

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "plugin.h"

namespace orcjit {

/// Upper bound on graphs (objects linked into libraries) mapped at the same time.
constexpr int kMaxCodeTables = 4096;

/// A function of JIT code, as a lookup finds it. The strings point into the table, which lives as
/// long as its library is open.
struct JitFunction {
  uint64_t start = 0;            // the address of its first instruction
  uint64_t size = 0;             // its extent in bytes
  const char* name = nullptr;    // its symbol name (mangled)
  const char* object = nullptr;  // the object file's path, or "<bytes>"
};

/// Finds the JIT function that contains `address`. Async-signal-safe; false outside JIT code.
bool FindJitFunction(uintptr_t address, JitFunction* found);

/// Whether any JIT code is mapped (async-signal-safe).
bool HasJitCode();

/// Records the functions of each linked graph (see the top of this file); one per session.
class JitCodeMapPlugin final : public llvm::orc::ObjectLinkingLayer::Plugin {
 public:
  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility&) override {
    return llvm::Error::success();
  }
  /// Drops the tables of `dylib`: its memory goes away (its library closes).
  llvm::Error notifyRemovingResources(llvm::orc::JITDylib& dylib, llvm::orc::ResourceKey) override;
  void notifyTransferringResources(llvm::orc::JITDylib&, llvm::orc::ResourceKey,
                                   llvm::orc::ResourceKey) override {}
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_JIT_CODE_MAP_H_
