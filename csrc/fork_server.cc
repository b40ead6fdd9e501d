// The fork server's loop and its waiting children, in native code (see fork_server.h), and the
// global functions that Python reaches them by.
#include "fork_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tuple.h>
#include <tvm/ffi/reflection/registry.h>
#include <tvm/ffi/string.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "fork_tuning.h"

namespace orcjit {
namespace {

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

/// A waiting child: warms, waits for its turn, then reads its job into `job` (leaves if the
/// pytest process closed the server). `turn` is the read end of its turn pipe (-1: none, it is
/// next in line), `passing` the write end of its successor's, which it closes as it returns.
void TakeJob(int jobs, int turn, int passing, Warmer* warmer,
             unsigned char (&job)[sizeof(JobRecord)]) {
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

ForkResult ServeForks(const ForkServerFds& fds, int ahead, int respawns, size_t batch_bytes) {
  SetScheduler(SCHED_BATCH);  // and so its children, until they take a job
  ForkResult result;
  result.failed = true;  // until the loop ends as it should
  int taken[2], learn[2];
  if (pipe2(taken, O_CLOEXEC) != 0 || pipe2(learn, O_CLOEXEC) != 0) return result;
  fcntl(taken[0], F_SETFL, O_NONBLOCK);
  fcntl(learn[0], F_SETFL, O_NONBLOCK);
  std::vector<Child> children;
  std::vector<PageRun> runs;  // the pages the first child copied, once it said so
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
        runs.resize(learned.size() / sizeof(PageRun));  // none if the first child died first
        if (!runs.empty()) std::memcpy(runs.data(), learned.data(), runs.size() * sizeof(PageRun));
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
      StatusRecord record{dead, wait_status};
      WriteAll(fds.status, &record, sizeof(record));
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

namespace {

namespace ffi = tvm::ffi;

/// A field of a record: (name, offset, Python struct code of its type).
using Field = ffi::Tuple<ffi::String, int64_t, ffi::String>;
/// A record: (size, fields in order).
using Layout = ffi::Tuple<int64_t, ffi::Array<Field>>;

template <typename T>
ffi::String StructCode() {
  static_assert(std::is_arithmetic_v<T>, "a record field is a number");
  if constexpr (std::is_same_v<T, double>) return "d";
  if constexpr (std::is_same_v<T, int32_t>) return "i";
  if constexpr (std::is_same_v<T, uint64_t>) return "Q";
  return "?";  // no struct code here: the test comparing the layouts fails
}

#define ORCJIT_FIELD(Record, name) \
  Field(#name, static_cast<int64_t>(offsetof(Record, name)), StructCode<decltype(Record::name)>())

/// The records that cross between the pytest process and the fork server, as the core lays them
/// out, for tests/test_forkserver.py to compare with pytest_orcjit/protocol.py.
ffi::Map<ffi::String, Layout> RecordLayouts() {
  ffi::Map<ffi::String, Layout> layouts;
  layouts.Set("job",
              Layout(sizeof(JobRecord), ffi::Array<Field>{ORCJIT_FIELD(JobRecord, index),
                                                          ORCJIT_FIELD(JobRecord, timeout)}));
  layouts.Set("status", Layout(sizeof(StatusRecord),
                               ffi::Array<Field>{ORCJIT_FIELD(StatusRecord, pid),
                                                 ORCJIT_FIELD(StatusRecord, wait_status)}));
  layouts.Set("run", Layout(sizeof(PageRun), ffi::Array<Field>{ORCJIT_FIELD(PageRun, address),
                                                               ORCJIT_FIELD(PageRun, length)}));
  return layouts;
}

#undef ORCJIT_FIELD

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef()
      .def("orcjit.serve_forks",
           [](int64_t jobs, int64_t lifeline, int64_t status, int64_t ahead, int64_t respawns,
              int64_t batch_bytes) {
             ForkServerFds fds{static_cast<int>(jobs), static_cast<int>(lifeline),
                               static_cast<int>(status)};
             ForkResult result =
                 ServeForks(fds, static_cast<int>(ahead), static_cast<int>(respawns),
                            static_cast<size_t>(batch_bytes));
             ffi::Bytes job(reinterpret_cast<const char*>(result.job),
                            result.child ? sizeof(result.job) : 0);
             return ffi::Tuple<ffi::Bytes, int64_t, bool>(job, result.learn, result.failed);
           })
      .def("orcjit.fork_record_layouts", RecordLayouts);
}

}  // namespace
}  // namespace orcjit
