// The fork server's requests to the kernel: huge pages, copied pages, warming and scheduler
// policies, each with its fallback (see fork_tuning.h).
#include "fork_tuning.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <tvm/ffi/reflection/registry.h>
#include <tvm/ffi/string.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace orcjit {
namespace {

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

static_assert(sizeof(PageRun) == sizeof(iovec) &&
                  offsetof(PageRun, length) == offsetof(iovec, iov_len),
              "a PageRun is handed to process_madvise as a struct iovec");

constexpr uint64_t kHugePage = 2 << 20;
constexpr uint64_t kMaxRange = 1 << 30;  // larger mappings are reserved, not written
constexpr uint64_t kPresent = uint64_t{1} << 63, kExclusive = uint64_t{1} << 56;  // pagemap flags

struct SchedAttr {  // struct sched_attr (SCHED_ATTR_SIZE_VER0)
  uint32_t size;
  uint32_t policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime;
  uint64_t deadline;
  uint64_t period;
};

/// Background work (SCHED_BATCH) asks for a long time slice, so that an ordinary process woken
/// on its core (the next test, the pytest process) preempts it at once (Linux >= 6.12).
constexpr uint64_t kBackgroundSliceNs = 100'000'000;

bool Readable(int fd) {
  pollfd poll_fd{fd, POLLIN, 0};
  return poll(&poll_fd, 1, 0) > 0;
}

std::vector<PageRun> FromBytes(const tvm::ffi::Bytes& bytes) {
  std::vector<PageRun> runs(bytes.size() / sizeof(PageRun));
  if (!runs.empty()) std::memcpy(runs.data(), bytes.data(), runs.size() * sizeof(PageRun));
  return runs;
}

tvm::ffi::Bytes ToBytes(const std::vector<PageRun>& runs) {
  return tvm::ffi::Bytes(reinterpret_cast<const char*>(runs.data()), runs.size() * sizeof(PageRun));
}

}  // namespace

std::vector<PageRun> WritableRanges() {
  std::vector<PageRun> ranges;
  FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return ranges;
  char line[4096];
  while (std::fgets(line, sizeof(line), maps) != nullptr) {
    unsigned long long low = 0, high = 0;
    char perms[8] = {};
    int name_at = 0;
    if (std::sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &low, &high, perms, &name_at) < 3) {
      continue;
    }
    const char* name = line + name_at;
    if (perms[1] != 'w' || perms[3] != 'p' || std::strncmp(name, "[s", 2) == 0) continue;
    if (high - low <= kMaxRange) ranges.push_back({low, high - low});
    if (std::strchr(line, '\n') == nullptr) {  // a name longer than the buffer: skip its rest
      int c;
      while ((c = std::fgetc(maps)) != EOF && c != '\n') {
      }
    }
  }
  std::fclose(maps);
  std::sort(ranges.begin(), ranges.end(),
            [](const PageRun& a, const PageRun& b) { return a.address < b.address; });
  return ranges;
}

void CollapseHugePages(const std::vector<PageRun>& ranges) {
  for (const PageRun& range : ranges) {
    uint64_t start = (range.address + kHugePage - 1) / kHugePage * kHugePage;
    uint64_t end = range.address + range.length;
    for (uint64_t window = start; window + kHugePage <= end; window += kHugePage) {
      madvise(reinterpret_cast<void*>(window), kHugePage, MADV_COLLAPSE);
    }
  }
}

