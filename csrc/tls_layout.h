// The thread-local storage of an object file laid out before JITLink reads it.
//
// A shared library's thread-local variables (`thread_local`, `__thread`) live in its TLS sections
// (SHF_TLS: `.tdata*` with initial values, `.tbss*` zero-filled), which the dynamic loader copies
// into a block for each thread. Code reaches them through `__tls_get_addr`, in one of two models
// for -fPIC code: global-dynamic (R_X86_64_TLSGD: the address of one variable) and local-dynamic
// (R_X86_64_TLSLD: the start of the object's block, to which R_X86_64_DTPOFF32/64 offsets are
// added). JITLink turns TLSGD into a 16-byte entry that points at the variable, and rejects the
// local-dynamic relocations. So, once per object (when it is first read), LayOutThreadLocals:
//   * lays the object's TLS sections out one after another, each at its alignment: the object's
//     TLS image. Each TLS section's address (sh_addr, 0 in objects) becomes kThreadLocalBase plus
//     its offset in the image, which JITLink keeps as the block's address until it allocates
//     memory, and every TLS
//     section is renamed kThreadLocalSection, so that one lookup finds them in a graph;
//   * rewrites local-dynamic code into global-dynamic code that JITLink links: every TLSLD becomes
//     a TLSGD against one TLS symbol of the object (the anchor), and every DTPOFF32/DTPOFF64 is
//     resolved here, to the variable's offset from the anchor in the image (in debug sections: from
//     the start of the image), and becomes R_X86_64_NONE.
// It also gives symbols of internal visibility (STV_INTERNAL: gcc -O0 gives them to the TLS
// wrapper functions of thread_local variables that another object defines) hidden visibility,
// which means the same in a JIT library, and which JITLink, unlike STV_INTERNAL, reads.
// The linked graph's TLS blocks and `__tls_get_addr` are tls_plugin.h's business.
#ifndef PYTEST_ORCJIT_TLS_LAYOUT_H_
#define PYTEST_ORCJIT_TLS_LAYOUT_H_

#include <llvm/ADT/StringRef.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBuffer.h>

#include <cstdint>
#include <memory>

namespace orcjit {

/// The name every TLS section of a laid-out object has.
constexpr llvm::StringLiteral kThreadLocalSection = "$.orcjit.tls";

/// The address of the start of the image: a TLS section's address is this plus its offset. Other
/// sections keep address 0, and JITLink gives the records it splits .eh_frame into addresses
/// from 0 up and maps every block with an address other than 0 (to find what .eh_frame points
/// at): so far from 0, TLS blocks overlap nothing there.
constexpr uint64_t kThreadLocalBase = uint64_t(1) << 40;

/// The object in `object` (checked by CheckObject) with its TLS laid out as described above, in a
/// new buffer with the same identifier; nullptr when it has no TLS sections and no internal
/// symbols (nothing to do).
/// Fails, naming `name`, when a local-dynamic relocation refers to a symbol that is not in a TLS
/// section of the object, or an offset does not fit its field.
llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> LayOutThreadLocals(llvm::MemoryBufferRef object,
                                                                       llvm::StringRef name);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_TLS_LAYOUT_H_
