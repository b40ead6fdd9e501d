// Uses symbols of the process: libc (getpid, strlen), libstdc++ (std::string)
// and libtvm_ffi (String). Loaded next to getpid_override.c, the library's own
// getpid must win over the process's.
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

using tvm::ffi::String;

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_getpid, []() -> int64_t { return getpid(); });

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_strlen, [](String text) -> int64_t {
  return static_cast<int64_t>(std::strlen(text.c_str()));
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_repeat, [](String text, int64_t times) -> String {
  std::string out;
  for (int64_t i = 0; i < times; ++i) out += std::string(text);
  return String(out);
});
