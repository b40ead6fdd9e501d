// The crash handler: the signal handler, its helper process that walks and names the stack, and
// the async-signal-safe report it falls back to. See crash_handler.h.
#include "crash_handler.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/reflection/registry.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>

#include "fault_guard.h"
#include "jit_code_map.h"
#include "jit_symbolizer.h"

namespace orcjit {

namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTERM};
constexpr int kNumSignals = sizeof(kSignals) / sizeof(kSignals[0]);
constexpr int kMaxFrames = 128;
/// Frames shown after the first one in the Python interpreter (the rest are the interpreter's).
constexpr int kInterpreterFrames = 1;
constexpr size_t kAltStackBytes = size_t(1) << 20;

struct sigaction g_previous[kNumSignals];
std::atomic<int> g_fd{2};
std::atomic<bool> g_on_sigterm{false};
std::atomic<bool> g_installed{false};
std::mutex g_install_mutex;
/// The thread reporting a signal (0: none): a second signal of that thread ends the process, a
/// signal of another thread waits for the report to end.
std::atomic<pid_t> g_reporting{0};

/// A line being written with async-signal-safe calls only.
class Line {
 public:
  Line& Text(const char* text) {
    while (*text != '\0' && size_ < sizeof(buffer_)) buffer_[size_++] = *text++;
    return *this;
  }
  Line& Hex(uint64_t value, int digits = 1) {
    char text[19] = "0x";
    char reversed[16];
    int count = 0;
    do {
      reversed[count++] = "0123456789abcdef"[value & 0xf];
      value >>= 4;
    } while (value != 0 || count < digits);
    for (int i = 0; i < count; ++i) text[2 + i] = reversed[count - 1 - i];
    text[2 + count] = '\0';
    return Text(text);
  }
  Line& Dec(int64_t value) {
    char text[24];
    char* end = text + sizeof(text) - 1;
    *end = '\0';
    bool negative = value < 0;
    uint64_t magnitude = negative ? uint64_t(-(value + 1)) + 1 : uint64_t(value);
    do {
      *--end = static_cast<char>('0' + magnitude % 10);
      magnitude /= 10;
    } while (magnitude != 0);
    if (negative) *--end = '-';
    return Text(end);
  }
  void WriteTo(int fd) {
    Text("\n");
    size_t done = 0;
    while (done < size_) {
      ssize_t wrote = write(fd, buffer_ + done, size_ - done);
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) return;
      done += static_cast<size_t>(wrote);
    }
  }

 private:
  char buffer_[1024];
  size_t size_ = 0;
};

uintptr_t ContextPc(void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
  return uc == nullptr ? 0 : static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
}

/// "SIGSEGV (access to unmapped address 0x0, at pc 0x7f...) in pid 12, thread 12".
void WriteHeader(int fd, int signal, const siginfo_t* info, uintptr_t pc) {
  Line line;
  line.Text(kCrashReportStart).Text(SignalName(signal)).Text(" (");
  uintptr_t address = reinterpret_cast<uintptr_t>(info->si_addr);
  bool sent = info->si_code <= 0;
  if (signal == SIGTERM) {
    line.Text("asked to terminate");  // a timeout or Ctrl-C of a forked test, mostly
  } else if (sent && info->si_pid == getpid()) {
    line.Text(signal == SIGABRT ? "abort()" : "raised by the process itself");
  } else if (sent) {
    line.Text("sent by pid ").Dec(info->si_pid);
  } else if (signal == SIGSEGV) {
    if (info->si_code == SEGV_MAPERR) {
      line.Text("access to unmapped address ").Hex(address);
    } else if (info->si_code == SEGV_ACCERR) {
      line.Text("access to address ").Hex(address).Text(" without permission");
    } else {
      line.Text("general protection fault: a non-canonical address or misaligned vector access");
    }
  } else if (signal == SIGBUS) {
    line.Text(info->si_code == BUS_ADRALN ? "misaligned access at address " : "bus error at ")
        .Hex(address);
  } else if (signal == SIGILL) {
    line.Text("illegal instruction at ").Hex(address);
  } else if (signal == SIGFPE) {
    line.Text(info->si_code == FPE_INTDIV ? "integer division by zero" : "arithmetic exception");
    line.Text(" at ").Hex(address);
  } else {
    line.Text("code ").Dec(info->si_code);
  }
  if (pc != 0 && !sent) line.Text(", at pc ").Hex(pc);  // a sent signal's pc is in kill()
  line.Text(") in pid ").Dec(getpid()).Text(", thread ").Dec(syscall(SYS_gettid));
  line.WriteTo(fd);
}

struct Frames {
  uintptr_t pc[kMaxFrames];
  bool exact[kMaxFrames];  // the pc of an interrupted instruction, not a return address
  int count = 0;
};

