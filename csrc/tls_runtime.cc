// Thread-local storage for JIT code at run time: images, per-thread copies, `__tls_get_addr` and
// `__cxa_thread_atexit`. See tls_runtime.h.
#include "tls_runtime.h"

#include <llvm/Support/MathExtras.h>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "fault_guard.h"

extern "C" void* __tls_get_addr(void* index);                                      // NOLINT
extern "C" int __cxa_thread_atexit_impl(void (*fn)(void*), void* obj, void* dso);  // NOLINT

namespace orcjit {

namespace {

/// Set in every image key, never in a glibc module id.
constexpr uint64_t kImageKey = uint64_t(1) << 63;

struct ThreadState;

/// One image slot of the runtime. A slot is reused after its image is removed, under the next
/// generation, so that no key is ever given out twice.
struct Image {
  uint32_t generation = 0;
  uint64_t key = 0;  // 0: the slot is free
  uint64_t size = 0;
  uint64_t alignment = 1;
  std::vector<TlsTemplate> parts;
  std::unordered_map<ThreadState*, char*> copies;
};

/// A destructor a thread_local object registered.
struct Registration {
  ThreadLocals* library;
  void (*fn)(void*);
  void* obj;
};

/// A thread's copy of an image, as its lock-free table holds it.
struct Slot {
  uint64_t key;
  char* block;
};

/// What OrcjitTlsGetAddr reads without a lock: the calling thread's table, indexed by slot.
/// Constant-initialized, so reading it runs no initialization code.
struct FastTable {
  Slot* slots;
  size_t count;
};
thread_local FastTable fast_table = {nullptr, 0};

/// The calling thread's copies and destructors, made on its first slow-path access. Its
/// destructor runs at the thread's exit.
struct ThreadState {
  std::vector<Slot> slots;                // fast_table points into it; only its thread writes it
  std::vector<Registration> destructors;  // guarded by the runtime's lock
  ~ThreadState();
};

struct Runtime {
  std::mutex mutex;
  std::condition_variable idle;  // an exiting thread finished running a destructor
  std::vector<Image> images;
  std::vector<uint32_t> free_slots;
  std::unordered_set<ThreadState*> threads;  // threads that hold registrations
  std::unordered_map<const void*, ThreadLocals*> by_dso;
  int64_t copies = 0;
};

/// Never destroyed: threads may exit after static destruction began.
Runtime& TheRuntime() {
  static auto* runtime = new Runtime();
  return *runtime;
}

ThreadState& CurrentThread() {
  thread_local ThreadState state;
  return state;
}

void CallRegistration(void* registration) {
  auto* call = static_cast<Registration*>(registration);
  call->fn(call->obj);
}

/// Frees the copy `block` of `image` held by `thread` (runtime lock held).
void FreeCopy(Runtime& runtime, Image& image, ThreadState* thread, char* block) {
  image.copies.erase(thread);
  std::free(block);
  --runtime.copies;
}

}  // namespace

/// The process-wide side of the runtime, which the library side (ThreadLocals) lets in.
class ThreadLocalRuntime {
 public:
  static char* Allocate(TlsIndex* index);
  static void ExitThread(ThreadState& thread);
  static int AtExit(void (*fn)(void*), void* obj, void* dso);
  /// Takes the registrations of `library` from every thread, newest first per thread; waits until
  /// no exiting thread runs one of them (runtime lock held in `lock`).
  static std::vector<Registration> Take(ThreadLocals& library, std::unique_lock<std::mutex>& lock);
  static llvm::Error Run(std::vector<Registration> registrations, llvm::StringRef library);
};

char* ThreadLocalRuntime::Allocate(TlsIndex* index) {
  uint64_t key = index->module;
  size_t slot = static_cast<uint32_t>(key);
  ThreadState& thread = CurrentThread();
  Runtime& runtime = TheRuntime();
  std::lock_guard<std::mutex> lock(runtime.mutex);
  if (slot >= runtime.images.size() || runtime.images[slot].key != key) {
    std::fprintf(stderr,
                 "pytest-orcjit: JIT code used thread_local storage of a library that is closed; "
                 "keep the library open while its code runs in other threads\n");
    std::abort();
  }
  Image& image = runtime.images[slot];
  size_t size = llvm::alignTo(std::max<uint64_t>(image.size, 1), image.alignment);
  auto* block = static_cast<char*>(std::aligned_alloc(image.alignment, size));
  if (block == nullptr) {
    std::fprintf(stderr, "pytest-orcjit: out of memory for thread_local storage\n");
    std::abort();
  }
  std::memset(block, 0, size);
  for (const TlsTemplate& part : image.parts) {
    if (!part.zero_fill) std::memcpy(block + part.offset, part.source, part.size);
  }
  image.copies[&thread] = block;
  ++runtime.copies;
  if (thread.slots.size() <= slot) thread.slots.resize(slot + 1, Slot{0, nullptr});
  thread.slots[slot] = Slot{key, block};
  fast_table = FastTable{thread.slots.data(), thread.slots.size()};
  return block;
}

void ThreadLocalRuntime::ExitThread(ThreadState& thread) {
  Runtime& runtime = TheRuntime();
  // Destructors first, newest first; one may construct other thread_local objects, and register
  // more.
  for (;;) {
    Registration registration;
    {
      std::lock_guard<std::mutex> lock(runtime.mutex);
      if (thread.destructors.empty()) {
        runtime.threads.erase(&thread);
        break;
      }
      registration = thread.destructors.back();
      thread.destructors.pop_back();
      ++registration.library->running_;
    }
    registration.fn(registration.obj);
    std::lock_guard<std::mutex> lock(runtime.mutex);
    if (--registration.library->running_ == 0) runtime.idle.notify_all();
  }
  std::lock_guard<std::mutex> lock(runtime.mutex);
  for (size_t slot = 0; slot < thread.slots.size(); ++slot) {
    const Slot& copy = thread.slots[slot];
    // A copy of a closed library's image was freed when it closed.
    if (copy.key != 0 && runtime.images[slot].key == copy.key) {
      FreeCopy(runtime, runtime.images[slot], &thread, copy.block);
    }
  }
  thread.slots.clear();
  fast_table = FastTable{nullptr, 0};
}

ThreadState::~ThreadState() { ThreadLocalRuntime::ExitThread(*this); }

int ThreadLocalRuntime::AtExit(void (*fn)(void*), void* obj, void* dso) {
  ThreadState& thread = CurrentThread();
  Runtime& runtime = TheRuntime();
  {
    std::lock_guard<std::mutex> lock(runtime.mutex);
    auto library = runtime.by_dso.find(dso);
    if (library != runtime.by_dso.end()) {
      thread.destructors.push_back(Registration{library->second, fn, obj});
      runtime.threads.insert(&thread);
      return 0;
    }
  }
  return __cxa_thread_atexit_impl(fn, obj, dso);
}

std::vector<Registration> ThreadLocalRuntime::Take(ThreadLocals& library,
                                                   std::unique_lock<std::mutex>& lock) {
  Runtime& runtime = TheRuntime();
  runtime.idle.wait(lock, [&] { return library.running_ == 0; });
  std::vector<Registration> taken;
  for (ThreadState* thread : runtime.threads) {
    auto& list = thread->destructors;
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
      if (it->library == &library) taken.push_back(*it);
    }
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const Registration& r) { return r.library == &library; }),
               list.end());
  }
  return taken;
}

