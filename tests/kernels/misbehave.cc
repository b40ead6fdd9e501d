// Kernels that crash on purpose, for the crash reports (tests/test_crash_reports.py): each names
// a fault, and a test checks that the report names the kernel, its file and line.
#include <tvm/ffi/function.h>

#include <csignal>
#include <cstdint>
#include <cstdlib>

extern "C" {

// Kept out of line so that each crash has a frame of its own below the export.
__attribute__((noinline)) int64_t NullWrite(int64_t value) {
  volatile int64_t* target = nullptr;
  *target = value;  // the faulting line
  return value;
}

__attribute__((noinline)) int64_t BusError(int64_t value) {
  std::raise(SIGBUS);  // the faulting line
  return value;
}

__attribute__((noinline)) int64_t Abort(int64_t value) {
  if (value >= 0) std::abort();  // the faulting line
  return value;
}

__attribute__((noinline)) int64_t Spin(int64_t value) {
  volatile int64_t counter = value;
  while (counter >= 0) counter = counter + 1;  // the hanging line
  return counter;
}

// Where NullWrite's faulting store is: the symbolizer's tests describe this address.
int64_t NullWriteAddress() { return reinterpret_cast<int64_t>(&NullWrite); }
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(null_write_address, NullWriteAddress);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(null_write, NullWrite);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(bus_error, BusError);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(abort_now, Abort);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(spin, Spin);
