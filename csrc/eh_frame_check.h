// Validation of an object's .eh_frame section before JITLink reads it, part of the object check
// (object_check.h). JITLink splits .eh_frame into its CIE and FDE records along their length
// fields, follows each FDE's pointer back to its CIE and interprets some CIE fields with no bounds
// checks of its own, and stops the process on a pointer encoding it does not know. This checks
// the record chain and those CIE fields with bounds-checked reads only.
#ifndef PYTEST_ORCJIT_EH_FRAME_CHECK_H_
#define PYTEST_ORCJIT_EH_FRAME_CHECK_H_

#include <llvm/ADT/STLFunctionalExtras.h>
#include <llvm/ADT/Twine.h>
#include <llvm/Support/Error.h>

#include <cstdint>

namespace orcjit {

/// Checks the records of the .eh_frame section whose `size` bytes are at `contents`: the chain of
/// records must end exactly at the end of the section, every FDE must point at an earlier CIE, and
/// every CIE must have fields JITLink can read. For the first bad record returns
/// `record_error(start, what)`, where `start` is the record's offset in the section and `what`
/// says what is wrong with it ("has length ..."). Reads nothing outside the `size` bytes.
llvm::Error CheckEhFrameRecords(
    const uint8_t* contents, uint64_t size,
    llvm::function_ref<llvm::Error(uint64_t start, const llvm::Twine& what)> record_error);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_EH_FRAME_CHECK_H_
