// What the fork server asks of the kernel so that forks, and the tests its children run, cost
// less: transparent huge pages (MADV_COLLAPSE), the pages a child copied (/proc/self/pagemap),
// warming those pages in later children (MADV_POPULATE_WRITE, process_madvise) and scheduler
// policies (SCHED_BATCH with a long slice, SCHED_IDLE). All of it lives here, in native code,
// because most of it runs in the fork server's native loop and in its waiting children, which
// must write almost no memory and never call back into Python (docs/architecture.md says why).
// Each call is best effort: where the kernel lacks a feature or refuses, nothing changes.
#ifndef PYTEST_ORCJIT_FORK_TUNING_H_
#define PYTEST_ORCJIT_FORK_TUNING_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace orcjit {

/// One run of pages, as the first child reports the pages it copied and as waiting children warm
/// them: the layout of struct iovec on x86-64 Linux (pytest_orcjit/protocol.py's RUN).
struct PageRun {
  uint64_t address;
  uint64_t length;
};

/// The writable private mappings of this process (the stack aside), each of at most 1 GiB, as
/// runs sorted by address. Empty where /proc/self/maps cannot be read.
std::vector<PageRun> WritableRanges();

/// Backs the 2 MiB-aligned windows of `ranges` with transparent huge pages where the kernel can
/// (MADV_COLLAPSE, Linux 6.1): it copies a window's pages into one huge page, zero-filling those
/// not touched yet, and changes no content. A window it cannot collapse stays as it is.
void CollapseHugePages(const std::vector<PageRun>& ranges);

/// The pages of `ranges` that this process copied since it was forked (present and no longer
/// shared, from /proc/self/pagemap), as runs of at most `max_run_bytes`. Empty where pagemap
/// cannot be read.
std::vector<PageRun> CopiedPages(const std::vector<PageRun>& ranges, std::size_t max_run_bytes);

/// Makes this process run under `policy` (SCHED_OTHER, SCHED_BATCH or SCHED_IDLE, priority 0).
/// SCHED_BATCH asks for a long time slice (Linux 6.12), so that an ordinary process woken on its
/// core preempts it at once. Nothing changes where the kernel refuses.
void SetScheduler(int policy);

/// Copies the pages of `runs` a batch of at most `batch_bytes` at a time, until `until` is
/// readable; a later call goes on where this one stopped. MADV_POPULATE_WRITE (Linux 5.14) breaks
/// copy-on-write as a write would, without writing; an address not mapped writable is an error,
/// never a fault. A batch is one process_madvise call on this process (which takes
/// MADV_POPULATE_WRITE since Linux 6.13); a batch it does not take whole, or every batch where it
/// is missing (or `batched` is false), is done again one madvise per run. Before Linux 5.14
/// nothing is warmed.
class Warmer {
 public:
  Warmer(const std::vector<PageRun>& runs, std::size_t batch_bytes, bool batched = true)
      : runs_(runs), batch_bytes_(batch_bytes), pidfd_(batched ? -2 : -1) {}
  ~Warmer();
  Warmer(const Warmer&) = delete;
  Warmer& operator=(const Warmer&) = delete;

  bool done() const { return next_ >= runs_.size(); }
  void Warm(int until);

 private:
  const std::vector<PageRun>& runs_;
  std::size_t batch_bytes_;
  std::size_t next_ = 0;
  int pidfd_;  // -2: not opened yet; -1: one madvise per run
};

/// Warms `runs` in this process (a Warmer's one call); returns whether all were copied.
bool WarmPages(const std::vector<PageRun>& runs, int until, std::size_t batch_bytes,
               bool batched = true);

/// A pidfd of `pid` (pidfd_open, Linux 5.3), or -1.
int PidFd(int pid);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_FORK_TUNING_H_
