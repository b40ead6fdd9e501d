// Libraries: adding objects, linking, running initializers, handing out functions (function_call.h
// calls them), closing. See library.h.
#include "library.h"

#include <fcntl.h>
#include <llvm/ExecutionEngine/Orc/ObjectFileInterface.h>
#include <sys/stat.h>
#include <tvm/ffi/c_api.h>
#include <tvm/ffi/error.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <utility>

#include "compat.h"
#include "function_call.h"
#include "graph_copy.h"
#include "library_bin.h"
#include "link_errors.h"
#include "object_cache.h"
#include "object_check.h"
#include "tls_layout.h"

namespace orcjit {

namespace {

constexpr const char* kExportPrefix = "__tvm_ffi_";

/// "the TVM-FFI export 'f'" for `__tvm_ffi_f`, "symbol 's'" otherwise.
std::string DescribeSymbol(llvm::StringRef symbol) {
  if (symbol.consume_front(kExportPrefix)) return "the TVM-FFI export '" + symbol.str() + "'";
  return "symbol '" + symbol.str() + "'";
}

/// The `size` bytes of the file opened as `fd`, read into memory; ValueError naming `path`.
std::unique_ptr<llvm::MemoryBuffer> ReadWhole(int fd, size_t size, const std::string& path) {
  auto buffer = llvm::WritableMemoryBuffer::getNewUninitMemBuffer(size, path);
  if (!buffer) {
    TVM_FFI_THROW(ValueError) << "cannot read object file '" << path << "': out of memory";
  }
  size_t offset = 0;
  while (offset < size) {
    ssize_t got = pread(fd, buffer->getBufferStart() + offset, size - offset, off_t(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      TVM_FFI_THROW(ValueError) << "cannot read object file '" << path << "': "
                                << (got < 0 ? std::strerror(errno) : "it shrank while being read");
    }
    offset += size_t(got);
  }
  return buffer;
}

}  // namespace

LibraryObj::LibraryObj(Session session, std::string name)
    : session_(std::move(session)), name_(std::move(name)) {
  SessionObj* session_obj = session_.get();
  uint64_t id = session_obj->NextLibraryId();
  if (name_.empty()) name_ = "lib" + std::to_string(id);
  llvm::orc::LLJIT& jit = session_obj->jit();
  // JITDylib names must be unique in a session; library names need not be.
  auto dylib = jit.createJITDylib(name_ + "#" + std::to_string(id));
  if (!dylib) TVM_FFI_THROW(RuntimeError) << llvm::toString(dylib.takeError());
  dylib_ = &*dylib;
  session_obj->Attach(this);
}

void LibraryObj::Place() {
  if (arena_) return;
  auto arena = placement_.Place(name_, [this](llvm::StringRef symbol) { return Resolve(symbol); });
  if (!arena) TVM_FFI_THROW(RuntimeError) << llvm::toString(arena.takeError());
  arena_ = std::move(*arena);
  runtime_ = std::make_unique<Runtime>(arena_->dso_handle());
  // Each library has its own __dso_handle, and its __cxa_atexit registrations run when it closes:
  // the binding plugin binds both into the library's graphs.
  thunks_ = std::make_unique<LibraryThunks>(*arena_, arena_->dso_handle());
  registrations_ = std::make_unique<FfiRegistrations>(arena_->dso_handle(), name_);
  SessionObj* session = session_.get();
  session->memory().RegisterArena(dylib_, arena_.get());
  session->init_fini().RegisterLibrary(dylib_, runtime_.get());
  session->binding().RegisterLibrary(
      dylib_, {&defined_, arena_->dso_handle(), &linked_, thunks_.get(), &imported_});
  session->thread_locals().RegisterLibrary(dylib_, arena_->dso_handle());
}

uint64_t LibraryObj::Resolve(llvm::StringRef symbol) {
  auto& es = session_->jit().getExecutionSession();
  return session_->binding().ResolveOutside(es.intern(symbol), defined_, imported_).getValue();
}

LibraryObj::~LibraryObj() { Close(); }

void LibraryObj::CheckOpen() const {
  if (closed()) {
    TVM_FFI_THROW(RuntimeError) << "library '" << name_
                                << "' is closed; create a new library to load objects again";
  }
  if (!failure_.empty()) TVM_FFI_THROW(RuntimeError) << failure_;
}

void LibraryObj::AddFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      TVM_FFI_THROW(FileNotFoundError)
          << "object file '" << path << "' does not exist; check the path (relative paths are "
          << "relative to the current directory)";
    }
    TVM_FFI_THROW(ValueError) << "cannot read object file '" << path
                              << "': " << std::strerror(errno);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) {
    TVM_FFI_THROW(ValueError) << "cannot read object file '" << path
                              << "': " << std::strerror(errno);
  }
  if (S_ISDIR(st.st_mode)) {
    TVM_FFI_THROW(ValueError) << "'" << path << "' is a directory, not an object file; pass "
                              << "the path of a .o file";
  }
  FileStamp stamp = FileStamp::Of(st);
  ObjectCache& cache = session_->objects();
  std::shared_ptr<const CachedObject> object = cache.Find(path, stamp, fd);
  if (!object) {
    // Read, not mapped: a mapping would show a later in-place rewrite of the file.
    std::unique_ptr<llvm::MemoryBuffer> read = ReadWhole(fd, st.st_size, path);
    auto interface = CheckAndParse(read, path);
    std::shared_ptr<llvm::MemoryBuffer> bytes = std::move(read);
    auto cached = std::make_shared<CachedObject>(
        CachedObject{bytes, std::move(interface), nullptr, nullptr, {}});
    // The parsed graph that libraries link copies of; without it they parse the object themselves.
    cached->graph =
        compat::parseGraph(session_->jit().getExecutionSession(), bytes->getMemBufferRef());
    if (cached->graph) cached->prepared = std::make_shared<PreparedGraphs>(bytes->getBuffer());
    cached->placement = FindPlacementNeeds(bytes->getMemBufferRef());
    object = std::move(cached);
    cache.Insert(path, stamp, object);
  }
  AddObject(ShareBuffer(object->buffer), object->interface, path, object->placement, object);
}

