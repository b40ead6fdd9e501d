// The session's cache of checked and parsed object files. See object_cache.h.
#include "object_cache.h"

#include <unistd.h>

#include <cstring>
#include <ctime>
#include <utility>
#include <vector>

namespace orcjit {

namespace {

/// How long after its mtime a file can still change without its mtime changing: well above the
/// granularity of the kernel's coarse clock that stamps files (one jiffy, at most 10 ms).
constexpr int64_t kRacyWindowNs = 1'000'000'000;

int64_t NowNs() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

/// Whether the file behind `fd` still holds exactly `bytes`.
bool SameContents(int fd, llvm::StringRef bytes) {
  std::vector<char> chunk(size_t(1) << 16);
  size_t offset = 0;
  while (offset < bytes.size()) {
    size_t want = std::min(chunk.size(), bytes.size() - offset);
    ssize_t got = pread(fd, chunk.data(), want, static_cast<off_t>(offset));
    if (got <= 0 || std::memcmp(chunk.data(), bytes.data() + offset, size_t(got)) != 0) {
      return false;
    }
    offset += size_t(got);
  }
  return true;
}

class SharedMemoryBuffer final : public llvm::MemoryBuffer {
 public:
  explicit SharedMemoryBuffer(std::shared_ptr<llvm::MemoryBuffer> owner)
      : owner_(std::move(owner)) {
    init(owner_->getBufferStart(), owner_->getBufferEnd(), /*RequiresNullTerminator=*/false);
  }
  llvm::StringRef getBufferIdentifier() const override { return owner_->getBufferIdentifier(); }
  BufferKind getBufferKind() const override { return owner_->getBufferKind(); }

 private:
  std::shared_ptr<llvm::MemoryBuffer> owner_;
};

}  // namespace

FileStamp FileStamp::Of(const struct stat& st) {
  return FileStamp{static_cast<uint64_t>(st.st_size),
                   int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                   static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_dev)};
}

std::shared_ptr<const CachedObject> ObjectCache::Find(const std::string& path,
                                                      const FileStamp& stamp, int fd) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = by_path_.find(path);
  if (found == by_path_.end()) return nullptr;
  Entry& entry = *found->second;
  if (!(entry.stamp == stamp)) return nullptr;
  if (entry.racy) {
    // Compare the bytes; once the file is older than the clock's granularity, any later write
    // gives it a new mtime, and comparing its stamp is enough from then on.
    int64_t now = NowNs();
    if (!SameContents(fd, entry.object->buffer->getBuffer())) return nullptr;
    entry.racy = now - stamp.mtime_ns < kRacyWindowNs;
  }
  entries_.splice(entries_.begin(), entries_, found->second);
  return entry.object;
}

void ObjectCache::Insert(const std::string& path, const FileStamp& stamp,
                         std::shared_ptr<const CachedObject> object) {
  size_t bytes = object->buffer->getBufferSize();
  if (bytes > max_bytes_) return;
  bool racy = NowNs() - stamp.mtime_ns < kRacyWindowNs;
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = by_path_.find(path);
  if (found != by_path_.end()) {
    bytes_ -= found->second->object->buffer->getBufferSize();
    entries_.erase(found->second);
    by_path_.erase(found);
  }
  entries_.push_front(Entry{path, stamp, racy, std::move(object)});
  by_path_[path] = entries_.begin();
  bytes_ += bytes;
  while (entries_.size() > max_entries_ || bytes_ > max_bytes_) {
    bytes_ -= entries_.back().object->buffer->getBufferSize();
    by_path_.erase(entries_.back().path);
    entries_.pop_back();
  }
}

void ObjectCache::Clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  by_path_.clear();
  entries_.clear();
  bytes_ = 0;
}

std::unique_ptr<llvm::MemoryBuffer> ShareBuffer(std::shared_ptr<llvm::MemoryBuffer> buffer) {
  return std::make_unique<SharedMemoryBuffer>(std::move(buffer));
}

}  // namespace orcjit
