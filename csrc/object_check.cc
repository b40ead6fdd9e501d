// Validation of an object file before JITLink sees it (see object_check.h). The checker reads the
// ELF file field by field with unaligned little-endian loads and checks every offset, size and
// index that JITLink's ELFLinkGraphBuilder and x86-64 backend later trust: the ELF header
// (elf_header_check.h), the section header table, string tables, the symbol table (and its extended
// index table), relocation sections (offsets inside their target section, symbol indices, types the
// backend knows (relocation_table.h), no byte patched by two relocations), section groups, the
// record chain and CIE fields of .eh_frame (eh_frame_check.h), and the sizes of init/fini arrays.
// All arithmetic on file values is overflow-safe; nothing is read unless it was shown to lie inside
// the buffer. The first problem found is reported; the rest is not looked at.
#include "object_check.h"

#include <llvm/ADT/StringRef.h>
#include <llvm/ADT/Twine.h>
#include <llvm/BinaryFormat/ELF.h>
#include <llvm/Support/Endian.h>
#include <llvm/Support/MathExtras.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "eh_frame_check.h"
#include "elf_header_check.h"
#include "relocation_table.h"

namespace orcjit {
namespace {

namespace ELF = llvm::ELF;
using llvm::Error;
using llvm::StringRef;
using llvm::Twine;

/// Sections and common symbols may ask for at most page alignment: JITLink's memory managers lay
/// out segments page by page and refuse anything larger ("Segment alignment greater than page
/// size"), so saying so here gives the user a message that names the section.
constexpr uint64_t kMaxAlignment = 4096;

/// Zero-initialised memory (SHT_NOBITS sections and common symbols) is allocated when the object
/// is linked. More than 1 GiB is almost certainly a corrupt size field, and would otherwise be
/// reserved and zeroed before anything could fail.
constexpr uint64_t kMaxZeroFill = uint64_t(1) << 30;

/// One entry of the section header table, decoded.
struct Section {
  uint32_t name = 0;
  uint32_t type = 0;
  uint64_t flags = 0;
  uint64_t addr = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint32_t link = 0;
  uint32_t info = 0;
  uint64_t addr_align = 0;
  uint64_t ent_size = 0;
};

/// True if [`offset`, `offset` + `size`) lies inside [0, `limit`), without overflow.
bool Fits(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

class ObjectChecker {
 public:
  ObjectChecker(llvm::MemoryBufferRef buffer, StringRef name)
      : data_(reinterpret_cast<const uint8_t*>(buffer.getBufferStart())),
        file_size_(buffer.getBufferSize()),
        name_(name) {}

  Error Run() {
    if (Error err = CheckElfHeader(data_, file_size_, name_)) return err;
    if (Error err = ReadSectionTable()) return err;
    if (Error err = CheckSections()) return err;
    if (Error err = CheckSymbolTable()) return err;
    for (uint32_t i = 1; i < sections_.size(); ++i) {
      if (Error err = CheckSectionContents(i)) return err;
    }
    return CheckOverlappingPatches();
  }

 private:
  // Readers. Callers have checked that the bytes lie inside the file.
  uint8_t Read8(uint64_t offset) const { return data_[offset]; }
  uint16_t Read16(uint64_t offset) const { return llvm::support::endian::read16le(data_ + offset); }
  uint32_t Read32(uint64_t offset) const { return llvm::support::endian::read32le(data_ + offset); }
  uint64_t Read64(uint64_t offset) const { return llvm::support::endian::read64le(data_ + offset); }

  /// "'x.o' <Message>": for objects that are well-formed but not something this JIT links.
  Error Fail(const Twine& message) const {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "'" + name_ + "' " + message);
  }

  /// "'x.o' is truncated or corrupt: <What>".
  Error Corrupt(const Twine& what) const { return Fail("is truncated or corrupt: " + what); }

  /// A NUL-terminated string at `offset` in string table section `table` (already checked to be
  /// NUL-terminated), or "" if `offset` is out of range.
  StringRef StringAt(uint32_t table, uint64_t offset) const {
    const Section& section = sections_[table];
    if (offset >= section.size) return "";
    const char* begin = reinterpret_cast<const char*>(data_ + section.offset + offset);
    return StringRef(begin, strnlen(begin, section.size - offset));
  }

  /// "section 7 (.rela.text)", or "section 7" while names are not yet known to be readable.
  std::string Describe(uint32_t index) const {
    std::string text = "section " + std::to_string(index);
    if (names_checked_ && index < sections_.size())
      text += " (" + StringAt(sh_str_ndx_, sections_[index].name).str() + ")";
    return text;
  }

  /// "symbol 12 ('foo')".
  std::string DescribeSymbol(uint64_t index, uint32_t name_offset) const {
    std::string text = "symbol " + std::to_string(index);
    StringRef symbol_name = StringAt(str_tab_, name_offset);
    if (!symbol_name.empty()) text += " ('" + symbol_name.str() + "')";
    return text;
  }

  void ReadSection(uint64_t offset, Section& section) const {
    using Shdr = ELF::Elf64_Shdr;
    section.name = Read32(offset + offsetof(Shdr, sh_name));
    section.type = Read32(offset + offsetof(Shdr, sh_type));
    section.flags = Read64(offset + offsetof(Shdr, sh_flags));
    section.addr = Read64(offset + offsetof(Shdr, sh_addr));
    section.offset = Read64(offset + offsetof(Shdr, sh_offset));
    section.size = Read64(offset + offsetof(Shdr, sh_size));
    section.link = Read32(offset + offsetof(Shdr, sh_link));
    section.info = Read32(offset + offsetof(Shdr, sh_info));
    section.addr_align = Read64(offset + offsetof(Shdr, sh_addralign));
    section.ent_size = Read64(offset + offsetof(Shdr, sh_entsize));
  }

  Error ReadSectionTable() {
    uint64_t sh_off = Read64(offsetof(ELF::Elf64_Ehdr, e_shoff));
    uint16_t sh_ent_size = Read16(offsetof(ELF::Elf64_Ehdr, e_shentsize));
    uint64_t sh_num = Read16(offsetof(ELF::Elf64_Ehdr, e_shnum));
    uint64_t sh_str_ndx_field = Read16(offsetof(ELF::Elf64_Ehdr, e_shstrndx));
    if (sh_off == 0) return Corrupt("it has no section header table (e_shoff is 0)");
    if (sh_ent_size != sizeof(ELF::Elf64_Shdr))
      return Corrupt("section headers are " + Twine(sh_ent_size) + " bytes long, not " +
                     Twine(sizeof(ELF::Elf64_Shdr)));
    // Section 0 holds the real section count and string table index when they do not fit in
    // the ELF header (SHN_XINDEX / e_shnum == 0).
    if (!Fits(sh_off, sizeof(ELF::Elf64_Shdr), file_size_))
      return Corrupt("the section header table (offset " + Twine(sh_off) +
                     ") starts past the end of the file (" + Twine(file_size_) + " bytes)");
    Section zero;
    ReadSection(sh_off, zero);
    if (sh_num == 0) sh_num = zero.size;
    if (sh_num == 0) return Corrupt("it has no sections");
    if (sh_num > (file_size_ - sh_off) / sizeof(ELF::Elf64_Shdr))
      return Corrupt("the section header table (offset " + Twine(sh_off) + ", " + Twine(sh_num) +
                     " entries of " + Twine(sizeof(ELF::Elf64_Shdr)) +
                     " bytes) extends past the end of the file (" + Twine(file_size_) + " bytes)");
    if (zero.type != ELF::SHT_NULL)
      return Corrupt("section 0 is not the null section (type " + Twine(zero.type) + ")");
    sections_.resize(sh_num);
    for (uint64_t i = 0; i < sh_num; ++i)
      ReadSection(sh_off + i * sizeof(ELF::Elf64_Shdr), sections_[i]);
    uint64_t index = sh_str_ndx_field == ELF::SHN_XINDEX ? zero.link : sh_str_ndx_field;
    if (index == ELF::SHN_UNDEF || index >= sh_num)
      return Corrupt("the section name table index " + Twine(index) + " is not one of the " +
                     Twine(sh_num) + " sections");
    sh_str_ndx_ = static_cast<uint32_t>(index);
    if (Error err = CheckStringTable(sh_str_ndx_)) return err;
    names_checked_ = true;
    return Error::success();
  }

  /// A string table must be a SHT_STRTAB inside the file, non-empty and NUL-terminated, so that
  /// every offset below its size starts a terminated string.
  Error CheckStringTable(uint32_t index) const {
    const Section& section = sections_[index];
    if (section.type != ELF::SHT_STRTAB)
      return Corrupt(Describe(index) + " is used as a string table but has type " +
                     Twine(section.type));
    if (!Fits(section.offset, section.size, file_size_)) return OutOfFile(index);
    if (section.size == 0 || data_[section.offset + section.size - 1] != 0)
      return Corrupt("string table " + Describe(index) + " is not NUL-terminated");
    return Error::success();
  }

  Error OutOfFile(uint32_t index) const {
    const Section& section = sections_[index];
    return Corrupt(Describe(index) + " extends past the end of the file (offset " +
                   Twine(section.offset) + " + size " + Twine(section.size) + " > " +
                   Twine(file_size_) + ")");
  }

  /// Header fields of every section, and the links between sections.
  Error CheckSections() {
    uint32_t sh_num = static_cast<uint32_t>(sections_.size());
    uint64_t zero_fill = 0;
    for (uint32_t i = 1; i < sh_num; ++i) {
      const Section& section = sections_[i];
      if (section.name >= sections_[sh_str_ndx_].size)
        return Corrupt("section " + Twine(i) + " has name offset " + Twine(section.name) +
                       " past the end of the section name table");
      if (section.type == ELF::SHT_NOBITS) {
        if (section.size > kMaxZeroFill)
          return Fail("asks for " + Twine(section.size) + " bytes of zero-initialized memory in " +
                      Describe(i) +
                      ", more than the 1 GiB this JIT allows: allocate large "
                      "buffers at run time");
        // JITLink copies non-loaded sections into its working memory, and has no contents to
        // copy for this one.
        if (!(section.flags & ELF::SHF_ALLOC))
          return Corrupt(Describe(i) +
                         " is zero-initialized (SHT_NOBITS) but not loaded "
                         "(no SHF_ALLOC)");
        zero_fill += section.size;
      } else if (!Fits(section.offset, section.size, file_size_)) {
        return OutOfFile(i);
      }
      if (section.addr_align != 0 && !llvm::isPowerOf2_64(section.addr_align))
        return Corrupt(Describe(i) + " has alignment " + Twine(section.addr_align) +
                       ", which is not a power of two");
      if (section.flags & ELF::SHF_ALLOC) {
        if (section.addr_align > kMaxAlignment)
          return Fail("asks for alignment " + Twine(section.addr_align) + " in " + Describe(i) +
                      ", but this JIT aligns sections to at most " + Twine(kMaxAlignment) +
                      " bytes (one page): lower the alignas() or aligned attribute");
        if (section.addr != 0)
          return Corrupt(Describe(i) + " has address " + Twine(section.addr) +
                         ", but the sections of a relocatable object start at 0");
      }
      switch (section.type) {
        case ELF::SHT_SYMTAB:
          if (sym_tab_ != 0)
            return Corrupt("it has two symbol tables (" + Describe(sym_tab_) + " and " +
                           Describe(i) + ")");
          sym_tab_ = i;
          break;
        case ELF::SHT_SYMTAB_SHNDX:
          if (shndx_table_ != 0)
            return Corrupt("it has two extended section index tables (" + Describe(shndx_table_) +
                           " and " + Describe(i) + ")");
          shndx_table_ = i;
          break;
        case ELF::SHT_REL:
          return Fail("has REL relocations (" + Describe(i) +
                      "), but JITLink links x86-64 "
                      "objects with RELA relocations only: compile with clang or gcc for "
                      "x86_64-linux-gnu");
        case ELF::SHT_CREL:
        case ELF::SHT_RELR:
        case ELF::SHT_ANDROID_REL:
        case ELF::SHT_ANDROID_RELA:
        case ELF::SHT_ANDROID_RELR:
          return Fail("has packed relocations (" + Describe(i) + ", type " + Twine(section.type) +
                      "), which JITLink does not read: compile without --crel / packed "
                      "relocation options");
        default:
          break;
      }
    }
    if (zero_fill > kMaxZeroFill)
      return Fail("asks for " + Twine(zero_fill) +
                  " bytes of zero-initialized memory in all, "
                  "more than the 1 GiB this JIT allows: allocate large buffers at run time");
    zero_fill_total_ = zero_fill;
    return Error::success();
  }

  /// Checks that section `index` is the symbol table, as sh_link of `referrer` says it is.
  Error LinksToSymbolTable(uint32_t referrer) const {
    const Section& section = sections_[referrer];
    if (sym_tab_ == 0 || section.link != sym_tab_)
      return Corrupt(Describe(referrer) + " links to section " + Twine(section.link) +
                     ", which is not the symbol table");
    return Error::success();
  }

  /// A table of fixed-size entries: entry size as expected, size a multiple of it.
  Error CheckTable(uint32_t index, uint64_t ent_size) const {
    const Section& section = sections_[index];
    if (section.ent_size != ent_size)
      return Corrupt(Describe(index) + " has entries of " + Twine(section.ent_size) +
                     " bytes, not " + Twine(ent_size));
    if (section.size % ent_size != 0)
      return Corrupt("the size of " + Describe(index) + " (" + Twine(section.size) +
                     ") is not a multiple of its entry size " + Twine(ent_size));
    return Error::success();
  }

  Error CheckSymbolTable() {
    if (sym_tab_ == 0) {
      if (shndx_table_ != 0)
        return Corrupt(Describe(shndx_table_) + " extends a symbol table that does not exist");
      return Error::success();
    }
    const Section& sym_tab = sections_[sym_tab_];
    if (Error err = CheckTable(sym_tab_, sizeof(ELF::Elf64_Sym))) return err;
    num_symbols_ = sym_tab.size / sizeof(ELF::Elf64_Sym);
    if (sym_tab.info > num_symbols_)
      return Corrupt(Describe(sym_tab_) + " says its first global symbol is " +
                     Twine(sym_tab.info) + ", but it has " + Twine(num_symbols_) + " symbols");
    if (sym_tab.link == 0 || sym_tab.link >= sections_.size())
      return Corrupt(Describe(sym_tab_) + " links to string table " + Twine(sym_tab.link) +
                     ", which does not exist");
    str_tab_ = sym_tab.link;
    if (Error err = CheckStringTable(str_tab_)) return err;
    if (shndx_table_ != 0) {
      if (Error err = LinksToSymbolTable(shndx_table_)) return err;
      if (Error err = CheckTable(shndx_table_, sizeof(uint32_t))) return err;
      if (sections_[shndx_table_].size / sizeof(uint32_t) != num_symbols_)
        return Corrupt(Describe(shndx_table_) + " has " +
                       Twine(sections_[shndx_table_].size / sizeof(uint32_t)) +
                       " entries, but the symbol table has " + Twine(num_symbols_) + " symbols");
    }

    using Sym = ELF::Elf64_Sym;
    uint64_t zero_fill = zero_fill_total_;
    for (uint64_t i = 0; i < num_symbols_; ++i) {
      uint64_t offset = sym_tab.offset + i * sizeof(Sym);
      uint32_t name_offset = Read32(offset + offsetof(Sym, st_name));
      uint32_t shndx = Read16(offset + offsetof(Sym, st_shndx));
      uint64_t value = Read64(offset + offsetof(Sym, st_value));
      uint64_t size = Read64(offset + offsetof(Sym, st_size));
      if (name_offset >= sections_[str_tab_].size)
        return Corrupt("symbol " + Twine(i) + " has name offset " + Twine(name_offset) +
                       " past the end of its string table " + Describe(str_tab_));
      std::string what = DescribeSymbol(i, name_offset);
      if (shndx == ELF::SHN_XINDEX) {
        if (shndx_table_ == 0)
          return Corrupt(what +
                         " has an extended section index, but there is no "
                         "SHT_SYMTAB_SHNDX section");
        shndx = Read32(sections_[shndx_table_].offset + i * sizeof(uint32_t));
        if (shndx == ELF::SHN_UNDEF || shndx >= sections_.size())
          return Corrupt(what + " is in section " + Twine(shndx) + ", which does not exist");
      } else if (shndx == ELF::SHN_UNDEF || shndx == ELF::SHN_ABS) {
        continue;
      } else if (shndx == ELF::SHN_COMMON) {
        if ((Read8(offset + offsetof(Sym, st_info)) & 0xf) == ELF::STT_TLS)
          return Fail("has the thread_local variable " + what +
                      " as a common symbol, which this JIT does not link: compile with "
                      "-fno-common");
        if (!llvm::isPowerOf2_64(value) || value > kMaxAlignment)
          return Corrupt("common " + what + " has alignment " + Twine(value) +
                         ", which is not a power of two up to " + Twine(kMaxAlignment));
        if (size > kMaxZeroFill - zero_fill)
          return Fail("asks for " + Twine(size) + " bytes of zero-initialized memory for common " +
                      what +
                      ", more than the 1 GiB this JIT allows: allocate large buffers at "
                      "run time");
        zero_fill += size;
        continue;
      } else if (shndx >= ELF::SHN_LORESERVE) {
        return Fail("has " + what + " in the special section index " + Twine(shndx) +
                    ", which this JIT does not link: compile without -mcmodel=large or "
                    "similar options");
      } else if (shndx >= sections_.size()) {
        return Corrupt(what + " is in section " + Twine(shndx) + ", which does not exist");
      }
      // A symbol's value is its offset in its section; its bytes must lie inside the section.
      // Zero-sized symbols may sit at the very end (for example __stop-style end markers).
      uint64_t section_size = sections_[shndx].size;
      if (!Fits(value, size, section_size))
        return Corrupt(what + " (offset " + Twine(value) + ", size " + Twine(size) +
                       ") does not lie inside " + Describe(shndx) + " (size " +
                       Twine(section_size) + ")");
    }
    return Error::success();
  }

  Error CheckSectionContents(uint32_t index) {
    const Section& section = sections_[index];
    switch (section.type) {
      case ELF::SHT_RELA:
        return CheckRelocations(index);
      case ELF::SHT_GROUP:
        return CheckGroup(index);
      case ELF::SHT_INIT_ARRAY:
      case ELF::SHT_FINI_ARRAY:
      case ELF::SHT_PREINIT_ARRAY:
        return CheckPointerArray(index);
      default:
        break;
    }
    StringRef section_name = StringAt(sh_str_ndx_, section.name);
    if (section_name == ".eh_frame") return CheckEhFrame(index);
    if (section.type == ELF::SHT_PROGBITS &&
        (section_name.starts_with(".init_array") || section_name.starts_with(".fini_array") ||
         section_name.starts_with(".ctors") || section_name.starts_with(".dtors")))
      return CheckPointerArray(index);
    return Error::success();
  }

  Error CheckRelocations(uint32_t index) {
    const Section& section = sections_[index];
    if (Error err = CheckTable(index, sizeof(ELF::Elf64_Rela))) return err;
    uint64_t count = section.size / sizeof(ELF::Elf64_Rela);
    if (count == 0) return Error::success();
    if (Error err = LinksToSymbolTable(index)) return err;
    uint32_t target = section.info;
    if (target == 0 || target >= sections_.size() || target == index)
      return Corrupt(Describe(index) + " applies to section " + Twine(target) +
                     ", which does not exist");
    const Section& target_section = sections_[target];
    if (target_section.type == ELF::SHT_NOBITS)
      return Corrupt(Describe(index) + " applies to " + Describe(target) +
                     ", which has no contents to relocate");
    bool loaded = (target_section.flags & ELF::SHF_ALLOC) != 0;
    using Rela = ELF::Elf64_Rela;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t offset = section.offset + i * sizeof(Rela);
      uint64_t rel_offset = Read64(offset + offsetof(Rela, r_offset));
      uint64_t rel_info = Read64(offset + offsetof(Rela, r_info));
      uint32_t type = static_cast<uint32_t>(rel_info);
      uint64_t symbol_index = rel_info >> 32;
      std::string what = "relocation " + std::to_string(i) + " in " + Describe(index);
      const RelocationInfo* found = FindRelocation(type);
      if (!found) return Corrupt(what + " has unknown type " + Twine(type));
      const RelocationInfo& info = *found;
      if (const char* advice = ThreadLocalAdvice(type)) {
        std::string symbol =
            symbol_index < num_symbols_
                ? " against " +
                      DescribeSymbol(symbol_index, Read32(sections_[sym_tab_].offset +
                                                          symbol_index * sizeof(ELF::Elf64_Sym)))
                : "";
        return Fail("uses a thread_local variable through relocation " + Twine(info.name) + symbol +
                    " in " + Describe(index) + ", which pytest-orcjit cannot link: " + advice);
      }
      if (!info.linkable) {
        // JITLink also applies the relocations of debug sections, so they count too.
        StringRef advice =
            loaded ? "compile with 'clang++ -c -fPIC' (such relocations come from non-PIC code, "
                     "TLS models other than global-dynamic, or -mcmodel=large)"
                   : "compile without -g";
        return Fail("uses relocation type " + Twine(info.name) + " in " + Describe(index) +
                    ", which JITLink's x86-64 backend cannot link: " + advice);
      }
      if (symbol_index >= num_symbols_)
        return Corrupt(what + " refers to symbol " + Twine(symbol_index) + ", but " +
                       Describe(sym_tab_) + " has " + Twine(num_symbols_) + " symbols");
      if (type == ELF::R_X86_64_NONE) continue;
      if (rel_offset < info.before || !Fits(rel_offset, info.width, target_section.size)) {
        std::string before;
        if (info.before != 0)
          before = " and the " + std::to_string(info.before) + " bytes before them";
        return Corrupt(what + " (" + info.name + ") patches bytes [" + Twine(rel_offset) + ", " +
                       Twine(rel_offset) + " + " + Twine(info.width) + ")" + before + " of " +
                       Describe(target) + ", which is " + Twine(target_section.size) +
                       " bytes long");
      }
      patches_.push_back({target, rel_offset - info.before, rel_offset + info.width, index, i});
    }
    return Error::success();
  }

