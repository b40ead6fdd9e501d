// atexit, at_quick_exit and pthread_atfork for JIT libraries; see libc_nonshared.h.
#include "libc_nonshared.h"

#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "init_fini.h"

namespace orcjit {

namespace {

/// One at_quick_exit registration of a library; `fn` is null once the library closed.
struct QuickExitHandler {
  void (*fn)();
  void* dso;
};

/// One pthread_atfork registration of a library (any of the three may be null).
struct ForkHandlers {
  void (*prepare)();
  void (*parent)();
  void (*child)();
  void* dso;
};

/// The state below lives as long as the process: handlers may run at its very end.
struct Handlers {
  std::mutex mutex;
  /// One entry per call of the core's RunQuickExitHandler registered with glibc, in the same
  /// order: glibc runs those newest first, and each pops the newest entry.
  std::vector<QuickExitHandler> quick_exit;
  std::vector<ForkHandlers> fork;
  /// The fork handlers as they were when the fork began: the parent and child handlers run those,
  /// without the mutex (which another thread may have held when the child was forked).
  std::vector<ForkHandlers> forking;
};

Handlers& State() {
  static auto* handlers = new Handlers();
  return *handlers;
}

void RunQuickExitHandler() {
  Handlers& state = State();
  void (*fn)() = nullptr;
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    if (state.quick_exit.empty()) return;
    fn = state.quick_exit.back().fn;
    state.quick_exit.pop_back();
  }
  if (fn != nullptr) fn();
}

void RunPrepareHandlers() {
  Handlers& state = State();
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    state.forking = state.fork;
  }
  for (auto it = state.forking.rbegin(); it != state.forking.rend(); ++it) {
    if (it->prepare != nullptr) it->prepare();
  }
}

void RunParentHandlers() {
  for (const ForkHandlers& handlers : State().forking) {
    if (handlers.parent != nullptr) handlers.parent();
  }
}

void RunChildHandlers() {
  for (const ForkHandlers& handlers : State().forking) {
    if (handlers.child != nullptr) handlers.child();
  }
}

}  // namespace

extern "C" int OrcjitAtExit(void (*fn)(), void* dso) {
  // glibc calls atexit handlers with the argument of a __cxa_atexit registration, which they
  // ignore; so does the library's Runtime.
  return OrcjitCxaAtExit(reinterpret_cast<void (*)(void*)>(fn), nullptr, dso);
}

extern "C" int OrcjitAtQuickExit(void (*fn)(), void* dso) {
  Handlers& state = State();
  std::lock_guard<std::mutex> lock(state.mutex);
  // Registered under the mutex, so that the order of glibc's entries is the order of ours.
  if (at_quick_exit(RunQuickExitHandler) != 0) return -1;
  state.quick_exit.push_back({fn, dso});
  return 0;
}

extern "C" int OrcjitAtFork(void (*prepare)(), void (*parent)(), void (*child)(), void* dso) {
  // Outside the mutex: glibc holds its own lock while it runs fork handlers, RunPrepareHandlers
  // included.
  static const int registered =
      pthread_atfork(RunPrepareHandlers, RunParentHandlers, RunChildHandlers);
  if (registered != 0) return registered;
  Handlers& state = State();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.fork.push_back({prepare, parent, child, dso});
  return 0;
}

void DropLibraryHandlers(void* dso) {
  Handlers& state = State();
  std::lock_guard<std::mutex> lock(state.mutex);
  for (QuickExitHandler& handler : state.quick_exit) {
    if (handler.dso == dso) handler.fn = nullptr;
  }
  state.fork.erase(
      std::remove_if(state.fork.begin(), state.fork.end(),
                     [dso](const ForkHandlers& handlers) { return handlers.dso == dso; }),
      state.fork.end());
}

}  // namespace orcjit