void LibraryObj::AddBytes(const tvm::ffi::Bytes& bytes) {
  auto buffer =
      llvm::MemoryBuffer::getMemBufferCopy(llvm::StringRef(bytes.data(), bytes.size()), "<bytes>");
  auto interface = CheckAndParse(buffer, "<bytes>");
  PlacementNeeds needs = FindPlacementNeeds(buffer->getMemBufferRef());
  AddObject(std::move(buffer), std::move(interface), "<bytes>", needs);
}

llvm::orc::MaterializationUnit::Interface LibraryObj::CheckAndParse(
    std::unique_ptr<llvm::MemoryBuffer>& buffer, const std::string& name) {
  if (auto err = CheckObject(buffer->getMemBufferRef(), name)) {
    TVM_FFI_THROW(ValueError) << llvm::toString(std::move(err));
  }
  // An object with thread_local variables is linked as a copy with its TLS laid out.
  auto laid_out = LayOutThreadLocals(buffer->getMemBufferRef(), name);
  if (!laid_out) TVM_FFI_THROW(ValueError) << llvm::toString(laid_out.takeError());
  if (*laid_out) buffer = std::move(*laid_out);
  auto& es = session_->jit().getExecutionSession();
  auto interface = llvm::orc::getObjectFileInterface(es, buffer->getMemBufferRef());
  if (!interface) {
    TVM_FFI_THROW(ValueError) << "'" << name << "' is not a valid object file: "
                              << llvm::toString(interface.takeError());
  }
  return std::move(*interface);
}