_Unwind_Reason_Code CollectFrame(_Unwind_Context* context, void* arg) {
  auto* frames = static_cast<Frames*>(arg);
  if (frames->count == kMaxFrames) return _URC_END_OF_STACK;
  int before = 0;
  uintptr_t pc = _Unwind_GetIPInfo(context, &before);
  if (pc == 0) return _URC_END_OF_STACK;
  frames->pc[frames->count] = pc;
  frames->exact[frames->count] = before != 0;
  ++frames->count;
  return _URC_NO_REASON;
}

bool InInterpreter(const char* path) {
  const char* base = std::strrchr(path, '/');
  base = base == nullptr ? path : base + 1;
  return std::strncmp(base, "python", 6) == 0 || std::strncmp(base, "libpython", 9) == 0;
}

/// One frame of the stack, named: JIT code by the symbolizer, the rest by dladdr.
std::string DescribeFrame(uintptr_t pc) {
  if (auto jit = DescribeJitAddress(pc)) return *jit;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(pc), &info) == 0 || info.dli_fname == nullptr) return "??";
  const char* base = std::strrchr(info.dli_fname, '/');
  std::string module = base == nullptr ? info.dli_fname : base + 1;
  char offset[24];
  if (info.dli_sname == nullptr) {
    std::snprintf(
        offset, sizeof(offset), "+0x%llx",
        static_cast<unsigned long long>(pc - reinterpret_cast<uintptr_t>(info.dli_fbase)));
    return "?? (" + module + offset + ")";
  }
  std::snprintf(offset, sizeof(offset), "+0x%llx",
                static_cast<unsigned long long>(pc - reinterpret_cast<uintptr_t>(info.dli_saddr)));
  return DisplayName(info.dli_sname) + offset + " (" + module + ")";
}

/// The helper process: walks the stack it inherited, from the signal frame down, and writes it
/// named, in one write. Runs in a copy of the dying process (any allocation may deadlock on a
/// lock it inherited held; the dying process then gives up on it).
[[noreturn]] void WriteStack(int fd) {
  alarm(kHelperSeconds + 1);  // should the dying process be gone before it
  static Frames frames;
  _Unwind_Backtrace(CollectFrame, &frames);
  // The interrupted instruction is the last exact pc (the handler may have been entered through
  // another one, Python's faulthandler re-raising the signal); without one, all frames.
  int first = 0;
  for (int i = 0; i < frames.count; ++i) {
    if (frames.exact[i]) first = i;
  }
  std::string text = "native stack, most recent call first:\n";
  int interpreter = 0;
  for (int i = first; i < frames.count; ++i) {
    uintptr_t pc = frames.pc[i];
    uintptr_t lookup = frames.exact[i] ? pc : pc - 1;  // the call, not the instruction after it
    char number[48];
    std::snprintf(number, sizeof(number), "  #%-2d 0x%016llx ", i - first,
                  static_cast<unsigned long long>(pc));
    text += number + DescribeFrame(lookup) + "\n";
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(lookup), &info) != 0 && info.dli_fname != nullptr &&
        InInterpreter(info.dli_fname) && ++interpreter == kInterpreterFrames &&
        i + 1 < frames.count) {
      text += "  ... " + std::to_string(frames.count - i - 1) + " more frames in Python\n";
      break;
    }
  }
  ssize_t ignored = write(fd, text.data(), text.size());
  (void)ignored;
  _exit(0);
}

/// What the dying process writes itself when the helper did not finish: the faulting pc, named
/// from the map of JIT code.
void WriteFallback(int fd, uintptr_t pc) {
  Line().Text("native stack, most recent call first:").WriteTo(fd);
  Line line;
  line.Text("  #0  ").Hex(pc, 16).Text(" ");
  JitFunction function;
  if (FindJitFunction(pc, &function)) {
    line.Text(function.name).Text("+").Hex(pc - function.start).Text(" (").Text(function.object);
    line.Text(")");
  } else {
    line.Text("(outside JIT code)");
  }
  line.WriteTo(fd);
  Line().Text("  (the rest of the stack is unknown: walking it did not finish)").WriteTo(fd);
}

void SleepMs(long ms) {
  struct timespec delay = {0, ms * 1000000L};
  nanosleep(&delay, nullptr);
}

