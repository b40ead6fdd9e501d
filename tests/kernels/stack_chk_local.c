/* A reference to __stack_chk_fail_local, the hidden alias of __stack_chk_fail that 32-bit x86
 * compilers call from -fstack-protector code built with -fPIC; glibc defines it only in
 * libc_nonshared.a. No 64-bit compiler emits it, so this object names it itself. Compiled with
 * -fstack-protector-all, its functions also call __stack_chk_fail on a smashed stack. */
#include <stdint.h>
#include <string.h>
#include <tvm/ffi/c_api.h>

extern void __stack_chk_fail_local(void);
extern void __stack_chk_fail(void);

/* Whether __stack_chk_fail_local resolved to __stack_chk_fail. */
int __tvm_ffi_same_as_stack_chk_fail(void* self, const TVMFFIAny* args, int32_t num_args,
                                     TVMFFIAny* result) {
  char buffer[16];
  /* volatile: the compiler would assume that two functions it knows by name are distinct. */
  void (*volatile local)(void) = &__stack_chk_fail_local;
  void (*volatile global)(void) = &__stack_chk_fail;
  (void)self;
  (void)args;
  (void)num_args;
  memset(buffer, 0, sizeof(buffer));
  result->type_index = kTVMFFIBool;
  result->zero_padding = 0;
  result->v_int64 = local == global && buffer[0] == 0;
  return 0;
}
