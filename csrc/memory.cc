// Arenas and the JITLink memory manager that places each library's graphs in its own arena. The
// placement scheme is explained at the top of memory.h.
#include "memory.h"

#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/Orc/Shared/AllocationActions.h>
#include <llvm/Support/Memory.h>
#include <llvm/Support/Process.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

namespace orcjit {

using llvm::jitlink::BasicLayout;
using llvm::jitlink::JITLinkDylib;
using llvm::jitlink::LinkGraph;
using llvm::orc::ExecutorAddr;

namespace {

constexpr size_t kMinArenaBytes = size_t(64) << 20;

int ToMmapProtection(llvm::orc::MemProt prot) {
  auto has = [prot](llvm::orc::MemProt flag) {
    return (static_cast<unsigned>(prot) & static_cast<unsigned>(flag)) != 0;
  };
  return (has(llvm::orc::MemProt::Read) ? PROT_READ : 0) |
         (has(llvm::orc::MemProt::Write) ? PROT_WRITE : 0) |
         (has(llvm::orc::MemProt::Exec) ? PROT_EXEC : 0);
}

size_t RoundUpToPage(size_t bytes) {
  size_t page = Arena::page_size();
  return (bytes + page - 1) / page * page;
}

}  // namespace

size_t Arena::page_size() {
  static const size_t size = llvm::sys::Process::getPageSizeEstimate();
  return size;
}

llvm::Expected<std::unique_ptr<Arena>> Arena::Reserve(size_t reserve_bytes) {
  for (size_t size = reserve_bytes;; size /= 2) {
    void* base = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base != MAP_FAILED) {
      std::unique_ptr<Arena> arena(new Arena(static_cast<char*>(base), size, false));
      if (auto err = arena->Start()) return err;
      return arena;
    }
    if (size / 2 < kMinArenaBytes) {
      return llvm::createStringError(
          std::error_code(errno, std::generic_category()),
          "cannot reserve %zu MiB of address space for a JIT library: %s; raise the address-space "
          "limit (ulimit -v) or close libraries that are no longer needed",
          size >> 20, std::strerror(errno));
    }
  }
}

llvm::Expected<std::unique_ptr<Arena>> Arena::ReserveNear(AddressRange window, size_t reserve_bytes,
                                                          uint64_t near) {
  auto base = NearSpace::Get().Take(window, reserve_bytes, near);
  if (!base) return base.takeError();
  std::unique_ptr<Arena> arena(new Arena(*base, reserve_bytes, true));
  if (auto err = arena->Start()) return err;
  return arena;
}

llvm::Error Arena::Start() {
  // The first page holds __dso_handle; crtbegin.o sets it to its own address, and so do we.
  auto first_page = Allocate(page_size());
  if (!first_page) return first_page.takeError();
  *reinterpret_cast<void**>(*first_page) = *first_page;
  return llvm::Error::success();
}

Arena::~Arena() {
  if (near_) {
    NearSpace::Get().Give(base_, size_);
  } else {
    munmap(base_, size_);
  }
}

llvm::Expected<char*> Arena::Allocate(size_t bytes) {
  size_t rounded = RoundUpToPage(bytes);
  char* addr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (rounded > size_ - next_) {
      return llvm::createStringError(
          std::make_error_code(std::errc::not_enough_memory),
          "the library needs more JIT memory than its %zu MiB arena holds (%zu KiB in use, %zu KiB "
          "asked for); split the objects across several libraries%s",
          size_ >> 20, next_ >> 10, rounded >> 10,
          near_ ? " (the arena of a library placed within 2 GiB of the process is sized from the "
                  "objects added before its first link: add them all before it, or compile them "
                  "with -fPIC)"
                : "");
    }
    addr = base_ + next_;
    next_ += rounded;
  }
  if (mprotect(addr, rounded, PROT_READ | PROT_WRITE) != 0) {
    return llvm::createStringError(std::error_code(errno, std::generic_category()),
                                   "cannot commit %zu KiB of JIT memory: %s", rounded >> 10,
                                   std::strerror(errno));
  }
  used_bytes_.fetch_add(rounded, std::memory_order_relaxed);
  return addr;
}

const Arena* Arena::KeepForever(std::unique_ptr<Arena> arena) {
  static auto* kept = new std::vector<std::unique_ptr<Arena>>();
  static std::mutex mutex;
  arena->kept_.store(true, std::memory_order_release);
  std::lock_guard<std::mutex> lock(mutex);
  kept->push_back(std::move(arena));
  return kept->back().get();
}

