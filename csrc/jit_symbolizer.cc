// Names for addresses in JIT code, from the map of JIT code and the object files' symbol and line
// tables. See jit_symbolizer.h.
#include "jit_symbolizer.h"

#include <llvm/DebugInfo/DWARF/DWARFContext.h>
#include <llvm/Demangle/Demangle.h>
#include <llvm/Object/ELFObjectFile.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/MemoryBuffer.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/reflection/registry.h>
#include <tvm/ffi/string.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>

#include "jit_code_map.h"

namespace orcjit {

namespace {

std::string Hex(uint64_t value) {
  char text[2 + 16 + 1];
  std::snprintf(text, sizeof(text), "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

/// Where an offset into a function of an object file lies in its source.
struct SourceLocation {
  std::string file;      // empty when unknown
  uint32_t line = 0;     // 0 when unknown
  bool changed = false;  // the object file is not the one that was linked
};

SourceLocation Locate(const JitFunction& function, uint64_t offset) {
  SourceLocation location;
  auto buffer = llvm::MemoryBuffer::getFile(function.object, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer) return location;
  auto object = llvm::object::ObjectFile::createObjectFile((*buffer)->getMemBufferRef());
  if (!object) {
    llvm::consumeError(object.takeError());
    return location;
  }
  const llvm::object::ObjectFile& file = **object;
  std::optional<llvm::object::SectionedAddress> address;
  std::string source;
  for (const llvm::object::SymbolRef& symbol : file.symbols()) {
    auto type = symbol.getType();
    auto name = symbol.getName();
    if (!type || !name) {
      if (!type) llvm::consumeError(type.takeError());
      if (!name) llvm::consumeError(name.takeError());
      continue;
    }
    if (*type == llvm::object::SymbolRef::ST_File) {
      if (source.empty()) source = name->str();
      continue;
    }
    if (address || *name != function.name) continue;
    auto section = symbol.getSection();
    auto value = symbol.getValue();
    if (!section || !value || *section == file.section_end()) {
      if (!section) llvm::consumeError(section.takeError());
      if (!value) llvm::consumeError(value.takeError());
      continue;
    }
    uint64_t size = llvm::object::ELFSymbolRef(symbol).getSize();
    if (size != 0 && size != function.size) {
      location.changed = true;
      return location;
    }
    address = llvm::object::SectionedAddress{*value + offset, (*section)->getIndex()};
  }
  if (!address) {
    // The function is not in the file (any more): the file changed since it was linked.
    location.changed = true;
    return location;
  }
  location.file = source;
  auto context = llvm::DWARFContext::create(
      file, llvm::DWARFContext::ProcessDebugRelocations::Process, nullptr, "",
      [](llvm::Error err) { llvm::consumeError(std::move(err)); },
      [](llvm::Error err) { llvm::consumeError(std::move(err)); });
  llvm::DILineInfoSpecifier spec(llvm::DILineInfoSpecifier::FileLineInfoKind::AbsoluteFilePath,
                                 llvm::DILineInfoSpecifier::FunctionNameKind::None);
  // The line table, which knows sections apart (inlining information looked up by address does
  // not, in an object file: every section starts at 0). Where code was inlined, this is the line
  // of the inlined code.
  if (auto info = context->getLineInfoForAddress(*address, spec)) {
    if (info->FileName != llvm::DILineInfo::BadString && info->Line != 0) {
      location.file = info->FileName;
      location.line = info->Line;
    }
  }
  return location;
}

}  // namespace

std::string DisplayName(const char* symbol) {
  llvm::ItaniumPartialDemangler demangler;
  if (demangler.partialDemangle(symbol)) return symbol;  // not a mangled name
  size_t size = 0;
  char* name = demangler.isFunction() ? demangler.getFunctionName(nullptr, &size)
                                      : demangler.finishDemangle(nullptr, &size);
  if (name == nullptr) return symbol;
  std::string result(name);
  std::free(name);
  return result;
}

std::string DisplayPath(const std::string& path) {
  char cwd[4096];
  if (path.empty() || path[0] != '/' || getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  std::string prefix = std::string(cwd) + "/";
  if (path.compare(0, prefix.size(), prefix) == 0) return path.substr(prefix.size());
  return path;
}

std::optional<std::string> DescribeJitAddress(uintptr_t pc) {
  JitFunction function;
  if (!FindJitFunction(pc, &function)) return std::nullopt;
  uint64_t offset = pc - function.start;
  std::string name = DisplayName(function.name);
  SourceLocation location = Locate(function, offset);
  std::string object = DisplayPath(function.object);
  if (location.changed) {
    return name + "+" + Hex(offset) + " (" + object + ", changed since it was linked)";
  }
  if (location.line != 0) {
    return name + " (" + DisplayPath(location.file) + ":" + std::to_string(location.line) + ")";
  }
  std::string file = location.file.empty() ? object : DisplayPath(location.file);
  return name + "+" + Hex(offset) + " (" + file + ")";
}

namespace {

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef().def(
      "orcjit.describe_jit_address", [](int64_t pc) -> tvm::ffi::Optional<tvm::ffi::String> {
        std::optional<std::string> described = DescribeJitAddress(static_cast<uintptr_t>(pc));
        if (!described) return std::nullopt;
        return tvm::ffi::String(*described);
      });
}

}  // namespace
}  // namespace orcjit
