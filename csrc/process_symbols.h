// Process symbols: what JIT code may use from the process (libc, libstdc++, libtvm_ffi...), found
// with dlsym once per name and session, and bound into each linked graph before ORC looks up its
// external symbols.
//
// ORC resolves a graph's external symbols with a session-wide lookup that also records, symbol by
// symbol, what the graph depends on, and updates its dependency graph when the graph is emitted:
// the largest cost of a load when nearly every external is a libc or tvm-ffi function. Those
// symbols are absolute and never go away, so there is nothing to track. The binding plugin turns
// each external that the library itself does not define and that the process does into an
// absolute symbol inside the graph, before the lookup. It does the same for the symbols a graph
// takes from objects of its library that are already linked (the copies of inline functions that
// another object defines, mostly): it records where each emitted graph's symbols are, which is also
// how the library finds its functions. A library linked against others (link_order.cc) has their
// exported symbols bound the same way, after its own and before the process's. ORC then looks up
// only what a graph takes from an object that is linked at the same time, and the names nobody
// defines (its lookup reports those as undefined). Symbols the library defines keep winning over
// the process's, and every library gets its own `__dso_handle` and the `__cxa_atexit` that files
// destructors with it (init_fini.h), its own atexit, tvm-ffi registration functions and the like
// (library_thunks.h), and the core's `__tls_get_addr` and `__cxa_thread_atexit` (tls_symbols.h).
//
// A graph left with no external symbol depends on nothing ORC could be waiting for, yet ORC still
// walks every edge of it, and groups its symbols by block, to compute its dependencies. For such a
// graph the plugin applies the fixups itself, just before ORC's walk, and removes the edges it
// applied, so the walk finds none (the edges of initializer tables stay: init_fini.h checks them
// after fixups). It also makes the graph's definitions local then: ORC has resolved them already,
// and emits the symbols that its walk finds in no block together, as one group with no
// dependencies, instead of one group per block.
#ifndef PYTEST_ORCJIT_PROCESS_SYMBOLS_H_
#define PYTEST_ORCJIT_PROCESS_SYMBOLS_H_

#include <llvm/ADT/DenseMap.h>
#include <llvm/ADT/StringSet.h>
#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "library_thunks.h"
#include "plugin.h"
#include "tls_symbols.h"

namespace orcjit {

/// The symbols of the shared libraries the process uses. Python loads extension modules
/// RTLD_LOCAL, so libtvm_ffi and libstdc++ may be invisible to dlsym(RTLD_DEFAULT): they are
/// searched by handle too. Every answer, found or not, is remembered for the session, a name not
/// found until a shared library is loaded for kernels (shared_libraries.h).
class ProcessSymbols {
 public:
  ProcessSymbols();

  /// The address of `name` in the process, or a null address when no library defines it.
  llvm::orc::ExecutorAddr Find(const llvm::orc::SymbolStringPtr& name);

  /// The address of `name` in the process now, without the cache: for a thread-local variable,
  /// dlsym gives the calling thread's copy. nullptr when no library defines it.
  void* FindNow(const char* name) const;

  /// Forgets every answer; the names belong to the JIT's string pool, so this must be done before
  /// the JIT is destroyed.
  void Clear();

 private:
  std::vector<void*> handles_;
  std::mutex mutex_;
  llvm::DenseMap<llvm::orc::SymbolStringPtr, llvm::orc::ExecutorAddr> found_;
  /// The shared-library generation the names not found were looked up in.
  uint64_t generation_ = 0;
};

/// The definition generator of the session's "<process>" JITDylib, which ORC consults for the
/// externals that the binding plugin left to it.
class ProcessSymbolGenerator final : public llvm::orc::DefinitionGenerator {
 public:
  explicit ProcessSymbolGenerator(ProcessSymbols& symbols) : symbols_(symbols) {}
  llvm::Error tryToGenerate(llvm::orc::LookupState&, llvm::orc::LookupKind,
                            llvm::orc::JITDylib& dylib, llvm::orc::JITDylibLookupFlags,
                            const llvm::orc::SymbolLookupSet& symbols) override;

 private:
  ProcessSymbols& symbols_;
};

/// Where the symbols of a library's emitted graphs are, by name.
using LinkedSymbols = llvm::DenseMap<llvm::orc::SymbolStringPtr, llvm::orc::ExecutorAddr>;

/// The ObjectLinkingLayer plugin that binds process symbols and the per-library symbols into each
/// graph before ORC's lookup; see the top of this file.
class ProcessBindingPlugin final : public ResourcelessPlugin {
 public:
  /// What the plugin needs to know about a library (JITDylib): the symbols its objects define,
  /// which it reads while the library links, its `__dso_handle`, the table of its linked
  /// symbols, which the plugin fills as graphs are emitted (on the thread that links them), the
  /// exported symbols of the libraries it links against, which are bound before the process's,
  /// and its thunks (library_thunks.h).
  struct Library {
    const llvm::StringSet<>* defined;
    void* dso_handle;
    LinkedSymbols* linked;
    LibraryThunks* thunks;
    const LinkedSymbols* imported;
  };

  ProcessBindingPlugin(llvm::orc::ExecutionSession& es, ProcessSymbols& symbols);

  void RegisterLibrary(const llvm::orc::JITDylib* dylib, Library library);

  /// Where `name` is bound for a library that defines `defined` and links against libraries
  /// exporting `imported`, when that is outside the library: a core function, a library it links
  /// against, or the process (null if nothing defines it). Null, too, for what the library
  /// provides itself: its definitions, its `__dso_handle`, its thunks. Placement asks this before
  /// the library has an arena (process_reach.h); Bind binds the same.
  llvm::orc::ExecutorAddr ResolveOutside(const llvm::orc::SymbolStringPtr& name,
                                         const llvm::StringSet<>& defined,
                                         const LinkedSymbols& imported) const;
  void UnregisterLibrary(const llvm::orc::JITDylib* dylib);

  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
  llvm::Error notifyEmitted(llvm::orc::MaterializationResponsibility& mr) override;
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility& mr) override;

 private:
  using Definitions = std::vector<std::pair<llvm::orc::SymbolStringPtr, llvm::orc::ExecutorAddr>>;

  llvm::Error Bind(llvm::jitlink::LinkGraph& graph, const Library& library);
  static llvm::Error ApplyFixups(llvm::jitlink::LinkGraph& graph);
  static void HideDefinitions(llvm::jitlink::LinkGraph& graph);
  Definitions Record(llvm::jitlink::LinkGraph& graph);

  llvm::orc::ExecutionSession& es_;
  ProcessSymbols& symbols_;
  const llvm::orc::SymbolStringPtr dso_handle_;
  const llvm::orc::SymbolStringPtr cxa_atexit_;
  /// The names each library binds to its own thunks: name -> index in EntryPoints().
  llvm::DenseMap<llvm::orc::SymbolStringPtr, size_t> entry_points_;
  const ThreadLocalSymbols thread_local_symbols_;
  std::mutex mutex_;
  std::unordered_map<const llvm::orc::JITDylib*, Library> libraries_;
  /// The definitions of graphs that are linked but not emitted yet.
  std::unordered_map<llvm::orc::MaterializationResponsibility*, Definitions> pending_;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_PROCESS_SYMBOLS_H_
