// Static initialization and finalization of JIT libraries: the section-recording plugin, each
// library's Runtime, and the `__cxa_atexit` that JIT code links against. See init_fini.h.
#include "init_fini.h"

#include <llvm/ADT/DenseMap.h>
#include <llvm/ADT/SmallPtrSet.h>
#include <llvm/ADT/StringRef.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "fault_guard.h"
#include "libc_nonshared.h"

extern "C" int __cxa_atexit(void (*fn)(void*), void* arg, void* dso);  // NOLINT
extern char** environ;

namespace orcjit {

using llvm::StringRef;
using llvm::jitlink::LinkGraph;

namespace {

constexpr uint32_t kDefaultPriority = 65535;

/// Which initializer or finalizer a section holds, parsed from its ELF name.
struct SectionKind {
  bool init;
  bool reverse;
  uint32_t priority;
};

std::optional<SectionKind> ClassifySection(StringRef name) {
  struct Prefix {
    StringRef name;
    bool init, legacy;
  };
  static const Prefix kPrefixes[] = {{".init_array", true, false},
                                     {".fini_array", false, false},
                                     {".ctors", true, true},
                                     {".dtors", false, true}};
  for (const Prefix& prefix : kPrefixes) {
    if (!name.consume_front(prefix.name)) continue;
    uint32_t priority = kDefaultPriority;
    if (!name.empty()) {
      unsigned value;
      if (!name.consume_front(".") || name.getAsInteger(10, value) || value > kDefaultPriority) {
        return std::nullopt;
      }
      // `.ctors.N` / `.dtors.N` count priorities downwards: the linker turns `.ctors.N` into
      // `.init_array.(65535 - N)` and reverses the order of the entries.
      priority = prefix.legacy ? kDefaultPriority - value : value;
    }
    return SectionKind{prefix.init, prefix.legacy, priority};
  }
  return std::nullopt;
}

/// Empty slots and the -1 terminators of old-style `.ctors` lists are not functions.
bool IsFunction(uintptr_t entry) { return entry != 0 && entry != ~uintptr_t(0); }

void CallEntry(uintptr_t entry) {
  if (!IsFunction(entry)) return;
  // glibc passes argc, argv and envp to `.init_array` functions; most take no arguments.
  reinterpret_cast<void (*)(int, char**, char**)>(entry)(0, nullptr, environ);
}

/// CallEntry in the shape FaultGuard::Call takes.
void CallEntryOf(void* entry) { CallEntry(reinterpret_cast<uintptr_t>(entry)); }

/// A table entry that faulted, and where it was: "entry 3 of .init_array in 'k.o'".
struct TableFault {
  Fault fault;
  std::string where;
};

/// Calls the functions of `sections`, in that order, under `guard`: each section's entries in
/// execution order, or the other way round for finalizers (`backwards`). Stops at the first that
/// faults.
std::optional<TableFault> CallTables(FaultGuard& guard,
                                     const std::vector<Runtime::Section>& sections,
                                     bool backwards) {
  for (const Runtime::Section& section : sections) {
    bool from_last = section.reverse != backwards;
    for (size_t i = 0; i < section.count; ++i) {
      size_t index = from_last ? section.count - 1 - i : i;
      uintptr_t entry = section.entries[index];
      if (!IsFunction(entry)) continue;
      if (std::optional<Fault> fault = guard.Call(CallEntryOf, reinterpret_cast<void*>(entry))) {
        return TableFault{*fault, "entry " + std::to_string(index) + " of " + section.name +
                                      " in '" + section.object + "'"};
      }
    }
  }
  return std::nullopt;
}

/// The places that the entries of a graph's initializer and finalizer tables point at, each with
/// the function symbol that starts there (null where none does).
using FunctionStarts =
    llvm::DenseMap<std::pair<const llvm::jitlink::Block*, uint64_t>, llvm::jitlink::Symbol*>;

FunctionStarts FindTableTargets(LinkGraph& graph) {
  FunctionStarts targets;
  for (auto& section : graph.sections()) {
    if (!ClassifySection(section.getName())) continue;
    for (auto* block : section.blocks()) {
      for (const auto& edge : block->edges()) {
        const llvm::jitlink::Symbol& target = edge.getTarget();
        int64_t offset =
            static_cast<int64_t>(target.isDefined() ? target.getOffset() : 0) + edge.getAddend();
        if (target.isDefined() && offset >= 0) {
          targets.try_emplace({&target.getBlock(), static_cast<uint64_t>(offset)}, nullptr);
        }
      }
    }
  }
  if (targets.empty()) return targets;
  // Only the sections of the targets can hold their symbols: walk those (in the graph's order, as
  // defined_symbols() would), not every symbol of the graph.
  llvm::SmallPtrSet<const llvm::jitlink::Section*, 4> target_sections;
  for (const auto& [where, symbol] : targets) target_sections.insert(&where.first->getSection());
  for (auto& section : graph.sections()) {
    if (!target_sections.contains(&section)) continue;
    for (auto* symbol : section.symbols()) {
      if (!symbol->isCallable()) continue;
      auto it = targets.find({&symbol->getBlock(), symbol->getOffset()});
      if (it != targets.end() && it->second == nullptr) it->second = symbol;
    }
  }
  return targets;
}

/// Checks that every entry of an initializer or finalizer table is a relocation to the start of a
/// function of the graph (or empty): a corrupt object could otherwise make the library call a wild
/// pointer or jump into the middle of a function.
llvm::Error CheckTable(const LinkGraph& graph, const llvm::jitlink::Block& table,
                       const FunctionStarts& functions) {
  std::vector<const llvm::jitlink::Edge*> entries(table.getSize() / sizeof(uintptr_t), nullptr);
  for (const auto& edge : table.edges()) {
    size_t index = edge.getOffset() / sizeof(uintptr_t);
    if (edge.getOffset() % sizeof(uintptr_t) == 0 && index < entries.size()) {
      entries[index] = &edge;
    }
  }
  const uintptr_t* values = reinterpret_cast<const uintptr_t*>(table.getContent().data());
  for (size_t i = 0; i < entries.size(); ++i) {
    const llvm::jitlink::Edge* edge = entries[i];
    bool ok;
    if (edge == nullptr) {
      uintptr_t value;
      std::memcpy(&value, values + i, sizeof(value));
      ok = value == 0 || value == ~uintptr_t(0);
    } else {
      const llvm::jitlink::Symbol& target = edge->getTarget();
      auto prot =
          static_cast<unsigned>(target.isDefined() ? target.getBlock().getSection().getMemProt()
                                                   : llvm::orc::MemProt::None);
      int64_t offset =
          static_cast<int64_t>(target.isDefined() ? target.getOffset() : 0) + edge->getAddend();
      ok = (prot & static_cast<unsigned>(llvm::orc::MemProt::Exec)) != 0 && offset >= 0 &&
           functions.lookup({&target.getBlock(), static_cast<uint64_t>(offset)}) != nullptr;
    }
    if (!ok) {
      return llvm::createStringError(
          std::make_error_code(std::errc::invalid_argument),
          "'%s' is corrupt: entry %zu of its %s table does not point at a function of the object; "
          "rebuild it",
          graph.getName().c_str(), i, table.getSection().getName().str().c_str());
    }
  }
  return llvm::Error::success();
}

/// A `__cxa_atexit` registration, in the shape FaultGuard::Call takes.
struct AtExitCall {
  void (*fn)(void*);
  void* arg;
};
void CallAtExit(void* call) {
  auto* at_exit = static_cast<AtExitCall*>(call);
  at_exit->fn(at_exit->arg);
}

/// `__dso_handle` address -> the Runtime of the library that owns it.
std::mutex registry_mutex;
std::unordered_map<void*, Runtime*>& Registry() {
  static auto* registry = new std::unordered_map<void*, Runtime*>();
  return *registry;
}

}  // namespace

bool IsInitFiniSection(StringRef name) { return ClassifySection(name).has_value(); }

Runtime::Runtime(void* dso_handle) : dso_handle_(dso_handle) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  Registry()[dso_handle_] = this;
}

