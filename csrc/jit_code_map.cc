// The map of JIT code: the tables the plugin makes from linked graphs, and the async-signal-safe
// lookup. See jit_code_map.h.
#include "jit_code_map.h"

#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "compat.h"
#include "crash_handler.h"

namespace orcjit {

namespace {

/// One function of a table; the strings are offsets into the table's string area.
struct Entry {
  uint64_t start;
  uint64_t end;
  uint32_t name;
};

/// One mapped graph: a header, `count` entries sorted by start, then NUL-terminated strings (the
/// object path first). Lives in pages of its own, `bytes` long.
struct Table {
  const void* dylib;  // the JITDylib whose memory it describes
  size_t bytes;
  uint64_t low;  // the lowest start and the highest end of its entries
  uint64_t high;
  uint32_t count;
  uint32_t strings;  // offset of the string area from the start of the table

  const Entry* entries() const { return reinterpret_cast<const Entry*>(this + 1); }
  const char* string(uint32_t offset) const {
    return reinterpret_cast<const char*>(this) + strings + offset;
  }
};

std::atomic<Table*> g_tables[kMaxCodeTables];
std::atomic<int> g_table_count{0};
std::mutex g_mutex;  // held by writers (link and close), never by lookups

struct Function {
  uint64_t start;
  uint64_t end;
  llvm::StringRef name;  // in the graph's symbol, which outlives the table's making
};

/// The named functions of `graph`'s executable sections, sorted; a symbol without a size extends
/// to the next symbol of its block, or to the block's end.
std::vector<Function> CollectFunctions(llvm::jitlink::LinkGraph& graph) {
  std::vector<Function> functions;
  std::vector<llvm::jitlink::Symbol*> symbols;
  for (auto& section : graph.sections()) {
    if ((static_cast<unsigned>(section.getMemProt()) &
         static_cast<unsigned>(llvm::orc::MemProt::Exec)) == 0) {
      continue;
    }
    symbols.clear();
    for (auto* symbol : section.symbols()) {
      if (symbol->hasName()) symbols.push_back(symbol);
    }
    llvm::sort(symbols, [](auto* a, auto* b) { return a->getAddress() < b->getAddress(); });
    for (size_t i = 0; i < symbols.size(); ++i) {
      const llvm::jitlink::Block& block = symbols[i]->getBlock();
      uint64_t start = symbols[i]->getAddress().getValue();
      uint64_t end = start + symbols[i]->getSize();
      if (symbols[i]->getSize() == 0) {
        end = (block.getAddress() + block.getSize()).getValue();
        for (size_t j = i + 1; j < symbols.size() && &symbols[j]->getBlock() == &block; ++j) {
          uint64_t next = symbols[j]->getAddress().getValue();
          if (next > start) {
            end = next;
            break;
          }
        }
      }
      if (end > start) functions.push_back({start, end, compat::symbolNameRef(*symbols[i])});
    }
  }
  llvm::sort(functions, [](const Function& a, const Function& b) { return a.start < b.start; });
  return functions;
}

/// Builds the table of `functions` in pages of its own; null when there is no memory for it.
Table* MakeTable(const void* dylib, llvm::StringRef object,
                 const std::vector<Function>& functions) {
  size_t strings = object.size() + 1;
  for (const Function& function : functions) strings += function.name.size() + 1;
  size_t header = sizeof(Table) + functions.size() * sizeof(Entry);
  size_t bytes = header + strings;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return nullptr;
  auto* table = new (memory) Table{dylib,
                                   bytes,
                                   functions.front().start,
                                   0,
                                   static_cast<uint32_t>(functions.size()),
                                   static_cast<uint32_t>(header)};
  char* text = static_cast<char*>(memory) + header;
  std::memcpy(text, object.data(), object.size());
  uint32_t offset = static_cast<uint32_t>(object.size() + 1);
  auto* entries = reinterpret_cast<Entry*>(table + 1);
  for (size_t i = 0; i < functions.size(); ++i) {
    const Function& function = functions[i];
    entries[i] = Entry{function.start, function.end, offset};
    std::memcpy(text + offset, function.name.data(), function.name.size());
    offset += static_cast<uint32_t>(function.name.size() + 1);
    table->high = std::max(table->high, function.end);
  }
  mprotect(memory, bytes, PROT_READ);
  return table;
}

/// Makes `table` visible to lookups; false when all slots are taken (it is unmapped then).
bool Publish(Table* table) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& slot : g_tables) {
    if (slot.load(std::memory_order_relaxed) == nullptr) {
      slot.store(table, std::memory_order_release);
      g_table_count.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  munmap(table, table->bytes);  // full: the graph is linked but not mapped
  return false;
}

}  // namespace

bool FindJitFunction(uintptr_t address, JitFunction* found) {
  if (g_table_count.load(std::memory_order_relaxed) == 0) return false;
  for (auto& slot : g_tables) {
    const Table* table = slot.load(std::memory_order_acquire);
    if (table == nullptr || address < table->low || address >= table->high) continue;
    const Entry* entries = table->entries();
    // The last entry that starts at or before `address`.
    uint32_t low = 0, high = table->count;
    while (low < high) {
      uint32_t middle = low + (high - low) / 2;
      if (entries[middle].start <= address) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    if (low == 0) continue;
    const Entry& entry = entries[low - 1];
    if (address >= entry.end) continue;
    found->start = entry.start;
    found->size = entry.end - entry.start;
    found->name = table->string(entry.name);
    found->object = table->string(0);
    return true;
  }
  return false;
}

void JitCodeMapPlugin::modifyPassConfig(llvm::orc::MaterializationResponsibility& mr,
                                        llvm::jitlink::LinkGraph& g,
                                        llvm::jitlink::PassConfiguration& config) {
  if (!CrashReportsEnabled()) return;
  const void* dylib = &mr.getTargetJITDylib();
  // After fixups every symbol has its final address, and the graph is about to be finalized.
  config.PostFixupPasses.push_back([dylib](llvm::jitlink::LinkGraph& graph) {
    std::vector<Function> functions = CollectFunctions(graph);
    if (functions.empty()) return llvm::Error::success();
    if (Table* table = MakeTable(dylib, graph.getName(), functions)) {
      // Code that can crash is mapped: from now on a crash of the process reports where it was.
      if (Publish(table)) InstallCrashHandlerOnce();
    }
    return llvm::Error::success();
  });
}

llvm::Error JitCodeMapPlugin::notifyRemovingResources(llvm::orc::JITDylib& dylib,
                                                      llvm::orc::ResourceKey) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& slot : g_tables) {
    Table* table = slot.load(std::memory_order_relaxed);
    if (table == nullptr || table->dylib != &dylib) continue;
    slot.store(nullptr, std::memory_order_release);
    g_table_count.fetch_sub(1, std::memory_order_relaxed);
    munmap(table, table->bytes);
  }
  return llvm::Error::success();
}

}  // namespace orcjit