void LibraryObj::AddObject(std::unique_ptr<llvm::MemoryBuffer> buffer,
                           llvm::orc::MaterializationUnit::Interface interface,
                           const std::string& display_name, const PlacementNeeds& needs,
                           std::shared_ptr<const CachedObject> cached) {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckOpen();
  if (arena_) {
    if (auto err = LibraryPlacement::CheckReach(
            *arena_, name_, display_name, needs,
            [this](llvm::StringRef symbol) { return Resolve(symbol); })) {
      TVM_FFI_THROW(ValueError) << llvm::toString(std::move(err));
    }
  }
  auto& es = session_->jit().getExecutionSession();
  // Initializer symbols are named after the buffer; give each object of the library its own so
  // that one file may be added to several libraries, and two in-memory objects to one. The names
  // repeat from library to library (each is its own namespace), so the JIT's string pool, which
  // never shrinks by itself, does not grow with every load.
  if (interface.InitSymbol) {
    interface.SymbolFlags.erase(interface.InitSymbol);
    interface.InitSymbol = es.intern("$.orcjit.init." + std::to_string(next_object_));
    interface.SymbolFlags[interface.InitSymbol] =
        llvm::JITSymbolFlags::MaterializationSideEffectsOnly;
  }
  ++next_object_;
  for (const auto& [symbol, flags] : interface.SymbolFlags) {
    if (!flags.isStrong() || flags.hasMaterializationSideEffectsOnly()) continue;
    if (defined_.contains(*symbol)) {
      TVM_FFI_THROW(ValueError) << "duplicate symbol: '" << display_name << "' defines "
                                << DescribeSymbol(*symbol) << ", which library '" << name_
                                << "' already has; put the object in another library "
                                << "or rename the symbol";
    }
  }
  // Weak definitions the library already has would be discarded by ORC, which for a graph means
  // searching the graph for each; leaving them out of the interface is the same (linking makes
  // them external) and costs nothing.
  std::vector<llvm::orc::SymbolStringPtr> discarded;
  for (const auto& [symbol, flags] : interface.SymbolFlags) {
    if (flags.isWeak() && defined_.contains(*symbol)) discarded.push_back(symbol);
  }
  for (const auto& symbol : discarded) interface.SymbolFlags.erase(symbol);
  // Linking looks up one symbol per object, enough to materialize (link) all of it: its
  // initializer symbol, or else its first strong definition. Weak definitions may be taken from
  // another object, so they cannot stand for this one.
  std::optional<llvm::orc::SymbolStringPtr> representative;
  if (interface.InitSymbol) representative = interface.InitSymbol;
  std::vector<llvm::orc::SymbolStringPtr> symbols, exported;
  for (const auto& [symbol, flags] : interface.SymbolFlags) {
    if (!flags.hasMaterializationSideEffectsOnly()) symbols.push_back(symbol);
    if (flags.isExported() && !flags.hasMaterializationSideEffectsOnly())
      exported.push_back(symbol);
    if (!representative && flags.isStrong()) representative = symbol;
  }
  // The extent of a `__tvm_ffi__library_bin`, which load_module reads (library_bin.h).
  bool library_bin = interface.SymbolFlags.count(es.intern(tvm::ffi::symbol::tvm_ffi_library_bin));
  uint64_t library_bin_size = library_bin ? LibraryBinExtent(buffer->getMemBufferRef()) : 0;
  auto& layer = session_->jit().getObjLinkingLayer();
  llvm::Error added = llvm::Error::success();
  if (cached) files_.emplace_back(display_name, cached->buffer);
  if (cached && cached->graph) {
    // A copy of the graph prepared for the same weak definitions, or else of the parsed graph,
    // which linking then prepares (graph_copy.h).
    PreparedGraphs::Key key(discarded.begin(), discarded.end());
    llvm::sort(key);
    std::shared_ptr<const PreparedGraph> prepared = cached->prepared->Find(key);
    auto copy = prepared ? prepared->Copy() : CopyGraph(*cached->graph);
    if (!prepared) {
      session_->preparation().Expect(dylib_, copy.get(), cached->prepared, std::move(key));
    }
    session_->debug_objects().Expect(dylib_, copy.get(), cached->buffer->getBuffer());
    // The copy refers to the cached object's bytes: keep them until the library closes.
    added = compat::addGraph(layer, *dylib_, std::move(copy), std::move(interface));
    linked_objects_.push_back(std::move(cached));
  } else {
    added = layer.add(*dylib_, std::move(buffer), std::move(interface));
  }
  if (auto err = std::move(added)) {
    TVM_FFI_THROW(ValueError) << "cannot add '" << display_name << "' to library '" << name_
                              << "': " << llvm::toString(std::move(err));
  }
  for (const auto& symbol : symbols) defined_.insert(*symbol);
  for (const auto& symbol : exported) exported_.insert(*symbol);
  if (library_bin) {
    library_bin_size_ = library_bin_size;
    library_bin_object_ = display_name;
  }
  if (!arena_) placement_.Add(display_name, needs);
  if (representative) {
    pending_.push_back(*representative);
  }
  objects_.push_back(display_name);
}

