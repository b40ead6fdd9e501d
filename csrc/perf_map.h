// Profiler support: the ObjectLinkingLayer plugin that writes a perf map file, so that `perf
// report` (and other profilers that read perf maps) name the functions of JIT code.
//
// perf reads /tmp/perf-<pid>.map, one line per function, `START SIZE name` (hexadecimal address
// and size, then the demangled name), for addresses that no mapped file covers. Each function of
// every graph linked in the process is appended once its graph is emitted. The file is the
// process's own: a forked child (once the process has JIT code) truncates its file at the fork
// and first writes the functions that are still loaded (those it inherited from its parent), so
// that a child's map lists all the JIT code the child can run, linked by itself or not. Functions
// of closed libraries are not removed from a written file (perf maps cannot say that), but a child
// forked afterwards does not list them.
//
// The map is written only when PYTEST_ORCJIT_PERF_MAP=1 is set when the session is created (the
// plugin's --orcjit-perf-map sets it); otherwise the plugin adds no pass and costs nothing.
#ifndef PYTEST_ORCJIT_PERF_MAP_H_
#define PYTEST_ORCJIT_PERF_MAP_H_

#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace orcjit {

class PerfMapPlugin final : public llvm::orc::ObjectLinkingLayer::Plugin {
 public:
  /// Writes a map if the environment variable says so (see the top of the file).
  PerfMapPlugin();
  ~PerfMapPlugin() override;

  bool enabled() const { return enabled_; }

  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;
  llvm::Error notifyEmitted(llvm::orc::MaterializationResponsibility& mr) override;
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility& mr) override;
  llvm::Error notifyRemovingResources(llvm::orc::JITDylib& dylib,
                                      llvm::orc::ResourceKey key) override;
  void notifyTransferringResources(llvm::orc::JITDylib& dylib, llvm::orc::ResourceKey to,
                                   llvm::orc::ResourceKey from) override;

  /// One function: its address, size and (demangled) name.
  struct Function {
    uint64_t address;
    uint64_t size;
    std::string name;
  };

 private:
  const bool enabled_;
  std::mutex mutex_;
  /// The functions of graphs being linked, written once their graph is emitted.
  std::unordered_map<llvm::orc::MaterializationResponsibility*, std::vector<Function>> pending_;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_PERF_MAP_H_