std::vector<PageRun> CopiedPages(const std::vector<PageRun>& ranges, std::size_t max_run_bytes) {
  std::vector<PageRun> runs;
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) return runs;
  std::vector<uint64_t> entries;
  for (const PageRun& range : ranges) {
    uint64_t low = range.address, high = range.address + range.length;
    entries.resize((high - low) / page);
    size_t size = entries.size() * sizeof(uint64_t);
    ssize_t got = pread(pagemap, entries.data(), size, static_cast<off_t>(low / page * 8));
    if (got < 0) continue;
    entries.resize(static_cast<size_t>(got) / sizeof(uint64_t));
    for (size_t index = 0; index < entries.size(); ++index) {
      if ((entries[index] & kPresent) == 0 || (entries[index] & kExclusive) == 0) continue;
      uint64_t address = low + index * page;
      if (!runs.empty() && runs.back().address + runs.back().length == address &&
          runs.back().length < max_run_bytes) {
        runs.back().length += page;
      } else {
        runs.push_back({address, page});
      }
    }
  }
  close(pagemap);
  return runs;
}

void SetScheduler(int policy) {
#ifdef SYS_sched_setattr
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  SchedAttr attr{sizeof(SchedAttr),
                 static_cast<uint32_t>(policy),
                 0,
                 nice,
                 0,
                 policy == SCHED_BATCH ? kBackgroundSliceNs : 0,
                 0,
                 0};
  if (errno == 0 && syscall(SYS_sched_setattr, 0, &attr, 0) == 0) return;
#endif
  sched_param param{};
  sched_setscheduler(0, policy, &param);  // before Linux 3.14; refused: nothing changes
}

int PidFd(int pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  return -1;
#endif
}

Warmer::~Warmer() {
  if (pidfd_ >= 0) close(pidfd_);
}

void Warmer::Warm(int until) {
  size_t count = runs_.size();
  if (next_ < count && pidfd_ == -2) pidfd_ = PidFd(getpid());
  while (next_ < count) {
    if (Readable(until)) return;
    size_t first = next_, size = 0;
    while (next_ < count && (next_ == first || size + runs_[next_].length <= batch_bytes_)) {
      size += runs_[next_].length;
      ++next_;
    }
#ifdef SYS_process_madvise
    if (pidfd_ >= 0) {  // one call per batch (MADV_POPULATE_WRITE there: Linux >= 6.13)
      auto* vectors = reinterpret_cast<const iovec*>(runs_.data() + first);
      ssize_t done =
          syscall(SYS_process_madvise, pidfd_, vectors, next_ - first, MADV_POPULATE_WRITE, 0);
      if (done == static_cast<ssize_t>(size)) continue;
      if (done < 0 && errno == EINVAL) {
        close(pidfd_);
        pidfd_ = -1;
      }
    }
#endif
    for (size_t run = first; run < next_; ++run) {
      void* address = reinterpret_cast<void*>(runs_[run].address);
      if (madvise(address, runs_[run].length, MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
        next_ = count;  // before Linux 5.14: nothing to warm with
        return;
      }
    }
  }
}

bool WarmPages(const std::vector<PageRun>& runs, int until, std::size_t batch_bytes, bool batched) {
  Warmer warmer(runs, batch_bytes, batched);
  warmer.Warm(until);
  return warmer.done();
}

namespace {

// Ranges and runs cross to Python as bytes of PageRuns (flat address, length uint64 pairs).
TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef()
      .def("orcjit.writable_ranges", [] { return ToBytes(WritableRanges()); })
      .def("orcjit.collapse_huge_pages",
           [](tvm::ffi::Bytes ranges) { CollapseHugePages(FromBytes(ranges)); })
      .def("orcjit.copied_pages",
           [](tvm::ffi::Bytes ranges, int64_t max_run_bytes) {
             return ToBytes(CopiedPages(FromBytes(ranges), static_cast<size_t>(max_run_bytes)));
           })
      .def("orcjit.set_scheduler", [](int64_t policy) { SetScheduler(static_cast<int>(policy)); })
      .def("orcjit.warm_pages",
           [](tvm::ffi::Bytes runs, int64_t until, int64_t batch_bytes, bool batched) {
             return WarmPages(FromBytes(runs), static_cast<int>(until),
                              static_cast<size_t>(batch_bytes), batched);
           });
}

}  // namespace
}  // namespace orcjit
