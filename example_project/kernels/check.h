// Input checks shared by the example kernels.
//
// Every kernel validates its tensors before touching their data, and a bad
// input becomes a Python exception that names the argument and says what was
// expected: TypeError for a wrong dtype, ValueError for a wrong rank, shape,
// device or layout. Only the headers of tvm-ffi are needed; the functions are
// inline so that every kernel source can include this file.
#ifndef EXAMPLE_KERNELS_CHECK_H_
#define EXAMPLE_KERNELS_CHECK_H_

#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/error.h>

#include <cstdint>
#include <sstream>
#include <string>

namespace example {

using tvm::ffi::TensorView;

// The dtypes the floating-point kernels accept.
inline bool IsFloat32(DLDataType t) { return t.code == kDLFloat && t.bits == 32 && t.lanes == 1; }
inline bool IsFloat64(DLDataType t) { return t.code == kDLFloat && t.bits == 64 && t.lanes == 1; }

// A shape written the way NumPy writes it: "(3, 4)", "(5,)".
inline std::string ShapeString(tvm::ffi::ShapeView shape) {
  std::ostringstream os;
  os << '(';
  for (size_t i = 0; i < shape.size(); ++i) {
    os << (i == 0 ? "" : ", ") << shape[i];
  }
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

inline bool SameShape(tvm::ffi::ShapeView a, tvm::ffi::ShapeView b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// A tensor on the CPU, dense and row-major, of float32 or float64.
inline void CheckFloatTensor(const char* name, const TensorView& t) {
  if (t.device().device_type != kDLCPU) {
    TVM_FFI_THROW(ValueError) << "argument '" << name << "' must be on the CPU, got device type "
                              << static_cast<int>(t.device().device_type);
  }
  if (!IsFloat32(t.dtype()) && !IsFloat64(t.dtype())) {
    TVM_FFI_THROW(TypeError) << "argument '" << name << "' must be float32 or float64, got "
                             << t.dtype();
  }
  if (!t.IsContiguous()) {
    TVM_FFI_THROW(ValueError) << "argument '" << name
                              << "' must be contiguous (row-major, no strides)";
  }
}

inline void CheckNdim(const char* name, const TensorView& t, int32_t ndim) {
  if (t.ndim() != ndim) {
    TVM_FFI_THROW(ValueError) << "argument '" << name << "' must be " << ndim
                              << "-D, got a tensor with ndim=" << t.ndim();
  }
}

// `other` must have the dtype and shape of `ref`.
inline void CheckSameAs(const char* name, const TensorView& other, const char* ref_name,
                        const TensorView& ref) {
  CheckFloatTensor(name, other);
  if (other.dtype() != ref.dtype()) {
    TVM_FFI_THROW(TypeError) << "argument '" << name << "' must have the dtype of '" << ref_name
                             << "' (" << ref.dtype() << "), got " << other.dtype();
  }
  if (!SameShape(other.shape(), ref.shape())) {
    TVM_FFI_THROW(ValueError) << "argument '" << name << "' must have the shape of '" << ref_name
                              << "' " << ShapeString(ref.shape()) << ", got "
                              << ShapeString(other.shape());
  }
}

}  // namespace example

#endif  // EXAMPLE_KERNELS_CHECK_H_
