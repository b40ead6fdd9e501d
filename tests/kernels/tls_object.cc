// thread_local objects with constructors and destructors, and a log of when they ran.
//
// `tracked` (a global thread_local, constructed on a thread's first use through its TLS wrapper
// function) and a function-local thread_local each log their construction and destruction: one
// line per event to the file named by ORCJIT_TEST_EVENT_LOG (read on the first event), and in
// two counters. A destructor runs at its thread's exit, or, for threads still alive (the one
// that calls the library), when the library closes.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/function.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace {

std::mutex g_log_mutex;
char g_log_path[4096];
bool g_log_path_read = false;
std::atomic<int64_t> g_constructed{0};
std::atomic<int64_t> g_destroyed{0};

void Log(const char* event) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (!g_log_path_read) {
    g_log_path_read = true;
    const char* path = std::getenv("ORCJIT_TEST_EVENT_LOG");
    if (path != nullptr) std::strncpy(g_log_path, path, sizeof(g_log_path) - 1);
  }
  if (g_log_path[0] == '\0') return;
  if (FILE* file = std::fopen(g_log_path, "a")) {
    std::fprintf(file, "%s\n", event);
    std::fclose(file);
  }
}

struct Tracked {
  explicit Tracked(const char* name) : name(name) {
    ++g_constructed;
    Log(name);
  }
  ~Tracked() {
    ++g_destroyed;
    char event[64];
    std::snprintf(event, sizeof(event), "~%s", name);
    Log(event);
  }
  const char* name;
  int64_t uses = 0;
};

thread_local Tracked tracked("tracked");

Tracked& Local() {
  thread_local Tracked local("local");
  return local;
}

/// A thread_local object whose destructor writes through a null pointer.
struct Crashing {
  ~Crashing() {
    volatile int* nowhere = nullptr;
    *nowhere = 1;
  }
};

/// Constructs the calling thread's Crashing object, which crashes at the thread's exit, or when
/// the library closes.
int64_t ArmCrash() {
  thread_local Crashing crashing;
  return reinterpret_cast<intptr_t>(&crashing) != 0;
}

/// Uses both objects of the calling thread; returns how often `tracked` was used in it.
int64_t Touch() {
  ++Local().uses;
  return ++tracked.uses;
}

/// Touches both objects twice in each of `threads` threads; returns the sum of what the second
/// touches returned (2 per thread: each thread has its own objects).
int64_t TouchInThreads(int64_t threads) {
  std::vector<int64_t> seen(static_cast<size_t>(threads));
  std::vector<std::thread> started;
  for (int64_t i = 0; i < threads; ++i) {
    started.emplace_back([&seen, i] {
      Touch();
      seen[i] = Touch();
    });
  }
  for (std::thread& thread : started) thread.join();
  int64_t sum = 0;
  for (int64_t value : seen) sum += value;
  return sum;
}

}  // namespace

// tls_object_touch() -> uses of the calling thread's `tracked` so far, this one included.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_object_touch, Touch);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_object_threads, TouchInThreads);
// tls_object_arm_crash() -> 1; the calling thread's Crashing object now exists.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_object_arm_crash, ArmCrash);
// tls_object_counts() -> [objects constructed, objects destroyed] so far, in all threads.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_object_counts, []() {
  return tvm::ffi::Array<int64_t>({g_constructed.load(), g_destroyed.load()});
});
