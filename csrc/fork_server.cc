// The fork server's loop and its waiting children, in native code (see fork_server.h).
#include "fork_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

namespace orcjit {
namespace {

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

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
  sched_setscheduler(0, policy, &param);
}

bool Readable(int fd) {
  pollfd poll_fd{fd, POLLIN, 0};
  return poll(&poll_fd, 1, 0) > 0;
}

ssize_t ReadRetrying(int fd, void* buffer, size_t size) {
  ssize_t got;
  do {
    got = read(fd, buffer, size);
  } while (got < 0 && errno == EINTR);
  return got;
}

bool WriteAll(int fd, const void* data, size_t size) {
  auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t wrote = write(fd, bytes, size);
    if (wrote < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return false;
      pollfd poll_fd{fd, POLLOUT, 0};
      poll(&poll_fd, 1, -1);
      continue;
    }
    bytes += wrote;
    size -= static_cast<size_t>(wrote);
  }
  return true;
}

int PidFd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  return -1;
#endif
}

/// Copies the pages of `runs` (flat address, length pairs, as struct iovec) a batch at a time,
/// until `until` is readable; a later call goes on where this one stopped. MADV_POPULATE_WRITE
/// (Linux 5.14) breaks copy-on-write as a write would, without writing; an address not mapped
/// writable is an error, never a fault. A batch is one process_madvise call on this process
/// (which takes MADV_POPULATE_WRITE since Linux 6.13); a batch it does not take whole, or every
/// batch where it is missing (or `batched` is false), is done again one madvise per run.
class Warmer {
 public:
  Warmer(const std::vector<uint64_t>& runs, size_t batch_bytes, bool batched = true)
      : runs_(runs), batch_bytes_(batch_bytes), pidfd_(batched ? -2 : -1) {}
  ~Warmer() {
    if (pidfd_ >= 0) close(pidfd_);
  }

  bool done() const { return next_ * 2 >= runs_.size(); }

  void Warm(int until) {
    size_t count = runs_.size() / 2;
    if (next_ < count && pidfd_ == -2) pidfd_ = PidFd(getpid());
    while (next_ < count) {
      if (Readable(until)) return;
      size_t first = next_, size = 0;
      while (next_ < count && (next_ == first || size + runs_[2 * next_ + 1] <= batch_bytes_)) {
        size += runs_[2 * next_ + 1];
        ++next_;
      }
#ifdef SYS_process_madvise
      if (pidfd_ >= 0) {  // one call per batch (MADV_POPULATE_WRITE there: Linux >= 6.13)
        auto* vectors = reinterpret_cast<const iovec*>(runs_.data() + 2 * first);
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
        void* address = reinterpret_cast<void*>(runs_[2 * run]);
        if (madvise(address, runs_[2 * run + 1], MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
          next_ = count;  // before Linux 5.14: nothing to warm with
          return;
        }
      }
    }
  }

 private:
  const std::vector<uint64_t>& runs_;
  size_t batch_bytes_;
  size_t next_ = 0;
  int pidfd_;  // -2: not opened yet
};

/// A waiting child: warms, waits for its turn, then reads its job into `job` (leaves if the
/// pytest process closed the server). `turn` is the read end of its turn pipe (-1: none, it is
/// next in line), `passing` the write end of its successor's, which it closes as it returns.
void TakeJob(int jobs, int turn, int passing, Warmer* warmer, unsigned char (&job)[12]) {
  char byte = 0;
  bool next_in_line = turn < 0 || ReadRetrying(turn, &byte, 1) == 0;
  warmer->Warm(next_in_line ? jobs : turn);
  if (!warmer->done() && !next_in_line) {  // the turn ended before warming did
    next_in_line = true;
    warmer->Warm(jobs);
  }
  WriteAll(passing, &byte, 1);  // the next child may warm
  // A woken SCHED_BATCH process waits for the running one's time slice: not the next test.
  SetScheduler(SCHED_OTHER);
  if (!next_in_line) ReadRetrying(turn, &byte, 1);  // end of file
  if (ReadRetrying(jobs, job, sizeof(job)) != static_cast<ssize_t>(sizeof(job))) {
    _exit(0);  // end of file: the pytest process closed the server
  }
  for (int fd : {passing, jobs, turn}) {
    if (fd >= 0) close(fd);
  }
}

struct Child {
  pid_t pid;
  int pidfd;
  bool waiting;  // forked ahead, no job taken yet
};

}  // namespace

bool WarmPages(const std::vector<uint64_t>& runs, int until, std::size_t batch_bytes,
               bool batched) {
  Warmer warmer(runs, batch_bytes, batched);
  warmer.Warm(until);
  return warmer.done();
}

