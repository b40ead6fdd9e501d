// Link order between libraries: a library that links against others (LibraryObj::LinkAgainst)
// resolves the symbols it does not define in their exported definitions, in order, before the
// process; see library.h.
//
// How: before a library links, each library it links against is linked (its constructors run
// first, as a shared library's dependencies initialize first) and its exported symbols, with their
// addresses, are collected into the library's `imported_` table, first library first. The binding
// plugin binds a graph's externals from that table before it asks the process (process_symbols.h),
// so a library linked against shadows the process as the library's own definitions do, and ORC's
// own lookup never sees those names. Hidden definitions are not offered, as a shared library does
// not export them. The relation is not transitive: a library sees the libraries it links against,
// not theirs.
//
// A library linked against stays open while a library that links against it is: it holds the code
// the other jumps into. Closing it first is refused; the session closes dependents first. The
// relations (who links against whom, and whether a library is closing) are guarded by one mutex,
// taken after a library's own and never held while a library links, so that it orders nothing.
#include <tvm/ffi/error.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "library.h"

namespace orcjit {

namespace {

std::mutex& LinkOrderMutex() {
  static auto* mutex = new std::mutex();
  return *mutex;
}

}  // namespace

void LibraryObj::LinkAgainst(tvm::ffi::ObjectPtr<LibraryObj> other) {
  std::string what = "cannot link library '" + name_ + "' against ";
  if (other.get() == this) TVM_FFI_THROW(ValueError) << what << "itself";
  what += "library '" + other->name_ + "'";
  if (other->session_.get() != session_.get()) {
    TVM_FFI_THROW(ValueError) << what << ": they belong to different execution sessions; create "
                              << "both libraries in the same session";
  }
  std::lock_guard<std::mutex> lock(mutex_);
  CheckOpen();
  if (linked_any_) {
    TVM_FFI_THROW(ValueError) << what << ": library '" << name_ << "' has already linked its "
                              << "objects, which resolved their symbols without it; call "
                              << "link_against before the library's first get_function";
  }
  std::lock_guard<std::mutex> links(LinkOrderMutex());
  if (other->closing_) {
    TVM_FFI_THROW(RuntimeError) << what << ": library '" << other->name_
                                << "' is closed; link against an open library";
  }
  for (const auto& linked : linked_against_) {
    if (linked.get() == other.get()) return;
  }
  // A cycle: `other` links against this library, directly or through others.
  std::vector<const LibraryObj*> stack{other.get()};
  std::vector<const LibraryObj*> seen;
  bool cycle = false;
  while (!stack.empty() && !cycle) {
    const LibraryObj* library = stack.back();
    stack.pop_back();
    cycle = library == this;
    if (std::find(seen.begin(), seen.end(), library) != seen.end()) continue;
    seen.push_back(library);
    for (const auto& next : library->linked_against_) stack.push_back(next.get());
  }
  if (cycle) {
    TVM_FFI_THROW(ValueError) << what << ": '" << other->name_ << "' already links against '"
                              << name_ << "' (directly or through other libraries), and link "
                              << "order cannot have cycles";
  }
  other->dependents_.push_back(this);
  linked_against_.push_back(std::move(other));
}

void LibraryObj::PrepareImports() {
  std::vector<tvm::ffi::ObjectPtr<LibraryObj>> libraries;
  {
    std::lock_guard<std::mutex> links(LinkOrderMutex());
    libraries = linked_against_;
  }
  if (libraries.empty()) return;
  imported_.clear();
  auto& es = session_->jit().getExecutionSession();
  for (const auto& library : libraries) {
    // Links what it has added so far and runs its constructors; raises its own failure.
    library->Link();
    std::lock_guard<std::mutex> lock(library->mutex_);
    library->CheckOpen();
    size_t found = 0;
    for (const auto& [name, addr] : library->linked_) {
      if (!library->exported_.contains(*name)) continue;
      ++found;
      imported_.try_emplace(name, addr);
    }
    if (found == library->exported_.size()) continue;
    // Exported definitions outside the linked graphs' blocks (absolute symbols): ask ORC.
    llvm::orc::SymbolLookupSet missing;
    for (const auto& entry : library->exported_) {
      auto name = es.intern(entry.getKey());
      if (!library->linked_.count(name)) {
        missing.add(std::move(name), llvm::orc::SymbolLookupFlags::WeaklyReferencedSymbol);
      }
    }
    auto symbols = es.lookup(llvm::orc::makeJITDylibSearchOrder(
                                 library->dylib_, llvm::orc::JITDylibLookupFlags::MatchAllSymbols),
                             std::move(missing));
    if (!symbols) library->ThrowLinkFailure(symbols.takeError());
    for (auto& [name, symbol] : *symbols) {
      if (symbol.getAddress()) imported_.try_emplace(name, symbol.getAddress());
    }
  }
}

void LibraryObj::StartClosing() {
  std::lock_guard<std::mutex> links(LinkOrderMutex());
  for (const LibraryObj* dependent : dependents_) {
    TVM_FFI_THROW(RuntimeError) << "cannot close library '" << name_ << "': library '"
                                << dependent->name_ << "' is linked against it and still open; "
                                << "close '" << dependent->name_ << "' first";
  }
  closing_ = true;
}

void LibraryObj::UnlinkAll() {
  std::vector<tvm::ffi::ObjectPtr<LibraryObj>> libraries;
  {
    std::lock_guard<std::mutex> links(LinkOrderMutex());
    libraries.swap(linked_against_);
    for (const auto& library : libraries) {
      auto& dependents = library->dependents_;
      dependents.erase(std::remove(dependents.begin(), dependents.end(), this), dependents.end());
    }
  }
  // Outside the mutex: the last reference to a library closes it.
  libraries.clear();
}

void LibraryObj::CloseInLinkOrder(const std::vector<tvm::ffi::ObjectPtr<LibraryObj>>& libraries) {
  std::vector<LibraryObj*> open;
  for (const auto& library : libraries) open.push_back(library.get());
  // Each pass closes the libraries that no open library links against; with no cycles, every
  // pass closes at least one.
  while (!open.empty()) {
    std::vector<LibraryObj*> ready, waiting;
    {
      std::lock_guard<std::mutex> links(LinkOrderMutex());
      for (LibraryObj* library : open) {
        (library->dependents_.empty() ? ready : waiting).push_back(library);
      }
    }
    if (ready.empty()) break;  // not reached: a cycle was refused when it was made
    for (LibraryObj* library : ready) library->Close();
    open.swap(waiting);
  }
}

}  // namespace orcjit
