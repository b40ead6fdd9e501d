// Global functions and type reflection registered by JIT libraries, undone or kept when they
// close; see ffi_registrations.h.
#include "ffi_registrations.h"

#include <tvm/ffi/any.h>
#include <tvm/ffi/cast.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace orcjit {

namespace {

namespace ffi = tvm::ffi;

/// One registration of a global function name: by the library whose key is `dso`, or by
/// something else (null `dso`) when a library overrode it.
struct Layer {
  void* dso;
  ffi::Function function;
};

struct Library {
  std::string name;
  /// The global function names the library registered, each once.
  std::vector<std::string> globals;
  bool owns_types = false;
};

/// The library that registered a type's reflection first.
struct TypeOwner {
  void* dso;
  std::string library;
};

/// Process-wide, as tvm-ffi's registries are; never destroyed (libraries may close at exit).
struct State {
  std::mutex mutex;
  std::unordered_map<void*, Library> libraries;
  /// Per global function name that an open library registered: its registrations, oldest first.
  /// The newest is the one tvm-ffi has, unless something else replaced it since.
  std::unordered_map<std::string, std::vector<Layer>> globals;
  std::unordered_map<int32_t, TypeOwner> types;
};

State& Global() {
  static auto* state = new State();
  return *state;
}

std::string_view View(const TVMFFIByteArray& bytes) { return {bytes.data, bytes.size}; }

/// Registers `function` (a function of the library `dso`, or of nobody) as global `name`, after
/// `set` did so in tvm-ffi. Called with the state's mutex held.
int SetGlobal(void* dso, std::string name, const ffi::Function& function,
              const std::function<int()>& set) {
  State& state = Global();
  auto library = state.libraries.find(dso);
  // Code of a closed library whose memory was kept (it owns a type): nothing to undo later.
  if (library == state.libraries.end()) return set();
  std::optional<ffi::Function> previous = ffi::Function::GetGlobal(name);
  if (int status = set(); status != 0) return status;
  std::vector<Layer>& layers = state.globals[name];
  if (previous && (layers.empty() || layers.back().function.get() != previous->get())) {
    layers.push_back({nullptr, *previous});
  }
  layers.push_back({dso, function});
  std::vector<std::string>& names = library->second.globals;
  if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(std::move(name));
  return 0;
}

/// What a library's registration of a type entry does when another library registered the
/// type's reflection first.
enum class Decision { kRegister, kSkip };

/// Registers a type entry for library `dso` through `register_entry`, unless another library
/// owns the type and `decide` says the entry is already there (kSkip), or throws because it
/// contradicts what is there.
template <typename Decide, typename RegisterEntry>
int RegisterTypeEntry(int32_t type_index, void* dso, Decide decide, RegisterEntry register_entry) {
  TVM_FFI_SAFE_CALL_BEGIN();
  State& state = Global();
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    auto library = state.libraries.find(dso);
    if (library != state.libraries.end()) {
      auto owner = state.types.find(type_index);
      if (owner == state.types.end()) {
        state.types.emplace(type_index, TypeOwner{dso, library->second.name});
      } else if (owner->second.dso != dso &&
                 decide(*TVMFFIGetTypeInfo(type_index), library->second.name,
                        owner->second.library) == Decision::kSkip) {
        return 0;
      }
      library->second.owns_types = true;
    }
  }
  return register_entry();
  TVM_FFI_SAFE_CALL_END();
}

[[noreturn]] void ThrowChangedType(const TVMFFITypeInfo& type, const std::string& library,
                                   const std::string& first, const std::string& what) {
  TVM_FFI_THROW(RuntimeError)
      << "library '" << library << "' registers the object type '" << View(type.type_key)
      << "' with " << what << ", unlike library '" << first
      << "', which registered that type first in this process; tvm-ffi cannot unregister a "
         "type, so a type key names one type per process: load the changed type in a new "
         "process (forked isolation) or give it another type key";
  TVM_FFI_UNREACHABLE();
}

/// Whether the reflection of `type_index` was registered first by a library other than `dso`.
bool OwnedByAnother(int32_t type_index, void* dso) {
  State& state = Global();
  std::lock_guard<std::mutex> lock(state.mutex);
  auto owner = state.types.find(type_index);
  return owner != state.types.end() && owner->second.dso != dso;
}