/// Writes the report of `signal` (see the top of crash_handler.h).
void Report(int signal, siginfo_t* info, void* context) {
  int fd = g_fd.load(std::memory_order_relaxed);
  uintptr_t pc = ContextPc(context);
  WriteHeader(fd, signal, info, pc);
  pid_t helper = _Fork();
  if (helper == 0) WriteStack(fd);
  bool done = false;
  if (helper > 0) {
    for (int waited = 0; waited < kHelperSeconds * 100; ++waited) {
      int status = 0;
      pid_t ended = waitpid(helper, &status, WNOHANG);
      if (ended == helper || (ended < 0 && errno != EINTR)) {
        done = ended == helper && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        helper = 0;
        break;
      }
      SleepMs(10);
    }
    if (helper > 0) {
      kill(helper, SIGKILL);
      while (waitpid(helper, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  if (!done) WriteFallback(fd, pc);
}

int IndexOf(int signal) {
  for (int i = 0; i < kNumSignals; ++i) {
    if (kSignals[i] == signal) return i;
  }
  return -1;
}

void OnSignal(int signal, siginfo_t* info, void* context) {
  int saved_errno = errno;
  int index = IndexOf(signal);
  pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  pid_t expected = 0;
  bool sent = info == nullptr || info->si_code <= 0;
  bool wanted = signal != SIGTERM || g_on_sigterm.load(std::memory_order_relaxed);
  if (wanted && info != nullptr &&
      !g_reporting.compare_exchange_strong(expected, self, std::memory_order_acq_rel)) {
    if (expected != self) {
      // Another thread is reporting, and then ends the process: wait for it.
      for (int i = 0; i < (kHelperSeconds + 5) * 100; ++i) SleepMs(10);
    }
    // A fault inside the report itself: end the process by the signal, as it would have ended.
    struct sigaction default_action = {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(signal, &default_action, nullptr);
    if (sent) raise(signal);
    return;
  }
  if (wanted && info != nullptr) Report(signal, info, context);
  errno = saved_errno;
  if (index >= 0) PassOnSignal(g_previous[index], signal, info, context);
  if (!sent) {
    // Returning would run the faulting instruction again: end the process by the signal.
    struct sigaction default_action = {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(signal, &default_action, nullptr);
  } else {
    g_reporting.store(0, std::memory_order_release);  // the process lives on (it handled it)
  }
}

bool IsOurs(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == OnSignal;
}

/// Gives the calling thread a mapped alternate signal stack, large enough for the handlers that
/// run on it (the helper process names the stack on it), unless it has one of that size.
void EnsureAltStack() {
  stack_t current;
  if (sigaltstack(nullptr, &current) != 0 || (current.ss_flags & SS_ONSTACK) != 0) return;
  if ((current.ss_flags & SS_DISABLE) == 0 && current.ss_size >= kAltStackBytes) return;
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* mapping = mmap(nullptr, kAltStackBytes + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) return;
  mprotect(mapping, page, PROT_NONE);
  stack_t ours = {};
  ours.ss_sp = static_cast<char*>(mapping) + page;
  ours.ss_size = kAltStackBytes;
  // The previous stack (Python's faulthandler's, from the heap) stays allocated, unused.
  if (sigaltstack(&ours, nullptr) != 0) munmap(mapping, kAltStackBytes + page);
}

}  // namespace

bool CrashReportsEnabled() {
  static const bool enabled = [] {
    const char* setting = std::getenv("PYTEST_ORCJIT_CRASH_REPORTS");
    return setting == nullptr || std::strcmp(setting, "off") != 0;
  }();
  return enabled;
}

void InstallCrashHandler(int fd, bool on_sigterm) {
  if (!CrashReportsEnabled()) return;
  std::lock_guard<std::mutex> lock(g_install_mutex);
  if (!g_installed.load(std::memory_order_acquire)) {
    // Load the unwinder now: the first _Unwind_Backtrace loads libgcc_s and allocates.
    Frames frames;
    _Unwind_Backtrace(CollectFrame, &frames);
  }
  // A descriptor of our own: the one given may be closed and its number reused for another file
  // (pytest's faulthandler closes its own at the end of a session run in-process).
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (own < 0) return;
  int previous = g_fd.exchange(own, std::memory_order_acq_rel);
  if (previous != 2) close(previous);
  g_on_sigterm.store(on_sigterm, std::memory_order_relaxed);
  EnsureAltStack();
  struct sigaction ours = {};
  ours.sa_sigaction = OnSignal;
  ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&ours.sa_mask);
  for (int i = 0; i < kNumSignals; ++i) {
    struct sigaction current;
    sigaction(kSignals[i], nullptr, &current);
    if (IsOurs(current)) continue;
    if (kSignals[i] == SIGTERM && !on_sigterm) continue;
    g_previous[i] = current;
    sigaction(kSignals[i], &ours, nullptr);
  }
  g_installed.store(true, std::memory_order_release);
}

void InstallCrashHandlerOnce() {
  if (!g_installed.load(std::memory_order_acquire)) InstallCrashHandler(2, false);
}

namespace {

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef().def("orcjit.install_crash_handler", [](int64_t fd, bool on_sigterm) {
    if (fd < 0 || fd > INT32_MAX || fcntl(static_cast<int>(fd), F_GETFD) < 0) {
      TVM_FFI_THROW(ValueError) << "install_crash_handler: " << fd
                                << " is not an open file descriptor; pass one that is open for "
                                << "writing, such as 2 (stderr)";
    }
    InstallCrashHandler(static_cast<int>(fd), on_sigterm);
  });
}

}  // namespace
}  // namespace orcjit
