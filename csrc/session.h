// The execution session: one LLJIT, configured once, that holds the session's libraries.
//
// The JIT is built through LLJITBuilder with three choices that matter:
//   * no platform (setUpInactivePlatform): LLJIT's default generic platform compiles an IR module
//     per library to run initializers, the largest cost of a default load; init_fini.h does that
//     job from the linked sections instead, with no code generation on the load path;
//   * an ObjectLinkingLayer (JITLink) whose memory manager places each library in its own arena
//     (memory.h), with the eh-frame plugin (C++ exceptions unwind through JIT frames), the
//     initializer plugin, the thread-local storage plugin (tls_plugin.h), the section-bounds
//     plugin (section_bounds.h: sections reached only through __start_/__stop_) and the process
//     binding plugin (process_symbols.h), plus the debugger and profiler plugins
//     (debug_registration.h, perf_map.h); the binding plugin binds a graph's references to the
//     process and to its library's `__dso_handle` before ORC's lookup;
//   * a process-symbols JITDylib whose generator resolves names against the libraries the process
//     actually uses (libtvm_ffi, libstdc++, libgcc_s, libc...), including ones loaded RTLD_LOCAL;
//     it and the binding plugin share one cache, so each name costs one dlsym per session.
// No compile threads are created: the session is safe to use in a process that forks afterwards.
#ifndef PYTEST_ORCJIT_SESSION_H_
#define PYTEST_ORCJIT_SESSION_H_

#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <tvm/ffi/object.h>
#include <tvm/ffi/string.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "debug_registration.h"
#include "graph_copy.h"
#include "init_fini.h"
#include "memory.h"
#include "object_cache.h"
#include "process_symbols.h"
#include "tls_plugin.h"

namespace orcjit {

class LibraryObj;
class Library;

class SessionObj : public tvm::ffi::Object {
 public:
  static constexpr bool _type_mutable = true;
  TVM_FFI_DECLARE_OBJECT_INFO_FINAL("orcjit.ExecutionSession", SessionObj, tvm::ffi::Object);

  /// Builds the JIT; throws RuntimeError when LLVM cannot target the host.
  SessionObj();
  ~SessionObj();

  /// Closes every library that is still open (their destructors run), then the JIT. Later calls
  /// do nothing; creating a library in a closed session is an error.
  void Close();

  /// The JIT, or a RuntimeError naming the closed session. Callers hold `mutex()` shared while
  /// they use it (see LibraryObj), so that Close cannot pull it away mid-operation.
  llvm::orc::LLJIT& jit();
  ArenaMemoryManager& memory() { return *memory_; }
  InitFiniPlugin& init_fini() { return *init_fini_; }
  ProcessBindingPlugin& binding() { return *binding_; }
  GraphPreparationPlugin& preparation() { return *preparation_; }
  ThreadLocalPlugin& thread_locals() { return *thread_locals_; }
  DebugRegistrationPlugin& debug_objects() { return *debug_objects_; }
  llvm::orc::JITDylib& process_symbols() { return *process_symbols_; }
  /// The addresses of the process's symbols, as the binding plugin finds them (process_symbols.h).
  ProcessSymbols& process_symbol_cache() { return process_symbol_cache_; }
  /// Object files the session's libraries have added, read and checked once (object_cache.h).
  ObjectCache& objects() { return objects_; }

  /// Library bookkeeping, used by LibraryObj: open libraries are closed by Close().
  void Attach(LibraryObj* library);
  void Detach(LibraryObj* library);
  uint64_t NextLibraryId() { return next_library_id_.fetch_add(1); }

 private:
  ProcessSymbols process_symbol_cache_;  // used by the JIT, so destroyed after it (emptied before)
  std::unique_ptr<llvm::orc::LLJIT> jit_;
  ArenaMemoryManager* memory_ = nullptr;              // owned by the object linking layer
  InitFiniPlugin* init_fini_ = nullptr;               // owned by the object linking layer
  ProcessBindingPlugin* binding_ = nullptr;           // owned by the object linking layer
  GraphPreparationPlugin* preparation_ = nullptr;     // owned by the object linking layer
  ThreadLocalPlugin* thread_locals_ = nullptr;        // owned by the object linking layer
  DebugRegistrationPlugin* debug_objects_ = nullptr;  // owned by the object linking layer
  llvm::orc::JITDylib* process_symbols_ = nullptr;
  std::mutex mutex_;
  std::unordered_set<LibraryObj*> libraries_;
  std::atomic<uint64_t> next_library_id_{0};
  bool closed_ = false;
  ObjectCache objects_;
};

class Session : public tvm::ffi::ObjectRef {
 public:
  explicit Session(tvm::ffi::ObjectPtr<SessionObj> session) : ObjectRef(std::move(session)) {}
  TVM_FFI_DEFINE_OBJECT_REF_METHODS_NOTNULLABLE(Session, tvm::ffi::ObjectRef, SessionObj);
};

/// One line per problem in `err`: "undefined symbol 'NAME'" for each symbol ORC could not find,
/// the message of anything else. A bare "failed to materialize" gives no line: its reason is
/// reported separately (TakeReportedErrors).
std::vector<std::string> DescribeErrors(llvm::Error err);

/// Errors that ORC reported (rather than returned) for graphs linked into `dylib` since the last
/// call, oldest first: a failed link returns a bare "failed to materialize", and the reason is
/// reported separately, possibly on another thread that continued the link.
std::vector<std::string> TakeReportedErrors(const llvm::orc::JITDylib* dylib);

/// Builds, in this process, the state that every forked child would otherwise build again on its
/// first error: tvm-ffi's backtrace symbolizer reads the debug information of every loaded library
/// the first time an error is made, which can take half a second and keeps tens of MB.
void PrepareFork();

/// The version of the LLVM the core was built with, e.g. "22.1.0".
std::string LLVMVersion();

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_SESSION_H_