Runtime::~Runtime() {
  DropLibraryHandlers(dso_handle_);
  std::lock_guard<std::mutex> lock(registry_mutex);
  Registry().erase(dso_handle_);
}

void Runtime::AddSections(std::vector<Section> inits, std::vector<Section> finis) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Section& section : inits) {
    section.sequence = next_sequence_++;
    pending_inits_.push_back(section);
  }
  for (Section& section : finis) {
    section.sequence = next_sequence_++;
    finis_.push_back(section);
  }
}

void Runtime::Abandon() {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_inits_.clear();
  finis_.clear();
  at_exit_.clear();
  finalized_ = true;
}

llvm::Error Runtime::RunPendingInitializers(llvm::StringRef library) {
  std::vector<Section> inits;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inits.swap(pending_inits_);
  }
  if (inits.empty()) return llvm::Error::success();
  std::stable_sort(inits.begin(), inits.end(), [](const Section& a, const Section& b) {
    return std::make_pair(a.priority, a.sequence) < std::make_pair(b.priority, b.sequence);
  });
  FaultGuard guard;
  std::optional<TableFault> crash = CallTables(guard, inits, /*backwards=*/false);
  if (!crash) return llvm::Error::success();
  Abandon();
  return llvm::createStringError(
      std::make_error_code(std::errc::state_not_recoverable),
      "static constructor of library '%s' (%s) crashed with %s; the library was not loaded, and "
      "none of its other constructors or its destructors will run: fix the constructor, or "
      "rebuild the object if it is corrupt",
      library.str().c_str(), crash->where.c_str(), crash->fault.Describe().c_str());
}

