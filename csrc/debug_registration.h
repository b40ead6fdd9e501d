// Debugger support: the ObjectLinkingLayer plugin that registers each linked object that has debug
// information with the GDB JIT interface, so that gdb names JIT functions, their source lines and
// locals, and unwinds through them; and unregisters it when its library closes.
//
// The GDB JIT interface is a list of in-memory object files that the debugger reads: the process
// links an entry into `__jit_debug_descriptor` and calls `__jit_debug_register_code`, on which the
// debugger keeps a breakpoint. What is registered is a copy of the object file with the address of
// each of its allocated sections set to where JITLink placed it (sh_addr): the debugger applies the
// object's relocations to its debug sections itself, from those addresses, as for any relocatable
// file. The descriptor and the function are the ones of LLVM's JITLoaderGDB, which the core links
// (statically, with its symbols hidden, but in the symbol table that gdb reads by name); LLVM's own
// ELFDebugObjectPlugin is not used because it cannot unregister an object (its entries stay in the
// list, pointing at freed memory, after their library is removed).
//
// Objects without a `.debug_info` section cost one section lookup in their graph: nothing is copied
// and nothing registered. Registration is on unless PYTEST_ORCJIT_DEBUG_REGISTRATION=0 is set when
// the session is created.
#ifndef PYTEST_ORCJIT_DEBUG_REGISTRATION_H_
#define PYTEST_ORCJIT_DEBUG_REGISTRATION_H_

#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>
#include <tvm/ffi/container/array.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace orcjit {

class DebugRegistrationPlugin final : public llvm::orc::ObjectLinkingLayer::Plugin {
 public:
  /// Registration is on unless the environment variable says otherwise (see the top of the file).
  DebugRegistrationPlugin();
  /// Unregisters whatever is still registered.
  ~DebugRegistrationPlugin() override;

  bool enabled() const { return enabled_; }

  /// `graph`, about to be linked into `dylib`, is a copy of the graph parsed from `object_bytes`
  /// (graph_copy.h), which must stay alive until the graph is linked or `dylib` forgotten. Graphs
  /// linked from an object buffer need not be announced.
  void Expect(const llvm::orc::JITDylib* dylib, llvm::jitlink::LinkGraph* graph,
              llvm::StringRef object_bytes);
  /// Forgets the graphs announced for `dylib`: they will not be linked.
  void Forget(const llvm::orc::JITDylib* dylib);

  void notifyMaterializing(llvm::orc::MaterializationResponsibility& mr,
                           llvm::jitlink::LinkGraph& g, llvm::jitlink::JITLinkContext& ctx,
                           llvm::MemoryBufferRef object) override;
  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
  llvm::Error notifyEmitted(llvm::orc::MaterializationResponsibility& mr) override;
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility& mr) override;
  llvm::Error notifyRemovingResources(llvm::orc::JITDylib& dylib,
                                      llvm::orc::ResourceKey key) override;
  void notifyTransferringResources(llvm::orc::JITDylib& dylib, llvm::orc::ResourceKey to,
                                   llvm::orc::ResourceKey from) override;

  /// Whether a graph has debug information worth registering.
  static bool HasDebugInfo(llvm::jitlink::LinkGraph& graph);

 private:
  struct DebugObject;
  using Owned = std::unique_ptr<DebugObject>;

  /// A buffer of `size` bytes for a debug object: a spare one, else a new one.
  std::unique_ptr<char[]> TakeBuffer(uint64_t size);
  /// Keeps the buffer of an unregistered debug object for the next object of the same size (the
  /// same object linked again, as tests do), unless kMaxSpareBytes are kept already: a new buffer
  /// of a few MB costs more in page faults than copying the object into it.
  void Recycle(std::unique_ptr<char[]> buffer, uint64_t size);

  static constexpr uint64_t kMaxSpareBytes = 32 << 20;
  const bool enabled_;
  std::mutex mutex_;
  /// Object bytes of graphs announced by Expect or seen by notifyMaterializing, until they link.
  std::unordered_map<const llvm::jitlink::LinkGraph*,
                     std::pair<const llvm::orc::JITDylib*, llvm::StringRef>>
      sources_;
  /// Debug objects built for graphs being linked, registered once their graph is emitted.
  std::unordered_map<llvm::orc::MaterializationResponsibility*, Owned> pending_;
  /// Registered debug objects, by the resource key of their graph's memory.
  std::unordered_map<llvm::orc::ResourceKey, std::vector<Owned>> registered_;
  /// Buffers of unregistered debug objects, by size, and their total size.
  std::unordered_multimap<uint64_t, std::unique_ptr<char[]>> spare_;
  uint64_t spare_bytes_ = 0;
};

/// The objects in the process's GDB JIT descriptor, newest first: [address, size] of each (what a
/// debugger reads; for tests). Also `orcjit.debug_objects_registered`.
tvm::ffi::Array<tvm::ffi::Array<int64_t>> DebugObjectsRegistered();

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_DEBUG_REGISTRATION_H_
