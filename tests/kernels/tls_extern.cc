// A thread_local variable that another object of the library defines (tls_counter.cc), and one
// of the process: std::call_once keeps its callable in libstdc++'s thread-local
// `std::__once_callable`.
#include <tvm/ffi/function.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

extern thread_local long long tls_counter;

namespace {

std::once_flag g_once;
std::atomic<int64_t> g_once_calls{0};

/// Calls std::call_once on one flag from `threads` threads; returns how often it ran (1).
int64_t OnceFromThreads(int64_t threads) {
  std::vector<std::thread> started;
  for (int64_t i = 0; i < threads; ++i) {
    started.emplace_back([] { std::call_once(g_once, [] { ++g_once_calls; }); });
  }
  for (std::thread& thread : started) thread.join();
  int64_t here = 0;
  std::once_flag local;
  std::call_once(local, [&here] { ++here; });
  return g_once_calls.load() + here * 100;
}

}  // namespace

// tls_extern_bump() -> the calling thread's tls_counter (of tls_counter.cc) after one more bump.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_extern_bump, []() -> int64_t { return ++tls_counter; });
// tls_once(n) -> 101: the flag's function ran once for n threads, and once in the caller.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_once, OnceFromThreads);
