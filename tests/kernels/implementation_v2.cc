// A second implementation of math_ops' test_add, with the same symbol names:
// loaded into another library it must not clash with math_ops, loaded into
// the same library it is a duplicate definition.
#include <tvm/ffi/function.h>

#include <cstdint>

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_add, [](int64_t a, int64_t b) { return a + b + 1000; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_implementation, []() -> int64_t { return 2; });
