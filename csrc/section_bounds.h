// The ObjectLinkingLayer plugin that keeps sections reached only through their `__start_<section>`
// / `__stop_<section>` symbols alive through dead-stripping, as GNU ld does.
//
// Code that walks a section between its bounds (registries built from `__attribute__((section))`
// variables; clang's profile sections `__llvm_prf_*` of kernels compiled for coverage,
// pytest_orcjit/coverage.py) keeps that section alive in a static link only because the linker
// keeps sections that `__start_` / `__stop_` symbols refer to: no edge reaches their blocks, and
// JITLink would strip them, so the walk would silently find nothing. This plugin gives every block
// of such a section a live anonymous symbol before pruning; JITLink's ELF linker then defines the
// graph's `__start_` and `__stop_` symbols over the graph's blocks of it. The profile runtime
// linked into an instrumented object refers weakly to the bounds of every profile section: those
// of the profile sections a graph lacks become null, as in a static link. A graph that refers to
// no section bounds pays one pass over its external symbols.
#ifndef PYTEST_ORCJIT_SECTION_BOUNDS_H_
#define PYTEST_ORCJIT_SECTION_BOUNDS_H_

#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include "plugin.h"

namespace orcjit {

class SectionBoundsPlugin final : public ResourcelessPlugin {
 public:
  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_SECTION_BOUNDS_H_
