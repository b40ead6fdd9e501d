/* Refers to the far_data.c symbol named by -DFIRST=... (and to the one named by -DSECOND=..., if
 * given) with R_X86_64_PC32 when compiled with -fpie; exports their sum as get_<FIRST>. */
#include <tvm/ffi/c_api.h>

extern int FIRST;
#ifdef SECOND
extern int SECOND;
#define VALUE (FIRST + SECOND)
#else
#define VALUE FIRST
#endif

#define EXPORT_NAME(symbol) __tvm_ffi_get_##symbol
#define EXPORT(symbol) EXPORT_NAME(symbol)

int EXPORT(FIRST)(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self;
  (void)args;
  (void)num_args;
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = VALUE;
  return 0;
}
