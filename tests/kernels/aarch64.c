/* Compiled for aarch64: loading it into an x86-64 session must be refused. */
int __tvm_ffi_test_add(void* self, const void* args, int num_args, void* result) {
  (void)self;
  (void)args;
  (void)num_args;
  (void)result;
  return 0;
}
