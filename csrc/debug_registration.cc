// Registration of linked objects' debug information with the GDB JIT interface. See
// debug_registration.h.
#include "debug_registration.h"

#include <llvm/ADT/StringMap.h>
#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/Orc/TargetProcess/JITLoaderGDB.h>
#include <llvm/Object/ELF.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/reflection/registry.h>

#include <cstdlib>
#include <cstring>

#include "compat.h"

// Defined by LLVM's JITLoaderGDB, which the core links: the descriptor and the function gdb looks
// up by name. Using LLVM's (rather than defining a second pair, which would not link) keeps one
// list per core, the one a debugger finds.
extern "C" {
extern struct jit_descriptor __jit_debug_descriptor;
void __jit_debug_register_code();
}

namespace orcjit {

namespace {

using llvm::jitlink::LinkGraph;
using llvm::orc::MaterializationResponsibility;
using llvm::orc::ResourceKey;

/// Guards the process-wide descriptor: every session of the process registers into it.
std::mutex& DescriptorMutex() {
  static auto* mutex = new std::mutex();
  return *mutex;
}

/// Copies `object_bytes` into `copy` (as many bytes), with each allocated section's sh_addr set to
/// where `graph` placed it; false when the object does not parse as a 64-bit little-endian ELF file
/// (linking has read it already).
bool Relocate(LinkGraph& graph, llvm::StringRef object_bytes, char* copy) {
  auto elf = llvm::object::ELF64LEFile::create(object_bytes);
  if (!elf) {
    llvm::consumeError(elf.takeError());
    return false;
  }
  auto sections = elf->sections();
  if (!sections) {
    llvm::consumeError(sections.takeError());
    return false;
  }
  // Where each section went: from a named symbol it defines, which the graph placed (a section
  // whose name other sections share has no graph section of its own), else from the graph's
  // section of the same name.
  llvm::StringMap<uint64_t> placed;
  for (const auto* symbol : graph.defined_symbols()) {
    if (symbol->hasName()) {
      placed.try_emplace(compat::symbolName(*symbol), symbol->getAddress().getValue());
    }
  }
  std::vector<uint64_t> addresses(sections->size(), 0);
  std::vector<bool> found(sections->size(), false);
  for (const auto& section : *sections) {
    if (section.sh_type != llvm::ELF::SHT_SYMTAB) continue;
    auto symbols = elf->symbols(&section);
    auto names = elf->getStringTableForSymtab(section, *sections);
    if (!symbols || !names) {
      llvm::consumeError(symbols.takeError());
      llvm::consumeError(names.takeError());
      break;
    }
    for (const auto& symbol : *symbols) {
      uint16_t index = symbol.st_shndx;
      if (index == llvm::ELF::SHN_UNDEF || index >= sections->size() || found[index]) continue;
      auto name = symbol.getName(*names);
      if (!name) {
        llvm::consumeError(name.takeError());
        continue;
      }
      auto it = name->empty() ? placed.end() : placed.find(*name);
      if (it == placed.end()) continue;
      addresses[index] = it->second - symbol.st_value;
      found[index] = true;
    }
  }
  std::memcpy(copy, object_bytes.data(), object_bytes.size());
  const auto* headers = reinterpret_cast<const char*>(sections->data());
  for (size_t index = 0; index < sections->size(); ++index) {
    const auto& section = (*sections)[index];
    if (!(section.sh_flags & llvm::ELF::SHF_ALLOC)) continue;
    if (!found[index]) {
      auto name = elf->getSectionName(section);
      if (!name) {
        llvm::consumeError(name.takeError());
        continue;
      }
      auto* graph_section = graph.findSectionByName(*name);
      if (graph_section == nullptr) continue;  // dead-stripped
      llvm::jitlink::SectionRange range(*graph_section);
      if (range.empty()) continue;
      addresses[index] = range.getStart().getValue();
    }
    // The copy's header: at the same offset from the copy's start as the original's.
    size_t offset = headers + index * sizeof(section) - object_bytes.data();
    auto* header = reinterpret_cast<llvm::object::ELF64LE::Shdr*>(copy + offset);
    header->sh_addr = addresses[index];
  }
  return true;
}

}  // namespace

/// A relocated copy of one object and its entry in the descriptor's list while it is registered.
struct DebugRegistrationPlugin::DebugObject {
  std::unique_ptr<char[]> bytes;
  uint64_t size = 0;
  jit_code_entry entry{};
  bool registered = false;

  void Register() {
    std::lock_guard<std::mutex> lock(DescriptorMutex());
    entry.symfile_addr = bytes.get();
    entry.symfile_size = size;
    entry.prev_entry = nullptr;
    entry.next_entry = __jit_debug_descriptor.first_entry;
    if (entry.next_entry != nullptr) entry.next_entry->prev_entry = &entry;
    __jit_debug_descriptor.first_entry = &entry;
    __jit_debug_descriptor.relevant_entry = &entry;
    __jit_debug_descriptor.action_flag = JIT_REGISTER_FN;
    __jit_debug_register_code();
    registered = true;
  }

  void Unregister() {
    if (!registered) return;
    std::lock_guard<std::mutex> lock(DescriptorMutex());
    if (entry.prev_entry != nullptr) {
      entry.prev_entry->next_entry = entry.next_entry;
    } else {
      __jit_debug_descriptor.first_entry = entry.next_entry;
    }
    if (entry.next_entry != nullptr) entry.next_entry->prev_entry = entry.prev_entry;
    __jit_debug_descriptor.relevant_entry = &entry;
    __jit_debug_descriptor.action_flag = JIT_UNREGISTER_FN;
    __jit_debug_register_code();
    registered = false;
  }

