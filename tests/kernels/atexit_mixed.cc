// atexit() from C++, interleaved with static objects whose destructors the compiler registers with
// __cxa_atexit: both belong to the library and run at its close, newest first. Events go to the
// file named by ORCJIT_TEST_EVENT_LOG, read by the first constructor.
//
// Construction: "a", then atexit(first), "b", then atexit(second); expected at close: "second",
// "~b", "first", "~a".
#include <tvm/ffi/function.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

char g_log_path[4096];

void Log(const char* event) {
  if (g_log_path[0] == '\0') {
    const char* path = std::getenv("ORCJIT_TEST_EVENT_LOG");
    if (path == nullptr) return;
    std::strncpy(g_log_path, path, sizeof(g_log_path) - 1);
  }
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

void First() { Log("first"); }
void Second() { Log("second"); }

Tracked g_a("a");
int g_first = std::atexit(First);
Tracked g_b("b");
int g_second = std::atexit(Second);

int64_t Registered() { return (g_first == 0) + (g_second == 0); }

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(registered, Registered);
