// The perf map file of JIT functions. See perf_map.h.
#include "perf_map.h"

#include <fcntl.h>
#include <llvm/Demangle/Demangle.h>
#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <pthread.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>

#include "compat.h"

namespace orcjit {

namespace {

using llvm::orc::MaterializationResponsibility;
using llvm::orc::ResourceKey;
using Function = PerfMapPlugin::Function;
/// The functions of one graph's memory: its plugin (one per session) and resource key.
using Owner = std::pair<const PerfMapPlugin*, ResourceKey>;

/// The process's map file and the functions that are loaded, across every session.
class PerfMap {
 public:
  static PerfMap& Get() {
    static auto* map = [] {
      auto* made = new PerfMap();  // never destroyed: libraries may close at exit
      // A forked child writes its own map at once, from what it inherited: a fork server's child
      // may run JIT code it never links itself.
      pthread_atfork([] { Get().mutex_.lock(); }, [] { Get().mutex_.unlock(); },
                     [] {
                       PerfMap& map = Get();
                       map.mutex_.unlock();
                       std::lock_guard<std::mutex> lock(map.mutex_);
                       if (!map.loaded_.empty()) map.Open();
                     });
      return made;
    }();
    return *map;
  }

  void Add(Owner owner, std::vector<Function> functions) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Open()) Write(functions);
    auto& loaded = loaded_[owner];
    for (auto& function : functions) loaded.push_back(std::move(function));
  }

  void Remove(Owner owner) {
    std::lock_guard<std::mutex> lock(mutex_);
    loaded_.erase(owner);
  }

  void Transfer(Owner to, Owner from) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = loaded_.find(from);
    if (it == loaded_.end()) return;
    std::vector<Function> moved = std::move(it->second);
    loaded_.erase(it);
    auto& destination = loaded_[to];
    for (auto& function : moved) destination.push_back(std::move(function));
  }

 private:
  /// Makes `fd_` this process's file: a process that forked from the one that opened it opens its
  /// own and writes what is loaded. False if it cannot be opened (the map is then not written).
  bool Open() {
    pid_t pid = getpid();
    if (pid == pid_) return fd_ >= 0;
    if (fd_ >= 0) close(fd_);  // the parent's
    pid_ = pid;
    char path[64];
    std::snprintf(path, sizeof(path), "/tmp/perf-%d.map", static_cast<int>(pid));
    fd_ = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) return false;
    for (const auto& [owner, functions] : loaded_) Write(functions);
    return true;
  }

  void Write(const std::vector<Function>& functions) {
    std::string text;
    char line[48];
    for (const Function& function : functions) {
      std::snprintf(line, sizeof(line), "%" PRIx64 " %" PRIx64 " ", function.address,
                    function.size);
      text += line;
      text += function.name;
      text += '\n';
    }
    // One write per graph: lines of concurrent writers cannot interleave (O_APPEND).
    for (size_t done = 0; done < text.size();) {
      ssize_t written = write(fd_, text.data() + done, text.size() - done);
      if (written <= 0) return;  // a full /tmp loses the rest of the map, not the link
      done += static_cast<size_t>(written);
    }
  }

  std::mutex mutex_;
  pid_t pid_ = 0;
  int fd_ = -1;
  std::map<Owner, std::vector<Function>> loaded_;
};

}  // namespace

PerfMapPlugin::PerfMapPlugin()
    : enabled_([] {
        const char* setting = std::getenv("PYTEST_ORCJIT_PERF_MAP");
        return setting != nullptr && std::strcmp(setting, "1") == 0;
      }()) {}

PerfMapPlugin::~PerfMapPlugin() = default;

void PerfMapPlugin::modifyPassConfig(MaterializationResponsibility& mr, llvm::jitlink::LinkGraph&,
                                     llvm::jitlink::PassConfiguration& config) {
  if (!enabled_) return;
  config.PostAllocationPasses.push_back([this, &mr](llvm::jitlink::LinkGraph& graph) {
    std::vector<Function> functions;
    for (const auto* symbol : graph.defined_symbols()) {
      if (!symbol->isCallable() || !symbol->hasName() || symbol->getSize() == 0) continue;
      functions.push_back({symbol->getAddress().getValue(), symbol->getSize(),
                           llvm::demangle(compat::symbolName(*symbol))});
    }
    std::lock_guard<std::mutex> lock(mutex_);
    pending_[&mr] = std::move(functions);
    return llvm::Error::success();
  });
}

llvm::Error PerfMapPlugin::notifyEmitted(MaterializationResponsibility& mr) {
  if (!enabled_) return llvm::Error::success();
  std::vector<Function> functions;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pending_.find(&mr);
    if (it == pending_.end()) return llvm::Error::success();
    functions = std::move(it->second);
    pending_.erase(it);
  }
  return mr.withResourceKeyDo(
      [&](ResourceKey key) { PerfMap::Get().Add({this, key}, std::move(functions)); });
}

llvm::Error PerfMapPlugin::notifyFailed(MaterializationResponsibility& mr) {
  if (!enabled_) return llvm::Error::success();
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.erase(&mr);
  return llvm::Error::success();
}

llvm::Error PerfMapPlugin::notifyRemovingResources(llvm::orc::JITDylib&, ResourceKey key) {
  if (enabled_) PerfMap::Get().Remove({this, key});
  return llvm::Error::success();
}

void PerfMapPlugin::notifyTransferringResources(llvm::orc::JITDylib&, ResourceKey to,
                                                ResourceKey from) {
  if (enabled_) PerfMap::Get().Transfer({this, to}, {this, from});
}

}  // namespace orcjit