  ~DebugObject() { Unregister(); }
};

DebugRegistrationPlugin::DebugRegistrationPlugin()
    : enabled_([] {
        const char* setting = std::getenv("PYTEST_ORCJIT_DEBUG_REGISTRATION");
        return setting == nullptr || std::strcmp(setting, "0") != 0;
      }()) {}

DebugRegistrationPlugin::~DebugRegistrationPlugin() = default;

bool DebugRegistrationPlugin::HasDebugInfo(LinkGraph& graph) {
  return graph.findSectionByName(".debug_info") != nullptr;
}

void DebugRegistrationPlugin::Expect(const llvm::orc::JITDylib* dylib, LinkGraph* graph,
                                     llvm::StringRef object_bytes) {
  if (!enabled_ || !HasDebugInfo(*graph)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  sources_[graph] = {dylib, object_bytes};
}

void DebugRegistrationPlugin::Forget(const llvm::orc::JITDylib* dylib) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = sources_.begin(); it != sources_.end();) {
    it = it->second.first == dylib ? sources_.erase(it) : std::next(it);
  }
}

void DebugRegistrationPlugin::notifyMaterializing(MaterializationResponsibility& mr, LinkGraph& g,
                                                  llvm::jitlink::JITLinkContext&,
                                                  llvm::MemoryBufferRef object) {
  if (!enabled_ || object.getBufferSize() == 0 || !HasDebugInfo(g)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  sources_[&g] = {&mr.getTargetJITDylib(), object.getBuffer()};
}

void DebugRegistrationPlugin::modifyPassConfig(MaterializationResponsibility& mr, LinkGraph& g,
                                               llvm::jitlink::PassConfiguration& config) {
  if (!enabled_ || !HasDebugInfo(g)) return;
  llvm::StringRef object_bytes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sources_.find(&g);
    if (it == sources_.end()) return;
    object_bytes = it->second.second;
    sources_.erase(it);
  }
  // Once JITLink has placed every section, and before the graph's memory is finalized.
  config.PostAllocationPasses.push_back([this, &mr, object_bytes](LinkGraph& graph) {
    auto object = std::make_unique<DebugObject>();
    object->size = object_bytes.size();
    object->bytes = TakeBuffer(object->size);
    // Not ELF: nothing a debugger would read.
    if (!Relocate(graph, object_bytes, object->bytes.get())) return llvm::Error::success();
    std::lock_guard<std::mutex> lock(mutex_);
    pending_[&mr] = std::move(object);
    return llvm::Error::success();
  });
}

llvm::Error DebugRegistrationPlugin::notifyEmitted(MaterializationResponsibility& mr) {
  if (!enabled_) return llvm::Error::success();
  Owned object;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pending_.find(&mr);
    if (it == pending_.end()) return llvm::Error::success();
    object = std::move(it->second);
    pending_.erase(it);
  }
  object->Register();
  return mr.withResourceKeyDo([&](ResourceKey key) {
    std::lock_guard<std::mutex> lock(mutex_);
    registered_[key].push_back(std::move(object));
  });
}

llvm::Error DebugRegistrationPlugin::notifyFailed(MaterializationResponsibility& mr) {
  if (!enabled_) return llvm::Error::success();
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.erase(&mr);
  return llvm::Error::success();
}

llvm::Error DebugRegistrationPlugin::notifyRemovingResources(llvm::orc::JITDylib&,
                                                             ResourceKey key) {
  std::vector<Owned> removed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = registered_.find(key);
    if (it == registered_.end()) return llvm::Error::success();
    removed = std::move(it->second);
    registered_.erase(it);
  }
  for (Owned& object : removed) {
    object->Unregister();
    Recycle(std::move(object->bytes), object->size);
  }
  return llvm::Error::success();
}

std::unique_ptr<char[]> DebugRegistrationPlugin::TakeBuffer(uint64_t size) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = spare_.find(size);
    if (it != spare_.end()) {
      auto buffer = std::move(it->second);
      spare_.erase(it);
      spare_bytes_ -= size;
      return buffer;
    }
  }
  return std::unique_ptr<char[]>(new char[size]);  // not value-initialized: it is copied over
}

void DebugRegistrationPlugin::Recycle(std::unique_ptr<char[]> buffer, uint64_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (spare_bytes_ + size > kMaxSpareBytes) return;  // freed
  spare_.emplace(size, std::move(buffer));
  spare_bytes_ += size;
}

void DebugRegistrationPlugin::notifyTransferringResources(llvm::orc::JITDylib&, ResourceKey to,
                                                          ResourceKey from) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = registered_.find(from);
  if (it == registered_.end()) return;
  std::vector<Owned> moved = std::move(it->second);
  registered_.erase(it);
  auto& destination = registered_[to];
  for (auto& object : moved) destination.push_back(std::move(object));
}

tvm::ffi::Array<tvm::ffi::Array<int64_t>> DebugObjectsRegistered() {
  std::lock_guard<std::mutex> lock(DescriptorMutex());
  tvm::ffi::Array<tvm::ffi::Array<int64_t>> objects;
  for (auto* entry = __jit_debug_descriptor.first_entry; entry; entry = entry->next_entry) {
    objects.push_back({reinterpret_cast<int64_t>(entry->symfile_addr),
                       static_cast<int64_t>(entry->symfile_size)});
  }
  return objects;
}

TVM_FFI_STATIC_INIT_BLOCK() {
  tvm::ffi::reflection::GlobalDef().def("orcjit.debug_objects_registered", DebugObjectsRegistered);
}

}  // namespace orcjit
