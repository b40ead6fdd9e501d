// A kernel configured at compile time: `scaled(x, out)` computes out = SCALE * x.
//
// SCALE has no default; the test that uses this file builds it through the
// marker, @pytest.mark.orcjit(sources=[...], defines={"SCALE": "3"}). The file
// lives outside kernels/ so that the project-wide orcjit_sources globs, which
// pass no -DSCALE, never compile it.
#include <tvm/ffi/function.h>

#include "../kernels/check.h"

#ifndef SCALE
#error "compile with -DSCALE=<number>"
#endif

namespace {

template <typename T>
void Scale(const T* xs, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(SCALE) * xs[i];
}

void Scaled(tvm::ffi::TensorView x, tvm::ffi::TensorView out) {
  example::CheckFloatTensor("x", x);
  example::CheckSameAs("out", out, "x", x);
  if (example::IsFloat32(x.dtype())) {
    Scale(static_cast<const float*>(x.data_ptr()), static_cast<float*>(out.data_ptr()), x.numel());
  } else {
    Scale(static_cast<const double*>(x.data_ptr()), static_cast<double*>(out.data_ptr()),
          x.numel());
  }
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(scaled, Scaled);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(scale_factor, []() -> double { return SCALE; });
