// Catches, in this object, an exception thrown by the copy of checked_half() that may live in the
// other object of the library.
#include <tvm/ffi/function.h>

#include "shared_inline.h"

static int half_or_minus_one(int value) {
  try {
    return checked_half(value);
  } catch (const std::invalid_argument&) {
    return -1;
  }
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(half_b, half_or_minus_one);
