// References a function that nothing defines: linking must fail naming it.
#include <tvm/ffi/function.h>

#include <cstdint>

extern "C" int64_t orcjit_test_undefined_function(int64_t);

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_call_undefined, [](int64_t x) {
  return orcjit_test_undefined_function(x);
});
