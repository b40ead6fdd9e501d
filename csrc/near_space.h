// Address space near given addresses: where the arenas of libraries that must lie within 32-bit
// reach of the process (process_reach.h) come from.
//
// The kernel places a mapping wherever it finds room, usually just below the lowest mapping made
// so far; a few GiB-sized mappings (NumPy buffers, CUDA reservations, a test's mmap) fill the 2 GiB
// below the process's shared libraries, and a library placed after them can no longer reach
// libstdc++. So address space near the process is reserved in regions (PROT_NONE, MAP_NORESERVE:
// no memory, and nothing else can be placed there) the first time a library needs it, and kept for
// the life of the process; arenas are carved from the regions and given back when their library
// closes, to be reused by the next one. A region is placed inside the window of addresses the
// library may occupy, in a free gap that /proc/self/maps shows (or, where it cannot be read, one
// found by probing), as close as it fits to the addresses the library refers to, where it is most
// likely to be in reach for the next library as well. Regions are 256 MiB, or smaller where the
// gap is; the space is process-wide, shared by every session, and inherited by forked children.
#ifndef PYTEST_ORCJIT_NEAR_SPACE_H_
#define PYTEST_ORCJIT_NEAR_SPACE_H_

#include <llvm/Support/Error.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace orcjit {

/// A range of addresses [lo, hi).
struct AddressRange {
  uint64_t lo = 0;
  uint64_t hi = 0;
  uint64_t size() const { return hi > lo ? hi - lo : 0; }
};

class NearSpace {
 public:
  /// The process's near space.
  static NearSpace& Get();

  /// `bytes` (a multiple of the page size) of reserved, inaccessible address space that lies
  /// entirely inside `window`, as close to `near` as it can be. Fails, with a message that says
  /// no free address space is left in the window, when neither a region nor the free address
  /// space of the process has room for it there.
  llvm::Expected<char*> Take(AddressRange window, size_t bytes, uint64_t near);

  /// Gives back what Take returned: its pages are freed and it stays reserved for the next Take.
  void Give(char* addr, size_t bytes);

 private:
  NearSpace() = default;
  /// The best place for `bytes` inside `window` within the free range `range`, or 0.
  static uint64_t Fit(AddressRange range, AddressRange window, size_t bytes, uint64_t near);
  /// Reserves a new region inside `window` that holds at least `bytes`; adds it to free_.
  bool ReserveRegion(AddressRange window, size_t bytes, uint64_t near);
  bool ReserveAt(uint64_t addr, size_t bytes);
  void AddFree(uint64_t addr, size_t bytes);

  std::mutex mutex_;
  /// The parts of the regions not handed out: start -> size, adjacent ranges merged.
  std::map<uint64_t, size_t> free_;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_NEAR_SPACE_H_
