// Keeping clang's profile sections alive through dead-stripping. See profile_sections.h.
#include "profile_sections.h"

#include <vector>

namespace orcjit {

namespace {

/// The sections the profile runtime finds through `__start_` / `__stop_` symbols only.
constexpr const char* kProfileSections[] = {
    "__llvm_prf_cnts", "__llvm_prf_data", "__llvm_prf_names", "__llvm_prf_bits",
    "__llvm_prf_vnds", "__llvm_prf_vns",  "__llvm_prf_vtab",
};

bool HasProfileSections(llvm::jitlink::LinkGraph& g) {
  for (const char* name : kProfileSections) {
    if (g.findSectionByName(name) != nullptr) return true;
  }
  return false;
}

}  // namespace

void ProfileSectionsPlugin::modifyPassConfig(llvm::orc::MaterializationResponsibility& mr,
                                             llvm::jitlink::LinkGraph& g,
                                             llvm::jitlink::PassConfiguration& config) {
  if (!HasProfileSections(g)) return;
  config.PrePrunePasses.push_back([](llvm::jitlink::LinkGraph& g) {
    for (const char* name : kProfileSections) {
      auto* section = g.findSectionByName(name);
      if (section == nullptr) continue;
      std::vector<llvm::jitlink::Block*> blocks(section->blocks().begin(), section->blocks().end());
      for (auto* block : blocks) g.addAnonymousSymbol(*block, 0, 0, false, /*IsLive=*/true);
    }
    return llvm::Error::success();
  });
  // After JITLink defined the start and end symbols of the sections the graph has: those of the
  // profile sections it lacks are null, as a static link makes them, rather than left to ORC's
  // lookup (which would search the process for them, and take the slow path for the whole graph).
  config.PostAllocationPasses.push_back([](llvm::jitlink::LinkGraph& g) {
    std::vector<llvm::jitlink::Symbol*> absent;
    for (auto* symbol : g.external_symbols()) {
      llvm::StringRef name = *symbol->getName();
      if (symbol->isWeaklyReferenced() &&
          (name.starts_with("__start___llvm_") || name.starts_with("__stop___llvm_"))) {
        absent.push_back(symbol);
      }
    }
    for (auto* symbol : absent) g.makeAbsolute(*symbol, llvm::orc::ExecutorAddr());
    return llvm::Error::success();
  });
}

}  // namespace orcjit
