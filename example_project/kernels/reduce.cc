// Reductions: the sum of a tensor and a numerically stable softmax.
//
// `tensor_sum(x)` adds every element of a float32 or float64 tensor in double
// precision and returns a Python float. `softmax(x, out)` normalizes along the
// last axis; it subtracts each row's maximum before exponentiating, so inputs
// such as 1000.0 give the right answer instead of inf / inf = nan.
#include <tvm/ffi/function.h>

#include <algorithm>
#include <cmath>

#include "check.h"

namespace {

using example::CheckFloatTensor;
using example::CheckSameAs;
using example::IsFloat32;
using tvm::ffi::TensorView;

template <typename T>
double SumOf(const T* xs, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += static_cast<double>(xs[i]);
  return total;
}

double TensorSum(TensorView x) {
  CheckFloatTensor("x", x);
  if (IsFloat32(x.dtype())) return SumOf(static_cast<const float*>(x.data_ptr()), x.numel());
  return SumOf(static_cast<const double*>(x.data_ptr()), x.numel());
}

template <typename T>
void SoftmaxRows(const T* xs, T* out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = xs + r * cols;
    T* dst = out + r * cols;
    const T max = *std::max_element(row, row + cols);
    T total = 0;
    for (int64_t c = 0; c < cols; ++c) {
      dst[c] = std::exp(row[c] - max);
      total += dst[c];
    }
    for (int64_t c = 0; c < cols; ++c) dst[c] /= total;
  }
}

void Softmax(TensorView x, TensorView out) {
  CheckFloatTensor("x", x);
  CheckSameAs("out", out, "x", x);
  if (x.ndim() < 1) {
    TVM_FFI_THROW(ValueError) << "argument 'x' must have at least one axis, got a 0-D tensor";
  }
  const int64_t cols = x.size(-1);
  if (cols == 0) {
    TVM_FFI_THROW(ValueError) << "argument 'x' has an empty last axis; softmax needs one element";
  }
  const int64_t rows = x.numel() / cols;
  if (IsFloat32(x.dtype())) {
    SoftmaxRows(static_cast<const float*>(x.data_ptr()), static_cast<float*>(out.data_ptr()), rows,
                cols);
  } else {
    SoftmaxRows(static_cast<const double*>(x.data_ptr()), static_cast<double*>(out.data_ptr()),
                rows, cols);
  }
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(tensor_sum, TensorSum);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(softmax, Softmax);