llvm::Error ThreadLocalRuntime::Run(std::vector<Registration> registrations,
                                    llvm::StringRef library) {
  if (registrations.empty()) return llvm::Error::success();
  FaultGuard guard;
  for (Registration& registration : registrations) {
    if (auto fault = guard.Call(CallRegistration, &registration)) {
      char address[2 + 16 + 1];
      std::snprintf(address, sizeof(address), "%p", reinterpret_cast<void*>(registration.fn));
      return llvm::createStringError(
          std::make_error_code(std::errc::state_not_recoverable),
          "thread_local destructor of library '%s' (registered with __cxa_thread_atexit, at %s) "
          "crashed with %s; the library was closed without running its other destructors: fix "
          "the destructor",
          library.str().c_str(), address, fault->Describe().c_str());
    }
  }
  return llvm::Error::success();
}

ThreadLocals::ThreadLocals(void* dso_handle) : dso_handle_(dso_handle) {
  Runtime& runtime = TheRuntime();
  std::lock_guard<std::mutex> lock(runtime.mutex);
  runtime.by_dso[dso_handle_] = this;
}

ThreadLocals::~ThreadLocals() {
  llvm::consumeError(Release(""));
  Runtime& runtime = TheRuntime();
  std::lock_guard<std::mutex> lock(runtime.mutex);
  runtime.by_dso.erase(dso_handle_);
}

