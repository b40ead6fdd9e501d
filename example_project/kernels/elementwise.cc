// Element-wise kernels over float32 and float64 tensors of any shape.
//
// Each kernel writes into a caller-provided `out` of the same shape and dtype
// (destination passing, the usual style of TVM-FFI kernels), so NumPy arrays
// go straight in: `saxpy(2.0, x, y, out)` computes `out = 2.0 * x + y`.
// `out` may be one of the inputs, which makes the operation in place.
#include <tvm/ffi/function.h>

#include <algorithm>
#include <type_traits>

#include "check.h"

namespace {

using example::CheckFloatTensor;
using example::CheckSameAs;
using example::IsFloat32;
using tvm::ffi::TensorView;

// Calls `body(T* out, const T* in0, const T* in1, n)` with T the dtype of `out`.
template <typename Body>
void Dispatch(const TensorView& out, const TensorView& in0, const TensorView& in1, Body body) {
  if (IsFloat32(out.dtype())) {
    body(static_cast<float*>(out.data_ptr()), static_cast<const float*>(in0.data_ptr()),
         static_cast<const float*>(in1.data_ptr()), out.numel());
  } else {
    body(static_cast<double*>(out.data_ptr()), static_cast<const double*>(in0.data_ptr()),
         static_cast<const double*>(in1.data_ptr()), out.numel());
  }
}

void Saxpy(double a, TensorView x, TensorView y, TensorView out) {
  CheckFloatTensor("x", x);
  CheckSameAs("y", y, "x", x);
  CheckSameAs("out", out, "x", x);
  Dispatch(out, x, y, [a](auto* o, const auto* xs, const auto* ys, int64_t n) {
    using T = std::remove_pointer_t<decltype(o)>;
    const T alpha = static_cast<T>(a);
    for (int64_t i = 0; i < n; ++i) o[i] = alpha * xs[i] + ys[i];
  });
}

void Add(TensorView x, TensorView y, TensorView out) {
  CheckFloatTensor("x", x);
  CheckSameAs("y", y, "x", x);
  CheckSameAs("out", out, "x", x);
  Dispatch(out, x, y, [](auto* o, const auto* xs, const auto* ys, int64_t n) {
    for (int64_t i = 0; i < n; ++i) o[i] = xs[i] + ys[i];
  });
}

void Relu(TensorView x, TensorView out) {
  CheckFloatTensor("x", x);
  CheckSameAs("out", out, "x", x);
  Dispatch(out, x, x, [](auto* o, const auto* xs, const auto*, int64_t n) {
    using T = std::remove_pointer_t<decltype(o)>;
    for (int64_t i = 0; i < n; ++i) o[i] = std::max(xs[i], T(0));
  });
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(saxpy, Saxpy);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(add, Add);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(relu, Relu);
