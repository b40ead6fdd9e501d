// Finding the references that must reach the process, and the window they leave. See
// process_reach.h.
#include "process_reach.h"

#include <dlfcn.h>
#include <llvm/ADT/StringMap.h>
#include <llvm/BinaryFormat/ELF.h>
#include <llvm/Object/ELF.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace orcjit {

namespace {

using ELFT = llvm::object::ELF64LE;

/// How far a 32-bit PC-relative relocation reaches, either way.
constexpr int64_t kReach = int64_t(1) << 31;
/// Addends beyond this reach nothing anyway; bounding them keeps the arithmetic below in range.
constexpr int64_t kMaxAddend = int64_t(1) << 32;
/// Room, per object, for the page rounding of its segments and for its GOT and stubs' pages.
constexpr uint64_t kObjectOverhead = uint64_t(64) << 10;
/// Room for each undefined symbol's GOT entry and stub.
constexpr uint64_t kPerExternal = 16;

/// The lowest address the start of memory may have for `target` to be in its reach.
int64_t LowestStart(const ReachTarget& target) {
  return int64_t(target.address) + target.reference->max_addend - (kReach - 1);
}

/// The highest address the end of memory may have for `target` to be in its reach.
int64_t HighestEnd(const ReachTarget& target) {
  return int64_t(target.address) + target.reference->min_addend + kReach;
}

}  // namespace

PlacementNeeds FindPlacementNeeds(llvm::MemoryBufferRef buffer) {
  PlacementNeeds needs;
  needs.memory_bytes = kObjectOverhead;
  auto file = llvm::object::ELFFile<ELFT>::create(buffer.getBuffer());
  if (!file) {
    llvm::consumeError(file.takeError());
    return needs;
  }
  auto sections = file->sections();
  if (!sections) {
    llvm::consumeError(sections.takeError());
    return needs;
  }
  llvm::StringMap<size_t> index;  // symbol -> position in needs.reach
  for (const auto& section : *sections) {
    if (section.sh_flags & llvm::ELF::SHF_ALLOC) {
      needs.memory_bytes += section.sh_size + std::max<uint64_t>(section.sh_addralign, 1);
    }
    if (section.sh_type == llvm::ELF::SHT_SYMTAB) {
      if (auto symbols = file->symbols(&section)) {
        for (const auto& symbol : *symbols) {
          if (symbol.st_shndx == llvm::ELF::SHN_COMMON) needs.memory_bytes += symbol.st_size;
          if (symbol.st_shndx == llvm::ELF::SHN_UNDEF) needs.memory_bytes += kPerExternal;
        }
      } else {
        llvm::consumeError(symbols.takeError());
      }
    }
    if (section.sh_type != llvm::ELF::SHT_RELA) continue;
    auto symtab = file->getSection(section.sh_link);
    auto relocations = file->relas(section);
    if (!symtab || !relocations) {
      llvm::consumeError(symtab.takeError());
      llvm::consumeError(relocations.takeError());
      continue;
    }
    auto strings = file->getStringTableForSymtab(**symtab, *sections);
    if (!strings) {
      llvm::consumeError(strings.takeError());
      continue;
    }
    for (const auto& relocation : *relocations) {
      if (relocation.getType(false) != llvm::ELF::R_X86_64_PC32) continue;
      auto symbol = file->getRelocationSymbol(relocation, *symtab);
      if (!symbol) {
        llvm::consumeError(symbol.takeError());
        continue;
      }
      if (*symbol == nullptr || (*symbol)->st_shndx != llvm::ELF::SHN_UNDEF) continue;
      auto name = (*symbol)->getName(*strings);
      if (!name || name->empty()) {
        if (!name) llvm::consumeError(name.takeError());
        continue;
      }
      int64_t addend = std::clamp<int64_t>(relocation.r_addend, -kMaxAddend, kMaxAddend);
      auto [slot, inserted] = index.try_emplace(*name, needs.reach.size());
      if (inserted) {
        needs.reach.push_back({name->str(), addend, addend});
      } else {
        ReachReference& reference = needs.reach[slot->second];
        reference.min_addend = std::min(reference.min_addend, addend);
        reference.max_addend = std::max(reference.max_addend, addend);
      }
    }
  }
  return needs;
}

AddressRange ReachWindow(const std::vector<ReachTarget>& targets) {
  int64_t lo = 0;
  int64_t hi = INT64_MAX;
  for (const ReachTarget& target : targets) {
    lo = std::max(lo, LowestStart(target));
    hi = std::min(hi, HighestEnd(target));
  }
  if (hi <= lo) return {0, 0};
  return {uint64_t(lo), uint64_t(hi)};
}

