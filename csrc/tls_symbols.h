// The symbols that JIT code takes from the core for thread-local storage (tls_runtime.h) rather
// than from the process: `__tls_get_addr`, which reads the core's TLS entries, and
// `__cxa_thread_atexit` (and glibc's `__cxa_thread_atexit_impl`, which libstdc++'s calls), which
// file the destructors of thread_local objects with their library. The binding plugin
// (process_symbols.h) asks Find for every external symbol of a graph: three pointer comparisons.
#ifndef PYTEST_ORCJIT_TLS_SYMBOLS_H_
#define PYTEST_ORCJIT_TLS_SYMBOLS_H_

#include <llvm/ExecutionEngine/Orc/Core.h>

#include "tls_runtime.h"

namespace orcjit {

class ThreadLocalSymbols {
 public:
  explicit ThreadLocalSymbols(llvm::orc::ExecutionSession& es)
      : tls_get_addr_(es.intern("__tls_get_addr")),
        thread_atexit_(es.intern("__cxa_thread_atexit")),
        thread_atexit_impl_(es.intern("__cxa_thread_atexit_impl")) {}

  /// The core's definition of `name`, or a null address if the core does not define it.
  llvm::orc::ExecutorAddr Find(const llvm::orc::SymbolStringPtr& name) const {
    if (name == tls_get_addr_) return llvm::orc::ExecutorAddr::fromPtr(&OrcjitTlsGetAddr);
    if (name == thread_atexit_ || name == thread_atexit_impl_) {
      return llvm::orc::ExecutorAddr::fromPtr(&OrcjitCxaThreadAtExit);
    }
    return llvm::orc::ExecutorAddr();
  }

 private:
  const llvm::orc::SymbolStringPtr tls_get_addr_;
  const llvm::orc::SymbolStringPtr thread_atexit_;
  const llvm::orc::SymbolStringPtr thread_atexit_impl_;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_TLS_SYMBOLS_H_
