// A guard that turns a hardware fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE) in code run under it into
// a return value, so that a library whose static constructor or destructor crashes can be
// reported as a Python exception instead of ending the pytest process.
//
// How: while at least one guard exists, the process's handlers for those four signals are
// replaced (sigaction, the previous handlers saved) by one that looks up whether the faulting
// thread is inside FaultGuard::Call. If it is, the handler jumps back into Call (siglongjmp), which
// returns the fault. Anything else is passed on unchanged to the handler that was installed
// before: a fault on another thread, or outside Call, or a signal that was sent (kill, raise)
// rather than raised by the processor. When the last guard goes away the previous handlers are put
// back (unless someone replaced ours in the meantime). A guard gives its thread its own alternate
// signal stack (256 KiB, mapped, with an inaccessible page below), so that a constructor that
// overflows the stack is caught too, and the handlers it passes signals on to have room: the
// thread's own alternate stack, if it has one, is put back afterwards.
// Guards nest (a guarded call that runs another guarded call) and may be used on several threads
// at once.
//
// The limits, honestly: a fault is recoverable only in the sense that the code that faulted is
// abandoned and never run again. The jump skips every frame between Call and the fault without
// running destructors or releasing locks, so whatever that code had half done stays half done:
// memory it wrote through a wild pointer stays corrupted, a lock it held (its own, or one inside
// the C library if it faulted in malloc) stays held, objects it registered elsewhere stay
// registered. Code that corrupts memory without faulting, loops forever, or calls abort() or
// exit() is not caught at all. Only the first kMaxGuardedThreads threads inside Call at the same
// time are guarded; further ones run their code unguarded.
#ifndef PYTEST_ORCJIT_FAULT_GUARD_H_
#define PYTEST_ORCJIT_FAULT_GUARD_H_

#include <signal.h>

#include <cstdint>
#include <optional>
#include <string>

namespace orcjit {

/// A hardware fault, as the kernel reported it.
struct Fault {
  int signal;         // SIGSEGV, SIGBUS, SIGILL or SIGFPE
  int code;           // si_code: why (SEGV_MAPERR, ILL_ILLOPC, FPE_INTDIV, ...)
  uintptr_t address;  // si_addr: the memory accessed, or the faulting instruction
  uintptr_t pc;       // the instruction that faulted (0 where it is not known)

  /// "SIGSEGV (invalid memory access: address 0x20 is not mapped)".
  std::string Describe() const;
};

/// Hands `signal` to `previous`, the handler installed before a handler that does not take it,
/// as if that handler had never been there. A default (or ignored) disposition is restored: a
/// fault then happens again when the instruction is retried and ends the process as it would
/// have; a signal that was sent is sent again, or dropped if it was ignored. For signal handlers
/// (the fault guard's, the crash handler's).
void PassOnSignal(const struct sigaction& previous, int signal, siginfo_t* info, void* context);

/// The name of `signal` ("SIGSEGV"), or "signal" for one neither handler catches.
/// Async-signal-safe.
const char* SignalName(int signal);

/// Upper bound on threads inside FaultGuard::Call at the same time; more run unguarded.
constexpr int kMaxGuardedThreads = 256;

/// While alive, installs the fault handlers (shared by all guards of the process) and an
/// alternate signal stack for the calling thread. Not movable: create it on
/// the thread that calls Call, and destroy it there.
class FaultGuard {
 public:
  FaultGuard();
  ~FaultGuard();
  FaultGuard(const FaultGuard&) = delete;
  FaultGuard& operator=(const FaultGuard&) = delete;

  /// Calls `fn(arg)`. Returns nothing if it returned, or the fault that ended it; a C++
  /// exception it throws passes through.
  std::optional<Fault> Call(void (*fn)(void*), void* arg);

 private:
  void* alt_stack_ = nullptr;  // the mapping of the alternate signal stack this guard installed
  size_t alt_stack_size_ = 0;
  stack_t previous_stack_ = {};  // the thread's alternate stack before, restored at the end
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_FAULT_GUARD_H_