llvm::Error Runtime::RunFinalizers(llvm::StringRef library) {
  DropLibraryHandlers(dso_handle_);  // at_quick_exit and fork handlers never run after close
  std::vector<Section> finis;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finalized_) return llvm::Error::success();
    finalized_ = true;
    finis.swap(finis_);
    if (finis.empty() && at_exit_.empty()) return llvm::Error::success();
  }
  std::stable_sort(finis.begin(), finis.end(), [](const Section& a, const Section& b) {
    return std::make_pair(a.priority, a.sequence) > std::make_pair(b.priority, b.sequence);
  });
  FaultGuard guard;
  // Stops running destructors, and says which one crashed.
  auto crashed = [&](const Fault& fault, const std::string& which) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      at_exit_.clear();
    }
    return llvm::createStringError(
        std::make_error_code(std::errc::state_not_recoverable),
        "static destructor of library '%s' (%s) crashed with %s; the library was closed without "
        "running its other destructors: fix the destructor, or rebuild the object if it is "
        "corrupt",
        library.str().c_str(), which.c_str(), fault.Describe().c_str());
  };
  // Finalizer sections run backwards: `.fini_array` from its last entry, `.dtors` from its first.
  if (std::optional<TableFault> crash = CallTables(guard, finis, /*backwards=*/true)) {
    return crashed(crash->fault, crash->where);
  }
  // Destructors may register more destructors (a function-local static first used in one): run
  // until none is left, newest first.
  for (;;) {
    std::pair<void (*)(void*), void*> entry;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (at_exit_.empty()) break;
      entry = at_exit_.back();
      at_exit_.pop_back();
    }
    AtExitCall call{entry.first, entry.second};
    if (auto fault = guard.Call(CallAtExit, &call)) {
      char address[2 + 16 + 1];
      std::snprintf(address, sizeof(address), "%p", reinterpret_cast<void*>(entry.first));
      return crashed(*fault,
                     std::string("a destructor registered with __cxa_atexit, at ") + address);
    }
  }
  return llvm::Error::success();
}

