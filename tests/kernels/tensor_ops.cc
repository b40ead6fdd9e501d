// Tensors passed as DLPack views (NumPy arrays go straight in).
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>

#include <cstdint>

using tvm::ffi::TensorView;

namespace {

void CheckFloat64(const TensorView& tensor) {
  DLDataType dtype = tensor.dtype();
  if (dtype.code != kDLFloat || dtype.bits != 64 || dtype.lanes != 1) {
    TVM_FFI_THROW(TypeError) << "expected a float64 tensor";
  }
}

}  // namespace

// Sum of a contiguous float64 tensor of any shape.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_tensor_sum, [](TensorView tensor) -> double {
  CheckFloat64(tensor);
  const double* data = static_cast<const double*>(tensor.data_ptr());
  double total = 0;
  for (int64_t i = 0; i < tensor.numel(); ++i) total += data[i];
  return total;
});

// Writes out[i] = a[i] + b[i] into a caller-provided float64 tensor.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_tensor_add, [](TensorView a, TensorView b, TensorView out) {
  CheckFloat64(a);
  CheckFloat64(b);
  CheckFloat64(out);
  if (a.numel() != b.numel() || a.numel() != out.numel()) {
    TVM_FFI_THROW(ValueError) << "shape mismatch";
  }
  const double* x = static_cast<const double*>(a.data_ptr());
  const double* y = static_cast<const double*>(b.data_ptr());
  double* z = static_cast<double*>(out.data_ptr());
  for (int64_t i = 0; i < out.numel(); ++i) z[i] = x[i] + y[i];
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_tensor_ndim, [](TensorView tensor) -> int64_t {
  return tensor.ndim();
});