bool Reaches(AddressRange memory, const ReachTarget& target) {
  return int64_t(memory.lo) >= LowestStart(target) && int64_t(memory.hi) <= HighestEnd(target);
}

void LibraryPlacement::Add(const std::string& object, const PlacementNeeds& needs) {
  memory_bytes_ += needs.memory_bytes;
  if (!needs.reach.empty()) reach_.emplace_back(object, needs.reach);
}

llvm::Expected<std::unique_ptr<Arena>> LibraryPlacement::Place(const std::string& library,
                                                               ResolveFunction resolve) {
  std::vector<ReachTarget> targets;
  for (const auto& [object, references] : reach_) {
    for (const ReachReference& reference : references) {
      if (uint64_t address = resolve(reference.symbol)) {
        targets.push_back({object, &reference, address});
      }
    }
  }
  if (targets.empty()) return Arena::Reserve();
  const std::string intro = "cannot place library '" + library + "' within 2 GiB of ";
  const std::string fix = "; compile the objects with -fPIC";
  AddressRange window = ReachWindow(targets);
  if (window.size() == 0) {
    auto lowest = std::min_element(targets.begin(), targets.end(),
                                   [](auto& a, auto& b) { return HighestEnd(a) < HighestEnd(b); });
    auto highest = std::max_element(targets.begin(), targets.end(), [](auto& a, auto& b) {
      return LowestStart(a) < LowestStart(b);
    });
    char apart[32];
    std::snprintf(apart, sizeof apart, "%.1f GiB",
                  double(highest->address - lowest->address) / double(uint64_t(1) << 30));
    return llvm::createStringError(
        std::make_error_code(std::errc::result_out_of_range),
        intro + "what its objects refer to with 32-bit PC-relative relocations (R_X86_64_PC32): '" +
            lowest->object + "' refers to " + DescribeTarget(*lowest) + " and '" + highest->object +
            "' to " + DescribeTarget(*highest) + ", which are " + apart +
            " apart: no address is within 2 GiB of both" + fix);
  }
  uint64_t bytes = std::max(kMinNearArenaBytes, 2 * memory_bytes_);
  bytes = (bytes + kMinNearArenaBytes - 1) / kMinNearArenaBytes * kMinNearArenaBytes;
  auto [first, last] = std::minmax_element(targets.begin(), targets.end(),
                                           [](auto& a, auto& b) { return a.address < b.address; });
  uint64_t near = first->address + (last->address - first->address) / 2;
  auto arena = Arena::ReserveNear(window, bytes, near);
  if (!arena) {
    return llvm::createStringError(
        std::make_error_code(std::errc::not_enough_memory),
        intro + DescribeTarget(targets.front()) + ", which '" + targets.front().object +
            "' refers to with a 32-bit PC-relative relocation (R_X86_64_PC32): " +
            llvm::toString(arena.takeError()) + " (" + std::to_string(bytes >> 20) +
            " MiB asked for); close libraries that are no longer needed, or compile the objects "
            "with -fPIC");
  }
  reach_.clear();
  return arena;
}

llvm::Error LibraryPlacement::CheckReach(const Arena& arena, const std::string& library,
                                         const std::string& object, const PlacementNeeds& needs,
                                         ResolveFunction resolve) {
  for (const ReachReference& reference : needs.reach) {
    ReachTarget target{object, &reference, resolve(reference.symbol)};
    if (target.address == 0 || Reaches(arena.range(), target)) continue;
    return llvm::createStringError(
        std::make_error_code(std::errc::result_out_of_range),
        "cannot add '" + object + "' to library '" + library + "': it refers to " +
            DescribeTarget(target) +
            " with a 32-bit PC-relative relocation (R_X86_64_PC32), and the library, placed when "
            "it was first linked, lies more than 2 GiB away from it; compile the object with "
            "-fPIC, or add it to the library before its first link");
  }
  return llvm::Error::success();
}

std::string DescribeTarget(const ReachTarget& target) {
  std::string text = "'" + target.reference->symbol + "' (";
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(target.address), &info) != 0 && info.dli_fname != nullptr &&
      info.dli_fname[0] != '\0') {
    text += "in ";
    text += info.dli_fname;
  } else {
    char address[32];
    std::snprintf(address, sizeof address, "at 0x%" PRIx64, target.address);
    text += address;
  }
  return text + ")";
}

}  // namespace orcjit
