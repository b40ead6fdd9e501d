// Object files a session has read, checked and parsed, so that adding the same file again costs a
// stat instead of a read, a validation pass (object_check.h), a symbol-table parse and (with LLVM
// 22) building its link graph, of which each library links a copy (graph_copy.h).
//
// Kernel tests load the same few objects into a fresh library for every test; reading and
// checking them was a quarter of a load. An entry is keyed by the path and identified by what
// fstat says of the opened file (size, mtime in nanoseconds, inode, device): a file rewritten in
// place or replaced by rename reads as a different file and is read again. File systems stamp
// mtimes with a coarse clock, so a file written in the same clock tick as it was read could change
// without its mtime changing: such an entry is "racy" and its bytes are compared with the file's on
// every hit until the file is older than the clock's granularity (the rule git uses for its index).
// The cache is small (entries and bytes are bounded, least recently used go first); only objects
// that passed the check are kept. Entries hold symbol names interned in the session's JIT, so the
// session clears its cache before it ends the JIT.
#ifndef PYTEST_ORCJIT_OBJECT_CACHE_H_
#define PYTEST_ORCJIT_OBJECT_CACHE_H_

#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/Orc/Core.h>
#include <llvm/Support/MemoryBuffer.h>
#include <sys/stat.h>

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "graph_copy.h"
#include "process_reach.h"

namespace orcjit {

/// A checked object file and its parsed symbol interface, shared by every library that adds it.
struct CachedObject {
  /// The file's bytes, read into memory (not mapped: the file may be rewritten under us).
  std::shared_ptr<llvm::MemoryBuffer> buffer;
  /// What llvm::orc::getObjectFileInterface returned for it.
  llvm::orc::MaterializationUnit::Interface interface;
  /// The object parsed into a link graph, never linked: libraries link copies of it
  /// (graph_copy.h). Made when the file is read; null where the LLVM cannot copy graphs
  /// (compat.h), and then libraries parse the bytes themselves.
  std::shared_ptr<llvm::jitlink::LinkGraph> graph;
  /// The graphs that linking `graph` prepared (graph_copy.h); made with `graph`. They refer to
  /// `buffer`, which is destroyed after them.
  std::shared_ptr<PreparedGraphs> prepared;
  /// What it asks of its library's placement (process_reach.h).
  PlacementNeeds placement;
};

/// The identity of an opened file as fstat reports it.
struct FileStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  uint64_t device = 0;

  static FileStamp Of(const struct stat& st);
  bool operator==(const FileStamp& other) const {
    return size == other.size && mtime_ns == other.mtime_ns && inode == other.inode &&
           device == other.device;
  }
};

class ObjectCache {
 public:
  /// At most this many files (default 64) and bytes (default 64 MiB) stay cached.
  explicit ObjectCache(size_t max_entries = 64, size_t max_bytes = size_t(64) << 20)
      : max_entries_(max_entries), max_bytes_(max_bytes) {}

  /// The cached object for `path` when the file opened as `fd` (stamped `stamp`) is the one that
  /// was cached; nullptr otherwise. May read `fd` (racy entries).
  std::shared_ptr<const CachedObject> Find(const std::string& path, const FileStamp& stamp, int fd);

  /// Caches `object` for `path`, replacing what was cached for it, and evicts the least recently
  /// used entries beyond the bounds.
  void Insert(const std::string& path, const FileStamp& stamp,
              std::shared_ptr<const CachedObject> object);

  /// Drops every entry (libraries that share an object keep their own reference to it).
  void Clear();

 private:
  struct Entry {
    std::string path;
    FileStamp stamp;
    bool racy;
    std::shared_ptr<const CachedObject> object;
  };
  using List = std::list<Entry>;

  const size_t max_entries_;
  const size_t max_bytes_;
  std::mutex mutex_;
  List entries_;  // most recently used first
  std::unordered_map<std::string, List::iterator> by_path_;
  size_t bytes_ = 0;
};

/// A MemoryBuffer over the bytes of a CachedObject that keeps them alive: what the linking layer
/// gets for each add, so that an evicted entry stays valid for the libraries still linking it.
std::unique_ptr<llvm::MemoryBuffer> ShareBuffer(std::shared_ptr<llvm::MemoryBuffer> buffer);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_OBJECT_CACHE_H_
