// One part of a three-object module; compile with -DPART=1, 2 and 3.
//
// Each part has a static constructor that marks it ready, and calls into the
// next part (1 -> 2 -> 3 -> 1), so the three objects only link together.
#include <tvm/ffi/function.h>

#include <cstdint>

#ifndef PART
#error "compile with -DPART=1, 2 or 3"
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#if PART == 3
#define NEXT_PART 1
#elif PART == 2
#define NEXT_PART 3
#else
#define NEXT_PART 2
#endif

extern "C" int64_t CAT(orcjit_part_value_, NEXT_PART)();

namespace {

int64_t g_ready = 0;

struct MarkReady {
  MarkReady() { g_ready = PART; }
};
MarkReady g_mark_ready;

}  // namespace

extern "C" int64_t CAT(orcjit_part_value_, PART)() { return g_ready; }

// 10 * this part's number + the next part's, both set by static constructors.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(CAT(test_part_, PART), []() -> int64_t {
  return 10 * g_ready + CAT(orcjit_part_value_, NEXT_PART)();
});
