// A blocked (tiled) matrix multiply: `matmul(a, b, out)` computes out = a @ b.
//
// a is (M, K), b is (K, N) and out is (M, N), all float32 or all float64. The
// loops walk BLOCK x BLOCK tiles so that the rows of b being reused stay in
// cache; the innermost loop runs along a row of b and of out, which the
// compiler vectorizes. BLOCK defaults to 32 and can be set with -DBLOCK=<n>.
#include <tvm/ffi/function.h>

#include <algorithm>

#include "check.h"

#ifndef BLOCK
#define BLOCK 32
#endif

namespace {

using example::CheckFloatTensor;
using example::CheckNdim;
using example::IsFloat32;
using example::ShapeString;
using tvm::ffi::TensorView;

constexpr int64_t kBlock = BLOCK;
static_assert(kBlock > 0, "BLOCK must be positive");

template <typename T>
void BlockedMatmul(const T* a, const T* b, T* out, int64_t m, int64_t k, int64_t n) {
  std::fill(out, out + m * n, T(0));
  for (int64_t i0 = 0; i0 < m; i0 += kBlock) {
    const int64_t i1 = std::min(i0 + kBlock, m);
    for (int64_t p0 = 0; p0 < k; p0 += kBlock) {
      const int64_t p1 = std::min(p0 + kBlock, k);
      for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
        const int64_t j1 = std::min(j0 + kBlock, n);
        for (int64_t i = i0; i < i1; ++i) {
          for (int64_t p = p0; p < p1; ++p) {
            const T aip = a[i * k + p];
            for (int64_t j = j0; j < j1; ++j) out[i * n + j] += aip * b[p * n + j];
          }
        }
      }
    }
  }
}

void Matmul(TensorView a, TensorView b, TensorView out) {
  CheckFloatTensor("a", a);
  CheckFloatTensor("b", b);
  CheckFloatTensor("out", out);
  CheckNdim("a", a, 2);
  CheckNdim("b", b, 2);
  CheckNdim("out", out, 2);
  if (b.dtype() != a.dtype() || out.dtype() != a.dtype()) {
    TVM_FFI_THROW(TypeError) << "arguments 'a', 'b' and 'out' must share one dtype, got "
                             << a.dtype() << ", " << b.dtype() << " and " << out.dtype();
  }
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  if (b.size(0) != k) {
    TVM_FFI_THROW(ValueError) << "inner dimensions differ: 'a' is " << ShapeString(a.shape())
                              << " and 'b' is " << ShapeString(b.shape());
  }
  if (out.size(0) != m || out.size(1) != n) {
    TVM_FFI_THROW(ValueError) << "argument 'out' must have shape (" << m << ", " << n << "), got "
                              << ShapeString(out.shape());
  }
  if (out.data_ptr() == a.data_ptr() || out.data_ptr() == b.data_ptr()) {
    TVM_FFI_THROW(ValueError) << "argument 'out' must not be 'a' or 'b': it is zeroed first";
  }
  if (IsFloat32(a.dtype())) {
    BlockedMatmul(static_cast<const float*>(a.data_ptr()), static_cast<const float*>(b.data_ptr()),
                  static_cast<float*>(out.data_ptr()), m, k, n);
  } else {
    BlockedMatmul(static_cast<const double*>(a.data_ptr()),
                  static_cast<const double*>(b.data_ptr()), static_cast<double*>(out.data_ptr()),
                  m, k, n);
  }
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(matmul, Matmul);