  /// No byte of a section may be patched by two relocations. An assembler never emits that for
  /// x86-64 (every relocation fills its own field of one instruction or datum), and the result
  /// would depend on the order JITLink applies them in; in corrupted objects it means that a
  /// relocation was moved onto the middle of an instruction, and the code would run garbage.
  Error CheckOverlappingPatches() {
    std::sort(patches_.begin(), patches_.end(), [](const Patch& a, const Patch& b) {
      return std::tie(a.target, a.begin, a.section, a.relocation) <
             std::tie(b.target, b.begin, b.section, b.relocation);
    });
    for (size_t i = 1; i < patches_.size(); ++i) {
      const Patch& a = patches_[i - 1];
      const Patch& b = patches_[i];
      if (a.target != b.target || b.begin >= a.end) continue;
      return Corrupt("relocation " + Twine(a.relocation) + " in " + Describe(a.section) +
                     " and relocation " + Twine(b.relocation) + " in " + Describe(b.section) +
                     " both patch byte " + Twine(b.begin) + " of " + Describe(a.target));
    }
    return Error::success();
  }

  Error CheckGroup(uint32_t index) const {
    const Section& section = sections_[index];
    if (Error err = CheckTable(index, sizeof(uint32_t))) return err;
    if (section.size == 0) return Corrupt("group " + Describe(index) + " has no flag word");
    if (Error err = LinksToSymbolTable(index)) return err;
    if (section.info >= num_symbols_)
      return Corrupt("group " + Describe(index) + " is named by symbol " + Twine(section.info) +
                     ", but the symbol table has " + Twine(num_symbols_));
    for (uint64_t offset = sizeof(uint32_t); offset < section.size; offset += sizeof(uint32_t)) {
      uint32_t member = Read32(section.offset + offset);
      if (member == 0 || member >= sections_.size() || member == index)
        return Corrupt("group " + Describe(index) + " lists section " + Twine(member) +
                       ", which does not exist");
    }
    return Error::success();
  }

