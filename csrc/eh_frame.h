// Keeps each linked graph's .eh_frame readable by libgcc's unwinder.
//
// Objects align their .eh_frame records to 8 bytes, and JITLink keeps each record's alignment when
// it lays out the section. When a graph drops records (the copies of inline functions that another
// object of the library already defines are discarded, and their FDEs with them) the records that
// remain can end up 4 bytes apart, and the gap is zero. libgcc's __register_frame reads a zero
// length as the end of the section, so every record after the first gap goes unregistered, and a
// C++ exception thrown in (or through) such a function terminates the process. Records only need
// 4-byte alignment: packing them that way after dead-stripping leaves no gaps.
#ifndef PYTEST_ORCJIT_EH_FRAME_H_
#define PYTEST_ORCJIT_EH_FRAME_H_

#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include "plugin.h"

namespace orcjit {

class EHFramePackingPlugin final : public ResourcelessPlugin {
 public:
  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_EH_FRAME_H_
