// The ELF header check of an object file (see elf_header_check.h): what kind of file it is, and
// whether its header is one that the rest of the object check (object_check.cc) can read.
#include "elf_header_check.h"

#include <llvm/ADT/Twine.h>
#include <llvm/BinaryFormat/ELF.h>
#include <llvm/Support/Endian.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace orcjit {
namespace {

namespace ELF = llvm::ELF;
using llvm::Error;
using llvm::StringRef;
using llvm::Twine;

uint8_t Read8(const uint8_t* data, uint64_t offset) { return data[offset]; }
uint16_t Read16(const uint8_t* data, uint64_t offset) {
  return llvm::support::endian::read16le(data + offset);
}
uint32_t Read32(const uint8_t* data, uint64_t offset) {
  return llvm::support::endian::read32le(data + offset);
}

/// "'x.o' <Message>": for files that are well-formed but not something this JIT links.
Error Fail(StringRef name, const Twine& message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "'" + name + "' " + message);
}

/// "'x.o' is truncated or corrupt: <What>".
Error Corrupt(StringRef name, const Twine& what) {
  return Fail(name, "is truncated or corrupt: " + what);
}

}  // namespace

Error CheckElfHeader(const uint8_t* data, uint64_t file_size, StringRef name) {
  if (file_size == 0) return Fail(name, "is empty");
  if (file_size >= 8 && std::memcmp(data, "!<arch>\n", 8) == 0)
    return Fail(name,
                "is a static library (ar archive), not a relocatable object: pass the .o files "
                "it contains ('ar x' extracts them)");
  if (file_size < 4 || std::memcmp(data, ELF::ElfMagic, 4) != 0)
    return Fail(name, "is not an ELF object file (no ELF magic)");
  // e_type and e_machine sit at the same place in 32- and 64-bit headers; read them first so
  // that a shared library or an object for another machine gets the message that helps.
  if (file_size < 20)
    return Corrupt(name, "the ELF header is cut off after " + Twine(file_size) + " bytes");
  uint8_t elf_class = Read8(data, ELF::EI_CLASS);
  uint8_t encoding = Read8(data, ELF::EI_DATA);
  if (encoding == ELF::ELFDATA2MSB)
    return Fail(name,
                "is a big-endian ELF file, but this JIT links little-endian x86-64 objects: "
                "compile for the host");
  if (encoding != ELF::ELFDATA2LSB)
    return Corrupt(name,
                   "unknown data encoding " + Twine(unsigned(encoding)) + " in the ELF header");
  uint16_t type = Read16(data, offsetof(ELF::Elf64_Ehdr, e_type));
  uint16_t machine = Read16(data, offsetof(ELF::Elf64_Ehdr, e_machine));
  if (type == ELF::ET_DYN)
    return Fail(name,
                "is a shared library (ELF type ET_DYN), not a relocatable object: pass the .o "
                "that 'clang++ -c -fPIC' produces");
  if (type == ELF::ET_EXEC)
    return Fail(name,
                "is an executable (ELF type ET_EXEC), not a relocatable object: pass the .o "
                "that 'clang++ -c -fPIC' produces");
  if (type == ELF::ET_CORE)
    return Fail(name,
                "is a core dump (ELF type ET_CORE), not a relocatable object: pass the .o "
                "that 'clang++ -c -fPIC' produces");
  if (type != ELF::ET_REL)
    return Corrupt(name, "unknown ELF type " + Twine(type) + " (a relocatable object has ET_REL)");
  if (machine == ELF::EM_386)
    return Fail(name,
                "is a 32-bit x86 (i386) object, but this JIT links x86-64 objects: compile "
                "without -m32");
  if (machine != ELF::EM_X86_64) {
    StringRef arch = ELF::convertEMachineToArchName(machine);
    std::string what =
        arch.empty() || arch == "None" ? "machine " + std::to_string(machine) : arch.str();
    return Fail(name, "is an object for " + what +
                          ", but this JIT links x86-64 objects: compile for the host");
  }
  if (elf_class == ELF::ELFCLASS32)
    return Fail(name,
                "is a 32-bit ELF object (x32 ABI), but this JIT links 64-bit x86-64 objects: "
                "compile without -mx32");
  if (elf_class != ELF::ELFCLASS64)
    return Corrupt(name, "unknown ELF class " + Twine(unsigned(elf_class)) + " in the ELF header");
  if (file_size < sizeof(ELF::Elf64_Ehdr))
    return Corrupt(name, "the ELF header is cut off after " + Twine(file_size) + " bytes (it has " +
                             Twine(sizeof(ELF::Elf64_Ehdr)) + ")");
  if (Read8(data, ELF::EI_VERSION) != ELF::EV_CURRENT ||
      Read32(data, offsetof(ELF::Elf64_Ehdr, e_version)) != ELF::EV_CURRENT)
    return Corrupt(name, "unknown ELF version in the ELF header");
  uint16_t eh_size = Read16(data, offsetof(ELF::Elf64_Ehdr, e_ehsize));
  if (eh_size != sizeof(ELF::Elf64_Ehdr))
    return Corrupt(name, "the ELF header says it is " + Twine(eh_size) + " bytes long, not " +
                             Twine(sizeof(ELF::Elf64_Ehdr)));
  return Error::success();
}

}  // namespace orcjit
