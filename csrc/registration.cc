// Registers the native core with tvm-ffi: the object types (orcjit.ExecutionSession,
// orcjit.Library) and the global functions `orcjit.<snake_case>` that pytest_orcjit/_ffi_api.py
// binds. Nothing else in the core knows it is called from Python.
#include <tvm/ffi/cast.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/reflection/registry.h>
#include <tvm/ffi/string.h>

#include <string>

#include "library.h"
#include "module.h"
#include "session.h"
#include "shared_libraries.h"
#include "tls_runtime.h"

namespace orcjit {
namespace {

namespace ffi = tvm::ffi;

Session CreateSession() { return Session(ffi::make_object<SessionObj>()); }

/// The process-wide session: created on first use (thread-safe static initialization) and never
/// destroyed, so that it outlives every module handed out from it.
Session DefaultSession() {
  static auto* session = new Session(CreateSession());
  return *session;
}

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::ObjectDef<SessionObj>();
  refl::ObjectDef<LibraryObj>();
  refl::GlobalDef()
      .def("orcjit.session_create", CreateSession)
      .def("orcjit.default_session", DefaultSession)
      .def("orcjit.session_create_library",
           [](Session session, std::string name) {
             return Library(ffi::make_object<LibraryObj>(session, std::move(name)));
           })
      .def("orcjit.session_load_module",
           [](Session session, ffi::Array<ffi::Any> objects, std::string name) {
             return LoadModule(session, objects, std::move(name));
           })
      .def("orcjit.session_close", [](Session session) { session->Close(); })
      .def("orcjit.session_warm_objects",
           [](Session session, ffi::Array<ffi::String> paths) { WarmObjects(session, paths); })
      .def("orcjit.library_name", [](Library library) { return library->name(); })
      .def("orcjit.library_rename",
           [](Library library, std::string name) { library->Rename(std::move(name)); })
      .def("orcjit.library_link", [](Library library) { library->Link(); })
      .def("orcjit.library_jit_memory",
           [](Library library) { return static_cast<int64_t>(library->jit_memory()); })
      .def("orcjit.library_add_file",
           [](Library library, std::string path) { library->AddFile(path); })
      .def("orcjit.library_add_bytes",
           [](Library library, ffi::Bytes bytes) { library->AddBytes(bytes); })
      .def("orcjit.library_link_against",
           [](Library library, Library other) {
             library->LinkAgainst(ffi::GetObjectPtr<LibraryObj>(other.get()));
           })
      .def("orcjit.library_get_function",
           [](Library library, std::string name) { return library->GetFunction(name); })
      .def("orcjit.library_close",
           [](Library library) {
             std::string crashed = library->Close();
             if (!crashed.empty()) TVM_FFI_THROW(RuntimeError) << crashed;
           })
      .def("orcjit.load_shared_library", LoadSharedLibrary)
      .def("orcjit.thread_local_copies", ThreadLocalCopies)
      .def("orcjit.llvm_version", LLVMVersion)
      .def("orcjit.prepare_fork", PrepareFork);
}

}  // namespace
}  // namespace orcjit
