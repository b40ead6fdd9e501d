// Keeping sections reached through their bounds alive through dead-stripping. See section_bounds.h.
#include "section_bounds.h"

#include <vector>

namespace orcjit {

namespace {

/// The sections the profile runtime finds through `__start_` / `__stop_` symbols only.
constexpr const char* kProfileSections[] = {
    "__llvm_prf_cnts", "__llvm_prf_data", "__llvm_prf_names", "__llvm_prf_bits",
    "__llvm_prf_vnds", "__llvm_prf_vns",  "__llvm_prf_vtab",
};

/// The section whose bounds `name` is (`__start_X` or `__stop_X` -> X), or an empty name.
llvm::StringRef BoundedSection(llvm::StringRef name) {
  if (name.consume_front("__start_") || name.consume_front("__stop_")) return name;
  return {};
}

/// The graph's sections that its code reaches through their bounds (each once), and whether it has
/// profile sections.
std::vector<llvm::jitlink::Section*> BoundedSections(llvm::jitlink::LinkGraph& g,
                                                     bool& has_profile_sections) {
  std::vector<llvm::jitlink::Section*> sections;
  auto add = [&sections](llvm::jitlink::Section* section) {
    if (section == nullptr) return;
    for (auto* known : sections) {
      if (known == section) return;
    }
    sections.push_back(section);
  };
  has_profile_sections = false;
  for (const char* name : kProfileSections) {
    auto* section = g.findSectionByName(name);
    has_profile_sections |= section != nullptr;
    add(section);
  }
  for (auto* symbol : g.external_symbols()) {
    llvm::StringRef section = BoundedSection(*symbol->getName());
    if (!section.empty()) add(g.findSectionByName(section));
  }
  return sections;
}

}  // namespace

void SectionBoundsPlugin::modifyPassConfig(llvm::orc::MaterializationResponsibility& mr,
                                           llvm::jitlink::LinkGraph& g,
                                           llvm::jitlink::PassConfiguration& config) {
  bool has_profile_sections = false;
  std::vector<llvm::jitlink::Section*> sections = BoundedSections(g, has_profile_sections);
  if (sections.empty()) return;
  config.PrePrunePasses.push_back([sections](llvm::jitlink::LinkGraph& g) {
    for (auto* section : sections) {
      std::vector<llvm::jitlink::Block*> blocks(section->blocks().begin(), section->blocks().end());
      for (auto* block : blocks) g.addAnonymousSymbol(*block, 0, 0, false, /*IsLive=*/true);
    }
    return llvm::Error::success();
  });
  if (!has_profile_sections) return;
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
