// Kernels with the bugs that --orcjit-sanitize finds: a write one element past a tensor (address)
// and a signed integer overflow (undefined). Both run to completion without a sanitizer.
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/function.h>

#include <cstdint>

using tvm::ffi::TensorView;

void Vadd(TensorView a, TensorView b, TensorView out) {
  const float* x = static_cast<const float*>(a.data_ptr());
  const float* y = static_cast<const float*>(b.data_ptr());
  float* z = static_cast<float*>(out.data_ptr());
  for (int64_t i = 0; i <= out.numel(); ++i) z[i] = x[0] + y[0];  // one element too many
}

int32_t AddOne(int32_t x) {
  return x + 1;  // overflows for INT32_MAX
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(vadd, Vadd);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(add_one, [](int64_t x) -> int64_t {
  return AddOne(static_cast<int32_t>(x));
});
