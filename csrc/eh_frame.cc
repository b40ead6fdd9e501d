// Packs .eh_frame records after dead-stripping; see eh_frame.h.
#include "eh_frame.h"

#include <llvm/ExecutionEngine/JITLink/JITLink.h>

namespace orcjit {

void EHFramePackingPlugin::modifyPassConfig(llvm::orc::MaterializationResponsibility&,
                                            llvm::jitlink::LinkGraph&,
                                            llvm::jitlink::PassConfiguration& config) {
  config.PostPrunePasses.push_back([](llvm::jitlink::LinkGraph& graph) {
    if (auto* section = graph.findSectionByName(".eh_frame")) {
      for (auto* block : section->blocks()) {
        block->setAlignment(4);
        block->setAlignmentOffset(0);
      }
    }
    return llvm::Error::success();
  });
}

}  // namespace orcjit
