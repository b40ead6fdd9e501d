// The TLS plugin: images of linked graphs and the TLS entries their code passes to
// `__tls_get_addr`. See tls_plugin.h.
#include "tls_plugin.h"

#include <elf.h>
#include <link.h>
#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/JITLink/x86_64.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "compat.h"
#include "tls_layout.h"

namespace orcjit {

using llvm::jitlink::Block;
using llvm::jitlink::LinkGraph;
using llvm::jitlink::Symbol;

namespace {

/// The section of JITLink's TLS entries (ELF_x86_64.cpp).
constexpr llvm::StringLiteral kTlsInfoSection = "$__TLSINFO";

llvm::Error Corrupt(const LinkGraph& g, const std::string& what) {
  return llvm::createStringError(std::make_error_code(std::errc::invalid_argument),
                                 "'%s' is corrupt: %s; rebuild it", g.getName().c_str(),
                                 what.c_str());
}

/// A module of the process whose TLS block, in the calling thread, holds an address.
struct ModuleSearch {
  uintptr_t addr;
  size_t module = 0;
  uintptr_t offset = 0;
};

int VisitModule(dl_phdr_info* info, size_t, void* data) {
  auto* search = static_cast<ModuleSearch*>(data);
  if (info->dlpi_tls_modid == 0 || info->dlpi_tls_data == nullptr) return 0;
  auto start = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) & header = info->dlpi_phdr[i];
    if (header.p_type != PT_TLS) continue;
    if (search->addr >= start && search->addr - start < header.p_memsz) {
      search->module = info->dlpi_tls_modid;
      search->offset = search->addr - start;
      return 1;
    }
  }
  return 0;
}

}  // namespace

/// What the passes of one graph with TLS sections share: each TLS block's offset in the image.
struct ThreadLocalPlugin::Graph {
  llvm::DenseMap<const Block*, uint64_t> offsets;
  uint64_t key = 0;
};

void ThreadLocalPlugin::RegisterLibrary(const llvm::orc::JITDylib* dylib, void* dso_handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  libraries_[dylib] = Library{dso_handle, nullptr};
}

ThreadLocals* ThreadLocalPlugin::Find(const llvm::orc::JITDylib* dylib, bool create) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = libraries_.find(dylib);
  if (it == libraries_.end()) return nullptr;
  if (!it->second.tls && create) {
    it->second.tls = std::make_unique<ThreadLocals>(it->second.dso_handle);
  }
  return it->second.tls.get();
}

llvm::Error ThreadLocalPlugin::RunDestructors(const llvm::orc::JITDylib* dylib,
                                              llvm::StringRef library) {
  ThreadLocals* tls = Find(dylib, /*create=*/false);
  return tls ? tls->RunDestructors(library) : llvm::Error::success();
}

llvm::Error ThreadLocalPlugin::UnregisterLibrary(const llvm::orc::JITDylib* dylib,
                                                 llvm::StringRef library) {
  std::unique_ptr<ThreadLocals> tls;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = libraries_.find(dylib);
    if (it == libraries_.end()) return llvm::Error::success();
    tls = std::move(it->second.tls);
    libraries_.erase(it);
  }
  return tls ? tls->Release(library) : llvm::Error::success();
}

void ThreadLocalPlugin::modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, LinkGraph& g,
                                         llvm::jitlink::PassConfiguration& config) {
  std::shared_ptr<Graph> graph;
  if (g.findSectionByName(kThreadLocalSection) != nullptr) {
    graph = std::make_shared<Graph>();
    // Local-dynamic code reaches variables through offsets, which are no edges: keep every TLS
    // block, so that the image has all of its initial values.
    config.PrePrunePasses.push_back([](LinkGraph& g) {
      auto* section = g.findSectionByName(kThreadLocalSection);
      std::vector<Block*> blocks(section->blocks().begin(), section->blocks().end());
      for (Block* block : blocks) g.addAnonymousSymbol(*block, 0, 0, false, /*IsLive=*/true);
      return llvm::Error::success();
    });
    // Until memory is allocated, a TLS block's address is its offset in the image.
    config.PostPrunePasses.push_back([graph](LinkGraph& g) {
      for (Block* block : g.findSectionByName(kThreadLocalSection)->blocks()) {
        graph->offsets[block] = block->getAddress().getValue() - kThreadLocalBase;
      }
      return llvm::Error::success();
    });
    config.PostAllocationPasses.push_back(
        [this, &mr, graph](LinkGraph& g) { return AddImage(mr, g, *graph); });
  }
  // Any graph may have TLS entries (for variables of other objects, or of the process). Without
  // TLS sections of its own, the pass captures little enough to allocate nothing.
  if (graph) {
    config.PreFixupPasses.push_back(
        [this, &mr, graph](LinkGraph& g) { return FillEntries(mr, g, graph.get()); });
  } else {
    config.PreFixupPasses.push_back(
        [this, &mr](LinkGraph& g) { return FillEntries(mr, g, nullptr); });
  }
}