ForkResult ServeForks(const ForkServerFds& fds, int ahead, int respawns, size_t batch_bytes) {
  SetScheduler(SCHED_BATCH);  // and so its children, until they take a job
  ForkResult result;
  result.failed = true;  // until the loop ends as it should
  int taken[2], learn[2];
  if (pipe2(taken, O_CLOEXEC) != 0 || pipe2(learn, O_CLOEXEC) != 0) return result;
  fcntl(taken[0], F_SETFL, O_NONBLOCK);
  fcntl(learn[0], F_SETFL, O_NONBLOCK);
  std::vector<Child> children;
  std::vector<uint64_t> runs;  // the pages the first child copied, once it said so
  std::vector<char> learned;
  int learn_r = learn[0];
  // The read end of the next child's turn pipe; the last child forked holds its write end.
  int turn = -1;
  int waiting = 0;
  int deaths = 0;  // waiting children that died in a row (or could not be forked)

  // Forks a waiting child; returns true in the child once it took a job.
  auto fork_waiting = [&](int learn_w) -> bool {
    int next_turn[2];
    if (pipe2(next_turn, O_CLOEXEC) != 0) {
      ++deaths;
      return false;
    }
    pid_t pid = fork();
    if (pid == 0) {
      for (int fd : {taken[0], learn_r, fds.status, fds.lifeline, next_turn[0]}) {
        if (fd >= 0) close(fd);
      }
      for (const Child& child : children) {
        if (child.pidfd >= 0) close(child.pidfd);
      }
      Warmer warmer(runs, batch_bytes);
      TakeJob(fds.jobs, turn, next_turn[1], &warmer, result.job);
      pid_t self = getpid();
      WriteAll(taken[1], &self, sizeof(self));
      close(taken[1]);
      result.child = true;
      result.learn = learn_w;
      return true;
    }
    close(next_turn[1]);
    if (turn >= 0) close(turn);
    turn = next_turn[0];
    if (pid > 0) {
      children.push_back({pid, PidFd(pid), true});
      ++waiting;
    } else {
      ++deaths;  // fork() failed
    }
    return false;
  };

  if (fork_waiting(learn[1])) return result;
  close(learn[1]);
  std::vector<pollfd> polled;
  std::vector<std::pair<pid_t, int>> ended;
  while (deaths < respawns) {
    while (waiting < ahead && deaths < respawns) {
      if (fork_waiting(-1)) return result;
    }
    polled.clear();
    polled.push_back({fds.lifeline, POLLIN, 0});
    polled.push_back({taken[0], POLLIN, 0});
    if (learn_r >= 0) polled.push_back({learn_r, POLLIN, 0});
    bool unwatched = false;
    for (const Child& child : children) {
      if (child.pidfd >= 0) {
        polled.push_back({child.pidfd, POLLIN, 0});
      } else {
        unwatched = true;
      }
    }
    if (poll(polled.data(), polled.size(), unwatched ? 10 : -1) < 0 && errno != EINTR) break;
    if (polled[0].revents) break;  // the parent is gone or closed the server
    if (learn_r >= 0) {
      char chunk[1 << 16];
      ssize_t got;
      while ((got = ReadRetrying(learn_r, chunk, sizeof(chunk))) > 0) {
        learned.insert(learned.end(), chunk, chunk + got);
      }
      if (got == 0) {
        close(learn_r);
        learn_r = -1;
        runs.resize(learned.size() / 16 * 2);  // none if the first child died before it said
        if (!runs.empty()) std::memcpy(runs.data(), learned.data(), runs.size() * sizeof(uint64_t));
      }
    }
    ended.clear();
    pid_t pid;
    int status;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) ended.emplace_back(pid, status);
    // Read after the deaths: a child that took its job said so before it could die.
    pid_t took;
    while (ReadRetrying(taken[0], &took, sizeof(took)) == sizeof(took)) {
      for (Child& child : children) {
        if (child.pid == took && child.waiting) {
          child.waiting = false;
          --waiting;
          deaths = 0;
        }
      }
    }
    for (auto [dead, wait_status] : ended) {
      int32_t record[2] = {dead, wait_status};
      WriteAll(fds.status, record, sizeof(record));
      for (size_t i = 0; i < children.size(); ++i) {
        if (children[i].pid != dead) continue;
        if (children[i].waiting) {  // it died before it took a job
          --waiting;
          ++deaths;
        }
        if (children[i].pidfd >= 0) close(children[i].pidfd);
        children.erase(children.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    }
  }
  for (const Child& child : children) kill(child.pid, SIGKILL);
  for (const Child& child : children) waitpid(child.pid, nullptr, 0);
  result.failed = deaths >= respawns;
  return result;
}

}  // namespace orcjit
