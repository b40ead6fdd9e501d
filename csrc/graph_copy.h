// Copies of link graphs: a session parses each object file into a JITLink graph once, and each
// library that links the object gets a copy of that graph instead of parsing the ELF file again.
//
// Building a graph reads the ELF section, symbol and relocation tables and decodes every
// relocation into an edge; it is the largest single cost of a load. Linking changes a graph (it
// prunes it, adds GOT entries and stubs, assigns addresses), so the parsed graph itself cannot be
// linked twice; copying its sections, blocks, symbols and edges is cheaper than parsing. Block
// contents are not copied: the copy refers to the content of the parsed graph (the object file's
// bytes), which JITLink copies into the library's memory when it allocates it, and which the
// session keeps as long as the object is cached.
//
// Prepared graphs go one step further. The first link of an object does the work that is the same
// every time: JITLink splits .eh_frame into records and gives them edges, ORC turns the weak
// definitions the library already has into external references, dead-stripping drops what nothing
// live uses, and JITLink builds GOT entries and stubs. The preparation plugin copies the graph
// right after that (after the post-prune passes of the plugins before it), and the next library
// that links the same object, with the same weak definitions taken from earlier objects, links a
// copy of that prepared graph: the passes that already ran find nothing left to do. The prepared
// graph leaves out the sections that dead-stripping emptied (at -O0, the hundreds of inline
// functions an earlier object of the library defines), merges the per-function and per-variable
// sections of an object without debug information into one section of each kind, and keeps a flat
// plan of its copies, so that a copy costs one pass over its blocks, symbols and edges. A copy
// skips the passes whose work the prepared graph holds done (marking symbols live, building GOT
// entries and stubs). The prepared
// graph names its .eh_frame section otherwise, so that JITLink's .eh_frame passes, which would
// parse every record again, skip it; a pre-prune pass of the plugin gives the section its name
// back before anything else looks at it.
#ifndef PYTEST_ORCJIT_GRAPH_COPY_H_
#define PYTEST_ORCJIT_GRAPH_COPY_H_

#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "plugin.h"

namespace orcjit {

/// A copy of `graph`, which must not have been linked. Only graphs from compat::parseGraph are
/// copied (LLVM 22 and newer).
std::unique_ptr<llvm::jitlink::LinkGraph> CopyGraph(llvm::jitlink::LinkGraph& graph);

/// A prepared graph and the plan of its copies: its blocks, symbols and edges in flat arrays that
/// refer to each other by index, made once, so that a copy is made without the two hash maps (from
/// each symbol and block of the graph to its copy) that copying an arbitrary graph needs.
class PreparedGraph {
 public:
  explicit PreparedGraph(std::unique_ptr<llvm::jitlink::LinkGraph> graph);
  ~PreparedGraph();
  /// A copy to link (the prepared graph itself is never linked).
  std::unique_ptr<llvm::jitlink::LinkGraph> Copy() const;

 private:
  struct Plan;
  std::unique_ptr<llvm::jitlink::LinkGraph> graph_;
  std::unique_ptr<const Plan> plan_;
};

/// The prepared graphs of one object, by the weak definitions its library already had (which the
/// object then takes from the library rather than defining them).
class PreparedGraphs {
 public:
  /// Those weak definitions, sorted.
  using Key = std::vector<llvm::orc::SymbolStringPtr>;

  /// `object_bytes`: the object file's bytes, which must outlive this store. Prepared graphs refer
  /// to them for the contents they hold (most), and own the rest.
  explicit PreparedGraphs(llvm::StringRef object_bytes) : object_bytes_(object_bytes) {}
  llvm::StringRef object_bytes() const { return object_bytes_; }

  std::shared_ptr<const PreparedGraph> Find(const Key& key) const;
  /// Keeps `graph` for `key` unless a graph is kept for it already (two libraries may prepare the
  /// same object at once) or as many as kMaxGraphs are kept.
  void Insert(Key key, std::shared_ptr<const PreparedGraph> graph);

 private:
  static constexpr size_t kMaxGraphs = 8;
  const llvm::StringRef object_bytes_;
  mutable std::mutex mutex_;
  std::map<Key, std::shared_ptr<const PreparedGraph>> graphs_;
};

/// The ObjectLinkingLayer plugin that prepares graphs and links prepared ones; see the top of this
/// file. It must come before the plugins whose passes depend on the library or on the addresses
/// JITLink assigns (everything it copies must be the same for every library).
class GraphPreparationPlugin final : public ResourcelessPlugin {
 public:
  /// `graph`, a copy of an object's parsed graph about to be linked into `dylib`, is to be
  /// prepared and kept in `store` under `key`.
  void Expect(const llvm::orc::JITDylib* dylib, const llvm::jitlink::LinkGraph* graph,
              std::shared_ptr<PreparedGraphs> store, PreparedGraphs::Key key);
  /// Forgets what `dylib`'s graphs were expected to prepare: they will not be linked.
  void Forget(const llvm::orc::JITDylib* dylib);

  void modifyPassConfig(llvm::orc::MaterializationResponsibility& mr, llvm::jitlink::LinkGraph& g,
                        llvm::jitlink::PassConfiguration& config) override;

 private:
  struct Expected {
    const llvm::orc::JITDylib* dylib;
    std::shared_ptr<PreparedGraphs> store;
    PreparedGraphs::Key key;
  };

  std::mutex mutex_;
  std::unordered_map<const llvm::jitlink::LinkGraph*, Expected> expected_;
};

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_GRAPH_COPY_H_