/// Whether the type attribute `name` has a value for `type_index`.
bool HasTypeAttr(int32_t type_index, const TVMFFIByteArray* name) {
  const TVMFFITypeAttrColumn* column = TVMFFIGetTypeAttrColumn(name);
  if (column == nullptr) return false;
  int64_t slot = int64_t(type_index) - column->begin_index;
  return slot >= 0 && slot < column->size &&
         column->data[slot].type_index != ffi::TypeIndex::kTVMFFINone;
}

constexpr std::string_view kRegisterInit = "ffi._RegisterFFIInit";

}  // namespace

extern "C" int OrcjitFunctionGetGlobal(const TVMFFIByteArray* name, TVMFFIObjectHandle* out,
                                       void* dso) {
  if (View(*name) != kRegisterInit) return TVMFFIFunctionGetGlobal(name, out);
  TVM_FFI_SAFE_CALL_BEGIN();
  std::optional<ffi::Function> register_init = ffi::Function::GetGlobal(kRegisterInit);
  if (!register_init) {
    *out = nullptr;
    return 0;
  }
  // ObjectDef's destructor registers `__ffi_init__` through this function (inside tvm-ffi, where
  // no thunk reaches) when the type has a creator and the library defines no initializer; for a
  // type an earlier library registered, that attribute is already there.
  auto skipping =
      ffi::Function::FromTyped([register_init = *register_init, dso](int32_t type_index) {
        static const TVMFFIByteArray init{"__ffi_init__", 12};
        if (OwnedByAnother(type_index, dso) && HasTypeAttr(type_index, &init)) return;
        register_init(type_index);
      });
  *out = ffi::details::ObjectUnsafe::MoveObjectRefToTVMFFIObjectPtr(std::move(skipping));
  TVM_FFI_SAFE_CALL_END();
}

extern "C" int OrcjitFunctionSetGlobal(const TVMFFIByteArray* name, TVMFFIObjectHandle f,
                                       int override, void* dso) {
  TVM_FFI_SAFE_CALL_BEGIN();
  auto function = ffi::GetRef<ffi::Function>(static_cast<ffi::FunctionObj*>(f));
  std::lock_guard<std::mutex> lock(Global().mutex);
  return SetGlobal(dso, std::string(View(*name)), function,
                   [&] { return TVMFFIFunctionSetGlobal(name, f, override); });
  TVM_FFI_SAFE_CALL_END();
}

extern "C" int OrcjitFunctionSetGlobalFromMethodInfo(const TVMFFIMethodInfo* info, int override,
                                                     void* dso) {
  TVM_FFI_SAFE_CALL_BEGIN();
  auto function = ffi::AnyView::CopyFromTVMFFIAny(info->method).cast<ffi::Function>();
  std::lock_guard<std::mutex> lock(Global().mutex);
  return SetGlobal(dso, std::string(View(info->name)), function,
                   [&] { return TVMFFIFunctionSetGlobalFromMethodInfo(info, override); });
  TVM_FFI_SAFE_CALL_END();
}

extern "C" int OrcjitTypeRegisterField(int32_t type_index, const TVMFFIFieldInfo* info, void* dso) {
  auto decide = [info](const TVMFFITypeInfo& type, const std::string& library,
                       const std::string& first) {
    std::string field = "a field '" + std::string(View(info->name)) + "'";
    for (int32_t i = 0; i < type.num_fields; ++i) {
      const TVMFFIFieldInfo& existing = type.fields[i];
      if (View(existing.name) != View(info->name)) continue;
      if (existing.offset != info->offset || existing.size != info->size ||
          existing.field_static_type_index != info->field_static_type_index) {
        ThrowChangedType(type, library, first,
                         field + " at offset " + std::to_string(info->offset) + " (" +
                             std::to_string(info->size) + " bytes, type index " +
                             std::to_string(info->field_static_type_index) + ") instead of " +
                             std::to_string(existing.offset) + " (" +
                             std::to_string(existing.size) + " bytes, type index " +
                             std::to_string(existing.field_static_type_index) + ")");
      }
      return Decision::kSkip;
    }
    ThrowChangedType(type, library, first, field + " that the first registration does not have");
  };
  return RegisterTypeEntry(type_index, dso, decide,
                           [&] { return TVMFFITypeRegisterField(type_index, info); });
}

