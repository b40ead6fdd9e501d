// Process symbols: the dlsym cache, the "<process>" generator and the binding plugin. See
// process_symbols.h.
#include "process_symbols.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/JITLink/x86_64.h>
#include <tvm/ffi/c_api.h>
#include <unwind.h>

#include <optional>

#include "compat.h"
#include "init_fini.h"
#include "shared_libraries.h"

namespace orcjit {

using llvm::orc::ExecutorAddr;
using llvm::orc::SymbolStringPtr;

ProcessSymbols::ProcessSymbols() {
  handles_.push_back(RTLD_DEFAULT);
  const void* anchors[] = {reinterpret_cast<const void*>(&TVMFFIFunctionCall),
                           reinterpret_cast<const void*>(&__cxxabiv1::__cxa_begin_catch),
                           reinterpret_cast<const void*>(&_Unwind_Resume)};
  for (const void* anchor : anchors) {
    Dl_info info;
    if (dladdr(anchor, &info) == 0 || info.dli_fname == nullptr) continue;
    if (void* handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD)) handles_.push_back(handle);
  }
}

ExecutorAddr ProcessSymbols::Find(const SymbolStringPtr& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  // A shared library loaded since may define the names that were not found: look them up again.
  uint64_t generation = SharedLibraryGeneration();
  if (generation != generation_) {
    generation_ = generation;
    // Erasing leaves a tombstone: the other iterators stay valid.
    for (auto answer = found_.begin(); answer != found_.end(); ++answer) {
      if (!answer->second) found_.erase(answer);
    }
  }
  auto [it, inserted] = found_.try_emplace(name);
  if (inserted) {
    // Pooled symbol names are NUL-terminated.
    for (void* handle : handles_) {
      if (void* addr = dlsym(handle, (*name).data())) {
        it->second = ExecutorAddr::fromPtr(addr);
        break;
      }
    }
  }
  return it->second;
}

void* ProcessSymbols::FindNow(const char* name) const {
  for (void* handle : handles_) {
    if (void* addr = dlsym(handle, name)) return addr;
  }
  return nullptr;
}

void ProcessSymbols::Clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  found_.clear();
}

llvm::Error ProcessSymbolGenerator::tryToGenerate(llvm::orc::LookupState&, llvm::orc::LookupKind,
                                                  llvm::orc::JITDylib& dylib,
                                                  llvm::orc::JITDylibLookupFlags,
                                                  const llvm::orc::SymbolLookupSet& symbols) {
  llvm::orc::SymbolMap found;
  for (const auto& [name, flags] : symbols) {
    if (ExecutorAddr addr = symbols_.Find(name)) {
      found[name] = llvm::orc::ExecutorSymbolDef(addr, llvm::JITSymbolFlags::Exported);
    }
  }
  if (found.empty()) return llvm::Error::success();
  return dylib.define(llvm::orc::absoluteSymbols(std::move(found)));
}

ProcessBindingPlugin::ProcessBindingPlugin(llvm::orc::ExecutionSession& es, ProcessSymbols& symbols)
    : es_(es),
      symbols_(symbols),
      dso_handle_(es.intern("__dso_handle")),
      cxa_atexit_(es.intern("__cxa_atexit")),
      thread_local_symbols_(es) {
  for (size_t i = 0; i < EntryPoints().size(); ++i)
    entry_points_[es.intern(EntryPoints()[i].name)] = i;
}

void ProcessBindingPlugin::RegisterLibrary(const llvm::orc::JITDylib* dylib, Library library) {
  std::lock_guard<std::mutex> lock(mutex_);
  libraries_[dylib] = library;
}

void ProcessBindingPlugin::UnregisterLibrary(const llvm::orc::JITDylib* dylib) {
  std::lock_guard<std::mutex> lock(mutex_);
  libraries_.erase(dylib);
}

void ProcessBindingPlugin::modifyPassConfig(llvm::orc::MaterializationResponsibility& mr,
                                            llvm::jitlink::LinkGraph&,
                                            llvm::jitlink::PassConfiguration& config) {
  Library library;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = libraries_.find(&mr.getTargetJITDylib());
    if (it == libraries_.end()) return;
    library = it->second;
  }
  // After allocation, when JITLink has defined the section start and end symbols it knows
  // (`__start_SECTION`) and the graph's symbols have their addresses, and before it asks ORC for
  // the externals that are left.
  config.PostAllocationPasses.push_back(
      [this, &mr, library](llvm::jitlink::LinkGraph& graph) -> llvm::Error {
        if (auto err = Bind(graph, library)) return err;
        Definitions definitions = Record(graph);
        std::lock_guard<std::mutex> lock(mutex_);
        pending_[&mr] = std::move(definitions);
        return llvm::Error::success();
      });
  // The last pass before ORC's dependency walk, after JITLink's own GOT and stub optimizations.
  config.PreFixupPasses.push_back([](llvm::jitlink::LinkGraph& graph) -> llvm::Error {
    if (!graph.external_symbols().empty()) return llvm::Error::success();
    if (auto err = ApplyFixups(graph)) return err;
    HideDefinitions(graph);
    return llvm::Error::success();
  });
}

