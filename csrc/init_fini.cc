// Static initialization and finalization of JIT libraries: the section-recording plugin, each
// library's Runtime, and the `__cxa_atexit` that JIT code links against. See init_fini.h.
#include "init_fini.h"

#include <llvm/ADT/StringRef.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <utility>

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

void CallEntry(uintptr_t entry) {
  // Empty slots and the -1 terminators of old-style `.ctors` lists are not functions.
  if (entry == 0 || entry == ~uintptr_t(0)) return;
  // glibc passes argc, argv and envp to `.init_array` functions; most take no arguments.
  reinterpret_cast<void (*)(int, char**, char**)>(entry)(0, nullptr, environ);
}

void RunSection(const Runtime::Section& section, bool backwards) {
  bool reverse = section.reverse != backwards;
  for (size_t i = 0; i < section.count; ++i) {
    CallEntry(section.entries[reverse ? section.count - 1 - i : i]);
  }
}

/// `__dso_handle` address -> the Runtime of the library that owns it.
std::mutex registry_mutex;
std::unordered_map<void*, Runtime*>& Registry() {
  static auto* registry = new std::unordered_map<void*, Runtime*>();
  return *registry;
}

}  // namespace

Runtime::Runtime(void* dso_handle) : dso_handle_(dso_handle) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  Registry()[dso_handle_] = this;
}

Runtime::~Runtime() {
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

void Runtime::RunPendingInitializers() {
  std::vector<Section> inits;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inits.swap(pending_inits_);
  }
  std::stable_sort(inits.begin(), inits.end(), [](const Section& a, const Section& b) {
    return std::make_pair(a.priority, a.sequence) < std::make_pair(b.priority, b.sequence);
  });
  for (const Section& section : inits) RunSection(section, /*backwards=*/false);
}

void Runtime::RunFinalizers() {
  std::vector<Section> finis;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finalized_) return;
    finalized_ = true;
    finis.swap(finis_);
  }
  std::stable_sort(finis.begin(), finis.end(), [](const Section& a, const Section& b) {
    return std::make_pair(a.priority, a.sequence) > std::make_pair(b.priority, b.sequence);
  });
  for (const Section& section : finis) RunSection(section, /*backwards=*/true);
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
    entry.first(entry.second);
  }
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
  config.PrePrunePasses.push_back([](LinkGraph& graph) {
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
  config.PostFixupPasses.push_back([this, &mr](LinkGraph& graph) {
    Recorded recorded;
    for (auto& section : graph.sections()) {
      auto kind = ClassifySection(section.getName());
      if (!kind) continue;
      for (auto* block : section.blocks()) {
        Runtime::Section run{block->getAddress().toPtr<const uintptr_t*>(),
                             block->getSize() / sizeof(uintptr_t), kind->priority, kind->reverse,
                             0};
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
  if (runtime != nullptr) runtime->AddSections(std::move(recorded.inits), std::move(recorded.finis));
  return llvm::Error::success();
}

llvm::Error InitFiniPlugin::notifyFailed(llvm::orc::MaterializationResponsibility& mr) {
  std::lock_guard<std::mutex> lock(mutex_);
  recorded_.erase(&mr);
  return llvm::Error::success();
}

}  // namespace orcjit