extern "C" int OrcjitTypeRegisterMethod(int32_t type_index, const TVMFFIMethodInfo* info,
                                        void* dso) {
  auto decide = [info](const TVMFFITypeInfo& type, const std::string&, const std::string&) {
    for (int32_t i = 0; i < type.num_methods; ++i) {
      if (View(type.methods[i].name) == View(info->name)) return Decision::kSkip;
    }
    return Decision::kRegister;
  };
  return RegisterTypeEntry(type_index, dso, decide,
                           [&] { return TVMFFITypeRegisterMethod(type_index, info); });
}

extern "C" int OrcjitTypeRegisterMetadata(int32_t type_index, const TVMFFITypeMetadata* metadata,
                                          void* dso) {
  auto decide = [metadata](const TVMFFITypeInfo& type, const std::string& library,
                           const std::string& first) {
    if (type.metadata == nullptr) return Decision::kRegister;
    if (type.metadata->total_size != metadata->total_size) {
      ThrowChangedType(type, library, first,
                       "a size of " + std::to_string(metadata->total_size) + " bytes instead of " +
                           std::to_string(type.metadata->total_size));
    }
    return Decision::kSkip;
  };
  return RegisterTypeEntry(type_index, dso, decide,
                           [&] { return TVMFFITypeRegisterMetadata(type_index, metadata); });
}

extern "C" int OrcjitTypeRegisterAttr(int32_t type_index, const TVMFFIByteArray* name,
                                      const TVMFFIAny* value, void* dso) {
  // kTVMFFINone only makes sure that the attribute's column exists: no type is involved.
  if (type_index == ffi::TypeIndex::kTVMFFINone)
    return TVMFFITypeRegisterAttr(type_index, name, value);
  auto decide = [type_index, name](const TVMFFITypeInfo&, const std::string&, const std::string&) {
    return HasTypeAttr(type_index, name) ? Decision::kSkip : Decision::kRegister;
  };
  return RegisterTypeEntry(type_index, dso, decide,
                           [&] { return TVMFFITypeRegisterAttr(type_index, name, value); });
}

FfiRegistrations::FfiRegistrations(void* dso, const std::string& library) : dso_(dso) {
  State& state = Global();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.libraries[dso_] = Library{library, {}, false};
}

bool FfiRegistrations::Close() {
  if (closed_) return owns_types_;
  closed_ = true;
  State& state = Global();
  // The library's functions, released once the mutex is free: their deleters are its code.
  std::vector<Layer> dropped;
  std::lock_guard<std::mutex> lock(state.mutex);
  auto library = state.libraries.find(dso_);
  if (library == state.libraries.end()) return owns_types_;
  owns_types_ = library->second.owns_types;
  for (const std::string& name : library->second.globals) {
    std::vector<Layer>& layers = state.globals[name];
    auto of_library = [this](const Layer& layer) { return layer.dso == dso_; };
    try {
      std::optional<ffi::Function> current = ffi::Function::GetGlobal(name);
      bool registered = current && std::any_of(layers.begin(), layers.end(), [&](const Layer& l) {
                          return l.dso == dso_ && l.function.get() == current->get();
                        });
      auto kept = std::stable_partition(layers.begin(), layers.end(),
                                        [&](const Layer& l) { return !of_library(l); });
      std::move(kept, layers.end(), std::back_inserter(dropped));
      layers.erase(kept, layers.end());
      // Only where the library's function is the one registered: something else may have
      // replaced it since, and that stays.
      if (registered && layers.empty()) {
        static const ffi::Function remove =
            ffi::Function::GetGlobalRequired("ffi.FunctionRemoveGlobal");
        remove(ffi::String(name));
      } else if (registered) {
        ffi::Function::SetGlobal(name, layers.back().function, /*override=*/true);
      }
    } catch (const ffi::Error&) {
      // tvm-ffi's registry refused; the library's functions are dropped all the same.
    }
    if (std::none_of(layers.begin(), layers.end(), [](const Layer& l) { return l.dso; })) {
      std::move(layers.begin(), layers.end(), std::back_inserter(dropped));
      state.globals.erase(name);
    }
  }
  state.libraries.erase(library);
  return owns_types_;
}

}  // namespace orcjit