llvm::Error ProcessBindingPlugin::ApplyFixups(llvm::jitlink::LinkGraph& graph) {
  using llvm::jitlink::Edge;
  auto needs_got = [](const Edge& edge) {
    return edge.getKind() == llvm::jitlink::x86_64::Delta64FromGOT;
  };
  for (auto& section : graph.sections()) {
    std::optional<bool> init_fini;  // asked only of sections with edges
    for (auto* block : section.blocks()) {
      if (block->edges_empty()) continue;
      if (!init_fini) init_fini = IsInitFiniSection(section.getName());
      if (*init_fini) break;
      // Edges relative to the GOT need JITLink's GOT symbol: leave such a block to JITLink (which
      // applies the edges left in the graph), and ORC's walk (which has nothing to wait for).
      if (llvm::any_of(block->edges(), needs_got)) continue;
      for (const Edge& edge : block->edges()) {
        if (edge.getKind() == Edge::KeepAlive) continue;
        if (auto err = llvm::jitlink::x86_64::applyFixup(graph, *block, edge, nullptr)) return err;
      }
      while (!block->edges_empty()) block->removeEdge(std::prev(block->edges().end()));
    }
  }
  return llvm::Error::success();
}

void ProcessBindingPlugin::HideDefinitions(llvm::jitlink::LinkGraph& graph) {
  for (llvm::jitlink::Symbol* symbol : graph.defined_symbols()) {
    symbol->setScope(llvm::jitlink::Scope::Local);
  }
}

ProcessBindingPlugin::Definitions ProcessBindingPlugin::Record(llvm::jitlink::LinkGraph& graph) {
  Definitions definitions;
  for (llvm::jitlink::Symbol* symbol : graph.defined_symbols()) {
    auto scope = symbol->getScope();
    bool visible = scope == llvm::jitlink::Scope::Default || scope == llvm::jitlink::Scope::Hidden;
    if (visible && symbol->hasName()) {
      definitions.emplace_back(compat::internedName(es_, *symbol), symbol->getAddress());
    }
  }
  return definitions;
}

llvm::Error ProcessBindingPlugin::notifyEmitted(llvm::orc::MaterializationResponsibility& mr) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pending_.find(&mr);
  if (it == pending_.end()) return llvm::Error::success();
  auto library = libraries_.find(&mr.getTargetJITDylib());
  if (library != libraries_.end()) {
    for (auto& [name, addr] : it->second)
      library->second.linked->try_emplace(std::move(name), addr);
  }
  pending_.erase(it);
  return llvm::Error::success();
}

llvm::Error ProcessBindingPlugin::notifyFailed(llvm::orc::MaterializationResponsibility& mr) {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.erase(&mr);
  return llvm::Error::success();
}

ExecutorAddr ProcessBindingPlugin::ResolveOutside(const SymbolStringPtr& name,
                                                  const llvm::StringSet<>& defined,
                                                  const LinkedSymbols& imported) const {
  if (name == dso_handle_) return ExecutorAddr();  // the library's own, in its arena
  if (name == cxa_atexit_) return ExecutorAddr::fromPtr(&OrcjitCxaAtExit);
  if (ExecutorAddr own = thread_local_symbols_.Find(name)) return own;
  if (defined.contains(*name) || entry_points_.count(name)) return ExecutorAddr();  // own, thunks
  auto found = imported.find(name);
  return found != imported.end() ? found->second : symbols_.Find(name);
}

llvm::Error ProcessBindingPlugin::Bind(llvm::jitlink::LinkGraph& graph, const Library& library) {
  std::vector<llvm::jitlink::Symbol*> externals(graph.external_symbols().begin(),
                                                graph.external_symbols().end());
  for (llvm::jitlink::Symbol* symbol : externals) {
    SymbolStringPtr name = compat::internedName(es_, *symbol);
    ExecutorAddr addr;
    if (name == dso_handle_) {
      addr = ExecutorAddr::fromPtr(library.dso_handle);
    } else if (name == cxa_atexit_ || thread_local_symbols_.Find(name)) {
      addr = ResolveOutside(name, *library.defined, *library.imported);
    } else if (library.defined->contains(*name)) {
      auto linked = library.linked->find(name);
      if (linked != library.linked->end()) addr = linked->second;
    } else if (auto entry = entry_points_.find(name); entry != entry_points_.end()) {
      auto thunk = library.thunks->Address(entry->second);
      if (!thunk) return thunk.takeError();
      addr = *thunk;
    } else {
      addr = ResolveOutside(name, *library.defined, *library.imported);
    }
    if (addr) graph.makeAbsolute(*symbol, addr);
  }
  return llvm::Error::success();
}

}  // namespace orcjit
