/* Kernels in plain C, written directly against the TVM-FFI safe-call ABI.
 *
 * A TVM-FFI export is a C function named __tvm_ffi_<name> that receives its
 * arguments as an array of TVMFFIAny, writes its return value into *result
 * and returns 0; on failure it sets an error with
 * TVMFFIErrorSetRaisedFromCStr(kind, message) and returns -1, and Python sees
 * an exception of that kind. No C++ and no tvm-ffi C++ headers are needed.
 *
 *   c_dot(x, y)  -> float: the dot product of two 1-D float64 tensors.
 *   c_calls()    -> int:   how many times c_calls ran in this library.
 */
#include <stdio.h>
#include <tvm/ffi/c_api.h>

/* Raises `kind` in Python with a formatted message and returns -1. */
#define RAISE(kind, ...)                                  \
  do {                                                    \
    char message_[256];                                   \
    snprintf(message_, sizeof(message_), __VA_ARGS__);    \
    TVMFFIErrorSetRaisedFromCStr(kind, message_);         \
    return -1;                                            \
  } while (0)

/* The DLTensor inside an argument, or NULL if the argument is not a tensor.
 * A Tensor object keeps its DLTensor right after the object header. */
static DLTensor* as_tensor(const TVMFFIAny* arg) {
  if (arg->type_index == kTVMFFIDLTensorPtr) return (DLTensor*)arg->v_ptr;
  if (arg->type_index == kTVMFFITensor) return (DLTensor*)((char*)arg->v_obj + sizeof(TVMFFIObject));
  return NULL;
}

/* Checks that `t` is a contiguous 1-D float64 tensor on the CPU; 0 if so. */
static int check_vector(const char* name, const DLTensor* t) {
  if (t == NULL) RAISE("TypeError", "argument '%s' must be a tensor", name);
  if (t->device.device_type != kDLCPU) {
    RAISE("ValueError", "argument '%s' must be on the CPU, got device type %d", name,
          (int)t->device.device_type);
  }
  if (t->dtype.code != kDLFloat || t->dtype.bits != 64 || t->dtype.lanes != 1) {
    RAISE("TypeError", "argument '%s' must be float64", name);
  }
  if (t->ndim != 1) RAISE("ValueError", "argument '%s' must be 1-D, got ndim=%d", name, t->ndim);
  if (t->strides != NULL && t->shape[0] > 1 && t->strides[0] != 1) {
    RAISE("ValueError", "argument '%s' must be contiguous, got stride %lld", name,
          (long long)t->strides[0]);
  }
  return 0;
}

int __tvm_ffi_c_dot(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self;
  if (num_args != 2) RAISE("TypeError", "c_dot(x, y) takes 2 arguments, got %d", (int)num_args);
  const DLTensor* x = as_tensor(&args[0]);
  const DLTensor* y = as_tensor(&args[1]);
  if (check_vector("x", x) != 0 || check_vector("y", y) != 0) return -1;
  if (x->shape[0] != y->shape[0]) {
    RAISE("ValueError", "arguments 'x' and 'y' must have the same length, got %lld and %lld",
          (long long)x->shape[0], (long long)y->shape[0]);
  }
  const double* xs = (const double*)((const char*)x->data + x->byte_offset);
  const double* ys = (const double*)((const char*)y->data + y->byte_offset);
  double total = 0.0;
  for (int64_t i = 0; i < x->shape[0]; ++i) total += xs[i] * ys[i];
  result->type_index = kTVMFFIFloat;
  result->zero_padding = 0;
  result->v_float64 = total;
  return 0;
}

/* Static state lives in the library: a fresh library starts again at zero. */
static int64_t calls = 0;

int __tvm_ffi_c_calls(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self;
  (void)args;
  if (num_args != 0) RAISE("TypeError", "c_calls() takes no arguments, got %d", (int)num_args);
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = ++calls;
  return 0;
}
