// Thread-local storage for JIT code, at run time: the `__tls_get_addr` and `__cxa_thread_atexit`
// that JIT libraries link against, and the per-thread copies of their TLS images.
//
// The dynamic loader gives every thread a block of each shared library's TLS; JIT libraries have
// no loader, so the core does that job. Each linked object with TLS sections is one image
// (tls_layout.h lays it out, tls_plugin.h registers it): its size, alignment and the template of
// its initial values (the object's TLS sections, in the library's JIT memory, never handed out).
// An image has a key; the 16-byte TLS entry that code passes to `__tls_get_addr` holds
// {key, offset of the variable in the image}. OrcjitTlsGetAddr finds the calling thread's copy of
// the image in a thread-local table (no lock), and allocates it on the thread's first access: a
// block with the image's alignment, the template copied into it, zeroes elsewhere. Entries whose
// first word is not one of these keys are glibc's {module id, offset} (thread-local variables of
// the process, such as libstdc++'s `std::__once_callable`) and are passed on to glibc.
//
// C++ `thread_local` objects with destructors register them with `__cxa_thread_atexit(fn, obj,
// &__dso_handle)`; OrcjitCxaThreadAtExit files them with the calling thread and the library that
// owns `__dso_handle`. They run at the thread's exit, newest first, and before its copies are
// freed; for threads still alive when the library closes, the closing thread runs them
// (ThreadLocals::RunDestructors) before the library's static destructors, and the library's copies
// in every thread are freed (ThreadLocals::Release) before its memory is unmapped. A key is never
// used twice: a slot of a closed library's image is reused under a new generation, so that stale
// entries in threads' tables are never taken for the new image.
#ifndef PYTEST_ORCJIT_TLS_RUNTIME_H_
#define PYTEST_ORCJIT_TLS_RUNTIME_H_

#include <llvm/ADT/StringRef.h>
#include <llvm/Support/Error.h>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace orcjit {

/// The two words of a TLS entry, as `__tls_get_addr` reads them.
struct TlsIndex {
  uint64_t module;  // an image key, or a glibc module id
  uint64_t offset;  // offset of the variable in the image (or module block)
};

/// A part of an image's template: `size` bytes at `source` (the library's memory) that go to
/// `offset` in every copy; a zero-filled part (`.tbss`) is zero in every copy.
struct TlsTemplate {
  uint64_t offset;
  const char* source;
  uint64_t size;
  bool zero_fill;
};

/// The thread-local storage of one library: its images and the destructors its threads
/// registered. Created and destroyed by the TLS plugin (tls_plugin.h).
class ThreadLocals {
 public:
  explicit ThreadLocals(void* dso_handle);
  ~ThreadLocals();
  ThreadLocals(const ThreadLocals&) = delete;
  ThreadLocals& operator=(const ThreadLocals&) = delete;

  /// Registers an image whose template parts lie in the library's memory; returns its key.
  uint64_t AddImage(uint64_t size, uint64_t alignment, std::vector<TlsTemplate> parts);
  /// Unregisters an image of a graph that failed to link (no copy of it can exist).
  void RemoveImage(uint64_t key);
  /// The entry for the address `addr` in the template of one of the library's images, if any:
  /// how objects reach thread-local variables that another object of the library defines.
  std::optional<TlsIndex> FindTemplate(uintptr_t addr) const;

  /// Runs the destructors that the library's thread_local objects registered in every thread
  /// that is still alive, newest first per thread, under a fault guard; waits for those that
  /// exiting threads are running. Stops at the first that crashes, and says which.
  llvm::Error RunDestructors(llvm::StringRef library);
  /// Runs destructors registered since, frees every thread's copies of the library's images and
  /// unregisters them. After this, nothing of the library's TLS is left.
  llvm::Error Release(llvm::StringRef library);

 private:
  friend class ThreadLocalRuntime;  // the process-wide side, in tls_runtime.cc
  /// Where a part of an image's template lies: [start, end] -> image key, offset of start.
  struct Range {
    uintptr_t end;
    uint64_t key;
    uint64_t offset;
  };

  // All guarded by the runtime's lock.
  void* const dso_handle_;
  std::vector<uint64_t> images_;          // keys
  std::map<uintptr_t, Range> templates_;  // by start address
  int running_ = 0;                       // destructors being run by exiting threads
};

/// The `__tls_get_addr` of JIT code; see the top of this file.
extern "C" void* OrcjitTlsGetAddr(TlsIndex* index);

/// The `__cxa_thread_atexit` (and `__cxa_thread_atexit_impl`) of JIT code: files `fn(obj)` with
/// the calling thread and the library whose `__dso_handle` is `dso`, or hands it to glibc for any
/// other `dso`.
extern "C" int OrcjitCxaThreadAtExit(void (*fn)(void*), void* obj, void* dso);

/// Per-thread copies of TLS images alive in the process, for tests of their release.
int64_t ThreadLocalCopies();

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_TLS_RUNTIME_H_
