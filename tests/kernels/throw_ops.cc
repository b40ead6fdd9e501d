// Errors thrown from JIT code, and exceptions caught inside it.
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cstdint>
#include <stdexcept>

using tvm::ffi::String;

namespace {

// Not inlined, so that -O2 cannot fold the throw into the catch.
__attribute__((noinline)) int64_t ThrowIfPositive(int64_t n) {
  if (n > 0) throw std::out_of_range("positive");
  return n;
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_raise_value_error, [](String what) -> int64_t {
  TVM_FFI_THROW(ValueError) << "bad value: " << what;
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_raise_type_error, [](String what) -> int64_t {
  TVM_FFI_THROW(TypeError) << "bad type: " << what;
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_raise_std_exception, [](String what) -> int64_t {
  throw std::runtime_error("std error: " + std::string(what));
});

// Throws and catches inside JIT code: needs the object's unwind tables registered.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_catch_inside, [](int64_t n) -> int64_t {
  try {
    return ThrowIfPositive(n);
  } catch (const std::out_of_range&) {
    return -n;
  }
});