uint64_t ThreadLocals::AddImage(uint64_t size, uint64_t alignment, std::vector<TlsTemplate> parts) {
  Runtime& runtime = TheRuntime();
  std::lock_guard<std::mutex> lock(runtime.mutex);
  size_t slot;
  if (!runtime.free_slots.empty()) {
    slot = runtime.free_slots.back();
    runtime.free_slots.pop_back();
  } else {
    slot = runtime.images.size();
    runtime.images.emplace_back();
  }
  Image& image = runtime.images[slot];
  ++image.generation;
  image.key = kImageKey | (uint64_t(image.generation & 0x7fffffff) << 32) | slot;
  image.size = size;
  image.alignment = std::max<uint64_t>(alignment, alignof(std::max_align_t));
  for (const TlsTemplate& part : parts) {
    auto start = reinterpret_cast<uintptr_t>(part.source);
    templates_[start] = Range{start + part.size, image.key, part.offset};
  }
  image.parts = std::move(parts);
  images_.push_back(image.key);
  return image.key;
}

void ThreadLocals::RemoveImage(uint64_t key) {
  Runtime& runtime = TheRuntime();
  std::lock_guard<std::mutex> lock(runtime.mutex);
  Image& image = runtime.images[static_cast<uint32_t>(key)];
  if (image.key != key) return;
  for (auto& [thread, block] : std::unordered_map<ThreadState*, char*>(image.copies)) {
    FreeCopy(runtime, image, thread, block);
  }
  for (auto it = templates_.begin(); it != templates_.end();) {
    it = it->second.key == key ? templates_.erase(it) : std::next(it);
  }
  image.key = 0;
  image.parts.clear();
  runtime.free_slots.push_back(static_cast<uint32_t>(key));
  images_.erase(std::remove(images_.begin(), images_.end(), key), images_.end());
}

std::optional<TlsIndex> ThreadLocals::FindTemplate(uintptr_t addr) const {
  std::lock_guard<std::mutex> lock(TheRuntime().mutex);
  auto it = templates_.upper_bound(addr);
  if (it == templates_.begin()) return std::nullopt;
  --it;
  if (addr > it->second.end) return std::nullopt;
  return TlsIndex{it->second.key, it->second.offset + (addr - it->first)};
}

llvm::Error ThreadLocals::RunDestructors(llvm::StringRef library) {
  // Until none is left: a destructor may construct (and register) another thread_local object.
  for (;;) {
    std::vector<Registration> taken;
    {
      std::unique_lock<std::mutex> lock(TheRuntime().mutex);
      taken = ThreadLocalRuntime::Take(*this, lock);
    }
    if (taken.empty()) return llvm::Error::success();
    if (auto err = ThreadLocalRuntime::Run(std::move(taken), library)) return err;
  }
}

llvm::Error ThreadLocals::Release(llvm::StringRef library) {
  llvm::Error crashed = RunDestructors(library);
  std::vector<uint64_t> keys;
  {
    std::lock_guard<std::mutex> lock(TheRuntime().mutex);
    keys = images_;
  }
  for (uint64_t key : keys) RemoveImage(key);
  return crashed;
}

extern "C" __attribute__((force_align_arg_pointer)) void* OrcjitTlsGetAddr(TlsIndex* index) {
  uint64_t key = index->module;
  if (!(key & kImageKey)) return __tls_get_addr(index);
  size_t slot = static_cast<uint32_t>(key);
  FastTable table = fast_table;
  if (slot < table.count && table.slots[slot].key == key) {
    return table.slots[slot].block + index->offset;
  }
  return ThreadLocalRuntime::Allocate(index) + index->offset;
}

extern "C" int OrcjitCxaThreadAtExit(void (*fn)(void*), void* obj, void* dso) {
  return ThreadLocalRuntime::AtExit(fn, obj, dso);
}

int64_t ThreadLocalCopies() {
  std::lock_guard<std::mutex> lock(TheRuntime().mutex);
  return TheRuntime().copies;
}

}  // namespace orcjit
