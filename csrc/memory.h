// Memory placement for JIT'd code and data: every library gets an arena, one contiguous
// reservation of address space, and everything JITLink allocates for that library comes from it.
//
// Why: objects compiled for the small code model reach their own code, their data and the
// per-library symbols they use (`__dso_handle`) with 32-bit PC-relative relocations, so all of a
// library must sit within +-2 GiB of itself. The default in-process allocator maps each object
// separately wherever the kernel finds room; once the address space fills up with other mappings
// (NumPy buffers, CUDA reservations, GiB-sized mmaps between loads) two objects of one library can
// land further apart than that and linking fails with "out of range of Delta32 fixup". Reserving
// the arena first (PROT_NONE, MAP_NORESERVE: address space only, no memory) and bump-allocating
// pages inside it makes the distance between any two allocations of a library smaller than the
// arena, however fragmented the rest of the address space is. References from JIT code to the
// process (libc, libstdc++, libtvm_ffi) go through GOT entries and PLT stubs, which JITLink builds
// inside the same arena and which hold full 64-bit addresses.
//
// Libraries whose code reaches the process's own data 32-bit PC-relatively (`g++ -fpie` objects)
// must also lie within 2 GiB of it: their arenas are carved from address space reserved near the
// process (process_reach.h, near_space.h), and sized from their objects rather than 1 GiB.
//
// Layout of an arena: the first page holds the library's `__dso_handle` (read-write, so that its
// address is within reach of all of the library's code); then each linked graph takes whole pages,
// one run per protection (code RX, read-only data R, data RW), in the order they are linked.
// Pages are made accessible when allocated and the whole arena is unmapped when the library is
// closed, after its destructors ran and JITLink released its allocations.
#ifndef PYTEST_ORCJIT_MEMORY_H_
#define PYTEST_ORCJIT_MEMORY_H_

#include <llvm/ExecutionEngine/JITLink/JITLinkMemoryManager.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "near_space.h"

namespace orcjit {

/// One library's reservation of address space, bump-allocated in pages.
class Arena {
 public:
  /// Reserves `reserve_bytes` of address space (default 1 GiB: far more than any kernel library
  /// needs, and free until pages are used). Halves the request down to 64 MiB when the process is
  /// short of address space (RLIMIT_AS), and fails only below that.
  static llvm::Expected<std::unique_ptr<Arena>> Reserve(size_t reserve_bytes = size_t(1) << 30);
  /// Reserves `reserve_bytes` (a multiple of the page size) of address space inside `window`, as
  /// close to `near` as there is room, from the process's near space (near_space.h), to which it
  /// goes back when the arena is destroyed.
  static llvm::Expected<std::unique_ptr<Arena>> ReserveNear(AddressRange window,
                                                            size_t reserve_bytes, uint64_t near);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  /// The library's `__dso_handle`: the first bytes of the arena's first page, read-write.
  void* dso_handle() const { return base_; }

  /// Takes `bytes` (rounded up to pages) from the arena, readable and writable. Fails when the
  /// arena is exhausted, naming how large it is.
  llvm::Expected<char*> Allocate(size_t bytes);

  /// Gives pages back to the system (they stay reserved, inaccessible, and are not reused).
  void Release(char* addr, size_t bytes);

  /// Whether `addr` lies in the arena (code or data of the library).
  bool Contains(const void* addr) const {
    auto* p = static_cast<const char*>(addr);
    return p >= base_ && p < base_ + size_;
  }

  /// Keeps every page of the arena mapped as it is for the rest of the process, and `arena` with
  /// them: for a library that closes while tvm-ffi keeps pointers into its code (the reflection of
  /// an object type it registered, ffi_registrations.h). From then on, releasing pages and the
  /// deallocation actions of its graphs (eh-frame deregistration) do nothing. Returns the arena.
  static const Arena* KeepForever(std::unique_ptr<Arena> arena);
  bool kept() const { return kept_.load(std::memory_order_acquire); }
  /// The addresses the arena spans.
  AddressRange range() const {
    return {reinterpret_cast<uint64_t>(base_), reinterpret_cast<uint64_t>(base_) + size_};
  }
  /// Whether the arena was placed near the process (ReserveNear).
  bool near() const { return near_; }

  /// Bytes of pages currently in use, including the `__dso_handle` page.
  size_t used_bytes() const { return used_bytes_.load(std::memory_order_relaxed); }

  static size_t page_size();

 private:
  Arena(char* base, size_t size, bool near) : base_(base), size_(size), near_(near) {}
  /// Makes the first page hold the `__dso_handle`.
  llvm::Error Start();

  char* const base_;
  const size_t size_;
  const bool near_;
  std::mutex mutex_;
  size_t next_ = 0;  // offset of the first page not yet handed out
  std::atomic<size_t> used_bytes_{0};
  std::atomic<bool> kept_{false};
};

/// A JITLinkMemoryManager that places each graph in the arena of the library (JITDylib) it is
/// linked into. Arenas are registered when a library is placed (its first link) and unregistered
/// when it closes; a graph linked into a JITDylib without an arena is an error, not a fallback.
class ArenaMemoryManager final : public llvm::jitlink::JITLinkMemoryManager {
 public:
  void RegisterArena(const llvm::jitlink::JITLinkDylib* dylib, Arena* arena);
  void UnregisterArena(const llvm::jitlink::JITLinkDylib* dylib);

  void allocate(const llvm::jitlink::JITLinkDylib* dylib, llvm::jitlink::LinkGraph& graph,
                OnAllocatedFunction on_allocated) override;
  void deallocate(std::vector<FinalizedAlloc> allocs,
                  OnDeallocatedFunction on_deallocated) override;
  using JITLinkMemoryManager::allocate;
  using JITLinkMemoryManager::deallocate;

 private:
  class InFlight;
  struct Finalized;

  Arena* FindArena(const llvm::jitlink::JITLinkDylib* dylib);

  std::mutex mutex_;
  std::unordered_map<const llvm::jitlink::JITLinkDylib*, Arena*> arenas_;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_MEMORY_H_