llvm::Error ThreadLocalPlugin::AddImage(llvm::orc::MaterializationResponsibility& mr, LinkGraph& g,
                                        Graph& graph) {
  uint64_t size = 0, alignment = 1;
  std::vector<TlsTemplate> parts;
  for (Block* block : g.findSectionByName(kThreadLocalSection)->blocks()) {
    auto offset = graph.offsets.find(block);
    uint64_t block_alignment = std::max<uint64_t>(block->getAlignment(), 1);
    if (offset == graph.offsets.end() ||
        offset->second % block_alignment != block->getAlignmentOffset()) {
      return Corrupt(g, "a thread-local section is not aligned in its TLS image");
    }
    size = std::max(size, offset->second + block->getSize());
    alignment = std::max(alignment, block_alignment);
    parts.push_back(TlsTemplate{offset->second, block->getAddress().toPtr<const char*>(),
                                block->getSize(), block->isZeroFill()});
  }
  ThreadLocals* tls = Find(&mr.getTargetJITDylib(), /*create=*/true);
  if (tls == nullptr) {
    return llvm::createStringError(std::make_error_code(std::errc::invalid_argument),
                                   "'%s' has thread_local variables, but its library has no TLS",
                                   g.getName().c_str());
  }
  graph.key = tls->AddImage(size, alignment, std::move(parts));
  std::lock_guard<std::mutex> lock(mutex_);
  pending_[&mr] = {tls, graph.key};
  return llvm::Error::success();
}

llvm::Error ThreadLocalPlugin::FillEntries(llvm::orc::MaterializationResponsibility& mr,
                                           LinkGraph& g, const Graph* graph) {
  auto* entries = g.findSectionByName(kTlsInfoSection);
  if (entries == nullptr) return llvm::Error::success();
  ThreadLocals* library = nullptr;  // looked up for the first variable of another object
  for (Block* entry : entries->blocks()) {
    auto edge = llvm::find_if(entry->edges(), [](const llvm::jitlink::Edge& e) {
      return e.getOffset() == 8 && e.getKind() == llvm::jitlink::x86_64::Pointer64;
    });
    if (edge == entry->edges().end() || entry->getSize() != sizeof(TlsIndex)) {
      return Corrupt(g, "a TLS entry has no variable");
    }
    const Symbol& target = edge->getTarget();
    std::string name = target.hasName() ? compat::symbolName(target) : "<anonymous>";
    TlsIndex index;
    if (target.isDefined()) {
      if (graph == nullptr || graph->offsets.count(&target.getBlock()) == 0) {
        return Corrupt(g, "it accesses '" + name +
                              "' as a thread_local variable, but it is not in a thread-local "
                              "section");
      }
      index = TlsIndex{graph->key, graph->offsets.lookup(&target.getBlock()) + target.getOffset() +
                                       static_cast<uint64_t>(edge->getAddend())};
    } else {
      auto addr = target.getAddress().getValue() + static_cast<uint64_t>(edge->getAddend());
      if (library == nullptr) library = Find(&mr.getTargetJITDylib(), /*create=*/false);
      std::optional<TlsIndex> found = library ? library->FindTemplate(addr) : std::nullopt;
      if (found) {
        index = *found;
      } else {
        auto process = ProcessThreadLocal(g, target);
        if (!process) return process.takeError();
        index = *process;
      }
    }
    std::memcpy(entry->getMutableContent(g).data(), &index, sizeof(index));
    entry->removeEdge(edge);
  }
  return llvm::Error::success();
}

llvm::Expected<TlsIndex> ThreadLocalPlugin::ProcessThreadLocal(const LinkGraph& g,
                                                               const Symbol& symbol) {
  std::string name = compat::symbolName(symbol);
  void* addr = symbol.hasName() ? process_.FindNow(name.c_str()) : nullptr;
  if (addr == nullptr) {
    return llvm::createStringError(
        std::make_error_code(std::errc::invalid_argument),
        "'%s' uses the thread_local variable '%s', which no object of the library and nothing in "
        "the process defines as thread_local; define it with thread_local in one of the "
        "library's objects",
        g.getName().c_str(), name.c_str());
  }
  // dlsym gives the calling thread's copy of a thread-local variable: find the module whose TLS
  // block in this thread holds it, and the variable's offset there.
  ModuleSearch search{reinterpret_cast<uintptr_t>(addr)};
  if (dl_iterate_phdr(VisitModule, &search) == 0) {
    return llvm::createStringError(
        std::make_error_code(std::errc::invalid_argument),
        "'%s' uses '%s' as a thread_local variable, but the process defines it as an ordinary "
        "variable; declare it without thread_local",
        g.getName().c_str(), name.c_str());
  }
  return TlsIndex{search.module, search.offset};
}

llvm::Error ThreadLocalPlugin::notifyEmitted(llvm::orc::MaterializationResponsibility& mr) {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.erase(&mr);
  return llvm::Error::success();
}

llvm::Error ThreadLocalPlugin::notifyFailed(llvm::orc::MaterializationResponsibility& mr) {
  std::pair<ThreadLocals*, uint64_t> image{nullptr, 0};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pending_.find(&mr);
    if (it == pending_.end()) return llvm::Error::success();
    image = it->second;
    pending_.erase(it);
  }
  image.first->RemoveImage(image.second);
  return llvm::Error::success();
}

}  // namespace orcjit