  /// Init/fini arrays and .ctors/.dtors hold 8-byte function pointers.
  Error CheckPointerArray(uint32_t index) const {
    const Section& section = sections_[index];
    if (section.size % sizeof(uint64_t) != 0)
      return Corrupt(Describe(index) + " holds function pointers, but its size " +
                     Twine(section.size) + " is not a multiple of 8");
    return Error::success();
  }

  /// .eh_frame's records (eh_frame_check.h); the section was checked to lie inside the file.
  Error CheckEhFrame(uint32_t index) const {
    const Section& section = sections_[index];
    if (section.type == ELF::SHT_NOBITS) return Corrupt(Describe(index) + " has no contents");
    return CheckEhFrameRecords(data_ + section.offset, section.size,
                               [&](uint64_t start, const Twine& what) {
                                 return Corrupt("the record at offset " + Twine(start) + " of " +
                                                Describe(index) + " " + what);
                               });
  }

  const uint8_t* data_;
  uint64_t file_size_;
  StringRef name_;
  std::vector<Section> sections_;
  bool names_checked_ = false;
  uint32_t sh_str_ndx_ = 0;
  uint32_t sym_tab_ = 0;      ///< 0: none.
  uint32_t str_tab_ = 0;      ///< String table of `sym_tab_`.
  uint32_t shndx_table_ = 0;  ///< 0: none.
  uint64_t num_symbols_ = 0;
  uint64_t zero_fill_total_ = 0;  ///< Bytes of SHF_ALLOC SHT_NOBITS sections.

  /// The bytes [`begin`, `end`) of section `target` that relocation `relocation` of section
  /// `section` patches (or reads, for GOT relaxation).
  struct Patch {
    uint32_t target;
    uint64_t begin, end;
    uint32_t section;
    uint64_t relocation;
  };
  std::vector<Patch> patches_;
};

}  // namespace

Error CheckObject(llvm::MemoryBufferRef buffer, StringRef name) {
  return ObjectChecker(buffer, name).Run();
}

}  // namespace orcjit
