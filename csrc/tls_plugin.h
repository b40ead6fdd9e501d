// The ObjectLinkingLayer plugin that gives linked graphs thread-local storage (tls_runtime.h).
//
// For a graph with TLS sections (laid out by tls_layout.h, all named kThreadLocalSection, each
// block's address its offset in the object's TLS image until JITLink allocates memory), it keeps
// every TLS block alive through dead-stripping (local-dynamic code reaches variables through
// offsets, not edges), records each block's offset in the image, and once memory is allocated
// registers the image: its size, alignment and the template (the blocks, in the library's memory).
//
// For every graph with TLS entries (JITLink's `$__TLSINFO` section: one 16-byte entry per variable
// that code passes to `__tls_get_addr`, with an edge to the variable), it fills each entry with
// {image key, offset of the variable in the image} and removes the edge, just before fixups (and
// before the binding plugin applies them itself): for a variable of the graph from the offsets
// above, for one another object of the library defines from the template it lies in, and for a
// thread-local variable of the process (libstdc++'s `std::__once_callable`, which std::call_once
// uses) from glibc's module id and offset, which the runtime's `__tls_get_addr` passes on to
// glibc's. A graph with neither pays one section lookup.
#ifndef PYTEST_ORCJIT_TLS_PLUGIN_H_
#define PYTEST_ORCJIT_TLS_PLUGIN_H_

#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "plugin.h"
#include "process_symbols.h"
#include "tls_runtime.h"

namespace orcjit {

class ThreadLocalPlugin final : public ResourcelessPlugin {
 public:
  explicit ThreadLocalPlugin(ProcessSymbols& process) : process_(process) {}

  /// A library (JITDylib) whose `__dso_handle` is `dso_handle`; its TLS state is made when its
  /// first graph with TLS sections links.
  void RegisterLibrary(const llvm::orc::JITDylib* dylib, void* dso_handle);
  /// Runs the destructors of the library's thread_local objects in every thread still alive
  /// (ThreadLocals::RunDestructors); nothing for a library without TLS.
  llvm::Error RunDestructors(const llvm::orc::JITDylib* dylib, llvm::StringRef library);
  /// Frees the library's TLS (ThreadLocals::Release) and forgets the library.
  llvm::Error UnregisterLibrary(const llvm::orc::JITDylib* dylib, llvm::StringRef library);

  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
  llvm::Error notifyEmitted(llvm::orc::MaterializationResponsibility& mr) override;
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility& mr) override;

 private:
  struct Library {
    void* dso_handle;
    std::unique_ptr<ThreadLocals> tls;  // made on first use
  };
  struct Graph;

  /// The TLS state of `dylib`, made if `create` and there is none yet; nullptr if none.
  ThreadLocals* Find(const llvm::orc::JITDylib* dylib, bool create);
  llvm::Error AddImage(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                       Graph& graph);
  llvm::Error FillEntries(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                          const Graph* graph);
  llvm::Expected<TlsIndex> ProcessThreadLocal(const llvm::jitlink::LinkGraph& g,
                                              const llvm::jitlink::Symbol& symbol);

  ProcessSymbols& process_;
  std::mutex mutex_;
  std::unordered_map<const llvm::orc::JITDylib*, Library> libraries_;
  /// The image of each graph that is linked but not emitted yet.
  std::unordered_map<llvm::orc::MaterializationResponsibility*, std::pair<ThreadLocals*, uint64_t>>
      pending_;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_TLS_PLUGIN_H_
