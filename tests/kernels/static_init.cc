// Static constructors and destructors of every kind, and a log of when they ran.
//
// Each event is appended as one line to the file named by the environment
// variable ORCJIT_TEST_EVENT_LOG, read once when the first event happens (so
// destructors still find it after the variable is gone). Storage used by the
// log is constant-initialized: it is ready before any constructor runs.
//
// Expected order: ctor101, ctor102, global150 (init_priority), then the
// default-priority ones (ctor, global_a, global_b); at teardown the
// destructors in the opposite orders: dtor102 before dtor101, and the C++
// objects in reverse order of construction (~local, ~global_b, ~global_a,
// ~global150).
#include <tvm/ffi/function.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

char g_log_path[4096];
bool g_log_path_read = false;
int64_t g_events = 0;

void Log(const char* event) {
  ++g_events;
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
  explicit Tracked(const char* name) : name(name) { Log(name); }
  ~Tracked() {
    char event[64];
    std::snprintf(event, sizeof(event), "~%s", name);
    Log(event);
  }
  const char* name;
};

__attribute__((constructor(102))) void Ctor102() { Log("ctor102"); }
__attribute__((constructor(101))) void Ctor101() { Log("ctor101"); }
__attribute__((constructor)) void CtorDefault() { Log("ctor"); }
__attribute__((destructor(101))) void Dtor101() { Log("dtor101"); }
__attribute__((destructor(102))) void Dtor102() { Log("dtor102"); }

Tracked g_global_a("global_a");
Tracked g_global_b("global_b");
__attribute__((init_priority(150))) Tracked g_global_150("global150");

Tracked& Local() {
  static Tracked local("local");
  return local;
}

}  // namespace

// How many events (constructors and destructors) have run so far.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_event_count, []() -> int64_t { return g_events; });

// Constructs the function-local static on first use.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_touch_local, []() -> int64_t {
  return std::strlen(Local().name);
});