void Runtime::AddAtExit(void (*fn)(void*), void* arg) {
  std::lock_guard<std::mutex> lock(mutex_);
  at_exit_.emplace_back(fn, arg);
}

extern "C" int OrcjitCxaAtExit(void (*fn)(void*), void* arg, void* dso) {
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = Registry().find(dso);
    if (it != Registry().end()) {
      it->second->AddAtExit(fn, arg);
      return 0;
    }
  }
  return __cxa_atexit(fn, arg, dso);
}

void InitFiniPlugin::RegisterLibrary(const llvm::orc::JITDylib* dylib, Runtime* runtime) {
  std::lock_guard<std::mutex> lock(mutex_);
  runtimes_[dylib] = runtime;
}

void InitFiniPlugin::UnregisterLibrary(const llvm::orc::JITDylib* dylib) {
  std::lock_guard<std::mutex> lock(mutex_);
  runtimes_.erase(dylib);
}

void InitFiniPlugin::modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, LinkGraph& g,
                                      llvm::jitlink::PassConfiguration& config) {
  // Nothing references initializer sections, so dead-stripping would drop them: keep them alive.
  // Keep the function symbols their entries point at too (such as the `_GLOBAL__sub_I_*`
  // constructors, local symbols that nothing else refers to): the check after fixups looks for
  // them, and so does the check of a prepared copy of the graph (graph_copy.h).
  auto functions = std::make_shared<FunctionStarts>();
  config.PrePrunePasses.push_back([functions](LinkGraph& graph) {
    *functions = FindTableTargets(graph);
    for (auto& [where, symbol] : *functions) {
      if (symbol != nullptr) symbol->setLive(true);
    }
    for (auto& section : graph.sections()) {
      if (!ClassifySection(section.getName())) continue;
      std::vector<llvm::jitlink::Block*> blocks(section.blocks().begin(), section.blocks().end());
      for (auto* block : blocks) {
        graph.addAnonymousSymbol(*block, 0, block->getSize(), false, /*IsLive=*/true);
      }
    }
    return llvm::Error::success();
  });
  // After fixups the sections hold the final function addresses; remember where they are.
  config.PostFixupPasses.push_back([this, &mr, functions](LinkGraph& graph) -> llvm::Error {
    Recorded recorded;
    for (auto& section : graph.sections()) {
      auto kind = ClassifySection(section.getName());
      if (!kind) continue;
      for (auto* block : section.blocks()) {
        if (auto err = CheckTable(graph, *block, *functions)) return err;
        Runtime::Section run{block->getAddress().toPtr<const uintptr_t*>(),
                             block->getSize() / sizeof(uintptr_t),
                             kind->priority,
                             kind->reverse,
                             0,
                             graph.getName(),
                             section.getName().str()};
        if (run.count == 0) continue;
        (kind->init ? recorded.inits : recorded.finis).push_back(run);
      }
    }
    if (!recorded.inits.empty() || !recorded.finis.empty()) {
      std::lock_guard<std::mutex> lock(mutex_);
      recorded_[&mr] = std::move(recorded);
    }
    return llvm::Error::success();
  });
}

llvm::Error InitFiniPlugin::notifyEmitted(llvm::orc::MaterializationResponsibility& mr) {
  Recorded recorded;
  Runtime* runtime = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = recorded_.find(&mr);
    if (it == recorded_.end()) return llvm::Error::success();
    recorded = std::move(it->second);
    recorded_.erase(it);
    auto runtime_it = runtimes_.find(&mr.getTargetJITDylib());
    if (runtime_it != runtimes_.end()) runtime = runtime_it->second;
  }
  if (runtime != nullptr)
    runtime->AddSections(std::move(recorded.inits), std::move(recorded.finis));
  return llvm::Error::success();
}

llvm::Error InitFiniPlugin::notifyFailed(llvm::orc::MaterializationResponsibility& mr) {
  std::lock_guard<std::mutex> lock(mutex_);
  recorded_.erase(&mr);
  return llvm::Error::success();
}

}  // namespace orcjit
