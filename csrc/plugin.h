// The base of pytest-orcjit's ObjectLinkingLayer plugins.
//
// ORC asks every plugin to release or move the resources it tracks per ResourceKey when a
// library's memory is removed or merged. None of ours tracks anything per ResourceKey (what they
// keep is per library and dropped when the library closes), so those two answers are the same
// everywhere and live here.
#ifndef PYTEST_ORCJIT_PLUGIN_H_
#define PYTEST_ORCJIT_PLUGIN_H_

#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

namespace orcjit {

/// A plugin with no per-ResourceKey state and nothing to undo when a link fails: removing or
/// transferring resources and a failed link have nothing to do (a plugin that keeps per-link
/// state overrides notifyFailed).
class ResourcelessPlugin : public llvm::orc::ObjectLinkingLayer::Plugin {
 public:
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility&) override {
    return llvm::Error::success();
  }
  llvm::Error notifyRemovingResources(llvm::orc::JITDylib&, llvm::orc::ResourceKey) override {
    return llvm::Error::success();
  }
  void notifyTransferringResources(llvm::orc::JITDylib&, llvm::orc::ResourceKey,
                                   llvm::orc::ResourceKey) override {}
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_PLUGIN_H_
