// The ObjectLinkingLayer plugin that keeps clang's profile sections through dead-stripping, so that
// kernels compiled for coverage (`-fprofile-instr-generate`, pytest_orcjit/coverage.py) can write
// their counters.
//
// An instrumented object keeps its per-function profile records (`__llvm_prf_data`), the names
// they hash (`__llvm_prf_names`) and its other `__llvm_prf_*` sections alive in a static link only
// because the linker keeps sections that `__start_<section>` / `__stop_<section>` refer to: no edge
// reaches them. JITLink would strip them. This plugin gives every block of those sections a live
// anonymous symbol before pruning; JITLink's ELF linker then defines each graph's `__start_` and
// `__stop_` symbols of a section over that graph's blocks of it, which the profile runtime linked
// into the same object reads; those of the profile sections a graph lacks (the runtime refers to
// all of them, weakly) become null, as in a static link. A graph without profile sections pays a
// few section-name lookups.
#ifndef PYTEST_ORCJIT_PROFILE_SECTIONS_H_
#define PYTEST_ORCJIT_PROFILE_SECTIONS_H_

#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include "plugin.h"

namespace orcjit {

class ProfileSectionsPlugin final : public ResourcelessPlugin {
 public:
  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility& mr) override {
    return llvm::Error::success();
  }
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_PROFILE_SECTIONS_H_
