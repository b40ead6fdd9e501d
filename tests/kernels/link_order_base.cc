// The library linked against (tests/test_link_order.py), with getpid_override.c: exports helper
// and a function that throws; hidden_helper has hidden visibility, so it is not exported.
#include <tvm/ffi/function.h>

#include <cstdint>

#include "link_order.h"

#ifndef HELPER_OFFSET
#define HELPER_OFFSET 1
#endif

namespace {
LoggedLifetime lifetime("base");
}  // namespace

extern "C" int helper(int value) { return value * 10 + HELPER_OFFSET; }

extern "C" __attribute__((visibility("hidden"))) int hidden_helper(int value) { return -value; }

extern "C" void throw_base_error(int code) { throw BaseError(code); }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(base_helper, [](int64_t value) -> int64_t {
  return helper(static_cast<int>(value)) + hidden_helper(0);
});
