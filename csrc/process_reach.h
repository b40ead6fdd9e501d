// Placement within 32-bit reach of the process: which libraries must lie within 2 GiB of the
// process's shared libraries, and where they may lie.
//
// Code compiled with `g++ -fpie` (or clang's `-fdirect-access-external-data`) refers to data it
// does not define, `std::cerr` or libstdc++'s typeinfo and vtables, with R_X86_64_PC32
// relocations, straight to the symbol rather than through a GOT entry: JITLink makes them Delta32
// edges to the process's symbol, which must lie within +-2 GiB of the instruction. Calls
// (R_X86_64_PLT32) and GOT loads (R_X86_64_GOTPCRELX) need no such thing: JITLink gives every call
// to a symbol outside the graph a stub and every GOT load a GOT entry, both inside the library's
// arena and holding 64-bit addresses, and goes straight to the target only when it is in reach.
// Absolute 32-bit relocations (R_X86_64_32, `-fno-pic`) need targets below 4 GiB, which no
// placement gives; linking reports them, and -fPIC is the fix for them too.
//
// So each object is scanned once for its R_X86_64_PC32 relocations against undefined symbols.
// When a library is first linked, the symbols its objects refer to that way and that the process
// defines (not the library itself) are looked up: if there are any, the library's arena is placed
// inside the window of addresses within 2 GiB of all of them (near_space.h) and sized from the
// objects, instead of the 1 GiB arena placed wherever the kernel likes that other libraries get.
#ifndef PYTEST_ORCJIT_PROCESS_REACH_H_
#define PYTEST_ORCJIT_PROCESS_REACH_H_

#include <llvm/ADT/STLFunctionalExtras.h>
#include <llvm/Support/MemoryBufferRef.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "memory.h"
#include "near_space.h"

namespace orcjit {

/// An undefined symbol an object refers to with R_X86_64_PC32, with the range of the addends.
struct ReachReference {
  std::string symbol;
  int64_t min_addend = 0;
  int64_t max_addend = 0;
};

/// What an object asks of the placement of its library.
struct PlacementNeeds {
  /// The undefined symbols it refers to 32-bit PC-relatively, each once.
  std::vector<ReachReference> reach;
  /// About how much JIT memory it takes: its allocated sections and common symbols, with room
  /// for GOT entries, stubs and page rounding.
  uint64_t memory_bytes = 0;
};

/// The placement needs of the object in `buffer`, which has passed CheckObject (object_check.h).
PlacementNeeds FindPlacementNeeds(llvm::MemoryBufferRef buffer);

/// A symbol of the process that an object refers to 32-bit PC-relatively, and where it is.
struct ReachTarget {
  std::string object;  // the object's path, or "<bytes>"
  const ReachReference* reference;
  uint64_t address;
};

/// The addresses that memory must lie in, all of it, for every target to be in reach of it; empty
/// (lo >= hi) when the targets are too far apart.
AddressRange ReachWindow(const std::vector<ReachTarget>& targets);

/// Whether every byte of `memory` reaches `target`.
bool Reaches(AddressRange memory, const ReachTarget& target);

/// "'NAME' (in /path/of/the/library.so)", or "'NAME' (at 0xADDRESS)" if no library holds it.
std::string DescribeTarget(const ReachTarget& target);

/// Where linking will bind a symbol of a library's objects: 0 for the symbols the library defines
/// itself (its objects' and its `__dso_handle`) and for those nobody defines, else the address of
/// the process's symbol.
using ResolveFunction = llvm::function_ref<uint64_t(llvm::StringRef symbol)>;

/// The placement of one library: what its objects ask of it until its arena is reserved, when it
/// is first linked.
class LibraryPlacement {
 public:
  /// Near arenas hold at least this much (default 1 MiB: thousands fit near the process), and
  /// twice what the objects added before the first link take.
  static constexpr uint64_t kMinNearArenaBytes = uint64_t(1) << 20;

  /// Notes what `object`, added before the library was placed, asks of the placement.
  void Add(const std::string& object, const PlacementNeeds& needs);

  /// Reserves the arena of `library`: near the process symbols its objects refer to 32-bit
  /// PC-relatively, or else a 1 GiB one anywhere (Arena::Reserve). Fails, naming the objects, the
  /// symbols and -fPIC, when the symbols are more than 2 GiB apart or no room is left near them.
  llvm::Expected<std::unique_ptr<Arena>> Place(const std::string& library, ResolveFunction resolve);

  /// Fails, naming `object`, the symbol and -fPIC, when `arena` (of `library`) is out of reach of
  /// a process symbol `object`, added after the library was placed, refers to 32-bit PC-relatively.
  static llvm::Error CheckReach(const Arena& arena, const std::string& library,
                                const std::string& object, const PlacementNeeds& needs,
                                ResolveFunction resolve);

 private:
  /// The objects that refer to symbols 32-bit PC-relatively, and those references.
  std::vector<std::pair<std::string, std::vector<ReachReference>>> reach_;
  uint64_t memory_bytes_ = 0;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_PROCESS_REACH_H_