void Arena::Release(char* addr, size_t bytes) {
  if (kept()) return;
  size_t rounded = RoundUpToPage(bytes);
  // Replacing the pages with fresh inaccessible ones frees their memory and keeps the reservation.
  mmap(addr, rounded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  used_bytes_.fetch_sub(rounded, std::memory_order_relaxed);
}

/// What a finalized allocation needs at deallocation: its pages and the actions that undo its
/// finalization (eh-frame deregistration).
struct ArenaMemoryManager::Finalized {
  Arena* arena;
  char* addr;
  size_t bytes;
  std::vector<llvm::orc::shared::WrapperFunctionCall> dealloc_actions;
};

/// A graph's allocation between layout and finalization: one page-aligned block of the arena,
/// split into one run of pages per segment (protection and lifetime).
class ArenaMemoryManager::InFlight final : public JITLinkMemoryManager::InFlightAlloc {
 public:
  InFlight(LinkGraph& graph, BasicLayout layout, Arena* arena, char* addr, size_t bytes)
      : graph_(graph), layout_(std::move(layout)), arena_(arena), addr_(addr), bytes_(bytes) {}

  void finalize(OnFinalizedFunction on_finalized) override {
    for (auto& [group, segment] : layout_.segments()) {
      size_t size = RoundUpToPage(segment.ContentSize + segment.ZeroFillSize);
      if (size == 0) continue;
      int prot = ToMmapProtection(group.getMemProt());
      if (mprotect(segment.WorkingMem, size, prot) != 0) {
        on_finalized(llvm::createStringError(std::error_code(errno, std::generic_category()),
                                             "cannot protect JIT memory: %s",
                                             std::strerror(errno)));
        return;
      }
      if (prot & PROT_EXEC) llvm::sys::Memory::InvalidateInstructionCache(segment.WorkingMem, size);
    }
    auto dealloc_actions = llvm::orc::shared::runFinalizeActions(graph_.allocActions());
    if (!dealloc_actions) {
      on_finalized(dealloc_actions.takeError());
      return;
    }
    auto* finalized = new Finalized{arena_, addr_, bytes_, std::move(*dealloc_actions)};
    addr_ = nullptr;
    on_finalized(FinalizedAlloc(ExecutorAddr::fromPtr(finalized)));
  }

  void abandon(OnAbandonedFunction on_abandoned) override {
    if (addr_ != nullptr) arena_->Release(addr_, bytes_);
    addr_ = nullptr;
    on_abandoned(llvm::Error::success());
  }

 private:
  LinkGraph& graph_;
  BasicLayout layout_;
  Arena* arena_;
  char* addr_;
  size_t bytes_;
};

void ArenaMemoryManager::RegisterArena(const JITLinkDylib* dylib, Arena* arena) {
  std::lock_guard<std::mutex> lock(mutex_);
  arenas_[dylib] = arena;
}

void ArenaMemoryManager::UnregisterArena(const JITLinkDylib* dylib) {
  std::lock_guard<std::mutex> lock(mutex_);
  arenas_.erase(dylib);
}

Arena* ArenaMemoryManager::FindArena(const JITLinkDylib* dylib) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = arenas_.find(dylib);
  return it == arenas_.end() ? nullptr : it->second;
}

void ArenaMemoryManager::allocate(const JITLinkDylib* dylib, LinkGraph& graph,
                                  OnAllocatedFunction on_allocated) {
  Arena* arena = FindArena(dylib);
  if (arena == nullptr) {
    on_allocated(llvm::createStringError(std::make_error_code(std::errc::invalid_argument),
                                         "no JIT arena for graph '%s'", graph.getName().c_str()));
    return;
  }
  BasicLayout layout(graph);
  auto sizes = layout.getContiguousPageBasedLayoutSizes(Arena::page_size());
  if (!sizes) {
    on_allocated(sizes.takeError());
    return;
  }
  size_t bytes = sizes->total();
  char* addr = nullptr;
  if (bytes != 0) {
    auto block = arena->Allocate(bytes);
    if (!block) {
      on_allocated(block.takeError());
      return;
    }
    addr = *block;
  }
  // Standard segments first, then the finalize-lifetime ones (kept until the library closes: they
  // are small, and a bump allocator cannot reuse them anyway).
  char* next_standard = addr;
  char* next_finalize = addr + sizes->StandardSegs;
  for (auto& [group, segment] : layout.segments()) {
    char*& next =
        group.getMemLifetime() == llvm::orc::MemLifetime::Standard ? next_standard : next_finalize;
    segment.WorkingMem = next;
    segment.Addr = ExecutorAddr::fromPtr(next);
    next += RoundUpToPage(segment.ContentSize + segment.ZeroFillSize);
  }
  if (auto err = layout.apply()) {
    if (addr != nullptr) arena->Release(addr, bytes);
    on_allocated(std::move(err));
    return;
  }
  on_allocated(std::make_unique<InFlight>(graph, std::move(layout), arena, addr, bytes));
}

void ArenaMemoryManager::deallocate(std::vector<FinalizedAlloc> allocs,
                                    OnDeallocatedFunction on_deallocated) {
  llvm::Error result = llvm::Error::success();
  for (auto& alloc : allocs) {
    std::unique_ptr<Finalized> finalized(alloc.release().toPtr<Finalized*>());
    if (finalized->arena->kept()) continue;  // its code stays in use, and so do its eh-frames
    if (auto err = llvm::orc::shared::runDeallocActions(finalized->dealloc_actions)) {
      result = llvm::joinErrors(std::move(result), std::move(err));
    }
    if (finalized->addr != nullptr) finalized->arena->Release(finalized->addr, finalized->bytes);
  }
  on_deallocated(std::move(result));
}

}  // namespace orcjit
