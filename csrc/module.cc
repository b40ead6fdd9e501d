// The tvm_ffi.Module view of a library and load_module, which makes one. See module.h.
#include "module.h"

#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <string>
#include <utility>

#include "library.h"
#include "library_bin.h"

namespace orcjit {

namespace {

/// The tvm_ffi.Module view of a library, as load_module returns it.
class ModuleObj final : public tvm::ffi::ModuleObj {
 public:
  explicit ModuleObj(Library library) : library_(std::move(library)) {}
  const char* kind() const final { return "orcjit"; }
  int GetPropertyMask() const final { return tvm::ffi::Module::kRunnable; }
  tvm::ffi::Optional<tvm::ffi::Function> GetFunction(const tvm::ffi::String& name) final {
    if (auto function = library_->FindFunction(name)) return *function;
    return std::nullopt;
  }

 private:
  Library library_;
};

}  // namespace

tvm::ffi::Module LoadModule(Session session, const tvm::ffi::Array<tvm::ffi::Any>& objects,
                            std::string name) {
  Library library(tvm::ffi::make_object<LibraryObj>(std::move(session), std::move(name)));
  for (const tvm::ffi::Any& object : objects) {
    int32_t type = object.type_index();
    if (type == tvm::ffi::TypeIndex::kTVMFFIStr || type == tvm::ffi::TypeIndex::kTVMFFISmallStr) {
      library->AddFile(std::string(object.cast<tvm::ffi::String>()));
    } else if (type == tvm::ffi::TypeIndex::kTVMFFIBytes ||
               type == tvm::ffi::TypeIndex::kTVMFFISmallBytes) {
      library->AddBytes(object.cast<tvm::ffi::Bytes>());
    } else {
      TVM_FFI_THROW(TypeError) << "load_module takes a path (str or os.PathLike) or object-file "
                               << "bytes for each object, not " << object.GetTypeKey();
    }
  }
  library->Link();
  // Like tvm_ffi.load_module: point the library's context symbols at what the runtime registered,
  // and its `__tvm_ffi__library_ctx` at its module.
  tvm::ffi::Module::VisitContextSymbols([&](tvm::ffi::String symbol, void* value) {
    if (void** slot = static_cast<void**>(library->FindSymbol(std::string(symbol)))) *slot = value;
  });
  auto library_module = [&library]() {
    tvm::ffi::Module module(tvm::ffi::make_object<ModuleObj>(library));
    if (void** context =
            static_cast<void**>(library->FindSymbol(tvm::ffi::symbol::tvm_ffi_library_ctx))) {
      *context = module.operator->();
    }
    return module;
  };
  // And, as it does, expand the import tree the library carries (library_bin.h).
  LibraryObj::LibraryBin bin = library->FindLibraryBin();
  if (bin.data == nullptr) return library_module();
  std::string where = "library '" + library->name() + "': the " +
                      tvm::ffi::symbol::tvm_ffi_library_bin + " of '" + bin.object + "'";
  return ExpandLibraryBin(bin.data, bin.size, where, library_module);
}

}  // namespace orcjit
