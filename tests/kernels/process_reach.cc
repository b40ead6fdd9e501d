// Refers to libstdc++'s data straight, with R_X86_64_PC32 relocations, when compiled with g++ -fpie
// (or clang++ -fpie -fdirect-access-external-data): throwing std::bad_alloc takes the address of
// its vtable and typeinfo (`_ZTVSt9bad_alloc`, `_ZTISt9bad_alloc`), and the tvm-ffi headers use
// `std::cerr`. Such a library must lie within 2 GiB of libstdc++.
#include <tvm/ffi/function.h>

#include <cstdint>
#include <new>
#include <typeinfo>

namespace {

/// `value + 1`, computed by throwing and catching std::bad_alloc.
int64_t ThrowAndCatch(int64_t value) {
  try {
    throw std::bad_alloc();
  } catch (const std::bad_alloc& err) {
    return value + (typeid(err) == typeid(std::bad_alloc) ? 1 : 100);
  }
  return -1;
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(reach_process, ThrowAndCatch);
