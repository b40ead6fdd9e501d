// The fault guard: signal handlers, the per-thread record of guarded calls they consult, and the
// alternate signal stacks. See fault_guard.h.
#include "fault_guard.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <mutex>

namespace orcjit {

namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
constexpr int kNumSignals = sizeof(kSignals) / sizeof(kSignals[0]);

/// One guarded call in progress: where to jump back to, and what the handler found.
struct Frame {
  sigjmp_buf jump;
  Frame* outer = nullptr;  // the call this one is nested in, on the same thread
  Fault fault{};
};

/// The innermost guarded call of one thread. A thread claims a free slot (thread 0) when it
/// enters its outermost guarded call and frees it when it leaves; only that thread writes the
/// slot afterwards, and the signal handler only reads the slot of the thread it runs on. Atomics,
/// not a lock or thread_local: both are off limits in a signal handler (the dynamic TLS of a
/// dlopen'ed library may be allocated with malloc on first access).
struct Slot {
  std::atomic<pid_t> thread{0};
  std::atomic<Frame*> frame{nullptr};
};
Slot g_slots[kMaxGuardedThreads];

/// The handlers that were installed before ours, while ours are installed (and after: a handler
/// installed later may still chain to ours, which then passes the signal on to these).
struct sigaction g_previous[kNumSignals];
std::mutex g_install_mutex;
int g_installs = 0;

pid_t CurrentThread() { return static_cast<pid_t>(syscall(SYS_gettid)); }

Slot* FindSlot(pid_t thread) {
  for (Slot& slot : g_slots) {
    if (slot.thread.load(std::memory_order_acquire) == thread) return &slot;
  }
  return nullptr;
}

uintptr_t FaultingPc(void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
  if (uc == nullptr) return 0;
#if defined(__x86_64__)
  return static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  return static_cast<uintptr_t>(uc->uc_mcontext.pc);
#else
  return 0;
#endif
}

void OnFault(int signal, siginfo_t* info, void* context) {
  int saved_errno = errno;
  // si_code > 0: the kernel raised the signal for an instruction of this thread. Signals sent
  // with kill() or raise() are not faults, and are passed on.
  if (info != nullptr && info->si_code > 0) {
    Slot* slot = FindSlot(CurrentThread());
    Frame* frame = slot == nullptr ? nullptr : slot->frame.load(std::memory_order_acquire);
    if (frame != nullptr) {
      frame->fault = Fault{signal, info->si_code, reinterpret_cast<uintptr_t>(info->si_addr),
                           FaultingPc(context)};
      siglongjmp(frame->jump, 1);
    }
  }
  int index = static_cast<int>(std::find(kSignals, kSignals + kNumSignals, signal) - kSignals);
  errno = saved_errno;
  if (index < kNumSignals) PassOnSignal(g_previous[index], signal, info, context);
}

bool IsOurs(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == OnFault;
}

void InstallHandlers() {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  if (g_installs++ > 0) return;
  struct sigaction ours = {};
  ours.sa_sigaction = OnFault;
  ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&ours.sa_mask);
  for (int i = 0; i < kNumSignals; ++i) {
    struct sigaction current;
    sigaction(kSignals[i], nullptr, &current);
    // Ours can still be there if someone installed a handler over it and put ours back.
    if (!IsOurs(current)) g_previous[i] = current;
    sigaction(kSignals[i], &ours, nullptr);
  }
}

void UninstallHandlers() {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  if (--g_installs > 0) return;
  for (int i = 0; i < kNumSignals; ++i) {
    struct sigaction current;
    sigaction(kSignals[i], nullptr, &current);
    // A handler installed over ours meanwhile (Python's faulthandler, say) stays.
    if (IsOurs(current)) sigaction(kSignals[i], &g_previous[i], nullptr);
  }
}

/// Registers a Frame as its thread's innermost guarded call for as long as it lives.
class FrameRegistration {
 public:
  explicit FrameRegistration(Frame* frame) : frame_(frame) {
    pid_t self = CurrentThread();
    slot_ = FindSlot(self);
    if (slot_ == nullptr) {
      for (Slot& slot : g_slots) {
        pid_t expected = 0;
        if (slot.thread.compare_exchange_strong(expected, self, std::memory_order_acq_rel)) {
          slot_ = &slot;
          break;
        }
      }
    }
    if (slot_ == nullptr) return;
    frame_->outer = slot_->frame.load(std::memory_order_relaxed);
    slot_->frame.store(frame_, std::memory_order_release);
  }
  ~FrameRegistration() {
    if (slot_ == nullptr) return;
    slot_->frame.store(frame_->outer, std::memory_order_release);
    if (frame_->outer == nullptr) slot_->thread.store(0, std::memory_order_release);
  }
  FrameRegistration(const FrameRegistration&) = delete;
  FrameRegistration& operator=(const FrameRegistration&) = delete;

