// A library: one isolated symbol namespace (a JITDylib) of a session, its arena of JIT memory and
// its static initialization state. load_module's tvm_ffi.Module view of it is in module.h.
//
// Objects are added incrementally. Adding checks the object (object_check.h) and defines its
// symbols in the library, which is where duplicate symbols are caught; it does not link. The
// first function asked for after an add links every object added so far (so objects may refer
// to each other whatever order they were added in), runs their static constructors, and only then
// returns the function. The first link also places the library: it reserves its arena, near the
// process when its objects need that (process_reach.h). Closing runs the destructors of
// thread_local objects of the threads still alive and static destructors once, frees the library's
// thread-local storage (tls_runtime.h), removes the JITDylib and unmaps the arena. Functions handed
// out keep the library object alive; calling one after an explicit close() raises instead of
// jumping into unmapped memory. Global functions the library registered with tvm-ffi are removed
// at close; if it registered the reflection of an object type, which tvm-ffi keeps, its arena
// stays mapped instead (ffi_registrations.h). A library may link against other libraries of its
// session, which then resolve what it does not define (link_order.cc).
// The functions handed out call through a trampoline (function_call.h) that copies the values they
// return or raise out of the library's memory.
#ifndef PYTEST_ORCJIT_LIBRARY_H_
#define PYTEST_ORCJIT_LIBRARY_H_

#include <llvm/ADT/StringMap.h>
#include <llvm/ADT/StringSet.h>
#include <llvm/ExecutionEngine/Orc/Core.h>
#include <llvm/Support/MemoryBuffer.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ffi_registrations.h"
#include "init_fini.h"
#include "library_thunks.h"
#include "link_errors.h"
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
  /// Names the library in messages from now on (a library linked in the fork server takes the
  /// name of each forked test that uses it). Not while another thread uses the library.
  void Rename(std::string name) { name_ = std::move(name); }
  /// After close, what the library keeps for the type reflection it registered (see
  /// ffi_registrations.h), or 0.
  size_t jit_memory() const {
    if (arena_) return arena_->used_bytes();
    return kept_arena_ ? kept_arena_->used_bytes() : 0;
  }
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

  /// Makes the library resolve the symbols its objects use and do not define in `other`'s exported
  /// (default-visibility) definitions, after the libraries it already links against and before
  /// the process (link_order.cc). `other` is linked, and its constructors run, before this library
  /// links. ValueError for a library of another session, for itself or a cycle, and once this
  /// library has linked; RuntimeError if either is closed. Linking against a library twice does
  /// nothing.
  void LinkAgainst(tvm::ffi::ObjectPtr<LibraryObj> other);

  /// The library's `__tvm_ffi__library_bin` and how many bytes its object defines there (its
  /// symbol's size), with the object's name; no address when no object defines it. Links first.
  struct LibraryBin {
    const char* data = nullptr;
    uint64_t size = 0;
    std::string object;
  };
  LibraryBin FindLibraryBin();

  /// The export `name` (symbol `__tvm_ffi_<name>`), after Link(); AttributeError if none.
  tvm::ffi::Function GetFunction(const std::string& name);
  /// The same, or nothing when no object exports `name`.
  std::optional<tvm::ffi::Function> FindFunction(const std::string& name);
  /// The address of a symbol the library defines, or nullptr (after Link()).
  void* FindSymbol(const std::string& symbol);

  /// Runs static destructors, removes the JITDylib and releases the arena. Idempotent. Returns
  /// why a static destructor crashed (the rest of the library's destructors did not run, and it
  /// closed all the same), or an empty string; only the Python close() raises it. RuntimeError,
  /// and nothing closed, while an open library links against this one.
  std::string Close();

  /// Closes `libraries`, each after the open libraries that link against it (the session's close).
  static void CloseInLinkOrder(const std::vector<tvm::ffi::ObjectPtr<LibraryObj>>& libraries);

 private:
  friend class SessionObj;
  /// Close() without detaching from the session (the session is closing and holds its lock).
  std::string CloseDetached();
  /// Checks an object (object_check.h), lays out its thread-local storage (tls_layout.h: then
  /// `buffer` becomes a copy) and parses its symbol interface; ValueError if it is bad.
  llvm::orc::MaterializationUnit::Interface CheckAndParse(
      std::unique_ptr<llvm::MemoryBuffer>& buffer, const std::string& name);
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
  /// Links the libraries this one links against and collects their exported symbols into
  /// `imported_`, which the binding plugin binds before the process's (mutex_ held).
  void PrepareImports();
  /// Marks the library as closing; RuntimeError naming an open library linked against it.
  void StartClosing();
  /// Forgets the libraries it links against (after it closed), which may close them.
  void UnlinkAll();
  /// Raises RuntimeError for a failed link of this library, with ORC's reasons.
  [[noreturn]] void ThrowLinkFailure(llvm::Error err) const;

  Session session_;
  std::string name_;
  llvm::orc::JITDylib* dylib_ = nullptr;
  /// Both made when the library is placed, by its first link.
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Runtime> runtime_;
  std::unique_ptr<LibraryThunks> thunks_;
  std::unique_ptr<FfiRegistrations> registrations_;
  /// The arena, kept mapped after close because tvm-ffi points into it; null if it was not.
  const Arena* kept_arena_ = nullptr;
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
  /// The symbols the library's objects define with default visibility: what LinkAgainst offers.
  llvm::StringSet<> exported_;
  /// Where the symbols of linked objects are, filled by the binding plugin (process_symbols.h).
  LinkedSymbols linked_;
  /// The exported symbols of the libraries it links against, first one first (PrepareImports).
  LinkedSymbols imported_;
  /// The libraries it links against, in order, and the libraries that link against it; guarded by
  /// the link-order mutex (link_order.cc), as is `closing_`.
  std::vector<tvm::ffi::ObjectPtr<LibraryObj>> linked_against_;
  std::vector<LibraryObj*> dependents_;
  bool closing_ = false;
  /// Whether any object was linked: link order cannot change after that.
  bool linked_any_ = false;
  /// The size of the `__tvm_ffi__library_bin` an object defines (library_bin.h), and its name.
  uint64_t library_bin_size_ = 0;
  std::string library_bin_object_;
  std::vector<std::string> objects_;
  /// The cached objects whose graphs were copied into the library (their bytes are its content).
  std::vector<std::shared_ptr<const CachedObject>> linked_objects_;
  /// The bytes of each object added from a file, by its path, which link errors search for the
  /// objects that reference an undefined symbol (shared with the session's cache of the files).
  ObjectFiles files_;
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

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_LIBRARY_H_
