// Validation of an object file before JITLink sees it (see object_check.h). The checker reads the
// ELF file field by field with unaligned little-endian loads and checks every offset, size and
// index that JITLink's ELFLinkGraphBuilder and x86-64 backend later trust: the ELF header, the
// section header table, string tables, the symbol table (and its extended index table),
// relocation sections (offsets inside their target section, symbol indices, types the backend
// knows, no byte patched by two relocations), section groups, the record chain and CIE fields of
// .eh_frame, and the sizes of init/fini arrays. All arithmetic on file values is overflow-safe;
// nothing is read unless it was shown to lie inside the buffer. The first problem found is
// reported; the rest is not looked at.

#include "object_check.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"
#include "llvm/BinaryFormat/ELF.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/MathExtras.h"

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

/// How JITLink's x86-64 ELF backend (LLVM 19 to 22) treats a relocation type.
struct RelocationInfo {
  uint32_t Type;
  const char* Name;
  unsigned Width;   ///< Bytes patched at r_offset.
  unsigned Before;  ///< Bytes before r_offset that GOT relaxation reads and rewrites.
  bool Linkable;    ///< Accepted by ELF_x86_64.cpp (checked with llvm-jitlink 19 and 22).
};

/// Every x86-64 relocation type. The linkable ones were found by linking one relocation of each
/// type with llvm-jitlink: R_X86_64_PC16, SIZE32 and SIZE64 arrived after LLVM 19, which rejects
/// them itself with a clean error. GOT load relaxation (GOTPCRELX, REX_GOTPCRELX) reads and
/// rewrites the opcode and ModRM bytes, and the REX prefix, before the 32-bit displacement. The
/// local-dynamic TLS relocations (TLSLD, DTPOFF32, DTPOFF64; the debug info of thread_local
/// variables uses DTPOFF too) are not JITLink's: tls_layout.h rewrites them before it reads the
/// object. The rest are valid types JITLink does not link (JITLink applies the relocations of
/// debug sections too). Types newer than the oldest supported LLVM headers are spelled as numbers.
constexpr RelocationInfo kRelocations[] = {
    {ELF::R_X86_64_NONE, "R_X86_64_NONE", 0, 0, true},
    {ELF::R_X86_64_64, "R_X86_64_64", 8, 0, true},
    {ELF::R_X86_64_PC32, "R_X86_64_PC32", 4, 0, true},
    {ELF::R_X86_64_PLT32, "R_X86_64_PLT32", 4, 0, true},
    {ELF::R_X86_64_GOTPCREL, "R_X86_64_GOTPCREL", 4, 0, true},
    {ELF::R_X86_64_32, "R_X86_64_32", 4, 0, true},
    {ELF::R_X86_64_32S, "R_X86_64_32S", 4, 0, true},
    {ELF::R_X86_64_16, "R_X86_64_16", 2, 0, true},
    {ELF::R_X86_64_PC16, "R_X86_64_PC16", 2, 0, true},
    {ELF::R_X86_64_8, "R_X86_64_8", 1, 0, true},
    {ELF::R_X86_64_PC8, "R_X86_64_PC8", 1, 0, true},
    {ELF::R_X86_64_TLSGD, "R_X86_64_TLSGD", 4, 0, true},
    {ELF::R_X86_64_PC64, "R_X86_64_PC64", 8, 0, true},
    {ELF::R_X86_64_GOTOFF64, "R_X86_64_GOTOFF64", 8, 0, true},
    {ELF::R_X86_64_GOTPC32, "R_X86_64_GOTPC32", 4, 0, true},
    {ELF::R_X86_64_GOT64, "R_X86_64_GOT64", 8, 0, true},
    {ELF::R_X86_64_GOTPCREL64, "R_X86_64_GOTPCREL64", 8, 0, true},
    {ELF::R_X86_64_GOTPC64, "R_X86_64_GOTPC64", 8, 0, true},
    {ELF::R_X86_64_SIZE32, "R_X86_64_SIZE32", 4, 0, true},
    {ELF::R_X86_64_SIZE64, "R_X86_64_SIZE64", 8, 0, true},
    {ELF::R_X86_64_GOTPCRELX, "R_X86_64_GOTPCRELX", 4, 2, true},
    {ELF::R_X86_64_REX_GOTPCRELX, "R_X86_64_REX_GOTPCRELX", 4, 3, true},
    {ELF::R_X86_64_GOT32, "R_X86_64_GOT32", 4, 0, false},
    {ELF::R_X86_64_COPY, "R_X86_64_COPY", 0, 0, false},
    {ELF::R_X86_64_GLOB_DAT, "R_X86_64_GLOB_DAT", 8, 0, false},
    {ELF::R_X86_64_JUMP_SLOT, "R_X86_64_JUMP_SLOT", 8, 0, false},
    {ELF::R_X86_64_RELATIVE, "R_X86_64_RELATIVE", 8, 0, false},
    {ELF::R_X86_64_DTPMOD64, "R_X86_64_DTPMOD64", 8, 0, false},
    {ELF::R_X86_64_DTPOFF64, "R_X86_64_DTPOFF64", 8, 0, true},
    {ELF::R_X86_64_TPOFF64, "R_X86_64_TPOFF64", 8, 0, false},
    {ELF::R_X86_64_TLSLD, "R_X86_64_TLSLD", 4, 0, true},
    {ELF::R_X86_64_DTPOFF32, "R_X86_64_DTPOFF32", 4, 0, true},
    {ELF::R_X86_64_GOTTPOFF, "R_X86_64_GOTTPOFF", 4, 0, false},
    {ELF::R_X86_64_TPOFF32, "R_X86_64_TPOFF32", 4, 0, false},
    {ELF::R_X86_64_GOTPLT64, "R_X86_64_GOTPLT64", 8, 0, false},
    {ELF::R_X86_64_PLTOFF64, "R_X86_64_PLTOFF64", 8, 0, false},
    {ELF::R_X86_64_GOTPC32_TLSDESC, "R_X86_64_GOTPC32_TLSDESC", 4, 0, false},
    {ELF::R_X86_64_TLSDESC_CALL, "R_X86_64_TLSDESC_CALL", 0, 0, false},
    {ELF::R_X86_64_TLSDESC, "R_X86_64_TLSDESC", 16, 0, false},
    {ELF::R_X86_64_IRELATIVE, "R_X86_64_IRELATIVE", 8, 0, false},
    {43, "R_X86_64_CODE_4_GOTPCRELX", 4, 0, false},
    {44, "R_X86_64_CODE_4_GOTTPOFF", 4, 0, false},
    {45, "R_X86_64_CODE_4_GOTPC32_TLSDESC", 4, 0, false},
    {50, "R_X86_64_CODE_6_GOTTPOFF", 4, 0, false},
};

