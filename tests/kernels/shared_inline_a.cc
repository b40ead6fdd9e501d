#include <tvm/ffi/function.h>

#include "shared_inline.h"

TVM_FFI_DLL_EXPORT_TYPED_FUNC(half_a, [](int value) { return checked_half(value); });
