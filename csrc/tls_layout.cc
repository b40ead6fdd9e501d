// The TLS layout of an object file and the rewrite of its local-dynamic relocations; see
// tls_layout.h. The object has been checked (object_check.h), so every header, table, index and
// offset read here is known to lie inside it.
#include "tls_layout.h"

#include <llvm/BinaryFormat/ELF.h>
#include <llvm/Support/MathExtras.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace orcjit {

namespace {

namespace ELF = llvm::ELF;
using Ehdr = ELF::Elf64_Ehdr;
using Shdr = ELF::Elf64_Shdr;
using Sym = ELF::Elf64_Sym;
using Rela = ELF::Elf64_Rela;

template <typename T>
T Read(const char* data, uint64_t offset) {
  T value;
  std::memcpy(&value, data + offset, sizeof(T));
  return value;
}

template <typename T>
void Write(char* data, uint64_t offset, const T& value) {
  std::memcpy(data + offset, &value, sizeof(T));
}

/// The parts of a checked object that the layout reads.
class TlsObject {
 public:
  TlsObject(llvm::MemoryBufferRef object, llvm::StringRef name)
      : data_(object.getBufferStart()), name_(name) {
    auto header = Read<Ehdr>(data_, 0);
    auto first = Read<Shdr>(data_, header.e_shoff);
    uint64_t count = header.e_shnum != 0 ? header.e_shnum : first.sh_size;
    names_ = header.e_shstrndx == ELF::SHN_XINDEX ? first.sh_link : header.e_shstrndx;
    for (uint64_t i = 0; i < count; ++i) {
      sections_.push_back(Read<Shdr>(data_, header.e_shoff + i * sizeof(Shdr)));
      const Shdr& section = sections_.back();
      if (section.sh_type == ELF::SHT_SYMTAB) symtab_ = static_cast<uint32_t>(i);
      if (section.sh_type == ELF::SHT_SYMTAB_SHNDX) shndx_ = static_cast<uint32_t>(i);
    }
    header_offset_ = header.e_shoff;
    if (symtab_ != 0) {
      uint64_t symbols = sections_[symtab_].sh_size / sizeof(Sym);
      for (uint64_t i = 0; i < symbols; ++i) {
        auto symbol = Read<Sym>(data_, sections_[symtab_].sh_offset + i * sizeof(Sym));
        if ((symbol.st_other & 3) == ELF::STV_INTERNAL) internal_.push_back(i);
      }
    }
  }

  /// Whether the object has symbols of internal visibility.
  bool HasInternalSymbols() const { return !internal_.empty(); }

  /// Gives each TLS section its offset in the image; false when there is none.
  bool LayOut() {
    offsets_.assign(sections_.size(), std::nullopt);
    uint64_t end = 0;
    bool any = false;
    for (size_t i = 1; i < sections_.size(); ++i) {
      const Shdr& section = sections_[i];
      if (!(section.sh_flags & ELF::SHF_TLS) || !(section.sh_flags & ELF::SHF_ALLOC)) continue;
      end = llvm::alignTo(end, std::max<uint64_t>(section.sh_addralign, 1));
      offsets_[i] = end;
      end += section.sh_size;
      any = true;
    }
    return any;
  }

  /// The copy of the object with its TLS laid out (see tls_layout.h), or why not.
  llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> Rewrite(llvm::StringRef identifier,
                                                              size_t size) {
    // The section name table grows by kThreadLocalSection, appended to the end of the file.
    const Shdr& names = sections_[names_];
    std::string name_bytes(data_ + names.sh_offset, names.sh_size);
    uint32_t tls_name = static_cast<uint32_t>(name_bytes.size());
    name_bytes.append(kThreadLocalSection.data(), kThreadLocalSection.size());
    name_bytes.push_back('\0');
    auto buffer =
        llvm::WritableMemoryBuffer::getNewUninitMemBuffer(size + name_bytes.size(), identifier);
    if (!buffer) {
      return llvm::createStringError(std::make_error_code(std::errc::not_enough_memory),
                                     "cannot copy '%s': out of memory", name_.str().c_str());
    }
    out_ = buffer->getBufferStart();
    std::memcpy(out_, data_, size);
    std::memcpy(out_ + size, name_bytes.data(), name_bytes.size());
    Shdr names_copy = names;
    names_copy.sh_offset = size;
    names_copy.sh_size = name_bytes.size();
    WriteSection(names_, names_copy);
    for (size_t i = 0; i < sections_.size(); ++i) {
      if (!offsets_[i]) continue;
      Shdr section = sections_[i];
      section.sh_name = tls_name;
      section.sh_addr = kThreadLocalBase + *offsets_[i];
      WriteSection(i, section);
    }
    for (uint64_t index : internal_) {
      uint64_t at = sections_[symtab_].sh_offset + index * sizeof(Sym);
      auto symbol = Read<Sym>(data_, at);
      symbol.st_other = (symbol.st_other & ~3) | ELF::STV_HIDDEN;
      Write(out_, at, symbol);
    }
    if (auto err = RewriteRelocations()) return err;
    return std::unique_ptr<llvm::MemoryBuffer>(std::move(buffer));
  }

 private:
  void WriteSection(size_t index, const Shdr& section) {
    Write(out_, header_offset_ + index * sizeof(Shdr), section);
  }

