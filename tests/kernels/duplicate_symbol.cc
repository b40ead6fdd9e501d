// Defines test_add and nothing else that math_ops.cc defines: added to a
// library that holds math_ops, it is a duplicate of exactly that one symbol.
#include <tvm/ffi/function.h>

#include <cstdint>

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_add, [](int64_t a, int64_t b) { return a - b; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_only_in_duplicate, []() -> int64_t { return 7; });
