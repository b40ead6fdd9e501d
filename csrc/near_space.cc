// Regions of address space near the process, and the arenas carved from them. See near_space.h.
#include "near_space.h"

#include <fcntl.h>
#include <llvm/Support/Process.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000  // Linux 4.17; older kernels take it as a hint (checked below)
#endif

namespace orcjit {

namespace {

/// How much address space a region reserves when the gap it goes into has room for it.
constexpr uint64_t kRegionBytes = uint64_t(256) << 20;
/// The end of the address space a process gets without asking for more (47-bit).
constexpr uint64_t kUserSpaceEnd = uint64_t(1) << 47;
/// Below this, addresses are left alone (vm.mmap_min_addr, and the program's own low mappings).
constexpr uint64_t kUserSpaceStart = uint64_t(1) << 20;
/// How many places the probing fallback tries, on each side of the target.
constexpr int kProbes = 64;

uint64_t PageSize() {
  static const uint64_t size = llvm::sys::Process::getPageSizeEstimate();
  return size;
}

uint64_t RoundUp(uint64_t value, uint64_t to) { return (value + to - 1) / to * to; }
uint64_t RoundDown(uint64_t value, uint64_t to) { return value / to * to; }

/// How far [addr, addr + bytes) is from `near` (0 if it contains it).
uint64_t Distance(uint64_t addr, uint64_t bytes, uint64_t near) {
  if (near < addr) return addr - near;
  if (near >= addr + bytes) return near - (addr + bytes) + 1;
  return 0;
}

/// The address space below the main thread's stack that the stack may grow into, which the kernel
/// keeps free of its own placements (at least 128 MiB, as it does).
uint64_t StackReserve() {
  struct rlimit limit;
  uint64_t reserve = uint64_t(128) << 20;
  if (getrlimit(RLIMIT_STACK, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      limit.rlim_cur > reserve) {
    reserve = limit.rlim_cur;
  }
  return reserve;
}

/// The free gaps of the address space, from /proc/self/maps, in ascending order; false when the
/// file cannot be read.
bool ReadGaps(std::vector<AddressRange>& gaps) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string text;
  char chunk[16384];
  for (;;) {
    ssize_t got = read(fd, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(chunk, size_t(got));
  }
  close(fd);
  if (text.empty()) return false;
  uint64_t previous_end = kUserSpaceStart;
  size_t line = 0;
  while (line < text.size()) {
    size_t end_of_line = text.find('\n', line);
    if (end_of_line == std::string::npos) end_of_line = text.size();
    const char* cursor = text.c_str() + line;
    char* after = nullptr;
    uint64_t start = std::strtoull(cursor, &after, 16);
    uint64_t end = (after != nullptr && *after == '-') ? std::strtoull(after + 1, nullptr, 16) : 0;
    if (end > start) {
      if (end_of_line >= line + 7 && text.compare(end_of_line - 7, 7, "[stack]") == 0) {
        start = start > StackReserve() ? start - StackReserve() : 0;
      }
      if (start > previous_end) gaps.push_back({previous_end, std::min(start, kUserSpaceEnd)});
      previous_end = std::max(previous_end, end);
    }
    line = end_of_line + 1;
  }
  if (previous_end < kUserSpaceEnd) gaps.push_back({previous_end, kUserSpaceEnd});
  return true;
}

}  // namespace

NearSpace& NearSpace::Get() {
  // Never destroyed: arenas may be given back while the process exits.
  static NearSpace* space = new NearSpace();
  return *space;
}

uint64_t NearSpace::Fit(AddressRange range, AddressRange window, size_t bytes, uint64_t near) {
  uint64_t lo = RoundUp(std::max(range.lo, window.lo), PageSize());
  uint64_t hi = RoundDown(std::min(range.hi, window.hi), PageSize());
  if (hi <= lo || hi - lo < bytes) return 0;
  // At one end of the range, so that the rest stays in one piece.
  uint64_t top = hi - bytes;
  return Distance(top, bytes, near) < Distance(lo, bytes, near) ? top : lo;
}

llvm::Expected<char*> NearSpace::Take(AddressRange window, size_t bytes, uint64_t near) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    uint64_t best = 0;
    for (const auto& [start, size] : free_) {
      uint64_t addr = Fit({start, start + size}, window, bytes, near);
      if (addr != 0 && (best == 0 || Distance(addr, bytes, near) < Distance(best, bytes, near))) {
        best = addr;
      }
    }
    if (best != 0) {
      auto range = std::prev(free_.upper_bound(best));
      uint64_t start = range->first, end = range->first + range->second;
      free_.erase(range);
      if (best > start) free_[start] = best - start;
      if (best + bytes < end) free_[best + bytes] = end - (best + bytes);
      return reinterpret_cast<char*>(best);
    }
    if (attempt == 0 && !ReserveRegion(window, bytes, near)) break;
  }
  return llvm::createStringError(std::make_error_code(std::errc::not_enough_memory),
                                 "no free address space is left there");
}

