/* Plain C exports through the TVM-FFI safe-call ABI: __tvm_ffi_<name>. */
#include <tvm/ffi/c_api.h>

static int64_t counter; /* per-library data, reached PC-relative from the code */

/* The library's __dso_handle: hidden, so reached PC-relative (R_X86_64_PC32) as well. */
extern void* __dso_handle __attribute__((visibility("hidden")));

int __tvm_ffi_c_add(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self;
  if (num_args != 2 || args[0].type_index != kTVMFFIInt || args[1].type_index != kTVMFFIInt) {
    TVMFFIErrorSetRaisedFromCStr("TypeError", "c_add expects two ints");
    return -1;
  }
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = args[0].v_int64 + args[1].v_int64;
  return 0;
}

/* Returns how many times it was called in this library, this call included. */
int __tvm_ffi_c_counter(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self;
  (void)args;
  (void)num_args;
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = ++counter;
  return 0;
}

/* Returns the address of the library's __dso_handle. */
int __tvm_ffi_c_dso_handle(void* self, const TVMFFIAny* args, int32_t num_args,
                           TVMFFIAny* result) {
  (void)self;
  (void)args;
  (void)num_args;
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = (int64_t)(intptr_t)&__dso_handle;
  return 0;
}