/// What to do about a relocation of a thread-local model this JIT does not link, or nullptr for
/// a type that is not about thread-local storage.
const char* threadLocalAdvice(uint32_t Type) {
  switch (Type) {
    case ELF::R_X86_64_GOTTPOFF:
    case 44:  // R_X86_64_CODE_4_GOTTPOFF
    case 50:  // R_X86_64_CODE_6_GOTTPOFF
      return "the initial-exec TLS model; compile with -fPIC and without "
             "-ftls-model=initial-exec (global-dynamic and local-dynamic work)";
    case ELF::R_X86_64_TPOFF32:
    case ELF::R_X86_64_TPOFF64:
      return "the local-exec TLS model, which non-PIC code uses; compile with -fPIC and without "
             "-ftls-model=local-exec (global-dynamic and local-dynamic work)";
    case ELF::R_X86_64_GOTPC32_TLSDESC:
    case ELF::R_X86_64_TLSDESC_CALL:
    case ELF::R_X86_64_TLSDESC:
    case 45:  // R_X86_64_CODE_4_GOTPC32_TLSDESC
      return "TLS descriptors, which JITLink does not link for x86-64; compile without "
             "-mtls-dialect=gnu2";
    case ELF::R_X86_64_DTPMOD64:
      return "a TLS module id, which only shared libraries have; compile with -fPIC";
    default:
      return nullptr;
  }
}

/// The entry for `Type`, or nullptr if it is not an x86-64 relocation type.
const RelocationInfo* findRelocation(uint32_t Type) {
  for (const RelocationInfo& Info : kRelocations) {
    if (Info.Type == Type) return &Info;
  }
  return nullptr;
}

/// One entry of the section header table, decoded.
struct Section {
  uint32_t Name = 0;
  uint32_t Type = 0;
  uint64_t Flags = 0;
  uint64_t Addr = 0;
  uint64_t Offset = 0;
  uint64_t Size = 0;
  uint32_t Link = 0;
  uint32_t Info = 0;
  uint64_t AddrAlign = 0;
  uint64_t EntSize = 0;
};

/// True if [Offset, Offset + Size) lies inside [0, Limit), without overflow.
bool fits(uint64_t Offset, uint64_t Size, uint64_t Limit) {
  return Offset <= Limit && Size <= Limit - Offset;
}

class ObjectChecker {
 public:
  ObjectChecker(llvm::MemoryBufferRef Buffer, StringRef Name)
      : Data(reinterpret_cast<const uint8_t*>(Buffer.getBufferStart())),
        FileSize(Buffer.getBufferSize()),
        Name(Name) {}

  Error run() {
    if (Error Err = checkHeader()) return Err;
    if (Error Err = readSectionTable()) return Err;
    if (Error Err = checkSections()) return Err;
    if (Error Err = checkSymbolTable()) return Err;
    for (uint32_t I = 1; I < Sections.size(); ++I) {
      if (Error Err = checkSectionContents(I)) return Err;
    }
    return checkOverlappingPatches();
  }

 private:
  // Readers. Callers have checked that the bytes lie inside the file.
  uint8_t read8(uint64_t Off) const { return Data[Off]; }
  uint16_t read16(uint64_t Off) const { return llvm::support::endian::read16le(Data + Off); }
  uint32_t read32(uint64_t Off) const { return llvm::support::endian::read32le(Data + Off); }
  uint64_t read64(uint64_t Off) const { return llvm::support::endian::read64le(Data + Off); }

