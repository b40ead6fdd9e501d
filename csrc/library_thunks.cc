// The table of per-library entry points and the machine code of their thunks; see
// library_thunks.h.
#include "library_thunks.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "ffi_registrations.h"
#include "libc_nonshared.h"

extern "C" void __stack_chk_fail();  // NOLINT

namespace orcjit {

namespace {

const EntryPoint kEntryPoints[] = {
    // libc_nonshared.a (libc_nonshared.h).
    {"atexit", reinterpret_cast<const void*>(&OrcjitAtExit), 1},
    {"at_quick_exit", reinterpret_cast<const void*>(&OrcjitAtQuickExit), 1},
    {"pthread_atfork", reinterpret_cast<const void*>(&OrcjitAtFork), 3},
    {"__pthread_atfork", reinterpret_cast<const void*>(&OrcjitAtFork), 3},
    {"__stack_chk_fail_local", reinterpret_cast<const void*>(&__stack_chk_fail), -1},
    // tvm-ffi's registries (ffi_registrations.h).
    {"TVMFFIFunctionGetGlobal", reinterpret_cast<const void*>(&OrcjitFunctionGetGlobal), 2},
    {"TVMFFIFunctionSetGlobal", reinterpret_cast<const void*>(&OrcjitFunctionSetGlobal), 3},
    {"TVMFFIFunctionSetGlobalFromMethodInfo",
     reinterpret_cast<const void*>(&OrcjitFunctionSetGlobalFromMethodInfo), 2},
    {"TVMFFITypeRegisterField", reinterpret_cast<const void*>(&OrcjitTypeRegisterField), 2},
    {"TVMFFITypeRegisterMethod", reinterpret_cast<const void*>(&OrcjitTypeRegisterMethod), 2},
    {"TVMFFITypeRegisterMetadata", reinterpret_cast<const void*>(&OrcjitTypeRegisterMetadata), 2},
    {"TVMFFITypeRegisterAttr", reinterpret_cast<const void*>(&OrcjitTypeRegisterAttr), 3},
};

/// Each thunk takes one slot of its page: `movabs <key register>, key; movabs rax, target;
/// jmp rax` is 22 bytes.
constexpr size_t kSlotBytes = 32;

/// The second opcode byte of `movabs r64, imm64` (REX.W B8+r) for the System V argument registers
/// rdi, rsi, rdx, rcx, r8, r9, and whether the register needs REX.B.
struct ArgumentRegister {
  uint8_t opcode;
  bool extended;
};
constexpr ArgumentRegister kArgumentRegisters[] = {{0xBF, false}, {0xBE, false}, {0xBA, false},
                                                   {0xB9, false}, {0xB8, true},  {0xB9, true}};

void WriteThunk(char* slot, int key_argument, void* key, const void* target) {
  const ArgumentRegister& reg = kArgumentRegisters[key_argument];
  auto* code = reinterpret_cast<uint8_t*>(slot);
  auto imm64 = [&code](uint64_t value) {
    std::memcpy(code, &value, sizeof(value));
    code += sizeof(value);
  };
  *code++ = reg.extended ? 0x49 : 0x48;  // REX.W (+B)
  *code++ = reg.opcode;
  imm64(reinterpret_cast<uint64_t>(key));
  *code++ = 0x48;  // movabs rax, target
  *code++ = 0xB8;
  imm64(reinterpret_cast<uint64_t>(target));
  *code++ = 0xFF;  // jmp rax
  *code++ = 0xE0;
  while (code < reinterpret_cast<uint8_t*>(slot) + kSlotBytes) *code++ = 0xCC;  // int3
}

static_assert(sizeof(kEntryPoints) / sizeof(kEntryPoints[0]) * kSlotBytes <= 4096,
              "the thunks of a library fit in one page");

}  // namespace

llvm::ArrayRef<EntryPoint> EntryPoints() { return kEntryPoints; }

llvm::Expected<llvm::orc::ExecutorAddr> LibraryThunks::Address(size_t index) {
  const EntryPoint& entry = kEntryPoints[index];
  if (entry.key_argument < 0) return llvm::orc::ExecutorAddr::fromPtr(entry.target);
  std::lock_guard<std::mutex> lock(mutex_);
  if (page_ == nullptr) {
    auto page = arena_.Allocate(Arena::page_size());
    if (!page) return page.takeError();
    for (size_t i = 0; i < std::size(kEntryPoints); ++i) {
      if (kEntryPoints[i].key_argument >= 0) {
        WriteThunk(*page + i * kSlotBytes, kEntryPoints[i].key_argument, key_,
                   kEntryPoints[i].target);
      }
    }
    if (mprotect(*page, Arena::page_size(), PROT_READ | PROT_EXEC) != 0) {
      return llvm::createStringError(std::error_code(errno, std::generic_category()),
                                     "cannot make the library's entry points executable: %s",
                                     std::strerror(errno));
    }
    page_ = *page;
  }
  return llvm::orc::ExecutorAddr::fromPtr(page_ + index * kSlotBytes);
}

}  // namespace orcjit
