// A static constructor that crashes, in the way -DCRASH=<n> picks:
//   1 writes through a null pointer (SIGSEGV)    2 executes ud2 (SIGILL)
//   3 divides by zero (SIGFPE)                   4 recurses until the stack overflows (SIGSEGV)
//   5 raise(SIGSEGV): a signal sent, not a fault  6 a thread it starts writes through null
// or, with nothing crashing before the library closes, a static destructor that writes through
// null: 7 a destructor function (.fini_array), 8 a C++ global's destructor (__cxa_atexit).
//
// Around it, events are appended to the file named by ORCJIT_TEST_EVENT_LOG (as static_init.cc
// does): an earlier constructor logs "first" and constructs an object whose destructor would log
// "~first", a later constructor would log "after", and a destructor would log "dtor". After the
// crash only "first" may ever appear.
#include <pthread.h>
#include <tvm/ffi/function.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#ifndef CRASH
#define CRASH 1
#endif

namespace {

// Volatile, so that the compiler cannot see the null pointer or the zero and turn the crash into
// something else.
int* volatile g_null = nullptr;
volatile int g_one = 1;
volatile int g_zero = 0;
volatile int g_sink = 0;

void Log(const char* event) {
  const char* path = std::getenv("ORCJIT_TEST_EVENT_LOG");
  if (path == nullptr) return;
  if (FILE* file = std::fopen(path, "a")) {
    std::fprintf(file, "%s\n", event);
    std::fclose(file);
  }
}

struct Tracked {
  Tracked() { Log("first"); }
  ~Tracked() {
    Log("~first");
    if (CRASH == 8) *g_null = 1;
  }
};

int Recurse(int depth) {
  volatile char frame[4096];
  frame[0] = static_cast<char>(depth);
  return Recurse(depth + 1) + frame[0];
}

void* WriteThroughNull(void*) {
  *g_null = 1;
  return nullptr;
}

}  // namespace

__attribute__((init_priority(101))) Tracked g_first;

__attribute__((constructor(200))) void Crash() {
  switch (CRASH) {
    case 1:
      *g_null = 1;
      break;
    case 2:
      __builtin_trap();
    case 3:
      g_sink = g_one / g_zero;
      break;
    case 4:
      g_sink = Recurse(0);
      break;
    case 5:
      std::raise(SIGSEGV);
      break;
    case 6: {
      pthread_t thread;
      pthread_create(&thread, nullptr, WriteThroughNull, nullptr);
      pthread_join(thread, nullptr);
      break;
    }
  }
}

__attribute__((constructor(300))) void After() { Log("after"); }
__attribute__((destructor)) void Dtor() {
  Log("dtor");
  if (CRASH == 7) *g_null = 1;
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(never_called, []() -> int64_t { return 1; });
