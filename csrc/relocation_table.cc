// The table of x86-64 relocation types and its lookups. See relocation_table.h.
#include "relocation_table.h"

#include <llvm/BinaryFormat/ELF.h>

namespace orcjit {
namespace {

namespace ELF = llvm::ELF;

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

}  // namespace

const RelocationInfo* FindRelocation(uint32_t type) {
  for (const RelocationInfo& info : kRelocations) {
    if (info.type == type) return &info;
  }
  return nullptr;
}

const char* ThreadLocalAdvice(uint32_t type) {
  switch (type) {
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

}  // namespace orcjit
