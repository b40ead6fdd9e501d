// A library: one isolated symbol namespace (a JITDylib) of a session, its arena of JIT memory and
// its static initialization state, plus the tvm_ffi.Module view that load_module returns.
//
// Objects are added incrementally. Adding checks the object (object_check.h) and defines its
// symbols in the library, which is where duplicate symbols are caught; it does not link. The
// first function asked for after an add links every object added so far (so objects may refer
// to each other whatever order they were added in), runs their static constructors, and only then
// returns the function. The first link also places the library: it reserves its arena, near the
// process when its objects need that (process_reach.h). Closing runs static destructors once,
// removes the JITDylib and unmaps the arena. Functions handed out keep the library object alive;
// calling one after an explicit close() raises instead of jumping into unmapped memory.
//
// Values a kernel returns or raises are tvm-ffi objects whose deleter is JIT code of the library:
// freeing one after the library closed would jump into unmapped memory, and pytest keeps failed
// tests' exceptions well past the test's teardown. So strings, bytes, arrays, maps and errors
// made by the library are copied into objects the core owns on their way out; tensors, functions
// and other objects made by JIT code are handed out as they are and must not outlive the library.
#ifndef PYTEST_ORCJIT_LIBRARY_H_
#define PYTEST_ORCJIT_LIBRARY_H_

#include <llvm/ADT/StringMap.h>
#include <llvm/ADT/StringSet.h>
#include <llvm/ExecutionEngine/Orc/Core.h>
#include <llvm/Support/MemoryBuffer.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "init_fini.h"
#include "memory.h"
#include "object_cache.h"
#include "process_reach.h"
#include "process_symbols.h"
#include "session.h"

namespace orcjit {

class LibraryObj : public tvm::ffi::Object {
 public:
  static constexpr bool _type_mutable = true;
  TVM_FFI_DECLARE_OBJECT_INFO_FINAL("orcjit.Library", LibraryObj, tvm::ffi::Object);

  /// Creates an empty library in `session`; an empty `name` becomes "lib<N>".
  LibraryObj(Session session, std::string name);
  ~LibraryObj();

  const std::string& name() const { return name_; }
  size_t jit_memory() const { return arena_ ? arena_->used_bytes() : 0; }
  bool closed() const { return closed_.load(std::memory_order_acquire); }
  /// Whether `addr` is in the library's JIT memory (its code or data).
  bool Owns(const void* addr) const { return arena_ && arena_->Contains(addr); }

  /// Adds the object file at `path`. Throws FileNotFoundError, or ValueError for anything that is
  /// not an x86-64 ELF relocatable object and for symbols the library already defines. A file the
  /// session has added before and that has not changed is not read again (object_cache.h).
  void AddFile(const std::string& path);
  /// Adds an object file held in memory (copied).
  void AddBytes(const tvm::ffi::Bytes& bytes);

  /// Links the objects added since the last link and runs their static constructors. Throws
  /// RuntimeError naming undefined symbols and other link failures, and when a constructor
  /// crashes; after that, everything but Close() raises that error again.
  void Link();

  /// Links the objects added so far as Link() does, but runs none of their code: their static
  /// constructors are dropped, and so, at close, are their destructors. The library is then of no
  /// further use (everything but Close() raises); what it leaves is the session's cache of its
  /// objects, read, checked and with their link graphs prepared (object_cache.h, graph_copy.h),
  /// which later libraries that add the same files start from. Throws as Link() does.
  void LinkWithoutRunning();

  /// The export `name` (symbol `__tvm_ffi_<name>`), after Link(); AttributeError if none.
  tvm::ffi::Function GetFunction(const std::string& name);
  /// The same, or nothing when no object exports `name`.
  std::optional<tvm::ffi::Function> FindFunction(const std::string& name);
  /// The address of a symbol the library defines, or nullptr (after Link()).
  void* FindSymbol(const std::string& symbol);

