// What a JIT library registers with tvm-ffi: global functions, and the reflection of object types.
//
// A TVM-FFI extension registers from its static constructors (TVM_FFI_STATIC_INIT_BLOCK): global
// functions with GlobalDef (TVMFFIFunctionSetGlobalFromMethodInfo) or Function::SetGlobal
// (TVMFFIFunctionSetGlobal), and its object types' fields, methods, metadata and attributes with
// ObjectDef (TVMFFITypeRegisterField, ...Method, ...Metadata, ...Attr). Every one of those points
// into the library's code. A shared library never unloads them; a JIT library closes, and its
// memory is unmapped, so the binding plugin binds the library's references to these six functions
// to the versions below, through the library's thunks (library_thunks.h), which know the library:
//   * Global functions belong to the library that registered them. When it closes they are
//     removed, or, where the library overrode a function registered before it, that function is
//     registered again; so a closed library leaves nothing callable behind, and the next library
//     may register the same names. The core keeps each overridden function alive for that.
//   * Object types cannot be unregistered from tvm-ffi, and live on in Python's type cache. The
//     library that registers a type's reflection first owns it: at close its memory stays mapped
//     (and counted in its jit_memory) for the rest of the process, so the type's getters, methods
//     and creator stay valid. A later library that registers the same type key again (the same
//     object loaded again) has its registrations checked against the first and skipped: its
//     objects, which share the type index, are read through the first library's getters. A field
//     whose layout differs, or a field the first registration lacks, fails the load with an error
//     that names the type: a type key names one type per process, and a changed type needs a new
//     process (forked isolation) or a new type key. Methods and attributes the first registration
//     lacks are registered, and then the later library's memory is kept too. (ObjectDef also
//     registers `__ffi_init__` through the global function "ffi._RegisterFFIInit", from inside
//     tvm-ffi: the library's TVMFFIFunctionGetGlobal hands it a version that skips it likewise.)
#ifndef PYTEST_ORCJIT_FFI_REGISTRATIONS_H_
#define PYTEST_ORCJIT_FFI_REGISTRATIONS_H_

#include <tvm/ffi/c_api.h>

#include <string>

namespace orcjit {

/// tvm-ffi's registration functions for the library whose `__dso_handle` is `dso`; each takes
/// the library's key after tvm-ffi's own arguments, and returns as tvm-ffi's does.
extern "C" int OrcjitFunctionSetGlobal(const TVMFFIByteArray* name, TVMFFIObjectHandle f,
                                       int override, void* dso);
extern "C" int OrcjitFunctionSetGlobalFromMethodInfo(const TVMFFIMethodInfo* info, int override,
                                                     void* dso);
extern "C" int OrcjitTypeRegisterField(int32_t type_index, const TVMFFIFieldInfo* info, void* dso);
extern "C" int OrcjitTypeRegisterMethod(int32_t type_index, const TVMFFIMethodInfo* info,
                                        void* dso);
extern "C" int OrcjitTypeRegisterMetadata(int32_t type_index, const TVMFFITypeMetadata* metadata,
                                          void* dso);
extern "C" int OrcjitTypeRegisterAttr(int32_t type_index, const TVMFFIByteArray* name,
                                      const TVMFFIAny* value, void* dso);

/// tvm-ffi's TVMFFIFunctionGetGlobal for the library `dso`: the same, except that
/// "ffi._RegisterFFIInit" comes back as a function that does nothing for a type whose reflection
/// an earlier library registered (ObjectDef calls it; see ffi_registrations.cc).
extern "C" int OrcjitFunctionGetGlobal(const TVMFFIByteArray* name, TVMFFIObjectHandle* out,
                                       void* dso);

/// The registrations of one library, from its creation to its close.
class FfiRegistrations {
 public:
  /// `dso` is the library's `__dso_handle`, `library` its name for messages.
  FfiRegistrations(void* dso, const std::string& library);
  ~FfiRegistrations() { Close(); }
  FfiRegistrations(const FfiRegistrations&) = delete;
  FfiRegistrations& operator=(const FfiRegistrations&) = delete;

  /// Removes the library's global functions, restoring those they overrode; to be called while
  /// its code is still mapped (their deleters are its code). Returns whether the library owns
  /// type reflection, whose memory must then stay mapped. Later calls do nothing.
  bool Close();

 private:
  void* const dso_;
  bool closed_ = false;
  bool owns_types_ = false;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_FFI_REGISTRATIONS_H_