  /// The symbol's offset in the image, or nothing if it is not in a TLS section.
  std::optional<uint64_t> ImageOffset(uint32_t index) const {
    auto symbol = Read<Sym>(data_, sections_[symtab_].sh_offset + index * sizeof(Sym));
    uint32_t section = symbol.st_shndx;
    if (section == ELF::SHN_XINDEX && shndx_ != 0) {
      section = Read<uint32_t>(data_, sections_[shndx_].sh_offset + index * sizeof(uint32_t));
    } else if (section >= ELF::SHN_LORESERVE) {
      return std::nullopt;
    }
    if (section >= sections_.size() || !offsets_[section]) return std::nullopt;
    return *offsets_[section] + symbol.st_value;
  }

  /// "symbol 12 ('foo')", for messages.
  std::string DescribeSymbol(uint32_t index) const {
    auto symbol = Read<Sym>(data_, sections_[symtab_].sh_offset + index * sizeof(Sym));
    const Shdr& strings = sections_[sections_[symtab_].sh_link];
    const char* name = data_ + strings.sh_offset + symbol.st_name;
    std::string text = "symbol " + std::to_string(index);
    size_t length = strnlen(name, strings.sh_size - symbol.st_name);
    if (length != 0) text += " ('" + std::string(name, length) + "')";
    return text;
  }

  llvm::Error NotThreadLocal(const char* relocation, uint32_t symbol) const {
    return llvm::createStringError(
        std::make_error_code(std::errc::invalid_argument),
        "'%s' is corrupt: its relocation %s refers to %s, which is not a thread_local variable "
        "of the object; rebuild it",
        name_.str().c_str(), relocation, DescribeSymbol(symbol).c_str());
  }

  /// Visits every relocation as (relocation section, index, entry, target section).
  template <typename Visit>
  llvm::Error ForEachRelocation(Visit visit) const {
    for (size_t i = 1; i < sections_.size(); ++i) {
      const Shdr& relocations = sections_[i];
      if (relocations.sh_type != ELF::SHT_RELA) continue;
      uint64_t count = relocations.sh_size / sizeof(Rela);
      for (uint64_t j = 0; j < count; ++j) {
        uint64_t at = relocations.sh_offset + j * sizeof(Rela);
        if (auto err = visit(at, Read<Rela>(data_, at), sections_[relocations.sh_info])) return err;
      }
    }
    return llvm::Error::success();
  }

  llvm::Error RewriteRelocations() {
    // The anchor: the symbol of the first TLSLD. Local-dynamic code adds DTPOFF offsets to what
    // `__tls_get_addr` returns for a TLSLD; as a TLSGD against the anchor, that is the anchor.
    std::optional<uint32_t> anchor;
    if (auto err = ForEachRelocation([&](uint64_t, const Rela& rela, const Shdr&) -> llvm::Error {
          if (anchor || rela.getType() != ELF::R_X86_64_TLSLD) return llvm::Error::success();
          anchor = rela.getSymbol();
          if (!ImageOffset(*anchor)) return NotThreadLocal("R_X86_64_TLSLD", *anchor);
          return llvm::Error::success();
        }))
      return err;
    uint64_t base = anchor ? *ImageOffset(*anchor) : 0;
    return ForEachRelocation([&](uint64_t at, const Rela& rela, const Shdr& target) -> llvm::Error {
      uint32_t type = rela.getType();
      uint32_t symbol = rela.getSymbol();
      Rela rewritten = rela;
      if (type == ELF::R_X86_64_TLSLD) {
        rewritten.setSymbolAndType(*anchor, ELF::R_X86_64_TLSGD);
      } else if (type == ELF::R_X86_64_DTPOFF32 || type == ELF::R_X86_64_DTPOFF64) {
        bool dtpoff32 = type == ELF::R_X86_64_DTPOFF32;
        const char* kind = dtpoff32 ? "R_X86_64_DTPOFF32" : "R_X86_64_DTPOFF64";
        std::optional<uint64_t> offset = ImageOffset(symbol);
        if (!offset) return NotThreadLocal(kind, symbol);
        // Debug information describes a variable by its offset in the image.
        bool code = (target.sh_flags & ELF::SHF_ALLOC) != 0;
        int64_t value = static_cast<int64_t>(*offset) + rela.r_addend - (code ? base : 0);
        uint64_t where = target.sh_offset + rela.r_offset;
        if (dtpoff32) {
          if (value < INT32_MIN || value > INT32_MAX) {
            return llvm::createStringError(
                std::make_error_code(std::errc::value_too_large),
                "'%s' has more thread_local data than a 32-bit offset (%s) reaches; make the "
                "thread_local variables smaller",
                name_.str().c_str(), kind);
          }
          Write(out_, where, static_cast<int32_t>(value));
        } else {
          Write(out_, where, value);
        }
        rewritten.setSymbolAndType(symbol, ELF::R_X86_64_NONE);
      } else {
        return llvm::Error::success();
      }
      Write(out_, at, rewritten);
      return llvm::Error::success();
    });
  }

  const char* data_;
  char* out_ = nullptr;
  llvm::StringRef name_;
  uint64_t header_offset_ = 0;
  std::vector<Shdr> sections_;
  std::vector<std::optional<uint64_t>> offsets_;
  uint32_t names_ = 0;
  uint32_t symtab_ = 0;
  uint32_t shndx_ = 0;
  std::vector<uint64_t> internal_;  // symbols of internal visibility
};

}  // namespace

llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> LayOutThreadLocals(llvm::MemoryBufferRef object,
                                                                       llvm::StringRef name) {
  TlsObject tls(object, name);
  if (!tls.LayOut() && !tls.HasInternalSymbols()) return nullptr;
  return tls.Rewrite(object.getBufferIdentifier(), object.getBufferSize());
}

}  // namespace orcjit
