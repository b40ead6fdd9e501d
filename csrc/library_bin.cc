// Reading a library's `__tvm_ffi__library_bin`: the extent of the symbol in its object, and the
// import tree it holds. See library_bin.h.
#include "library_bin.h"

#include <llvm/BinaryFormat/ELF.h>
#include <llvm/Object/ELFObjectFile.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>

#include <sstream>
#include <utility>
#include <vector>

namespace orcjit {

namespace {

/// Reads the integers and strings of a blob, each checked against what is left of it.
class BlobReader {
 public:
  BlobReader(const char* data, uint64_t size, const std::string& where)
      : data_(data), size_(size), where_(where) {}

  [[noreturn]] void Malformed(const std::string& what) const {
    TVM_FFI_THROW(ValueError) << where_ << " is malformed: " << what
                              << "; rebuild the object that defines it (the blob is written by "
                              << "TVM's export_library, read as tvm_ffi.load_module reads it)";
    TVM_FFI_UNREACHABLE();
  }

  uint64_t U64(const char* what) {
    Need(8, what);
    uint64_t value = 0;
    for (int i = 0; i < 8; ++i) {
      value |= uint64_t(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    }
    pos_ += 8;
    return value;
  }

  std::vector<uint64_t> Vector(const char* what) {
    uint64_t count = U64(what);
    if (count > (size_ - pos_) / 8) Truncated(count, " integers", what);
    std::vector<uint64_t> values(count);
    for (uint64_t& value : values) value = U64(what);
    return values;
  }

  std::string String(const std::string& what) {
    uint64_t length = U64(what.c_str());
    if (length > size_ - pos_) Truncated(length, " bytes", what.c_str());
    std::string value(data_ + pos_, length);
    pos_ += length;
    return value;
  }

 private:
  void Need(uint64_t bytes, const char* what) {
    if (bytes > size_ - pos_) Truncated(bytes, " bytes", what);
  }

  [[noreturn]] void Truncated(uint64_t count, const char* unit, const char* what) const {
    std::ostringstream os;
    os << "truncated: " << what << " needs " << count << unit << " at offset " << pos_
       << ", and only " << (size_ - pos_) << " bytes of its " << size_ << " are left";
    Malformed(os.str());
  }

  const char* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& where_;
};

/// Checks the rows of the import tree of `modules` modules: ValueError for an index out of range
/// or an import cycle (tvm-ffi's ImportModule refuses cycles too, as RuntimeError).
void CheckImportTree(BlobReader& reader, const std::vector<uint64_t>& indptr,
                     const std::vector<uint64_t>& children) {
  if (indptr.size() < 2) {
    reader.Malformed("its import tree has no module (" + std::to_string(indptr.size()) +
                     " row pointers; a tree of n modules has n + 1)");
  }
  size_t modules = indptr.size() - 1;
  if (indptr.front() != 0) {
    reader.Malformed("bad import tree: its first row pointer is " + std::to_string(indptr[0]) +
                     ", not 0");
  }
  for (size_t i = 0; i < modules; ++i) {
    if (indptr[i] > indptr[i + 1]) {
      reader.Malformed("bad import tree: row pointer " + std::to_string(i + 1) + " (" +
                       std::to_string(indptr[i + 1]) + ") is less than the one before it (" +
                       std::to_string(indptr[i]) + ")");
    }
  }
  if (indptr.back() > children.size()) {
    reader.Malformed("bad import tree: its row pointers reach " + std::to_string(indptr.back()) +
                     ", past its " + std::to_string(children.size()) + " import indices");
  }
  for (size_t i = 0; i < modules; ++i) {
    for (uint64_t j = indptr[i]; j < indptr[i + 1]; ++j) {
      if (children[j] >= modules) {
        reader.Malformed("bad import index: module " + std::to_string(i) + " imports module " +
                         std::to_string(children[j]) + ", and there are " +
                         std::to_string(modules) + " modules");
      }
    }
  }
  // Depth-first, iteratively: 0 unvisited, 1 on the current path, 2 done.
  std::vector<int> state(modules, 0);
  for (size_t start = 0; start < modules; ++start) {
    if (state[start] != 0) continue;
    std::vector<std::pair<size_t, uint64_t>> stack{{start, indptr[start]}};
    state[start] = 1;
    while (!stack.empty()) {
      auto& [module, next] = stack.back();
      if (next == indptr[module + 1]) {
        state[module] = 2;
        stack.pop_back();
        continue;
      }
      size_t child = children[next++];
      if (state[child] == 1) {
        reader.Malformed("bad import tree: module " + std::to_string(module) + " imports module " +
                         std::to_string(child) + ", which imports it (an import cycle)");
      }
      if (state[child] == 0) {
        state[child] = 1;
        stack.emplace_back(child, indptr[child]);
      }
    }
  }
}

}  // namespace

uint64_t LibraryBinExtent(llvm::MemoryBufferRef object) {
  auto file = llvm::object::ObjectFile::createELFObjectFile(object);
  if (!file) {
    llvm::consumeError(file.takeError());
    return 0;
  }
  const auto* elf = llvm::dyn_cast<llvm::object::ELFObjectFileBase>(file->get());
  if (elf == nullptr) return 0;
  for (const llvm::object::ELFSymbolRef& symbol : elf->symbols()) {
    if (symbol.getBinding() == llvm::ELF::STB_LOCAL) continue;
    auto name = symbol.getName();
    if (!name) {
      llvm::consumeError(name.takeError());
      continue;
    }
    if (*name != tvm::ffi::symbol::tvm_ffi_library_bin) continue;
    if (uint64_t size = symbol.getSize()) return size;
    auto section = symbol.getSection();
    auto value = symbol.getValue();
    if (!section || !value || *section == elf->section_end()) {
      if (!section) llvm::consumeError(section.takeError());
      if (!value) llvm::consumeError(value.takeError());
      return 0;
    }
    uint64_t section_size = (*section)->getSize();
    return *value <= section_size ? section_size - *value : 0;
  }
  return 0;
}

tvm::ffi::Module ExpandLibraryBin(const char* data, uint64_t size, const std::string& where,
                                  const std::function<tvm::ffi::Module()>& library_module) {
  BlobReader header(data, size, where);
  uint64_t nbytes = header.U64("its length header");
  if (nbytes > size - 8) {
    header.Malformed("truncated: its length header says " + std::to_string(nbytes) +
                     " bytes follow, and the object defines " + std::to_string(size - 8));
  }
  BlobReader reader(data + 8, nbytes, where);
  std::vector<uint64_t> indptr = reader.Vector("the import tree's row pointers");
  std::vector<uint64_t> children = reader.Vector("the import tree's import indices");
  CheckImportTree(reader, indptr, children);
  std::vector<tvm::ffi::Module> modules;
  for (size_t i = 0; i + 1 < indptr.size(); ++i) {
    std::string module = "module " + std::to_string(i);
    std::string kind = reader.String("the kind of " + module);
    if (kind == "_lib") {
      modules.push_back(library_module());
      continue;
    }
    std::string bytes = reader.String("the bytes of " + module + " ('" + kind + "')");
    std::string loader_name = "ffi.Module.load_from_bytes." + kind;
    auto loader = tvm::ffi::Function::GetGlobal(loader_name);
    if (!loader) {
      TVM_FFI_THROW(ValueError) << where << " holds a module of unknown kind '" << kind << "' ("
                                << module << "): no global function '" << loader_name
                                << "' is registered; load the runtime that registers it before "
                                << "loading the library";
    }
    tvm::ffi::Any loaded = (*loader)(tvm::ffi::Bytes(std::move(bytes)));
    auto loaded_module = loaded.as<tvm::ffi::Module>();
    if (!loaded_module) {
      TVM_FFI_THROW(ValueError) << where << ": '" << loader_name << "' returned "
                                << loaded.GetTypeKey() << " for " << module
                                << ", not a module; it must return a tvm_ffi.Module";
    }
    modules.push_back(*loaded_module);
  }
  for (size_t i = 0; i < modules.size(); ++i) {
    for (uint64_t j = indptr[i]; j < indptr[i + 1]; ++j)
      modules[i]->ImportModule(modules[children[j]]);
  }
  return modules[0];
}

}  // namespace orcjit