  /// Runs static destructors, removes the JITDylib and releases the arena. Idempotent. Returns
  /// why a static destructor crashed (the rest of the library's destructors did not run, and it
  /// closed all the same), or an empty string; only the Python close() raises it.
  std::string Close();

 private:
  friend class SessionObj;
  /// Close() without detaching from the session (the session is closing and holds its lock).
  std::string CloseDetached();
  /// Checks an object (object_check.h) and parses its symbol interface; ValueError if it is bad.
  llvm::orc::MaterializationUnit::Interface CheckAndParse(llvm::MemoryBufferRef buffer,
                                                          const std::string& name);
  /// Defines a checked object's symbols in the library; it is linked by the next Link(). Throws
  /// ValueError when the library is placed already and out of reach of what the object needs.
  void AddObject(std::unique_ptr<llvm::MemoryBuffer> buffer,
                 llvm::orc::MaterializationUnit::Interface interface,
                 const std::string& display_name, const PlacementNeeds& needs,
                 std::shared_ptr<const CachedObject> cached = nullptr);
  /// Reserves the library's arena, if it has none yet, from what the objects added so far need,
  /// and makes it the home of the library's graphs and `__dso_handle` (mutex_ held). Throws
  /// RuntimeError if it cannot be placed.
  void Place();
  /// Where linking will bind `symbol` (process_reach.h's ResolveFunction).
  uint64_t Resolve(llvm::StringRef symbol);
  void CheckOpen() const;
  void* LookupLinked(const std::string& symbol);
  /// Links the objects of `pending_` (mutex_ held); throws RuntimeError if any fails to link.
  void LinkPending();
  /// Raises RuntimeError for a failed link of this library, with ORC's reasons.
  [[noreturn]] void ThrowLinkFailure(llvm::Error err) const;

  Session session_;
  std::string name_;
  llvm::orc::JITDylib* dylib_ = nullptr;
  /// Both made when the library is placed, by its first link.
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Runtime> runtime_;
  /// What the objects added before that ask of the placement.
  LibraryPlacement placement_;
  std::mutex mutex_;
  std::atomic<bool> closed_{false};
  /// Why the library cannot be used, if a static constructor crashed (init_fini.h); empty if not.
  std::string failure_;
  /// One symbol of each object added but not linked yet, in the order they were added.
  std::vector<llvm::orc::SymbolStringPtr> pending_;
  /// Every symbol the library's objects define, and where each object came from.
  llvm::StringSet<> defined_;
  /// Where the symbols of linked objects are, filled by the binding plugin (process_symbols.h).
  LinkedSymbols linked_;
  std::vector<std::string> objects_;
  /// The cached objects whose graphs were copied into the library (their bytes are its content).
  std::vector<std::shared_ptr<const CachedObject>> linked_objects_;
  uint64_t next_object_ = 0;
  /// Functions resolved so far, by export name.
  llvm::StringMap<void*> functions_;
};

class Library : public tvm::ffi::ObjectRef {
 public:
  explicit Library(tvm::ffi::ObjectPtr<LibraryObj> library) : ObjectRef(std::move(library)) {}
  TVM_FFI_DEFINE_OBJECT_REF_METHODS_NOTNULLABLE(Library, tvm::ffi::ObjectRef, LibraryObj);
};

/// Adds the object files at `paths`, in that order, to a throwaway library of `session`, links
/// them without running any of their code and closes it (LibraryObj::LinkWithoutRunning): the
/// libraries that add the same files later find them read, checked and prepared. The fork server
/// does this before its first fork, so that no forked test pays for it. Throws as AddFile and
/// Link do.
void WarmObjects(Session session, const tvm::ffi::Array<tvm::ffi::String>& paths);

/// Creates a library from `objects` (each a path String or Bytes), links it, wires tvm-ffi's
/// context symbols, and returns it as a tvm_ffi.Module whose functions are the exports.
tvm::ffi::Module LoadModule(Session session, const tvm::ffi::Array<tvm::ffi::Any>& objects,
                            std::string name);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_LIBRARY_H_