void NearSpace::Give(char* addr, size_t bytes) {
  // Fresh inaccessible pages free the memory and keep the reservation.
  mmap(addr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  std::lock_guard<std::mutex> lock(mutex_);
  AddFree(reinterpret_cast<uint64_t>(addr), bytes);
}

void NearSpace::AddFree(uint64_t addr, size_t bytes) {
  auto next = free_.lower_bound(addr);
  if (next != free_.end() && addr + bytes == next->first) {
    bytes += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto previous = std::prev(next);
    if (previous->first + previous->second == addr) {
      previous->second += bytes;
      return;
    }
  }
  free_[addr] = bytes;
}

bool NearSpace::ReserveAt(uint64_t addr, size_t bytes) {
  void* got = mmap(reinterpret_cast<void*>(addr), bytes, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (got == MAP_FAILED) return false;
  if (reinterpret_cast<uint64_t>(got) == addr) return true;
  munmap(got, bytes);  // a kernel without MAP_FIXED_NOREPLACE placed it elsewhere
  return false;
}

bool NearSpace::ReserveRegion(AddressRange window, size_t bytes, uint64_t near) {
  uint64_t wanted = std::max<uint64_t>(bytes, kRegionBytes);
  // Another thread may map the gap between reading the maps and reserving it: read them again.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::vector<AddressRange> gaps;
    if (!ReadGaps(gaps)) break;
    uint64_t best = 0, best_size = 0;
    for (AddressRange gap : gaps) {
      AddressRange usable{RoundUp(std::max(gap.lo, window.lo), PageSize()),
                          RoundDown(std::min(gap.hi, window.hi), PageSize())};
      if (usable.size() < bytes) continue;
      uint64_t size = std::min(usable.size(), wanted);
      uint64_t addr = Fit(usable, window, size, near);
      if (addr != 0 &&
          (best == 0 || Distance(addr, size, near) < Distance(best, best_size, near))) {
        best = addr;
        best_size = size;
      }
    }
    if (best == 0) return false;
    if (ReserveAt(best, best_size)) {
      AddFree(best, best_size);
      return true;
    }
  }
  // No /proc/self/maps (or it kept changing): probe, outwards from `near`, for room of each size.
  for (uint64_t size : {wanted, uint64_t(bytes)}) {
    for (int probe = 0; probe < 2 * kProbes; ++probe) {
      int64_t step = (probe / 2) * int64_t(size) * (probe % 2 == 0 ? 1 : -1);
      int64_t addr = int64_t(near) - int64_t(size / 2) + step;
      if (addr < int64_t(window.lo) || uint64_t(addr) + size > window.hi) continue;
      uint64_t aligned = RoundDown(uint64_t(addr), PageSize());
      if (aligned >= window.lo && ReserveAt(aligned, size)) {
        AddFree(aligned, size);
        return true;
      }
    }
  }
  return false;
}

}  // namespace orcjit
