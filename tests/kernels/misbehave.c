// Kernels that crash or hang on purpose, for the crash reports (tests/test_crash_reports.py).
// Each fault is in a function of its own, kept out of line, on a line marked "faults here": the
// tests find that line and expect the report to name it.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <tvm/ffi/c_api.h>

__attribute__((noinline)) void NullWrite(int64_t value) {
  volatile int64_t* target = 0;
  *target = value;  // NullWrite faults here
}

// A real bus error: reading a mapped page past the end of an (empty) file.
__attribute__((noinline)) int BusError(volatile const char* page) {
  return page[0];  // BusError faults here
}

__attribute__((noinline)) void Abort(void) {
  abort();  // Abort faults here
}

__attribute__((noinline)) void Spin(void) {
  volatile int64_t counter = 0;
  for (;;) counter = counter + 1;  // Spin hangs here
}

static int ReturnInt(TVMFFIAny* result, int64_t value) {
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = value;
  return 0;
}

int __tvm_ffi_null_write(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
  NullWrite(1);
  return ReturnInt(result, 0);
}

int __tvm_ffi_bus_error(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
  FILE* file = tmpfile();
  if (file == NULL) return ReturnInt(result, -1);
  void* page = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fileno(file), 0);
  if (page == MAP_FAILED) return ReturnInt(result, -1);
  return ReturnInt(result, BusError(page));
}

int __tvm_ffi_abort_now(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
  Abort();
  return ReturnInt(result, 0);
}

int __tvm_ffi_spin(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
  Spin();
  return ReturnInt(result, 0);
}

// Where NullWrite starts: what the symbolizer's tests describe.
int __tvm_ffi_null_write_address(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* result) {
  return ReturnInt(result, (int64_t)(intptr_t)&NullWrite);
}