  /// "'x.o' <Message>": for objects that are well-formed but not something this JIT links.
  Error fail(const Twine& Message) const {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "'" + Name + "' " + Message);
  }

  /// "'x.o' is truncated or corrupt: <What>".
  Error corrupt(const Twine& What) const { return fail("is truncated or corrupt: " + What); }

  /// A NUL-terminated string at `Off` in string table section `Table` (already checked to be
  /// NUL-terminated), or "" if `Off` is out of range.
  StringRef stringAt(uint32_t Table, uint64_t Off) const {
    const Section& S = Sections[Table];
    if (Off >= S.Size) return "";
    const char* Begin = reinterpret_cast<const char*>(Data + S.Offset + Off);
    return StringRef(Begin, strnlen(Begin, S.Size - Off));
  }

  /// "section 7 (.rela.text)", or "section 7" while names are not yet known to be readable.
  std::string describe(uint32_t Index) const {
    std::string Text = "section " + std::to_string(Index);
    if (NamesChecked && Index < Sections.size())
      Text += " (" + stringAt(ShStrNdx, Sections[Index].Name).str() + ")";
    return Text;
  }

  /// "symbol 12 ('foo')".
  std::string describeSymbol(uint64_t Index, uint32_t StName) const {
    std::string Text = "symbol " + std::to_string(Index);
    StringRef SymName = stringAt(StrTab, StName);
    if (!SymName.empty()) Text += " ('" + SymName.str() + "')";
    return Text;
  }

  Error checkHeader() {
    if (FileSize == 0) return fail("is empty");
    if (FileSize >= 8 && std::memcmp(Data, "!<arch>\n", 8) == 0)
      return fail(
          "is a static library (ar archive), not a relocatable object: pass the .o files "
          "it contains ('ar x' extracts them)");
    if (FileSize < 4 || std::memcmp(Data, ELF::ElfMagic, 4) != 0)
      return fail("is not an ELF object file (no ELF magic)");
    // e_type and e_machine sit at the same place in 32- and 64-bit headers; read them first so
    // that a shared library or an object for another machine gets the message that helps.
    if (FileSize < 20)
      return corrupt("the ELF header is cut off after " + Twine(FileSize) + " bytes");
    uint8_t Class = read8(ELF::EI_CLASS);
    uint8_t Encoding = read8(ELF::EI_DATA);
    if (Encoding == ELF::ELFDATA2MSB)
      return fail(
          "is a big-endian ELF file, but this JIT links little-endian x86-64 objects: "
          "compile for the host");
    if (Encoding != ELF::ELFDATA2LSB)
      return corrupt("unknown data encoding " + Twine(unsigned(Encoding)) + " in the ELF header");
    uint16_t Type = read16(offsetof(ELF::Elf64_Ehdr, e_type));
    uint16_t Machine = read16(offsetof(ELF::Elf64_Ehdr, e_machine));
    if (Type == ELF::ET_DYN)
      return fail(
          "is a shared library (ELF type ET_DYN), not a relocatable object: pass the .o "
          "that 'clang++ -c -fPIC' produces");
    if (Type == ELF::ET_EXEC)
      return fail(
          "is an executable (ELF type ET_EXEC), not a relocatable object: pass the .o "
          "that 'clang++ -c -fPIC' produces");
    if (Type == ELF::ET_CORE)
      return fail(
          "is a core dump (ELF type ET_CORE), not a relocatable object: pass the .o "
          "that 'clang++ -c -fPIC' produces");
    if (Type != ELF::ET_REL)
      return corrupt("unknown ELF type " + Twine(Type) + " (a relocatable object has ET_REL)");
    if (Machine == ELF::EM_386)
      return fail(
          "is a 32-bit x86 (i386) object, but this JIT links x86-64 objects: compile "
          "without -m32");
    if (Machine != ELF::EM_X86_64) {
      StringRef Arch = ELF::convertEMachineToArchName(Machine);
      std::string What =
          Arch.empty() || Arch == "None" ? "machine " + std::to_string(Machine) : Arch.str();
      return fail("is an object for " + What +
                  ", but this JIT links x86-64 objects: compile for the host");
    }
    if (Class == ELF::ELFCLASS32)
      return fail(
          "is a 32-bit ELF object (x32 ABI), but this JIT links 64-bit x86-64 objects: "
          "compile without -mx32");
    if (Class != ELF::ELFCLASS64)
      return corrupt("unknown ELF class " + Twine(unsigned(Class)) + " in the ELF header");
    if (FileSize < sizeof(ELF::Elf64_Ehdr))
      return corrupt("the ELF header is cut off after " + Twine(FileSize) + " bytes (it has " +
                     Twine(sizeof(ELF::Elf64_Ehdr)) + ")");
    if (read8(ELF::EI_VERSION) != ELF::EV_CURRENT ||
        read32(offsetof(ELF::Elf64_Ehdr, e_version)) != ELF::EV_CURRENT)
      return corrupt("unknown ELF version in the ELF header");
    uint16_t EhSize = read16(offsetof(ELF::Elf64_Ehdr, e_ehsize));
    if (EhSize != sizeof(ELF::Elf64_Ehdr))
      return corrupt("the ELF header says it is " + Twine(EhSize) + " bytes long, not " +
                     Twine(sizeof(ELF::Elf64_Ehdr)));
    return Error::success();
  }

  void readSection(uint64_t Off, Section& S) const {
    using Shdr = ELF::Elf64_Shdr;
    S.Name = read32(Off + offsetof(Shdr, sh_name));
    S.Type = read32(Off + offsetof(Shdr, sh_type));
    S.Flags = read64(Off + offsetof(Shdr, sh_flags));
    S.Addr = read64(Off + offsetof(Shdr, sh_addr));
    S.Offset = read64(Off + offsetof(Shdr, sh_offset));
    S.Size = read64(Off + offsetof(Shdr, sh_size));
    S.Link = read32(Off + offsetof(Shdr, sh_link));
    S.Info = read32(Off + offsetof(Shdr, sh_info));
    S.AddrAlign = read64(Off + offsetof(Shdr, sh_addralign));
    S.EntSize = read64(Off + offsetof(Shdr, sh_entsize));
  }

  Error readSectionTable() {
    uint64_t ShOff = read64(offsetof(ELF::Elf64_Ehdr, e_shoff));
    uint16_t ShEntSize = read16(offsetof(ELF::Elf64_Ehdr, e_shentsize));
    uint64_t ShNum = read16(offsetof(ELF::Elf64_Ehdr, e_shnum));
    uint64_t ShStrNdxField = read16(offsetof(ELF::Elf64_Ehdr, e_shstrndx));
    if (ShOff == 0) return corrupt("it has no section header table (e_shoff is 0)");
    if (ShEntSize != sizeof(ELF::Elf64_Shdr))
      return corrupt("section headers are " + Twine(ShEntSize) + " bytes long, not " +
                     Twine(sizeof(ELF::Elf64_Shdr)));
    // Section 0 holds the real section count and string table index when they do not fit in
    // the ELF header (SHN_XINDEX / e_shnum == 0).
    if (!fits(ShOff, sizeof(ELF::Elf64_Shdr), FileSize))
      return corrupt("the section header table (offset " + Twine(ShOff) +
                     ") starts past the end of the file (" + Twine(FileSize) + " bytes)");
    Section Zero;
    readSection(ShOff, Zero);
    if (ShNum == 0) ShNum = Zero.Size;
    if (ShNum == 0) return corrupt("it has no sections");
    if (ShNum > (FileSize - ShOff) / sizeof(ELF::Elf64_Shdr))
      return corrupt("the section header table (offset " + Twine(ShOff) + ", " + Twine(ShNum) +
                     " entries of " + Twine(sizeof(ELF::Elf64_Shdr)) +
                     " bytes) extends past the end of the file (" + Twine(FileSize) + " bytes)");
    if (Zero.Type != ELF::SHT_NULL)
      return corrupt("section 0 is not the null section (type " + Twine(Zero.Type) + ")");
    Sections.resize(ShNum);
    for (uint64_t I = 0; I < ShNum; ++I)
      readSection(ShOff + I * sizeof(ELF::Elf64_Shdr), Sections[I]);
    uint64_t Index = ShStrNdxField == ELF::SHN_XINDEX ? Zero.Link : ShStrNdxField;
    if (Index == ELF::SHN_UNDEF || Index >= ShNum)
      return corrupt("the section name table index " + Twine(Index) + " is not one of the " +
                     Twine(ShNum) + " sections");
    ShStrNdx = static_cast<uint32_t>(Index);
    if (Error Err = checkStringTable(ShStrNdx)) return Err;
    NamesChecked = true;
    return Error::success();
  }

  /// A string table must be a SHT_STRTAB inside the file, non-empty and NUL-terminated, so that
  /// every offset below its size starts a terminated string.
  Error checkStringTable(uint32_t Index) const {
    const Section& S = Sections[Index];
    if (S.Type != ELF::SHT_STRTAB)
      return corrupt(describe(Index) + " is used as a string table but has type " + Twine(S.Type));
    if (!fits(S.Offset, S.Size, FileSize)) return outOfFile(Index);
    if (S.Size == 0 || Data[S.Offset + S.Size - 1] != 0)
      return corrupt("string table " + describe(Index) + " is not NUL-terminated");
    return Error::success();
  }

  Error outOfFile(uint32_t Index) const {
    const Section& S = Sections[Index];
    return corrupt(describe(Index) + " extends past the end of the file (offset " +
                   Twine(S.Offset) + " + size " + Twine(S.Size) + " > " + Twine(FileSize) + ")");
  }

  /// Header fields of every section, and the links between sections.
  Error checkSections() {
    uint32_t ShNum = static_cast<uint32_t>(Sections.size());
    uint64_t ZeroFill = 0;
    for (uint32_t I = 1; I < ShNum; ++I) {
      const Section& S = Sections[I];
      if (S.Name >= Sections[ShStrNdx].Size)
        return corrupt("section " + Twine(I) + " has name offset " + Twine(S.Name) +
                       " past the end of the section name table");
      if (S.Type == ELF::SHT_NOBITS) {
        if (S.Size > kMaxZeroFill)
          return fail("asks for " + Twine(S.Size) + " bytes of zero-initialized memory in " +
                      describe(I) +
                      ", more than the 1 GiB this JIT allows: allocate large "
                      "buffers at run time");
        // JITLink copies non-loaded sections into its working memory, and has no contents to
        // copy for this one.
        if (!(S.Flags & ELF::SHF_ALLOC))
          return corrupt(describe(I) +
                         " is zero-initialized (SHT_NOBITS) but not loaded "
                         "(no SHF_ALLOC)");
        ZeroFill += S.Size;
      } else if (!fits(S.Offset, S.Size, FileSize)) {
        return outOfFile(I);
      }
      if (S.AddrAlign != 0 && !llvm::isPowerOf2_64(S.AddrAlign))
        return corrupt(describe(I) + " has alignment " + Twine(S.AddrAlign) +
                       ", which is not a power of two");
      if (S.Flags & ELF::SHF_ALLOC) {
        if (S.AddrAlign > kMaxAlignment)
          return fail("asks for alignment " + Twine(S.AddrAlign) + " in " + describe(I) +
                      ", but this JIT aligns sections to at most " + Twine(kMaxAlignment) +
                      " bytes (one page): lower the alignas() or aligned attribute");
        if (S.Addr != 0)
          return corrupt(describe(I) + " has address " + Twine(S.Addr) +
                         ", but the sections of a relocatable object start at 0");
      }
      switch (S.Type) {
        case ELF::SHT_SYMTAB:
          if (SymTab != 0)
            return corrupt("it has two symbol tables (" + describe(SymTab) + " and " + describe(I) +
                           ")");
          SymTab = I;
          break;
        case ELF::SHT_SYMTAB_SHNDX:
          if (ShndxTable != 0)
            return corrupt("it has two extended section index tables (" + describe(ShndxTable) +
                           " and " + describe(I) + ")");
          ShndxTable = I;
          break;
        case ELF::SHT_REL:
          return fail("has REL relocations (" + describe(I) +
                      "), but JITLink links x86-64 "
                      "objects with RELA relocations only: compile with clang or gcc for "
                      "x86_64-linux-gnu");
        case ELF::SHT_CREL:
        case ELF::SHT_RELR:
        case ELF::SHT_ANDROID_REL:
        case ELF::SHT_ANDROID_RELA:
        case ELF::SHT_ANDROID_RELR:
          return fail("has packed relocations (" + describe(I) + ", type " + Twine(S.Type) +
                      "), which JITLink does not read: compile without --crel / packed "
                      "relocation options");
        default:
          break;
      }
    }
    if (ZeroFill > kMaxZeroFill)
      return fail("asks for " + Twine(ZeroFill) +
                  " bytes of zero-initialized memory in all, "
                  "more than the 1 GiB this JIT allows: allocate large buffers at run time");
    ZeroFillTotal = ZeroFill;
    return Error::success();
  }

  /// Checks that section `Index` is the symbol table, as sh_link of `Referrer` says it is.
  Error linksToSymbolTable(uint32_t Referrer) const {
    const Section& S = Sections[Referrer];
    if (SymTab == 0 || S.Link != SymTab)
      return corrupt(describe(Referrer) + " links to section " + Twine(S.Link) +
                     ", which is not the symbol table");
    return Error::success();
  }

  /// A table of fixed-size entries: entry size as expected, size a multiple of it.
  Error checkTable(uint32_t Index, uint64_t EntSize) const {
    const Section& S = Sections[Index];
    if (S.EntSize != EntSize)
      return corrupt(describe(Index) + " has entries of " + Twine(S.EntSize) + " bytes, not " +
                     Twine(EntSize));
    if (S.Size % EntSize != 0)
      return corrupt("the size of " + describe(Index) + " (" + Twine(S.Size) +
                     ") is not a multiple of its entry size " + Twine(EntSize));
    return Error::success();
  }

  Error checkSymbolTable() {
    if (SymTab == 0) {
      if (ShndxTable != 0)
        return corrupt(describe(ShndxTable) + " extends a symbol table that does not exist");
      return Error::success();
    }
    const Section& ST = Sections[SymTab];
    if (Error Err = checkTable(SymTab, sizeof(ELF::Elf64_Sym))) return Err;
    NumSymbols = ST.Size / sizeof(ELF::Elf64_Sym);
    if (ST.Info > NumSymbols)
      return corrupt(describe(SymTab) + " says its first global symbol is " + Twine(ST.Info) +
                     ", but it has " + Twine(NumSymbols) + " symbols");
    if (ST.Link == 0 || ST.Link >= Sections.size())
      return corrupt(describe(SymTab) + " links to string table " + Twine(ST.Link) +
                     ", which does not exist");
    StrTab = ST.Link;
    if (Error Err = checkStringTable(StrTab)) return Err;
    if (ShndxTable != 0) {
      if (Error Err = linksToSymbolTable(ShndxTable)) return Err;
      if (Error Err = checkTable(ShndxTable, sizeof(uint32_t))) return Err;
      if (Sections[ShndxTable].Size / sizeof(uint32_t) != NumSymbols)
        return corrupt(describe(ShndxTable) + " has " +
                       Twine(Sections[ShndxTable].Size / sizeof(uint32_t)) +
                       " entries, but the symbol table has " + Twine(NumSymbols) + " symbols");
    }

    using Sym = ELF::Elf64_Sym;
    uint64_t ZeroFill = ZeroFillTotal;
    for (uint64_t I = 0; I < NumSymbols; ++I) {
      uint64_t Off = ST.Offset + I * sizeof(Sym);
      uint32_t StName = read32(Off + offsetof(Sym, st_name));
      uint32_t Shndx = read16(Off + offsetof(Sym, st_shndx));
      uint64_t Value = read64(Off + offsetof(Sym, st_value));
      uint64_t Size = read64(Off + offsetof(Sym, st_size));
      if (StName >= Sections[StrTab].Size)
        return corrupt("symbol " + Twine(I) + " has name offset " + Twine(StName) +
                       " past the end of its string table " + describe(StrTab));
      std::string What = describeSymbol(I, StName);
      if (Shndx == ELF::SHN_XINDEX) {
        if (ShndxTable == 0)
          return corrupt(What +
                         " has an extended section index, but there is no "
                         "SHT_SYMTAB_SHNDX section");
        Shndx = read32(Sections[ShndxTable].Offset + I * sizeof(uint32_t));
        if (Shndx == ELF::SHN_UNDEF || Shndx >= Sections.size())
          return corrupt(What + " is in section " + Twine(Shndx) + ", which does not exist");
      } else if (Shndx == ELF::SHN_UNDEF || Shndx == ELF::SHN_ABS) {
        continue;
      } else if (Shndx == ELF::SHN_COMMON) {
        if ((read8(Off + offsetof(Sym, st_info)) & 0xf) == ELF::STT_TLS)
          return fail("has the thread_local variable " + What +
                      " as a common symbol, which this JIT does not link: compile with "
                      "-fno-common");
        if (!llvm::isPowerOf2_64(Value) || Value > kMaxAlignment)
          return corrupt("common " + What + " has alignment " + Twine(Value) +
                         ", which is not a power of two up to " + Twine(kMaxAlignment));
        if (Size > kMaxZeroFill - ZeroFill)
          return fail("asks for " + Twine(Size) + " bytes of zero-initialized memory for common " +
                      What +
                      ", more than the 1 GiB this JIT allows: allocate large buffers at "
                      "run time");
        ZeroFill += Size;
        continue;
      } else if (Shndx >= ELF::SHN_LORESERVE) {
        return fail("has " + What + " in the special section index " + Twine(Shndx) +
                    ", which this JIT does not link: compile without -mcmodel=large or "
                    "similar options");
      } else if (Shndx >= Sections.size()) {
        return corrupt(What + " is in section " + Twine(Shndx) + ", which does not exist");
      }
      // A symbol's value is its offset in its section; its bytes must lie inside the section.
      // Zero-sized symbols may sit at the very end (for example __stop-style end markers).
      uint64_t SecSize = Sections[Shndx].Size;
      if (!fits(Value, Size, SecSize))
        return corrupt(What + " (offset " + Twine(Value) + ", size " + Twine(Size) +
                       ") does not lie inside " + describe(Shndx) + " (size " + Twine(SecSize) +
                       ")");
    }
    return Error::success();
  }

  Error checkSectionContents(uint32_t Index) {
    const Section& S = Sections[Index];
    switch (S.Type) {
      case ELF::SHT_RELA:
        return checkRelocations(Index);
      case ELF::SHT_GROUP:
        return checkGroup(Index);
      case ELF::SHT_INIT_ARRAY:
      case ELF::SHT_FINI_ARRAY:
      case ELF::SHT_PREINIT_ARRAY:
        return checkPointerArray(Index);
      default:
        break;
    }
    StringRef SecName = stringAt(ShStrNdx, S.Name);
    if (SecName == ".eh_frame") return checkEhFrame(Index);
    if (S.Type == ELF::SHT_PROGBITS &&
        (SecName.starts_with(".init_array") || SecName.starts_with(".fini_array") ||
         SecName.starts_with(".ctors") || SecName.starts_with(".dtors")))
      return checkPointerArray(Index);
    return Error::success();
  }

  Error checkRelocations(uint32_t Index) {
    const Section& S = Sections[Index];
    if (Error Err = checkTable(Index, sizeof(ELF::Elf64_Rela))) return Err;
    uint64_t Count = S.Size / sizeof(ELF::Elf64_Rela);
    if (Count == 0) return Error::success();
    if (Error Err = linksToSymbolTable(Index)) return Err;
    uint32_t Target = S.Info;
    if (Target == 0 || Target >= Sections.size() || Target == Index)
      return corrupt(describe(Index) + " applies to section " + Twine(Target) +
                     ", which does not exist");
    const Section& T = Sections[Target];
    if (T.Type == ELF::SHT_NOBITS)
      return corrupt(describe(Index) + " applies to " + describe(Target) +
                     ", which has no contents to relocate");
    bool Loaded = (T.Flags & ELF::SHF_ALLOC) != 0;
    using Rela = ELF::Elf64_Rela;
    for (uint64_t I = 0; I < Count; ++I) {
      uint64_t Off = S.Offset + I * sizeof(Rela);
      uint64_t ROffset = read64(Off + offsetof(Rela, r_offset));
      uint64_t RInfo = read64(Off + offsetof(Rela, r_info));
      uint32_t Type = static_cast<uint32_t>(RInfo);
      uint64_t SymIndex = RInfo >> 32;
      std::string What = "relocation " + std::to_string(I) + " in " + describe(Index);
      const RelocationInfo* Found = findRelocation(Type);
      if (!Found) return corrupt(What + " has unknown type " + Twine(Type));
      const RelocationInfo& Info = *Found;
      if (const char* Advice = threadLocalAdvice(Type)) {
        std::string Symbol =
            SymIndex < NumSymbols
                ? " against " + describeSymbol(SymIndex, read32(Sections[SymTab].Offset +
                                                                SymIndex * sizeof(ELF::Elf64_Sym)))
                : "";
        return fail("uses a thread_local variable through relocation " + Twine(Info.Name) + Symbol +
                    " in " + describe(Index) + ", which pytest-orcjit cannot link: " + Advice);
      }
      if (!Info.Linkable) {
        // JITLink also applies the relocations of debug sections, so they count too.
        StringRef Advice =
            Loaded ? "compile with 'clang++ -c -fPIC' (such relocations come from non-PIC code, "
                     "TLS models other than global-dynamic, or -mcmodel=large)"
                   : "compile without -g";
        return fail("uses relocation type " + Twine(Info.Name) + " in " + describe(Index) +
                    ", which JITLink's x86-64 backend cannot link: " + Advice);
      }
      if (SymIndex >= NumSymbols)
        return corrupt(What + " refers to symbol " + Twine(SymIndex) + ", but " + describe(SymTab) +
                       " has " + Twine(NumSymbols) + " symbols");
      if (Type == ELF::R_X86_64_NONE) continue;
      if (ROffset < Info.Before || !fits(ROffset, Info.Width, T.Size)) {
        std::string Before;
        if (Info.Before != 0)
          Before = " and the " + std::to_string(Info.Before) + " bytes before them";
        return corrupt(What + " (" + Info.Name + ") patches bytes [" + Twine(ROffset) + ", " +
                       Twine(ROffset) + " + " + Twine(Info.Width) + ")" + Before + " of " +
                       describe(Target) + ", which is " + Twine(T.Size) + " bytes long");
      }
      Patches.push_back({Target, ROffset - Info.Before, ROffset + Info.Width, Index, I});
    }
    return Error::success();
  }

  /// No byte of a section may be patched by two relocations. An assembler never emits that for
  /// x86-64 (every relocation fills its own field of one instruction or datum), and the result
  /// would depend on the order JITLink applies them in; in corrupted objects it means that a
  /// relocation was moved onto the middle of an instruction, and the code would run garbage.
  Error checkOverlappingPatches() {
    std::sort(Patches.begin(), Patches.end(), [](const Patch& A, const Patch& B) {
      return std::tie(A.Target, A.Begin, A.Section, A.Relocation) <
             std::tie(B.Target, B.Begin, B.Section, B.Relocation);
    });
    for (size_t I = 1; I < Patches.size(); ++I) {
      const Patch& A = Patches[I - 1];
      const Patch& B = Patches[I];
      if (A.Target != B.Target || B.Begin >= A.End) continue;
      return corrupt("relocation " + Twine(A.Relocation) + " in " + describe(A.Section) +
                     " and relocation " + Twine(B.Relocation) + " in " + describe(B.Section) +
                     " both patch byte " + Twine(B.Begin) + " of " + describe(A.Target));
    }
    return Error::success();
  }

  Error checkGroup(uint32_t Index) const {
    const Section& S = Sections[Index];
    if (Error Err = checkTable(Index, sizeof(uint32_t))) return Err;
    if (S.Size == 0) return corrupt("group " + describe(Index) + " has no flag word");
    if (Error Err = linksToSymbolTable(Index)) return Err;
    if (S.Info >= NumSymbols)
      return corrupt("group " + describe(Index) + " is named by symbol " + Twine(S.Info) +
                     ", but the symbol table has " + Twine(NumSymbols));
    for (uint64_t Off = sizeof(uint32_t); Off < S.Size; Off += sizeof(uint32_t)) {
      uint32_t Member = read32(S.Offset + Off);
      if (Member == 0 || Member >= Sections.size() || Member == Index)
        return corrupt("group " + describe(Index) + " lists section " + Twine(Member) +
                       ", which does not exist");
    }
    return Error::success();
  }

  /// Init/fini arrays and .ctors/.dtors hold 8-byte function pointers.
  Error checkPointerArray(uint32_t Index) const {
    const Section& S = Sections[Index];
    if (S.Size % sizeof(uint64_t) != 0)
      return corrupt(describe(Index) + " holds function pointers, but its size " + Twine(S.Size) +
                     " is not a multiple of 8");
    return Error::success();
  }

  /// .eh_frame is a chain of CIE and FDE records, each led by its length. JITLink splits the
  /// section along these lengths and follows each FDE's pointer back to its CIE, so the chain
  /// must end exactly at the end of the section and every FDE must point at an earlier CIE.
  Error checkEhFrame(uint32_t Index) const {
    const Section& S = Sections[Index];
    if (S.Type == ELF::SHT_NOBITS) return corrupt(describe(Index) + " has no contents");
    std::vector<uint64_t> CIEs;
    uint64_t Off = 0;
    while (Off < S.Size) {
      uint64_t Start = Off;
      if (!fits(Off, 4, S.Size))
        return ehFrameError(Index, Start, "has a length field cut off by the end of the section");
      uint64_t Length = read32(S.Offset + Off);
      Off += 4;
      if (Length == 0xffffffff) {
        if (!fits(Off, 8, S.Size))
          return ehFrameError(Index, Start,
                              "has a 64-bit length field cut off by the end of the section");
        Length = read64(S.Offset + Off);
        Off += 8;
      }
      if (Length == 0) continue;  // A terminator.
      if (!fits(Off, Length, S.Size))
        return ehFrameError(Index, Start,
                            "has length " + Twine(Length) +
                                ", which extends past the end of "
                                "the section (" +
                                Twine(S.Size) + " bytes)");
      if (Length < 4) return ehFrameError(Index, Start, "is too short to hold a CIE pointer");
      uint64_t CIEPointer = read32(S.Offset + Off);
      if (CIEPointer == 0) {
        if (Error Err = checkCIE(Index, Start, S.Offset + Off + 4, S.Offset + Off + Length))
          return Err;
        CIEs.push_back(Start);
      } else {
        // The pointer counts back from its own position to the start of the CIE.
        bool Found =
            CIEPointer <= Off && std::binary_search(CIEs.begin(), CIEs.end(), Off - CIEPointer);
        if (!Found)
          return ehFrameError(Index, Start,
                              "points at offset " + Twine(Off - CIEPointer) +
                                  ", where no earlier CIE record starts");
      }
      Off += Length;
    }
    return Error::success();
  }

  /// The fields of a CIE that JITLink's EHFrameEdgeFixer interprets: it keeps at most three
  /// augmentation fields in a fixed array, and stops the process (llvm_unreachable) on a pointer
  /// encoding whose size it does not know. [Pos, End) are file offsets of the CIE after its ID.
  Error checkCIE(uint32_t Index, uint64_t Start, uint64_t Pos, uint64_t End) const {
    auto Bad = [&](const Twine& What) { return ehFrameError(Index, Start, "(a CIE) " + What); };
    if (Pos >= End || read8(Pos) != 1) return Bad("does not have version 1");
    ++Pos;
    std::string Augmentation;
    while (true) {
      if (Pos >= End) return Bad("has an augmentation string without a terminating NUL");
      char C = static_cast<char>(read8(Pos++));
      if (C == 0) break;
      if (Augmentation.size() == 8)
        return Bad("has an augmentation string longer than 8 characters");
      Augmentation.push_back(C);
    }
    StringRef Aug(Augmentation);
    for (size_t I = 0; I < Aug.size(); ++I) {
      char C = Aug[I];
      bool Known = C == 'z' || C == 'L' || C == 'P' || C == 'R' ||
                   (C == 'e' && Aug.substr(I).starts_with("eh"));
      if (!Known || Aug.count(C) > 1)
        return Bad("has augmentation string '" + Aug + "', which JITLink does not read");
      if (C == 'e') ++I;
    }
    if (Aug.contains("eh") && !skip(Pos, End, 8)) return Bad("is cut off in its EH data field");
    uint64_t Unused = 0;
    if (!readLEB(Pos, End, Unused) || !readLEB(Pos, End, Unused) || !skip(Pos, End, 1))
      return Bad("is cut off in its alignment factors or return address register");
    if (!Aug.starts_with("z")) return Error::success();
    uint64_t AugLength = 0;
    if (!readLEB(Pos, End, AugLength) || !fits(Pos, AugLength, End))
      return Bad("has augmentation data that extends past its end");
    uint64_t AugEnd = Pos + AugLength;
    for (char C : Aug) {
      if (C != 'L' && C != 'P' && C != 'R') continue;
      if (Pos >= AugEnd)
        return Bad("has augmentation data shorter than its augmentation string needs");
      uint8_t Encoding = read8(Pos++);
      unsigned Size = pointerEncodingSize(Encoding);
      if (Size == 0)
        return Bad("uses pointer encoding " + Twine(unsigned(Encoding)) +
                   ", which JITLink does not support");
      if (C == 'P' && !skip(Pos, AugEnd, Size))
        return Bad("has a personality pointer cut off by the end of its augmentation data");
    }
    return Error::success();
  }

  /// Bytes of a pointer in DWARF EH encoding `Encoding` as JITLink reads it (absolute or
  /// PC-relative, optionally indirect, 4 or 8 bytes), or 0 if JITLink cannot read it.
  static unsigned pointerEncodingSize(uint8_t Encoding) {
    if ((Encoding & 0x70) != 0x00 && (Encoding & 0x70) != 0x10)  // absptr, pcrel
      return 0;
    switch (Encoding & 0x0f) {
      case 0x00:  // absptr
      case 0x04:  // udata8
      case 0x0c:  // sdata8
        return 8;
      case 0x03:  // udata4
      case 0x0b:  // sdata4
        return 4;
      default:
        return 0;
    }
  }

  /// Advances `Pos` by `N` bytes if they lie before `End`.
  static bool skip(uint64_t& Pos, uint64_t End, uint64_t N) {
    if (!fits(Pos, N, End)) return false;
    Pos += N;
    return true;
  }

  /// Reads an (S|U)LEB128 of at most 10 bytes before `End`; the value is only used unsigned.
  bool readLEB(uint64_t& Pos, uint64_t End, uint64_t& Value) const {
    Value = 0;
    for (unsigned Shift = 0; Shift < 70; Shift += 7) {
      if (Pos >= End) return false;
      uint8_t Byte = read8(Pos++);
      if (Shift < 64) Value |= uint64_t(Byte & 0x7f) << Shift;
      if (!(Byte & 0x80)) return true;
    }
    return false;
  }

  Error ehFrameError(uint32_t Index, uint64_t Start, const Twine& What) const {
    return corrupt("the record at offset " + Twine(Start) + " of " + describe(Index) + " " + What);
  }

  const uint8_t* Data;
  uint64_t FileSize;
  StringRef Name;
  std::vector<Section> Sections;
  bool NamesChecked = false;
  uint32_t ShStrNdx = 0;
  uint32_t SymTab = 0;      ///< 0: none.
  uint32_t StrTab = 0;      ///< String table of SymTab.
  uint32_t ShndxTable = 0;  ///< 0: none.
  uint64_t NumSymbols = 0;
  uint64_t ZeroFillTotal = 0;  ///< Bytes of SHF_ALLOC SHT_NOBITS sections.

  /// The bytes [Begin, End) of section Target that relocation Relocation of section Section
  /// patches (or reads, for GOT relaxation).
  struct Patch {
    uint32_t Target;
    uint64_t Begin, End;
    uint32_t Section;
    uint64_t Relocation;
  };
  std::vector<Patch> Patches;
};

}  // namespace

Error checkObject(llvm::MemoryBufferRef buffer, StringRef name) {
  return ObjectChecker(buffer, name).run();
}

}  // namespace orcjit
