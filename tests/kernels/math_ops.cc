// Scalar math exports: ints, floats and bools in and out.
// The reference kernel of the suite: most tests load this one.
#include <tvm/ffi/function.h>

#include <cstdint>

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_add, [](int64_t a, int64_t b) { return a + b; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_mul, [](int64_t a, int64_t b) { return a * b; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_fma, [](double a, double b, double c) { return a * b + c; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_not, [](bool value) { return !value; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_implementation, []() -> int64_t { return 1; });