void LibraryObj::ThrowLinkFailure(llvm::Error err) const {
  std::string reason = DescribeLinkFailure(std::move(err), dylib_, files_);
  TVM_FFI_THROW(RuntimeError) << "cannot link library '" << name_ << "': " << reason;
  TVM_FFI_UNREACHABLE();
}

void LibraryObj::Link() {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckOpen();
  if (pending_.empty()) return;
  PrepareImports();
  LinkPending();
  if (auto err = runtime_->RunPendingInitializers(name_)) {
    failure_ = llvm::toString(std::move(err));
    TVM_FFI_THROW(RuntimeError) << failure_;
  }
}

void LibraryObj::LinkWithoutRunning() {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckOpen();
  failure_ = "library '" + name_ + "' was linked without running its code, to prepare its " +
             "objects; create a new library to call them";
  // Even if only some objects link: what was emitted must not run its destructors either.
  struct Abandon {
    std::unique_ptr<Runtime>& runtime;  // made by the link's Place()
    ~Abandon() {
      if (runtime) runtime->Abandon();
    }
  } abandon{runtime_};
  if (pending_.empty()) return;
  PrepareImports();
  LinkPending();
}

void LibraryObj::LinkPending() {
  Place();
  std::vector<llvm::orc::SymbolStringPtr> objects;
  std::swap(objects, pending_);
  linked_any_ = true;
  auto& es = session_->jit().getExecutionSession();
  TakeReportedErrors(dylib_);
  // One object at a time, in the order they were added: an object then finds the symbols it takes
  // from the objects before it (the inline functions they define first, mostly) already linked,
  // and the binding plugin binds them without an ORC lookup (process_symbols.h). References to
  // later objects still work: ORC links those on demand. A failed object does not stop the others,
  // so that one error names every undefined symbol.
  llvm::Error failed = llvm::Error::success();
  for (auto& object : objects) {
    llvm::orc::SymbolLookupSet symbol(std::move(object),
                                      llvm::orc::SymbolLookupFlags::WeaklyReferencedSymbol);
    auto linked = es.lookup(
        llvm::orc::makeJITDylibSearchOrder(dylib_, llvm::orc::JITDylibLookupFlags::MatchAllSymbols),
        std::move(symbol));
    if (!linked) failed = llvm::joinErrors(std::move(failed), linked.takeError());
  }
  if (failed) ThrowLinkFailure(std::move(failed));
}

void* LibraryObj::LookupLinked(const std::string& symbol) {
  if (!defined_.contains(symbol)) return nullptr;
  Place();  // looking a symbol up may link the object that defines it
  auto& es = session_->jit().getExecutionSession();
  llvm::orc::SymbolStringPtr name = es.intern(symbol);
  auto linked = linked_.find(name);
  if (linked != linked_.end()) return linked->second.toPtr<void*>();
  auto found = es.lookup(
      llvm::orc::makeJITDylibSearchOrder(dylib_, llvm::orc::JITDylibLookupFlags::MatchAllSymbols),
      std::move(name));
  if (!found) ThrowLinkFailure(found.takeError());
  return found->getAddress().toPtr<void*>();
}

void* LibraryObj::FindSymbol(const std::string& symbol) {
  Link();
  std::lock_guard<std::mutex> lock(mutex_);
  CheckOpen();
  return LookupLinked(symbol);
}

