// The library that links against link_order_base.cc (tests/test_link_order.py): it defines none of
// what it calls here, which must come from the base library before the process.
#include <tvm/ffi/function.h>
#include <unistd.h>

#include <cstdint>

#include "link_order.h"

namespace {
LoggedLifetime lifetime("user");
}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(call_helper, [](int64_t value) -> int64_t {
  return helper(static_cast<int>(value));
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(call_getpid, []() -> int64_t { return getpid(); });

// A C++ exception thrown in the base library, caught here by its type.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(catch_base_error, [](int64_t code) -> int64_t {
  try {
    throw_base_error(static_cast<int>(code));
  } catch (const BaseError& err) {
    return err.code + 1000;
  }
  return -1;
});

#ifdef USE_HIDDEN
// Hidden in the base library: not exported, so this does not link.
extern "C" int hidden_helper(int value);

TVM_FFI_DLL_EXPORT_TYPED_FUNC(call_hidden_helper, [](int64_t value) -> int64_t {
  return hidden_helper(static_cast<int>(value));
});
#endif
