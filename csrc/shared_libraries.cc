// Shared libraries loaded for kernels. See shared_libraries.h.
#include "shared_libraries.h"

#include <dlfcn.h>
#include <link.h>
#include <tvm/ffi/error.h>

#include <atomic>

namespace orcjit {

namespace {

std::atomic<uint64_t> generation{0};

}  // namespace

std::string LoadSharedLibrary(const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    TVM_FFI_THROW(ValueError) << "cannot load the shared library '" << path
                              << "': " << (reason ? reason : "the loader gave no reason")
                              << "; pass the path of a shared library (.so) built for this "
                              << "machine";
  }
  // The handle is never closed: the library stays for the rest of the process.
  generation.fetch_add(1, std::memory_order_release);
  struct link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr &&
      map->l_name[0] != '\0') {
    return map->l_name;
  }
  return path;
}

uint64_t SharedLibraryGeneration() { return generation.load(std::memory_order_acquire); }

}  // namespace orcjit
