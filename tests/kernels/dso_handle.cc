// Exports the address of this object's __dso_handle. Compile with
// -DDSO_EXPORT=<name> to export it under another name (two objects in one
// library must see the same handle, two libraries different ones).
#include <tvm/ffi/function.h>

#include <cstdint>

#ifndef DSO_EXPORT
#define DSO_EXPORT test_dso_handle
#endif

// Named through an asm label: g++ declares __dso_handle itself, with C++ linkage.
extern "C" __attribute__((visibility("hidden"))) void* dso_handle_of_this_object __asm__(
    "__dso_handle");

TVM_FFI_DLL_EXPORT_TYPED_FUNC(DSO_EXPORT, []() -> int64_t {
  return static_cast<int64_t>(reinterpret_cast<intptr_t>(&dso_handle_of_this_object));
});
