// Static initialization and finalization of JIT libraries, without an ORC runtime.
//
// A shared library gets its static constructors and destructors run by the dynamic loader; a JIT
// library has no loader, and LLJIT's generic platform (which would do it) compiles an IR module per
// library, the largest cost of a default LLJIT load. Instead, an ObjectLinkingLayer plugin keeps
// the ELF initializer and finalizer sections of every linked graph alive (`.init_array`, `.ctors`,
// `.fini_array`, `.dtors`, each with or without a priority suffix), records where their function
// pointers ended up, and hands them to the library's Runtime once the graph is emitted. The
// library runs pending initializers before it returns a function, and finalizers when it closes.
//
// C++ destructors of static objects are not in `.fini_array`: constructors register them with
// `__cxa_atexit(fn, obj, &__dso_handle)`. Each library defines its own `__dso_handle` and resolves
// `__cxa_atexit` to CxaAtExit below, which files the registration with the library that owns that
// `__dso_handle`, so that destructors run when the library closes rather than at process exit. The
// library's atexit handlers are `__cxa_atexit` registrations too (libc_nonshared.h).
//
// Constructors and destructors run under a FaultGuard (fault_guard.h). A constructor that crashes
// (SIGSEGV, SIGBUS, SIGILL, SIGFPE) fails the load with an error instead of ending the process,
// and the library is abandoned: none of its other constructors, finalizers or `__cxa_atexit`
// registrations run. A destructor that crashes stops the library's other destructors; the library
// closes all the same. What the crashed code had already done (memory it wrote, locks it took)
// is not undone.
#ifndef PYTEST_ORCJIT_INIT_FINI_H_
#define PYTEST_ORCJIT_INIT_FINI_H_

#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "plugin.h"

namespace orcjit {

/// One library's initializers, finalizers and `__cxa_atexit` registrations.
class Runtime {
 public:
  /// A run of function pointers from one initializer or finalizer section of a linked graph.
  struct Section {
    const uintptr_t* entries;
    size_t count;
    uint32_t priority;   // 0..65535; sections without a suffix have 65535
    bool reverse;        // `.ctors`/`.dtors` list their functions in reverse order of execution
    uint64_t sequence;   // link order, to break ties between equal priorities
    std::string object;  // the object file (path or "<bytes>"), for messages
    std::string name;    // the section, for messages
  };

  /// `dso_handle` is the address of the library's `__dso_handle`; while the Runtime lives,
  /// `__cxa_atexit` calls that pass it are filed here.
  explicit Runtime(void* dso_handle);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// Adds the sections of a graph that was just emitted; its initializers become pending.
  void AddSections(std::vector<Section> inits, std::vector<Section> finis);

  /// Runs the initializers that became pending since the last call, by ascending priority, each
  /// under a FaultGuard. If one crashes, the rest are not run, the Runtime is abandoned (see
  /// above) and the error says which constructor of `library` crashed, and how.
  llvm::Error RunPendingInitializers(llvm::StringRef library);

  /// Runs finalizers (`.fini_array`/`.dtors`, by descending priority), then the `__cxa_atexit`
  /// registrations in reverse order, each exactly once and under a FaultGuard. If one crashes,
  /// the rest are not run and the error says which destructor of `library` crashed. Later calls,
  /// and calls after a constructor crashed, do nothing.
  llvm::Error RunFinalizers(llvm::StringRef library);

  void AddAtExit(void (*fn)(void*), void* arg);

  /// Drops the pending initializers and every finalizer without running any: for a library whose
  /// code is never to run (LibraryObj::LinkWithoutRunning), and after a constructor crashed. Later
  /// calls run nothing.
  void Abandon();

 private:
  void* const dso_handle_;
  std::mutex mutex_;
  uint64_t next_sequence_ = 0;
  std::vector<Section> pending_inits_;
  std::vector<Section> finis_;
  std::vector<std::pair<void (*)(void*), void*>> at_exit_;
  bool finalized_ = false;  // also set when a constructor crashed: nothing is run at close
};

/// The `__cxa_atexit` that JIT libraries link against: files the registration with the library
/// whose `__dso_handle` is `dso`, or passes it on to the C library for any other `dso`.
extern "C" int OrcjitCxaAtExit(void (*fn)(void*), void* arg, void* dso);

/// Whether `name` is an initializer or finalizer section that the plugin below records (it checks
/// the edges of their tables after fixups).
bool IsInitFiniSection(llvm::StringRef name);

/// The ObjectLinkingLayer plugin that preserves and records initializer and finalizer sections.
class InitFiniPlugin final : public ResourcelessPlugin {
 public:
  void RegisterLibrary(const llvm::orc::JITDylib* dylib, Runtime* runtime);
  void UnregisterLibrary(const llvm::orc::JITDylib* dylib);

  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
  llvm::Error notifyEmitted(llvm::orc::MaterializationResponsibility& mr) override;
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility& mr) override;

 private:
  struct Recorded {
    std::vector<Runtime::Section> inits, finis;
  };
  std::mutex mutex_;
  std::unordered_map<const llvm::orc::JITDylib*, Runtime*> runtimes_;
  std::unordered_map<llvm::orc::MaterializationResponsibility*, Recorded> recorded_;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_INIT_FINI_H_
