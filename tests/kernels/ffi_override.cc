// Overrides a global function that something else registered first ("orcjit_test.greet", which the
// test registers from Python), through Function::SetGlobal (TVMFFIFunctionSetGlobal): while the
// library is open the name calls this library's function, and after it closes the earlier one.
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <string>

namespace {

tvm::ffi::String Greet(tvm::ffi::String name) {
  return "hello from the library, " + std::string(name);
}

struct Register {
  Register() {
    tvm::ffi::Function::SetGlobal("orcjit_test.greet", tvm::ffi::Function::FromTyped(Greet),
                                  /*override=*/true);
  }
} g_register;

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(greet, Greet);