LibraryObj::LibraryBin LibraryObj::FindLibraryBin() {
  Link();
  std::lock_guard<std::mutex> lock(mutex_);
  CheckOpen();
  if (library_bin_object_.empty()) return {};
  auto* data = static_cast<const char*>(LookupLinked(tvm::ffi::symbol::tvm_ffi_library_bin));
  return {data, library_bin_size_, library_bin_object_};
}

std::optional<tvm::ffi::Function> LibraryObj::FindFunction(const std::string& name) {
  Link();
  void* address;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    CheckOpen();
    auto cached = functions_.find(name);
    if (cached != functions_.end()) {
      address = cached->second;
    } else {
      address = LookupLinked(kExportPrefix + name);
      if (address == nullptr) return std::nullopt;
      functions_[name] = address;
    }
  }
  return MakeLibraryFunction(this, address, name);
}

tvm::ffi::Function LibraryObj::GetFunction(const std::string& name) {
  if (auto function = FindFunction(name)) return *function;
  std::ostringstream objects;
  const char* separator = "";
  for (const std::string& object : objects_) {
    objects << separator << object;
    separator = ", ";
  }
  TVM_FFI_THROW(AttributeError) << "library '" << name_ << "' has no function '" << name
                                << "': none of its objects (" << (objects_.empty() ? "none" : "")
                                << objects.str() << ") defines the symbol '" << kExportPrefix
                                << name << "'; export it with TVM_FFI_DLL_EXPORT_TYPED_FUNC("
                                << name << ", ...) or check the spelling";
  TVM_FFI_UNREACHABLE();
}

std::string LibraryObj::Close() {
  if (closed()) return "";
  StartClosing();
  session_->Detach(this);
  std::string crashed = CloseDetached();
  UnlinkAll();
  return crashed;
}

std::string LibraryObj::CloseDetached() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_.exchange(true, std::memory_order_acq_rel)) return "";
  std::string crashed;
  SessionObj* session = session_.get();
  if (runtime_) {  // placed (Place()): its code may have run
    // Destructors of thread_local objects before static destructors, as at a process's exit.
    if (auto err = session->thread_locals().RunDestructors(dylib_, name_)) {
      crashed = llvm::toString(std::move(err));
      runtime_->Abandon();
    }
    if (auto err = runtime_->RunFinalizers(name_)) crashed = llvm::toString(std::move(err));
    // While the library's code is mapped: removing its global functions runs their deleters.
    if (registrations_->Close()) kept_arena_ = Arena::KeepForever(std::move(arena_));
  }
  // Every thread's copies of the library's thread_local variables, before its memory goes.
  if (auto err = session->thread_locals().UnregisterLibrary(dylib_, name_)) {
    if (crashed.empty())
      crashed = llvm::toString(std::move(err));
    else
      llvm::consumeError(std::move(err));
  }
  // Before the graphs that were never linked are freed, so that no later graph at the same address
  // is taken for one of them.
  session->preparation().Forget(dylib_);
  session->debug_objects().Forget(dylib_);
  llvm::Error removed = session->jit().getExecutionSession().removeJITDylib(*dylib_);
  llvm::consumeError(std::move(removed));
  TakeReportedErrors(dylib_);
  session->memory().UnregisterArena(dylib_);
  session->init_fini().UnregisterLibrary(dylib_);
  session->binding().UnregisterLibrary(dylib_);
  linked_.clear();          // its names belong to the JIT's string pool
  imported_.clear();        // so do these
  pending_.clear();         // and these, of objects added but never linked (or not placed)
  linked_objects_.clear();  // so do their graphs'
  files_.clear();
  dylib_ = nullptr;
  runtime_.reset();
  arena_.reset();
  functions_.clear();
  return crashed;
}

void WarmObjects(Session session, const tvm::ffi::Array<tvm::ffi::String>& paths) {
  Library library(tvm::ffi::make_object<LibraryObj>(std::move(session), "warm-up"));
  struct Closer {
    LibraryObj* library;
    ~Closer() { library->Close(); }
  } closer{library.get()};
  for (const tvm::ffi::String& path : paths) library->AddFile(std::string(path));
  library->LinkWithoutRunning();
}

}  // namespace orcjit
