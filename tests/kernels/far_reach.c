/* Refers to far_data.c's symbols with R_X86_64_PC32 when compiled with -fpie: with -DREACH_LOW,
 * to reach_low (export reach_low), with -DREACH_HIGH, to reach_high (export reach_high), with
 * both, to both (export reach_both). */
#include <tvm/ffi/c_api.h>

extern int reach_low;
extern int reach_high;

#if defined(REACH_LOW) && defined(REACH_HIGH)
#define EXPORT __tvm_ffi_reach_both
#define VALUE (reach_low + reach_high)
#elif defined(REACH_LOW)
#define EXPORT __tvm_ffi_reach_low
#define VALUE reach_low
#else
#define EXPORT __tvm_ffi_reach_high
#define VALUE reach_high
#endif

int EXPORT(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self;
  (void)args;
  (void)num_args;
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = VALUE;
  return 0;
}