  bool guarded() const { return slot_ != nullptr; }

 private:
  Frame* const frame_;
  Slot* slot_ = nullptr;
};

std::string Hex(uintptr_t value) {
  char text[2 + 16 + 1];
  std::snprintf(text, sizeof(text), "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace

const char* SignalName(int signal) {
  switch (signal) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGILL:
      return "SIGILL";
    case SIGFPE:
      return "SIGFPE";
    case SIGABRT:
      return "SIGABRT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "signal";
  }
}

void PassOnSignal(const struct sigaction& previous, int signal, siginfo_t* info, void* context) {
  bool sent = info == nullptr || info->si_code <= 0;
  bool has_function = (previous.sa_flags & SA_SIGINFO) != 0
                          ? previous.sa_sigaction != nullptr
                          : previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN;
  if (!has_function) {
    if (sent && previous.sa_handler == SIG_IGN) return;
    struct sigaction default_action = {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(signal, &default_action, nullptr);
    if (sent) raise(signal);  // delivered when this handler returns and the signal is unblocked
    return;
  }
  if ((previous.sa_flags & SA_NODEFER) != 0) {
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, signal);
    pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);
  }
  if ((previous.sa_flags & SA_SIGINFO) != 0) {
    previous.sa_sigaction(signal, info, context);
  } else {
    previous.sa_handler(signal);
  }
}

std::string Fault::Describe() const {
  std::string what;
  switch (signal) {
    case SIGSEGV:
      if (code == SEGV_MAPERR) {
        what = "access to unmapped address " + Hex(address);
      } else if (code == SEGV_ACCERR) {
        what = "access to address " + Hex(address) + " without permission";
      } else {
        what = "general protection fault: a non-canonical address or a misaligned vector access";
      }
      break;
    case SIGBUS:
      what = code == BUS_ADRALN ? "misaligned memory access at address " + Hex(address)
                                : "bus error at address " + Hex(address);
      break;
    case SIGILL:
      what = "illegal instruction at " + Hex(address);
      break;
    case SIGFPE:
      what = code == FPE_INTDIV   ? "integer division by zero"
             : code == FPE_INTOVF ? "integer overflow in a division"
                                  : "arithmetic exception";
      what += " at " + Hex(address);
      break;
    default:
      what = "signal " + std::to_string(signal);
  }
  if (pc != 0 && signal != SIGILL && signal != SIGFPE) what += ", at pc " + Hex(pc);
  return std::string(SignalName(signal)) + " (" + what + ")";
}

FaultGuard::FaultGuard() {
  InstallHandlers();
  stack_t current;
  // On an alternate stack already (a guard made inside a signal handler): keep it.
  if (sigaltstack(nullptr, &current) != 0 || (current.ss_flags & SS_ONSTACK) != 0) return;
  // Our own stack even where the thread has one: the handlers we pass signals on to run on it,
  // and the one a thread has may be small and taken from the heap (Python's faulthandler takes
  // 16 KiB with malloc), where a handler that needs more (tvm-ffi's backtrace printer) would
  // corrupt the heap. Ours is mapped, generous, and has an inaccessible page below it.
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t size = std::max<size_t>(256 * 1024, static_cast<size_t>(SIGSTKSZ) * 4);
  void* mapping = mmap(nullptr, size + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) return;  // then a stack overflow is not caught, everything else is
  mprotect(mapping, page, PROT_NONE);
  stack_t ours = {};
  ours.ss_sp = static_cast<char*>(mapping) + page;
  ours.ss_size = size;
  if (sigaltstack(&ours, nullptr) != 0) {
    munmap(mapping, size + page);
    return;
  }
  previous_stack_ = current;
  alt_stack_ = mapping;
  alt_stack_size_ = size + page;
}

FaultGuard::~FaultGuard() {
  if (alt_stack_ != nullptr) {
    stack_t current;
    size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    if (sigaltstack(nullptr, &current) == 0 &&
        current.ss_sp == static_cast<char*>(alt_stack_) + page) {
      sigaltstack(&previous_stack_, nullptr);  // the thread's own again, or none
      munmap(alt_stack_, alt_stack_size_);
    }
    // Otherwise the thread's alternate stack was replaced meanwhile, and ours is left in place
    // rather than pulled from under whoever still uses it.
  }
  UninstallHandlers();
}

std::optional<Fault> FaultGuard::Call(void (*fn)(void*), void* arg) {
  Frame frame;
  FrameRegistration registration(&frame);
  if (!registration.guarded()) {
    fn(arg);
    return std::nullopt;
  }
  // The handler jumps back here; `frame` lives in memory the handler wrote through a pointer.
  if (sigsetjmp(frame.jump, 1) != 0) return frame.fault;
  fn(arg);
  return std::nullopt;
}

}  // namespace orcjit
