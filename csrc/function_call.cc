// Calling a function a library handed out: the trampoline that checks the library is open and
// copies the values returned or raised out of its memory. See function_call.h.
#include "function_call.h"

#include <tvm/ffi/c_api.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/error.h>

#include <string>

#include "library.h"

namespace orcjit {

namespace {

/// What a handed-out function calls through: it checks that the library is still open, so that a
/// call after close() raises instead of jumping into unmapped memory.
struct FunctionHandle {
  LibraryObj* library;  // one reference held
  TVMFFISafeCallType call;
  std::string name;
};

bool IsObject(const TVMFFIAny& value) {
  return value.type_index >= tvm::ffi::TypeIndex::kTVMFFIStaticObjectBegin;
}

/// Whether `object` was allocated by JIT code of `library` (its deleter is there).
bool MadeBy(const LibraryObj& library, const TVMFFIObject* object) {
  return library.Owns(reinterpret_cast<const void*>(object->deleter));
}

/// A copy of `value` that the core owns, for the value types that can be copied; see
/// function_call.h.
tvm::ffi::Any Rehome(const LibraryObj& library, const tvm::ffi::Any& value) {
  const auto& raw = reinterpret_cast<const TVMFFIAny&>(value);
  if (!IsObject(raw) || !MadeBy(library, raw.v_obj)) return value;
  switch (raw.type_index) {
    case tvm::ffi::TypeIndex::kTVMFFIStr:
      return tvm::ffi::String(std::string(value.cast<tvm::ffi::String>()));
    case tvm::ffi::TypeIndex::kTVMFFIBytes: {
      auto bytes = value.cast<tvm::ffi::Bytes>();
      return tvm::ffi::Bytes(std::string(bytes.data(), bytes.size()));
    }
    case tvm::ffi::TypeIndex::kTVMFFIArray: {
      tvm::ffi::Array<tvm::ffi::Any> copy;
      for (const tvm::ffi::Any& item : value.cast<tvm::ffi::Array<tvm::ffi::Any>>()) {
        copy.push_back(Rehome(library, item));
      }
      return copy;
    }
    case tvm::ffi::TypeIndex::kTVMFFIMap: {
      tvm::ffi::Map<tvm::ffi::Any, tvm::ffi::Any> copy;
      for (const auto& [key, item] : value.cast<tvm::ffi::Map<tvm::ffi::Any, tvm::ffi::Any>>()) {
        copy.Set(Rehome(library, key), Rehome(library, item));
      }
      return copy;
    }
    default:
      return value;
  }
}

/// Replaces a raised error made by the library with a copy the core owns.
void RehomeRaisedError(const LibraryObj& library) {
  TVMFFIObjectHandle raised = nullptr;
  TVMFFIErrorMoveFromRaised(&raised);
  auto* object = static_cast<TVMFFIObject*>(raised);
  if (object != nullptr && object->type_index == tvm::ffi::TypeIndex::kTVMFFIError &&
      MadeBy(library, object)) {
    const auto* cell = reinterpret_cast<const TVMFFIErrorCell*>(object + 1);
    tvm::ffi::Error copy(std::string(cell->kind.data, cell->kind.size),
                         std::string(cell->message.data, cell->message.size), &cell->backtrace);
    TVMFFIErrorSetRaised(const_cast<tvm::ffi::ErrorObj*>(copy.get()));
  } else {
    TVMFFIErrorSetRaised(raised);
  }
  if (raised != nullptr) TVMFFIObjectDecRef(raised);
}

int CallFunction(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  auto* handle = static_cast<FunctionHandle*>(self);
  const LibraryObj& library = *handle->library;
  if (library.closed()) {
    std::string message = "function '" + handle->name + "' of library '" + library.name() +
                          "' was called after the library was closed; keep the library open "
                          "while its functions are in use";
    TVMFFIErrorSetRaisedFromCStr("RuntimeError", message.c_str());
    return -1;
  }
  int status = handle->call(nullptr, args, num_args, result);
  if (status != 0) {
    RehomeRaisedError(library);
  } else if (IsObject(*result) && MadeBy(library, result->v_obj)) {
    try {
      tvm::ffi::Any value = tvm::ffi::details::AnyUnsafe::MoveTVMFFIAnyToAny(result);
      *result = tvm::ffi::details::AnyUnsafe::MoveAnyToTVMFFIAny(Rehome(library, value));
    } catch (const tvm::ffi::Error& err) {
      TVMFFIErrorSetRaised(const_cast<tvm::ffi::ErrorObj*>(err.get()));
      return -1;
    }
  }
  return status;
}

void DeleteFunctionHandle(void* self) {
  auto* handle = static_cast<FunctionHandle*>(self);
  TVMFFIObjectDecRef(handle->library);
  delete handle;
}

}  // namespace

tvm::ffi::Function MakeLibraryFunction(LibraryObj* library, void* address,
                                       const std::string& name) {
  TVMFFIObjectIncRef(library);
  auto* handle = new FunctionHandle{library, reinterpret_cast<TVMFFISafeCallType>(address), name};
  return tvm::ffi::Function::FromExternC(handle, CallFunction, DeleteFunctionHandle);
}

}  // namespace orcjit
